"""sim.world: the synthetic metro and real polygon files.

Nesting of zone levels (by ids and by geometry), exact zone lookup, populations,
projection, save/load, and every input error of ``world_from_polygons`` for each reader
format (GeoJSON, GeoPackage, GeoParquet, shapefile).
"""
from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from pyproj import Geod
from shapely.geometry import Polygon, box

from sim.core.config import WorldConfig
from sim.core.errors import CRSError, InputError
from sim.core.constants import LEVELS, ZONE_LEVELS
from sim.world.model import World
from sim.world.build import build_world
from sim.world.synthetic import synthetic_world
from sim.world.polygons import world_from_polygons

CFG = WorldConfig(residents=4000, residents_per_block=50, blocks_per_tract=6, tracts_per_district=4)


@pytest.fixture(scope="module")
def world():
    return synthetic_world(CFG, seed=3)


@pytest.fixture(scope="module")
def abq_path():
    libpysal = pytest.importorskip("libpysal")
    return libpysal.examples.get_path("10740.shp")


@pytest.fixture(scope="module")
def abq(abq_path):
    return world_from_polygons(abq_path, WorldConfig(assume_crs="EPSG:4326"), seed=1, residents=20_000)


def _check_nesting(w: World):
    """Ids nest: each block in one tract, each tract in one district, buildings agree."""
    blk, tr, di = (w.zones[lvl] for lvl in ZONE_LEVELS)
    for lvl in ZONE_LEVELS:
        z = w.zones[lvl]
        assert np.array_equal(z["zone_id"].to_numpy(), np.arange(len(z)))
    bt = blk["tract_id"].to_numpy()
    td = tr["district_id"].to_numpy()
    assert bt.min() >= 0 and bt.max() < len(tr)
    assert td.min() >= 0 and td.max() < len(di)
    assert np.array_equal(blk["district_id"].to_numpy(), td[bt])
    assert len(np.unique(bt)) == len(tr)  # no empty tract
    assert len(np.unique(td)) == len(di)  # no empty district
    b = w.buildings
    assert np.array_equal(b["building_id"].to_numpy(), np.arange(len(b)))
    assert np.array_equal(b["tract_id"].to_numpy(), bt[b["block_id"].to_numpy()])
    assert np.array_equal(b["district_id"].to_numpy(), td[b["tract_id"].to_numpy()])


def _check_geometric_nesting(w: World, tol_m2=1.0):
    """Block polygons lie inside their tract, tracts inside their district; blocks of a
    tract tile it (areas add up, no overlaps)."""
    blk, tr, di = (w.zones[lvl] for lvl in ZONE_LEVELS)
    bt = blk["tract_id"].to_numpy()
    td = tr["district_id"].to_numpy()
    bg, tg, dg = blk.geometry.values, tr.geometry.values, di.geometry.values
    outside = shapely.area(shapely.difference(bg, tg[bt]))
    assert outside.max() < tol_m2
    outside = shapely.area(shapely.difference(tg, dg[td]))
    assert outside.max() < tol_m2
    per_tract = np.bincount(bt, weights=shapely.area(bg), minlength=len(tr))
    np.testing.assert_allclose(per_tract, shapely.area(tg), rtol=1e-6)
    np.testing.assert_allclose(shapely.area(shapely.union_all(bg)), shapely.area(bg).sum(), rtol=1e-6)
    # each block's interior point is in exactly one tract: its own
    pts = shapely.point_on_surface(bg)
    hits = np.array([[shapely.contains(t, p) for t in tg] for p in pts])
    assert (hits.sum(axis=1) == 1).all()
    assert np.array_equal(hits.argmax(axis=1), bt)


# ====================================================================== synthetic
def test_synthetic_levels_nest(world):
    assert [len(world.zones[lvl]) for lvl in ZONE_LEVELS] == [80, 13, 3]
    _check_nesting(world)


def test_synthetic_geometry_nests_and_tiles_the_area(world):
    _check_geometric_nesting(world)
    area = shapely.area(shapely.union_all(world.zones["block"].geometry.values))
    np.testing.assert_allclose(area, world.boundary.area, rtol=1e-6)


def test_locate_buildings_returns_their_own_zones(world):
    b = world.buildings
    x, y = b["x_m"].to_numpy(), b["y_m"].to_numpy()
    assert np.array_equal(world.locate(x, y, "building"), b["building_id"].to_numpy())
    for lvl in ZONE_LEVELS:
        assert np.array_equal(world.locate(x, y, lvl), b[f"{lvl}_id"].to_numpy()), lvl
    la = world.locate_all(x, y)
    assert list(la.columns) == ["building_id", "block_id", "tract_id", "district_id"]
    for c in la.columns:
        assert np.array_equal(la[c].to_numpy(), b[c].to_numpy())


def test_locate_agrees_with_zone_polygons(world):
    """Random points: the located zone's polygon contains the point (exact lookup)."""
    rng = np.random.default_rng(0)
    R = world.meta["radius_m"]
    r = R * np.sqrt(rng.random(3000))
    a = 2 * np.pi * rng.random(3000)
    x, y = r * np.cos(a), r * np.sin(a)
    for lvl in ZONE_LEVELS:
        z = world.locate(x, y, lvl)
        assert (z >= 0).all()
        geoms = world.zones[lvl].geometry.values[z]
        assert shapely.contains_xy(geoms, x, y).all(), lvl
    # the nearest building really is the nearest
    bi = world.locate(x[:200], y[:200], "building")
    bx, by = world.buildings["x_m"].to_numpy(), world.buildings["y_m"].to_numpy()
    d_all = np.hypot(bx[None, :] - x[:200, None], by[None, :] - y[:200, None])
    np.testing.assert_allclose(d_all[np.arange(200), bi], d_all.min(axis=1))


def test_locate_outside_nan_and_inf_give_minus_one(world):
    R = world.meta["radius_m"]
    x = np.array([0.0, 3 * R, -3 * R, np.nan, 0.0, np.inf, -np.inf, 10.0])
    y = np.array([0.0, 0.0, 0.0, 0.0, np.nan, 0.0, 0.0, 10.0])
    for lvl in LEVELS:
        z = world.locate(x, y, lvl)
        assert z.dtype == np.int64
        assert (z[1:7] == -1).all(), lvl
        assert z[0] >= 0 and z[7] >= 0
    la = world.locate_all(x, y)
    assert (la.iloc[1:7].to_numpy() == -1).all()
    assert world.locate(np.array([]), np.array([]), "block").shape == (0,)
    assert not world.inside(np.array([np.nan]), np.array([0.0]))[0]


def test_locate_rejects_bad_arguments(world):
    with pytest.raises(InputError, match="parish"):
        world.locate([0.0], [0.0], "parish")
    with pytest.raises(InputError, match="x_m"):
        world.locate([0.0, 1.0], [0.0], "block")
    with pytest.raises(InputError):
        world.n_zones("county")
    assert world.n_zones("building") == world.n_buildings
    assert world.n_zones("tract") == len(world.zones["tract"])


def test_zone_populations_sum_to_residents(world):
    b = world.buildings
    np.testing.assert_allclose(b["residents"].sum(), CFG.residents, rtol=1e-9)
    np.testing.assert_allclose(b["jobs"].sum(), CFG.residents * CFG.jobs_per_resident, rtol=1e-9)
    for lvl in ZONE_LEVELS:
        z = world.zones[lvl]
        np.testing.assert_allclose(z["population"].sum(), CFG.residents, rtol=1e-9)
        ids = b[f"{lvl}_id"].to_numpy()
        np.testing.assert_allclose(z["population"].to_numpy(),
                                   np.bincount(ids, weights=b["residents"], minlength=len(z)), atol=1e-9)
        np.testing.assert_allclose(z["jobs"].to_numpy(),
                                   np.bincount(ids, weights=b["jobs"], minlength=len(z)), atol=1e-9)
    # blocks are about residents_per_block on average
    assert 0.5 * CFG.residents_per_block < world.zones["block"]["population"].mean() < 2 * CFG.residents_per_block


def test_density_decays_from_the_core(world):
    b = world.buildings
    r = np.hypot(b["x_m"], b["y_m"]).to_numpy()
    R = world.meta["radius_m"]
    inner = b["residents"].to_numpy()[r < R / 3].sum() / (np.pi * (R / 3) ** 2)
    outer = b["residents"].to_numpy()[r > 2 * R / 3].sum() / (np.pi * (R**2 - (2 * R / 3) ** 2))
    assert inner > 3 * outer
    assert (r <= R + 1e-6).all()


def test_projection_round_trip_and_anchor(world):
    lat, lon = world.to_latlon(0.0, 0.0)
    np.testing.assert_allclose([lat, lon], [CFG.anchor_lat_deg, CFG.anchor_lon_deg], atol=1e-9)
    b = world.buildings
    lat, lon = world.to_latlon(b["x_m"], b["y_m"])
    x, y = world.from_latlon(lat, lon)
    np.testing.assert_allclose(x, b["x_m"], atol=1e-6)
    np.testing.assert_allclose(y, b["y_m"], atol=1e-6)
    # metres are (nearly) metres: geodesic distance from the anchor vs planar distance
    _, _, d = Geod(ellps="WGS84").inv(np.full(len(lat), CFG.anchor_lon_deg), np.full(len(lat), CFG.anchor_lat_deg),
                                      lon, lat)
    np.testing.assert_allclose(d, np.hypot(b["x_m"], b["y_m"]), rtol=5e-3, atol=1e-3)
    lat, lon = world.to_latlon(np.array([np.nan]), np.array([0.0]))
    assert np.isnan(lat[0]) or np.isnan(lon[0])


@pytest.mark.parametrize("anchor", [(41.88, -87.63), (-33.9, 151.2), (0.0, 0.0), (64.1, -21.9), (35.0, 179.99)])
def test_fast_projection_matches_pyproj(anchor):
    """The numpy fast path of the local CRS equals pyproj's transformation."""
    from pyproj import Transformer

    from sim.world.crs import local_crs, project_from_latlon, project_to_latlon

    crs = local_crs(*anchor)
    rng = np.random.default_rng(4)
    x, y = rng.uniform(-50_000, 50_000, (2, 5000))
    lat, lon = project_to_latlon(x, y, crs)
    lon_p, lat_p = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(x, y)
    np.testing.assert_allclose(lat, lat_p, rtol=0, atol=1e-9)
    np.testing.assert_allclose(lon, lon_p, rtol=0, atol=1e-9)
    x2, y2 = project_from_latlon(lat_p, lon_p, crs)
    xp, yp = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon_p, lat_p)
    np.testing.assert_allclose(x2, xp, rtol=0, atol=1e-6)
    np.testing.assert_allclose(y2, yp, rtol=0, atol=1e-6)
    np.testing.assert_allclose(x2, x, rtol=0, atol=1e-6)


def test_building_zones_passes_minus_one_through(world):
    z = world.building_zones([0, -1, world.n_buildings - 1])
    b = world.buildings
    assert (z.iloc[1].to_numpy() == -1).all()
    for lvl in ZONE_LEVELS:
        assert z[f"{lvl}_id"].iloc[0] == b[f"{lvl}_id"].iloc[0]
        assert z[f"{lvl}_id"].iloc[2] == b[f"{lvl}_id"].iloc[-1]


def test_synthetic_world_is_deterministic():
    a = synthetic_world(CFG, seed=11)
    b = synthetic_world(CFG, seed=11)
    c = synthetic_world(CFG, seed=12)
    pd.testing.assert_frame_equal(a.buildings, b.buildings)
    assert np.array_equal(a.block_seed_xy, b.block_seed_xy)
    assert not np.array_equal(a.buildings[["x_m", "y_m"]].to_numpy()[:50], c.buildings[["x_m", "y_m"]].to_numpy()[:50])


def test_save_load_round_trip(world, tmp_path):
    world.save(tmp_path / "w")
    w2 = World.load(tmp_path / "w")
    pd.testing.assert_frame_equal(world.buildings, w2.buildings)
    for lvl in ZONE_LEVELS:
        assert shapely.equals(world.zones[lvl].geometry.values, w2.zones[lvl].geometry.values).all()
        pd.testing.assert_frame_equal(pd.DataFrame(world.zones[lvl].drop(columns="geometry")),
                                      pd.DataFrame(w2.zones[lvl].drop(columns="geometry")))
    assert (w2.crs, w2.utc_offset_s, w2.kind) == (world.crs, world.utc_offset_s, world.kind)
    assert w2.meta["radius_m"] == world.meta["radius_m"]
    rng = np.random.default_rng(1)
    x, y = rng.uniform(-16000, 16000, (2, 2000))
    for lvl in LEVELS:
        assert np.array_equal(world.locate(x, y, lvl), w2.locate(x, y, lvl))
    assert not list((tmp_path / "w").glob(".*tmp*"))
    with pytest.raises(InputError, match="world.json"):
        World.load(tmp_path)


# ====================================================================== real polygons
@pytest.mark.parametrize("anchor", [(41.88, -87.63), (35.0, 179.99), (-10.0, -179.995)])
def test_fast_projection_is_bit_identical_to_its_formula(anchor):
    """The in-place fast path gives exactly the values of the plain formulas (the
    remainder skipped only where it changes nothing), across the antimeridian and for
    NaN too: the dataset digest does not move."""
    from sim.world.crs import _A_M, local_crs, project_from_latlon, project_to_latlon

    lat0, lon0 = anchor
    crs = local_crs(lat0, lon0)
    lat0, lon0, lat_ts = (float(f"{v:.6f}") for v in (lat0, lon0, lat0))
    rng = np.random.default_rng(5)
    x, y = rng.uniform(-50_000, 50_000, (2, 20_000))
    x[::997] = np.nan
    k = _A_M * np.cos(np.radians(lat_ts))
    lat, lon = project_to_latlon(x, y, crs)
    np.testing.assert_array_equal(lat, lat0 + np.degrees(y / _A_M))
    np.testing.assert_array_equal(lon, (lon0 + np.degrees(x / k) + 180.0) % 360.0 - 180.0)
    x2, y2 = project_from_latlon(lat, lon, crs)
    np.testing.assert_array_equal(y2, np.radians(lat - lat0) * _A_M)
    np.testing.assert_array_equal(x2, np.radians((lon - lon0 + 180.0) % 360.0 - 180.0) * k)


def test_polygon_file_without_crs_needs_assume_crs(abq_path):
    with pytest.raises(CRSError, match="assume_crs"):
        world_from_polygons(abq_path, WorldConfig())


def test_abq_tracts_area_weighted_fallback(abq, abq_path):
    assert abq.kind == "polygons"
    tr = abq.zones["tract"]
    assert len(tr) == 195
    np.testing.assert_allclose(tr["population"].sum(), 20_000, rtol=1e-9)
    # fallback: population proportional to tract area
    src = gpd.read_file(abq_path).set_crs("EPSG:4326").to_crs(abq.crs)
    dens = tr["population"].to_numpy() / src.geometry.area.to_numpy()
    np.testing.assert_allclose(dens, dens.mean(), rtol=1e-6)
    assert "fallback" in abq.meta["population_source"]
    _check_nesting(abq)


def test_abq_geometry_nests(abq):
    _check_geometric_nesting(abq, tol_m2=10.0)


def test_abq_locate(abq):
    b = abq.buildings
    for lvl in ZONE_LEVELS:
        assert np.array_equal(abq.locate(b["x_m"], b["y_m"], lvl), b[f"{lvl}_id"].to_numpy()), lvl
    tg = abq.zones["tract"].geometry.values
    p = shapely.get_coordinates(shapely.point_on_surface(tg))
    assert np.array_equal(abq.locate(p[:, 0], p[:, 1], "tract"), np.arange(len(tg)))
    cx, cy = p.mean(axis=0)
    far = abq.locate([cx + 1e6, np.nan], [cy, cy], "tract")
    assert (far == -1).all()
    # the projected CRS is metric (a UTM zone for a real file)
    from pyproj import CRS

    assert CRS.from_user_input(abq.crs).axis_info[0].unit_name == "metre"


def test_abq_missing_population_column_names_the_columns(abq_path):
    with pytest.raises(InputError, match="TRACTID") as ei:
        world_from_polygons(abq_path, WorldConfig(assume_crs="EPSG:4326", population_column="POP2000"))
    assert "POP2000" in str(ei.value)


def test_invalid_assume_crs_is_a_clear_error(abq_path):
    with pytest.raises((CRSError, InputError), match="assume_crs"):
        world_from_polygons(abq_path, WorldConfig(assume_crs="EPSG:999999"))


# ------------------------------------------------------------------ small files, each format
FORMATS = ["geojson", "gpkg", "parquet", "shp"]


def _sq(i, j, s=0.01):
    x0, y0 = -87.7 + i * s, 41.8 + j * s
    return box(x0, y0, x0 + s, y0 + s)


def _base():
    return gpd.GeoDataFrame({"pop": [1000.0, 2000.0, 500.0, 1500.0], "jobs": [100.0, 3000.0, 0.0, 50.0]},
                            geometry=[_sq(0, 0), _sq(1, 0), _sq(0, 1), _sq(1, 1)], crs="EPSG:4326")


def _write(gdf, tmp_path, ext, name="t"):
    p = tmp_path / f"{name}.{ext}"
    if ext == "parquet":
        gdf.to_parquet(p)
    else:
        gdf.to_file(p)
    return p


@pytest.mark.parametrize("ext", FORMATS)
def test_each_format_reads_population_and_jobs_columns(ext, tmp_path):
    g = _base()
    p = _write(g, tmp_path, ext)
    w = world_from_polygons(p, WorldConfig(population_column="pop", jobs_column="jobs"), seed=2)
    tr = w.zones["tract"]
    assert len(tr) == 4
    np.testing.assert_allclose(tr["population"].to_numpy(), g["pop"].to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(tr["jobs"].to_numpy(), g["jobs"].to_numpy(), rtol=1e-9)
    _check_nesting(w)
    # with residents given, the column's shares are kept and rescaled
    w = world_from_polygons(p, WorldConfig(population_column="pop"), seed=2, residents=10_000)
    np.testing.assert_allclose(w.zones["tract"]["population"].to_numpy(), g["pop"].to_numpy() * 2, rtol=1e-9)
    b = w.buildings
    for lvl in ZONE_LEVELS:
        assert np.array_equal(w.locate(b["x_m"], b["y_m"], lvl), b[f"{lvl}_id"].to_numpy())


def _bad_cases():
    bowtie = Polygon([(-87.7, 41.8), (-87.69, 41.81), (-87.7, 41.81), (-87.69, 41.8)])
    out = []
    g = _base()
    g.loc[2, "geometry"] = Polygon()
    out.append(("empty", g, {}, InputError, "empty"))
    g = _base()
    g.loc[2, "geometry"] = None
    out.append(("null", g, {}, InputError, "missing"))
    g = _base()
    g.loc[2, "geometry"] = bowtie
    out.append(("invalid", g, {}, InputError, "invalid"))
    g = _base()
    g["geometry"] = shapely.centroid(g.geometry.values)
    out.append(("points", g, {}, InputError, "Point"))
    g = _base().to_crs("EPSG:32616").set_crs("EPSG:4326", allow_override=True)
    out.append(("projected_as_lonlat", g, {}, CRSError, "bounds"))
    g = _base()
    g.loc[1, "pop"] = -5.0
    out.append(("negative_pop", g, {}, InputError, "negative"))
    g = _base()
    g.loc[1, "pop"] = np.nan
    out.append(("nan_pop", g, {}, InputError, "missing"))
    g = _base()
    g["pop"] = 0.0
    out.append(("zero_pop", g, {}, InputError, "zero"))
    out.append(("no_features", _base().iloc[:0], {}, InputError, "no features"))
    out.append(("missing_pop_col", _base(), {"population_column": "POP"}, InputError, "jobs"))
    out.append(("missing_jobs_col", _base(), {"jobs_column": "JOBS"}, InputError, "JOBS"))
    return out


@pytest.mark.parametrize("ext", FORMATS)
@pytest.mark.parametrize("case", _bad_cases(), ids=lambda c: c[0])
def test_bad_polygon_files_raise_clear_errors(case, ext, tmp_path):
    name, gdf, cfg, err, msg = case
    p = _write(gdf, tmp_path, ext)
    cfg = {"population_column": "pop", **cfg}
    with pytest.raises(err, match=msg):
        world_from_polygons(p, WorldConfig(**cfg), seed=1)


def test_projected_file_is_accepted_and_kept_metric(tmp_path):
    g = _base().to_crs("EPSG:32616")
    p = _write(g, tmp_path, "gpkg")
    w = world_from_polygons(p, WorldConfig(population_column="pop"), seed=1)
    np.testing.assert_allclose(w.zones["tract"].geometry.area.sum(), g.geometry.area.sum(), rtol=1e-3)


def test_missing_or_unreadable_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        world_from_polygons(tmp_path / "nope.gpkg", WorldConfig())
    junk = tmp_path / "junk.geojson"
    junk.write_text("this is not geojson")
    with pytest.raises(InputError, match="could not read"):
        world_from_polygons(junk, WorldConfig())


def test_build_world_dispatches(tmp_path):
    p = _write(_base(), tmp_path, "gpkg")
    w = build_world(WorldConfig(polygons=str(p), population_column="pop"), seed=1, residents=3000)
    assert w.kind == "polygons" and math.isclose(w.zones["tract"]["population"].sum(), 3000)
    w = build_world(WorldConfig(residents=500), seed=1)
    assert w.kind == "synthetic"


def _day_positions(w, n_homes=150, days=14):
    """End points of every segment of build_day for homes at random buildings of w,
    with the generator's parameters for that world."""
    from sim.generate import _kernels as K
    from sim.core.config import Scenario
    from sim.generate.engine import kernel_params
    from sim.core.rng import TAG_EPR, TAG_SCHED, stream_key

    params = kernel_params(Scenario(), w)
    b = w.buildings.sample(n_homes, random_state=0)
    seg = np.empty((K.MAX_SEG, 6))
    pts = []
    for i, (hx, hy) in enumerate(zip(b["x_m"], b["y_m"])):
        px, py, vis = np.empty(K.MAX_PLACES), np.empty(K.MAX_PLACES), np.zeros(K.MAX_PLACES)
        ks, ke = np.uint64(stream_key(1, TAG_SCHED, i)), np.uint64(stream_key(1, TAG_EPR, i))
        npl = 0
        for d in range(days):
            n, npl = K.build_day(seg, ks, ke, d, d % 7, K.SCHED_NONE, hx, hy, np.nan, np.nan, px, py, vis, npl,
                                 params)
            pts.append(seg[:n, 4:6].copy())
    return np.vstack(pts)


def test_generator_keeps_places_in_the_synthetic_metro(world):
    xy = _day_positions(world)
    assert world.inside(xy[:, 0], xy[:, 1]).all()


def test_generator_keeps_places_near_real_tracts(abq):
    """Exploration jumps are clipped to the study area for a real geography too: every
    place lies within the disc that encloses the tracts (centred on their centroid)."""
    xy = _day_positions(abq)
    c = abq.boundary.centroid
    ring = shapely.get_coordinates(abq.boundary)
    r_area = np.hypot(ring[:, 0] - c.x, ring[:, 1] - c.y).max()
    r = np.hypot(xy[:, 0] - c.x, xy[:, 1] - c.y)
    assert r.max() <= r_area, f"a place lies {r.max() - r_area:.0f} m beyond the study area's enclosing disc"


@pytest.mark.slow
def test_generate_on_real_tracts(abq_path, tmp_path):
    """A full generate on the 195 Albuquerque tracts (world.polygons) with few devices."""
    from sim.core.config import Scenario
    from sim.generate.engine import generate
    from sim.release.dataset import read_pings_table

    scn = Scenario().replace(
        n_devices=40, world__residents=8000, world__polygons=str(abq_path), world__assume_crs="EPSG:4326",
        world__utc_offset_h=-7.0, pings__days=2, seed=3,
    )
    man = generate(scn, tmp_path / "abq", progress=False)
    assert man["rows"]["devices"] == 40
    t = read_pings_table(tmp_path / "abq" / "pings")
    assert t.num_rows == man["rows"]["pings"] > 0
    w = World.load(tmp_path / "abq" / "world")
    assert w.kind == "polygons" and len(w.zones["tract"]) == 195
    # homes and workplaces are inside the tracts; trips to other places stay within the
    # disk around the study area's centre that the generator clips exploration to (a
    # real area is not convex, so an errand may lie just outside its tracts), up to GPS error
    x, y = w.from_latlon(t.column("lat_deg").to_numpy(), t.column("lon_deg").to_numpy())
    acc = t.column("accuracy_m").to_numpy()
    cx, cy = w.meta["centre_xy"]
    d = np.hypot(x - cx, y - cy) - w.meta["radius_m"]
    assert (d <= 6 * acc / 1.515 + 1.0).all()
    inside = w.inside(x, y)
    assert inside.mean() > 0.9
    persons = pd.read_parquet(tmp_path / "abq" / "truth" / "persons.parquet")
    assert (persons["home_tract_id"] >= 0).all()


def test_load_world_cached_reuses_until_the_world_changes(small_dataset, tmp_path):
    import shutil

    from sim.world.model import World, load_world_cached

    src = small_dataset[0] / "world"
    a = load_world_cached(src)
    assert load_world_cached(src) is a  # same path, same world.json: reused
    copy = tmp_path / "world"
    shutil.copytree(src, copy)
    b = load_world_cached(copy)
    assert b is not a and b.crs == a.crs  # another path: loaded
    (copy / "world.json").write_text((copy / "world.json").read_text() + " ")  # rewritten in place
    c = load_world_cached(copy)
    assert c is not b and len(c.buildings) == len(World.load(src).buildings)


@pytest.mark.parametrize("which", ["world", "abq"])
def test_zones_of_blocks_equal_locate(which, request):
    """Tracts and districts read off the located blocks (``zones_of_blocks``, what
    ``ping_zones`` does for those levels) equal locating the points at each level."""
    from sim.core.traces import Traces, ping_zones

    w = request.getfixturevalue(which)
    rng = np.random.default_rng(3)
    b = w.buildings
    x0, x1 = b["x_m"].min(), b["x_m"].max()
    y0, y1 = b["y_m"].min(), b["y_m"].max()
    n = 4000
    x = rng.uniform(x0 - 0.2 * (x1 - x0), x1 + 0.2 * (x1 - x0), n)  # some outside the area: -1 passes through
    y = rng.uniform(y0 - 0.2 * (y1 - y0), y1 + 0.2 * (y1 - y0), n)
    x[:3] = np.nan
    blk = w.locate(x, y, "block")
    assert (blk == -1).any() and (blk >= 0).any()
    for lvl in ("block", "tract", "district"):
        np.testing.assert_array_equal(w.zones_of_blocks(blk, lvl), w.locate(x, y, lvl), err_msg=lvl)
    with pytest.raises(InputError, match="block, tract or district"):
        w.zones_of_blocks(blk, "building")
    tr = Traces(pseudonym=np.array(["a", "b"], dtype=object), offsets=np.array([0, 2000, n]),
                t_s=np.arange(n, dtype=np.int64) * 60, x_m=np.nan_to_num(x, nan=x0), y_m=np.nan_to_num(y, nan=y0),
                accuracy_m=np.full(n, 10, np.float32), crs=w.crs, utc_offset_s=0, start_s=0, n_days=3)
    for lvl in ("district", "tract", "block", "building"):  # tract and district first: the blocks are located then
        np.testing.assert_array_equal(ping_zones(tr, w, lvl), w.locate(tr.x_m, tr.y_m, lvl), err_msg=lvl)
