"""The geography: buildings (address points) nested in blocks < tracts < districts.

Two ways to build a :class:`World`:

* :func:`synthetic_world` — a self-contained polycentric metro (dense core and
  sub-centres, density decaying with distance), so nothing needs downloading;
* :func:`world_from_polygons` — any polygon file geopandas reads, used as the tract level,
  with the other levels derived inside it.

All geometry is in metres in a projected CRS (a local equidistant-cylindrical CRS around
the anchor for the synthetic metro; the UTM zone for a real file).  lat/lon only at I/O.

Zone lookup (:meth:`World.locate`) is exact and fast: blocks are Voronoi cells of block
seeds (clipped to their tract for real geographies), so a point's block is its nearest
seed (within its tract), and tracts/districts follow from the nesting.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS, Transformer
from scipy.spatial import cKDTree

from .config import WorldConfig
from .errors import ConfigError, CRSError, InputError
from .rng import TAG_WORLD, seed_sequence

log = logging.getLogger(__name__)

LEVELS = ("building", "block", "tract", "district")
ZONE_LEVELS = ("block", "tract", "district")


@dataclass(eq=False)
class World:
    """A geography with nested zone levels.

    Attributes
    ----------
    crs : str
        Projected metric CRS of every ``x_m``/``y_m`` (WKT or PROJ string).
    buildings : DataFrame
        One row per building/address point: building_id (0..n-1), x_m, y_m, block_id,
        tract_id, district_id, residents (capacity weight of homes), jobs.
    zones : dict of GeoDataFrame
        ``zones[level]`` for block, tract, district: zone_id, population, jobs, parent
        ids, geometry (metres).
    block_seed_xy : (n_blocks, 2) float64
        Seeds whose Voronoi cells are the blocks.
    boundary : shapely geometry
        The study area; points outside locate to -1.
    utc_offset_s : int
        Local time minus UTC (seconds).
    kind : "synthetic" or "polygons".
    """

    crs: str
    buildings: pd.DataFrame
    zones: dict
    block_seed_xy: np.ndarray
    boundary: object
    utc_offset_s: int = 0
    kind: str = "synthetic"
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        from ._kernels_geo import GridIndex

        self._bldg_index = GridIndex(self.buildings[["x_m", "y_m"]].to_numpy())
        self._seed_index = GridIndex(self.block_seed_xy)
        self._seed_tree = cKDTree(self.block_seed_xy)
        r = self.meta.get("radius_m") if self.kind == "synthetic" else None
        # the synthetic boundary is a disk (buffered by 2 %): test it arithmetically
        self._disk_r2 = (1.02 * float(r)) ** 2 * (1 - 1e-9) if r else None
        b = self.zones["block"]
        self._block_tract = b["tract_id"].to_numpy(np.int64)
        t = self.zones["tract"]
        self._tract_district = t["district_id"].to_numpy(np.int64)
        shapely.prepare(self.boundary)
        if self.kind == "polygons":
            self._tract_tree = shapely.STRtree(t.geometry.values)

    # ------------------------------------------------------------ sizes
    @property
    def n_buildings(self) -> int:
        return len(self.buildings)

    def n_zones(self, level: str) -> int:
        _check_level(level)
        return self.n_buildings if level == "building" else len(self.zones[level])

    # ------------------------------------------------------------ lookup
    def inside(self, x_m, y_m) -> np.ndarray:
        """Boolean mask of points inside the study area."""
        x = np.asarray(x_m, dtype=np.float64)
        y = np.asarray(y_m, dtype=np.float64)
        ok = np.isfinite(x) & np.isfinite(y)
        if self._disk_r2 is not None:
            with np.errstate(invalid="ignore"):
                return ok & (x * x + y * y < self._disk_r2)
        out = np.zeros(x.shape, dtype=bool)
        out[ok] = shapely.contains_xy(self.boundary, x[ok], y[ok])
        return out

    def locate(self, x_m, y_m, level: str) -> np.ndarray:
        """Zone id (int64) at ``level`` of each point; -1 outside the area or for NaN.

        ``building`` returns the nearest building/address point.
        """
        _check_level(level)
        x = np.asarray(x_m, dtype=np.float64).ravel()
        y = np.asarray(y_m, dtype=np.float64).ravel()
        if x.shape != y.shape:
            raise InputError(f"x_m has {x.shape} values but y_m has {y.shape}")
        out = np.full(len(x), -1, dtype=np.int64)
        ok = self.inside(x, y)
        if not ok.any():
            return out
        xy = np.column_stack([x[ok], y[ok]])
        if level == "building":
            out[ok] = self._bldg_index.query(xy[:, 0], xy[:, 1])
            return out
        blk = self._block_of(xy)
        if level == "block":
            out[ok] = blk
        elif level == "tract":
            out[ok] = self._block_tract[blk]
        else:
            out[ok] = self._tract_district[self._block_tract[blk]]
        return out

    def locate_all(self, x_m, y_m) -> pd.DataFrame:
        """building_id, block_id, tract_id, district_id of each point (-1 outside)."""
        x = np.asarray(x_m, dtype=np.float64).ravel()
        y = np.asarray(y_m, dtype=np.float64).ravel()
        blk = self.locate(x, y, "block")
        tr = np.where(blk >= 0, self._block_tract[np.maximum(blk, 0)], -1)
        di = np.where(tr >= 0, self._tract_district[np.maximum(tr, 0)], -1)
        return pd.DataFrame(
            {"building_id": self.locate(x, y, "building"), "block_id": blk,
             "tract_id": tr, "district_id": di}
        )

    def _block_of(self, xy: np.ndarray) -> np.ndarray:
        if self.kind != "polygons":
            return self._seed_index.query(xy[:, 0], xy[:, 1])
        # real geography: the tract comes from its polygon, the block is the nearest
        # seed inside that tract (blocks are per-tract Voronoi cells).
        pts = shapely.points(xy)
        pi, ti = self._tract_tree.query(pts, predicate="intersects")
        tract = np.full(len(xy), -1, dtype=np.int64)
        tract[pi[::-1]] = ti[::-1]  # first hit wins on shared edges
        k = min(16, len(self.block_seed_xy))
        _, nn = self._seed_tree.query(xy, k=k)
        nn = nn.reshape(len(xy), k)
        match = self._block_tract[nn] == tract[:, None]
        has = match.any(axis=1)
        out = np.where(has, nn[np.arange(len(xy)), match.argmax(axis=1)], nn[:, 0])
        miss = np.flatnonzero(~has & (tract >= 0))
        for i in miss:  # rare: a tract whose seeds are not among the 16 nearest
            cand = np.flatnonzero(self._block_tract == tract[i])
            d = ((self.block_seed_xy[cand] - xy[i]) ** 2).sum(axis=1)
            out[i] = cand[np.argmin(d)]
        return out.astype(np.int64)

    def building_zones(self, building_id) -> pd.DataFrame:
        """Zone ids at every level of the given building ids (-1 passes through)."""
        b = np.asarray(building_id, dtype=np.int64)
        ok = b >= 0
        out = {"building_id": b}
        for lvl in ZONE_LEVELS:
            col = self.buildings[f"{lvl}_id"].to_numpy(np.int64)
            out[f"{lvl}_id"] = np.where(ok, col[np.where(ok, b, 0)], -1)
        return pd.DataFrame(out)

    # ------------------------------------------------------------ projection
    def to_latlon(self, x_m, y_m):
        """(lat_deg, lon_deg) of projected points (NaN stays NaN)."""
        return project_to_latlon(x_m, y_m, self.crs)

    def from_latlon(self, lat_deg, lon_deg):
        """(x_m, y_m) of WGS84 points."""
        return project_from_latlon(lat_deg, lon_deg, self.crs)

    # ------------------------------------------------------------ I/O
    def save(self, directory) -> None:
        """Write buildings.parquet, block/tract/district GeoParquet and world.json."""
        from .io import atomic_path

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        with atomic_path(d / "buildings.parquet") as tmp:
            self.buildings.to_parquet(tmp, index=False)
        for lvl in ZONE_LEVELS:
            with atomic_path(d / f"{lvl}.parquet") as tmp:
                self.zones[lvl].to_parquet(tmp, index=False)
        meta = {
            "crs": self.crs, "utc_offset_s": self.utc_offset_s, "kind": self.kind,
            "block_seed_xy": self.block_seed_xy.tolist(),
            "boundary_wkt": shapely.to_wkt(self.boundary), **self.meta,
        }
        with atomic_path(d / "world.json") as tmp:
            Path(tmp).write_text(json.dumps(meta))

    @classmethod
    def load(cls, directory) -> "World":
        d = Path(directory)
        if not (d / "world.json").exists():
            raise InputError(f"{str(d)!r} holds no world.json; pass the world/ folder written by `reidsim generate`.")
        meta = json.loads((d / "world.json").read_text())
        zones = {lvl: gpd.read_parquet(d / f"{lvl}.parquet") for lvl in ZONE_LEVELS}
        known = {"crs", "utc_offset_s", "kind", "block_seed_xy", "boundary_wkt"}
        return cls(
            crs=meta["crs"], buildings=pd.read_parquet(d / "buildings.parquet"), zones=zones,
            block_seed_xy=np.asarray(meta["block_seed_xy"], dtype=np.float64),
            boundary=shapely.from_wkt(meta["boundary_wkt"]), utc_offset_s=int(meta["utc_offset_s"]),
            kind=meta["kind"], meta={k: v for k, v in meta.items() if k not in known},
        )


def _check_level(level):
    if level not in LEVELS:
        raise InputError(f"unknown zone level {level!r}; expected one of {LEVELS}")


# ====================================================================== synthetic
_A_M = 6378137.0  # WGS84 semi-major axis (PROJ's eqc is spherical with this radius)


def local_crs(lat_deg: float, lon_deg: float) -> str:
    """A local equidistant-cylindrical metric CRS centred on (lat, lon).

    True to scale along meridians and along the anchor's parallel; within a 15 km metro
    the east-west scale error stays below ~0.3 %.  Chosen because its exact inverse is
    two multiplications, so lat/lon export of hundreds of millions of pings is cheap
    (:func:`project_to_latlon`, checked against pyproj in the tests).
    """
    return (
        f"+proj=eqc +lat_ts={lat_deg:.6f} +lat_0={lat_deg:.6f} +lon_0={lon_deg:.6f} "
        "+x_0=0 +y_0=0 +ellps=WGS84 +units=m +no_defs"
    )


def _eqc_params(crs: str):
    """(lat_0, lon_0, lat_ts) if ``crs`` is a PROJ string made by :func:`local_crs`."""
    if not isinstance(crs, str) or not crs.startswith("+proj=eqc "):
        return None
    kv = dict(tok[1:].split("=", 1) for tok in crs.split() if "=" in tok)
    try:
        return float(kv["lat_0"]), float(kv["lon_0"]), float(kv["lat_ts"])
    except KeyError:
        return None


def project_to_latlon(x_m, y_m, crs: str):
    """(lat_deg, lon_deg) of points in ``crs`` (numpy fast path for :func:`local_crs`)."""
    x = np.asarray(x_m, dtype=np.float64)
    y = np.asarray(y_m, dtype=np.float64)
    p = _eqc_params(crs)
    if p is not None:
        lat0, lon0, lat_ts = p
        lat = lat0 + np.degrees(y / _A_M)
        lon = lon0 + np.degrees(x / (_A_M * np.cos(np.radians(lat_ts))))
        lon = (lon + 180.0) % 360.0 - 180.0  # wrap across the antimeridian
        return lat, lon
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(x, y)
    return np.asarray(lat), np.asarray(lon)


def project_from_latlon(lat_deg, lon_deg, crs: str):
    """(x_m, y_m) in ``crs`` of WGS84 points (numpy fast path for :func:`local_crs`)."""
    lat = np.asarray(lat_deg, dtype=np.float64)
    lon = np.asarray(lon_deg, dtype=np.float64)
    p = _eqc_params(crs)
    if p is not None:
        lat0, lon0, lat_ts = p
        y = np.radians(lat - lat0) * _A_M
        dlon = (lon - lon0 + 180.0) % 360.0 - 180.0
        x = np.radians(dlon) * (_A_M * np.cos(np.radians(lat_ts)))
        return x, y
    x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)
    return np.asarray(x), np.asarray(y)


def _density(xy, centres, scales, weights):
    d = np.zeros(len(xy))
    for c, s, w in zip(centres, scales, weights):
        r = np.hypot(xy[:, 0] - c[0], xy[:, 1] - c[1])
        d += w * np.exp(-r / s)
    return d


def _sample_density(rng, n, radius_m, centres, scales, weights, power=1.0):
    """n points in a disk with density ~ density_surface**power (rejection sampling)."""
    out = np.empty((0, 2))
    fmax = float(sum(weights)) ** power
    while len(out) < n:
        m = max(1024, int((n - len(out)) * 3))
        r = radius_m * np.sqrt(rng.random(m))
        a = 2 * np.pi * rng.random(m)
        xy = np.column_stack([r * np.cos(a), r * np.sin(a)])
        f = _density(xy, centres, scales, weights) ** power
        keep = rng.random(m) * fmax < f
        out = np.vstack([out, xy[keep]])
    return out[:n]


def synthetic_world(cfg: WorldConfig | None = None, seed: int = 42, residents: int | None = None,
                    utc_offset_s: int | None = None) -> World:
    """Build the built-in polycentric synthetic metro.

    Residential buildings are drawn from a density surface (a dense core plus
    ``n_subcentres`` sub-centres, exponential decay); dense areas get apartment blocks
    (more residents per building).  Job buildings are more concentrated than homes.
    Blocks are Voronoi cells of population-weighted seeds (~``residents_per_block``
    each), tracts are k-means groups of blocks, districts k-means groups of tracts.
    """
    cfg = cfg or WorldConfig()
    residents = int(residents or cfg.residents)
    rng = seed_sequence(seed, TAG_WORLD, 1)
    R = cfg.radius_km * 1000.0
    # density surface: core + sub-centres
    angles = rng.random(cfg.n_subcentres) * 2 * np.pi
    radii = R * (0.35 + 0.35 * rng.random(cfg.n_subcentres))
    centres = [(0.0, 0.0)] + [(r * np.cos(a), r * np.sin(a)) for r, a in zip(radii, angles)]
    scales = [R / 4.0] + list(R / 9.0 * (0.8 + 0.4 * rng.random(cfg.n_subcentres)))
    weights = [1.0] + list(0.25 + 0.25 * rng.random(cfg.n_subcentres))
    # residential buildings: ~6 residents per building on average, more in dense areas
    n_res_b = max(20, residents // 6)
    res_xy = _sample_density(rng, n_res_b, R, centres, scales, weights)
    f = _density(res_xy, centres, scales, weights) / sum(weights)
    cap = 1.0 + 40.0 * f ** 2 * rng.lognormal(0.0, 0.5, n_res_b)
    # job buildings: more concentrated
    n_jobs = cfg.jobs_per_resident * residents
    n_job_b = max(10, int(n_jobs // 25))
    job_xy = _sample_density(rng, n_job_b, R, centres, scales, weights, power=1.6)
    jobs = rng.pareto(1.5, n_job_b) + 1.0
    jobs = jobs / jobs.sum() * n_jobs
    xy = np.vstack([res_xy, job_xy])
    residents_w = np.concatenate([cap, np.zeros(n_job_b)])
    jobs_w = np.concatenate([np.zeros(n_res_b), jobs])
    # expected residents per building (households are placed later ~ cap)
    exp_res = residents_w / residents_w.sum() * residents
    # block seeds: population-weighted sample of residential buildings (plus job sites
    # so that job-only areas get blocks too)
    n_blocks = max(4, int(round(residents / cfg.residents_per_block)))
    wts = exp_res + 0.15 * jobs_w / max(jobs_w.sum(), 1) * residents
    seeds_idx = rng.choice(len(xy), size=min(n_blocks, len(xy)), replace=False, p=wts / wts.sum())
    seeds = xy[seeds_idx] + rng.normal(0, 1.0, (len(seeds_idx), 2))  # no exact coincidences
    boundary = shapely.Point(0, 0).buffer(R * 1.02, quad_segs=32)
    return _assemble(
        xy, exp_res, jobs_w, seeds, boundary, cfg, rng,
        crs=local_crs(cfg.anchor_lat_deg, cfg.anchor_lon_deg),
        utc_offset_s=int(round(cfg.utc_offset_h * 3600)) if utc_offset_s is None else utc_offset_s,
        kind="synthetic", tract_of_block=None, tract_polys=None,
        meta={"anchor_lat_deg": cfg.anchor_lat_deg, "anchor_lon_deg": cfg.anchor_lon_deg,
              "radius_m": R, "centre_xy": [0.0, 0.0], "centres_xy": [list(c) for c in centres]},
    )


def _kmeans_groups(xy, weights, k, rng):
    from sklearn.cluster import KMeans

    k = int(max(1, min(k, len(xy))))
    if k == 1:
        return np.zeros(len(xy), dtype=np.int64)
    km = KMeans(n_clusters=k, n_init=1, random_state=int(rng.integers(2**31 - 1)), max_iter=100)
    lab = km.fit_predict(xy, sample_weight=np.maximum(weights, 1e-9))
    # relabel densely in order of first appearance (sorted by centroid x, y)
    cen = km.cluster_centers_
    order = np.lexsort((cen[:, 1], cen[:, 0]))
    remap = np.empty(k, dtype=np.int64)
    remap[order] = np.arange(k)
    lab = remap[lab]
    _, lab = np.unique(lab, return_inverse=True)
    return lab.astype(np.int64)


def _assemble(xy, exp_res, jobs_w, seeds, boundary, cfg, rng, crs, utc_offset_s, kind,
              tract_of_block, tract_polys, meta):
    n_blocks = len(seeds)
    tree = cKDTree(seeds)
    if tract_of_block is None:
        block = tree.query(xy)[1].astype(np.int64)
        bpop = np.bincount(block, weights=exp_res, minlength=n_blocks)
        n_tracts = max(1, int(round(n_blocks / cfg.blocks_per_tract)))
        tract_of_block = _kmeans_groups(seeds, bpop + 1.0, n_tracts, rng)
        # block polygons: global Voronoi clipped to the boundary
        vor = shapely.voronoi_polygons(shapely.multipoints(seeds), extend_to=boundary)
        polys = np.asarray(shapely.get_parts(vor))
        ptree = shapely.STRtree(polys)
        si, pi = ptree.query(shapely.points(seeds), predicate="intersects")
        block_geom = np.empty(n_blocks, dtype=object)
        block_geom[si] = polys[pi]
        block_geom = shapely.intersection(block_geom, boundary)
    else:
        block = _nearest_seed_in_tract(xy, seeds, tract_of_block, tract_polys)
        block_geom = _per_tract_voronoi(seeds, tract_of_block, tract_polys)
    tract = tract_of_block[block]
    n_tracts = int(tract_of_block.max()) + 1
    tract_pop = np.bincount(tract, weights=exp_res, minlength=n_tracts)
    tract_xy = np.column_stack([
        np.bincount(tract_of_block, weights=seeds[:, 0], minlength=n_tracts),
        np.bincount(tract_of_block, weights=seeds[:, 1], minlength=n_tracts),
    ]) / np.maximum(np.bincount(tract_of_block, minlength=n_tracts), 1)[:, None]
    n_districts = max(1, int(round(n_tracts / cfg.tracts_per_district)))
    district_of_tract = _kmeans_groups(tract_xy, tract_pop + 1.0, n_districts, rng)
    district = district_of_tract[tract]
    buildings = pd.DataFrame({
        "building_id": np.arange(len(xy), dtype=np.int64),
        "x_m": xy[:, 0], "y_m": xy[:, 1],
        "block_id": block, "tract_id": tract, "district_id": district,
        "residents": exp_res, "jobs": jobs_w,
    })
    zones = {}
    bpop = np.bincount(block, weights=exp_res, minlength=n_blocks)
    bjobs = np.bincount(block, weights=jobs_w, minlength=n_blocks)
    zones["block"] = gpd.GeoDataFrame({
        "zone_id": np.arange(n_blocks), "tract_id": tract_of_block,
        "district_id": district_of_tract[tract_of_block], "population": bpop, "jobs": bjobs,
    }, geometry=list(block_geom), crs=crs)
    if tract_polys is None:
        tract_geom = [shapely.union_all(block_geom[tract_of_block == t]) for t in range(n_tracts)]
    else:
        tract_geom = list(tract_polys)
    tjobs = np.bincount(tract, weights=jobs_w, minlength=n_tracts)
    zones["tract"] = gpd.GeoDataFrame({
        "zone_id": np.arange(n_tracts), "district_id": district_of_tract,
        "population": tract_pop, "jobs": tjobs,
    }, geometry=tract_geom, crs=crs)
    n_d = int(district_of_tract.max()) + 1
    dist_geom = [shapely.union_all(np.asarray(tract_geom, dtype=object)[district_of_tract == k]) for k in range(n_d)]
    zones["district"] = gpd.GeoDataFrame({
        "zone_id": np.arange(n_d),
        "population": np.bincount(district, weights=exp_res, minlength=n_d),
        "jobs": np.bincount(district, weights=jobs_w, minlength=n_d),
    }, geometry=dist_geom, crs=crs)
    return World(crs=crs, buildings=buildings, zones=zones, block_seed_xy=seeds,
                 boundary=boundary, utc_offset_s=utc_offset_s, kind=kind, meta=meta)


def _nearest_seed_in_tract(xy, seeds, tract_of_block, tract_polys):
    tree = shapely.STRtree(np.asarray(tract_polys, dtype=object))
    pi, ti = tree.query(shapely.points(xy), predicate="intersects")
    tract = np.full(len(xy), -1, dtype=np.int64)
    tract[pi[::-1]] = ti[::-1]
    out = np.empty(len(xy), dtype=np.int64)
    for t in np.unique(tract):
        m = tract == t
        cand = np.flatnonzero(tract_of_block == t) if t >= 0 else np.arange(len(seeds))
        out[m] = cand[cKDTree(seeds[cand]).query(xy[m])[1]]
    return out


def _per_tract_voronoi(seeds, tract_of_block, tract_polys):
    geom = np.empty(len(seeds), dtype=object)
    for t, poly in enumerate(tract_polys):
        idx = np.flatnonzero(tract_of_block == t)
        if len(idx) == 1:
            geom[idx[0]] = poly
            continue
        vor = shapely.voronoi_polygons(shapely.multipoints(seeds[idx]), extend_to=poly)
        parts = np.asarray(shapely.get_parts(vor))
        tree = shapely.STRtree(parts)
        si, pi = tree.query(shapely.points(seeds[idx]), predicate="intersects")
        g = np.empty(len(idx), dtype=object)
        g[si] = parts[pi]
        geom[idx] = shapely.intersection(g, poly)
    return geom


# ====================================================================== real polygons
def world_from_polygons(path, cfg: WorldConfig | None = None, seed: int = 42,
                        residents: int | None = None) -> World:
    """Build a World whose tracts are the polygons of a file geopandas can read.

    The file needs a CRS (or ``cfg.assume_crs``), valid non-empty polygons, and a
    population column (``cfg.population_column``); without one, ``residents`` people
    are spread over tracts in proportion to area (documented fallback).  Jobs come from
    ``cfg.jobs_column`` or are proportional to population.  Geometry is projected to the
    file's UTM zone.  Buildings are sampled uniformly inside each tract, blocks are
    Voronoi cells of seeds inside each tract, districts are k-means groups of tracts.
    """
    cfg = cfg or WorldConfig()
    p = Path(path)
    if not p.exists():
        raise InputError(f"polygon file {str(p)!r} does not exist; check world.polygons.")
    try:
        gdf = gpd.read_file(p) if p.suffix.lower() != ".parquet" else gpd.read_parquet(p)
    except Exception as e:
        raise InputError(f"could not read polygon file {str(p)!r}: {e}") from e
    if len(gdf) == 0:
        raise InputError(f"polygon file {str(p)!r} has no features.")
    if gdf.crs is None:
        if not cfg.assume_crs:
            raise CRSError(
                f"polygon file {str(p)!r} has no CRS; set world.assume_crs (e.g. 'EPSG:4326' "
                "for lon/lat degrees) or add a .prj / CRS to the file."
            )
        try:
            gdf = gdf.set_crs(cfg.assume_crs)
        except Exception as e:
            raise CRSError(
                f"world.assume_crs {cfg.assume_crs!r} is not a usable CRS ({e}); use e.g. 'EPSG:4326'."
            ) from None
    crs_in = CRS.from_user_input(gdf.crs)
    if crs_in.is_geographic:
        b = gdf.total_bounds
        if not (-180 <= b[0] <= 180 and -180 <= b[2] <= 180 and -90 <= b[1] <= 90 and -90 <= b[3] <= 90):
            raise CRSError(
                f"polygon file {str(p)!r} says CRS {crs_in.name} (degrees) but its bounds {b.tolist()} "
                "are not valid lon/lat; the declared CRS is wrong — set world.assume_crs to the real one."
            )
    geom = gdf.geometry
    if geom.is_empty.any() or geom.isna().any():
        bad = np.flatnonzero((geom.is_empty | geom.isna()).to_numpy())[:5].tolist()
        raise InputError(f"polygon file {str(p)!r} has empty/missing geometries at rows {bad}; drop them first.")
    gtypes = set(geom.geom_type)
    if not gtypes <= {"Polygon", "MultiPolygon"}:
        raise InputError(f"polygon file {str(p)!r} holds {sorted(gtypes)}; tracts must be Polygon/MultiPolygon.")
    if (~geom.is_valid).any():
        bad = np.flatnonzero((~geom.is_valid).to_numpy())[:5].tolist()
        raise InputError(
            f"polygon file {str(p)!r} has invalid geometries at rows {bad}; repair them "
            "(e.g. shapely.make_valid or geopandas .make_valid()) first."
        )
    utm = gdf.estimate_utm_crs()
    gdf = gdf.to_crs(utm)
    area = gdf.geometry.area.to_numpy()
    if cfg.population_column:
        if cfg.population_column not in gdf.columns:
            raise InputError(
                f"population column {cfg.population_column!r} not in {str(p)!r}; columns are "
                f"{[c for c in gdf.columns if c != 'geometry']}. Set world.population_column or "
                "leave it empty to spread world.residents by area."
            )
        pop = pd.to_numeric(gdf[cfg.population_column], errors="coerce").to_numpy(np.float64)
        if not np.all(np.isfinite(pop)) or (pop < 0).any():
            raise InputError(f"population column {cfg.population_column!r} has missing or negative values.")
        if pop.sum() <= 0:
            raise InputError(f"population column {cfg.population_column!r} sums to zero.")
        if residents:
            pop = pop / pop.sum() * residents
        pop_source = f"column {cfg.population_column}"
    else:
        total = residents or cfg.residents
        pop = area / area.sum() * total
        pop_source = "area-weighted fallback (no population column)"
        log.info("no population column: spreading %d residents over tracts by area", total)
    if cfg.jobs_column:
        if cfg.jobs_column not in gdf.columns:
            raise InputError(f"jobs column {cfg.jobs_column!r} not in {str(p)!r}.")
        jobs = pd.to_numeric(gdf[cfg.jobs_column], errors="coerce").fillna(0).to_numpy(np.float64)
    else:
        jobs = pop * cfg.jobs_per_resident
    rng = seed_sequence(seed, TAG_WORLD, 2)
    polys = shapely.make_valid(gdf.geometry.values)
    total = pop.sum()
    xy_l, res_l, job_l, seed_l, tob_l = [], [], [], [], []
    for t, poly in enumerate(polys):
        n_b = max(3, int(pop[t] // 6) + int(jobs[t] // 25))
        pts = _points_in_polygon(rng, poly, n_b)
        nres = max(1, int(pop[t] // 6))
        r = np.zeros(n_b)
        r[:nres] = pop[t] / nres
        j = np.zeros(n_b)
        j[nres:] = jobs[t] / max(n_b - nres, 1) if n_b > nres else 0
        if n_b <= nres:
            j[:] = jobs[t] / n_b
        n_blk = max(1, int(round(pop[t] / cfg.residents_per_block)))
        s = _points_in_polygon(rng, poly, n_blk)
        xy_l.append(pts); res_l.append(r); job_l.append(j); seed_l.append(s)
        tob_l.append(np.full(n_blk, t, dtype=np.int64))
    xy = np.vstack(xy_l)
    seeds = np.vstack(seed_l)
    boundary = shapely.union_all(polys)
    crs_str = utm.to_wkt()
    return _assemble(
        xy, np.concatenate(res_l), np.concatenate(job_l), seeds, boundary, cfg, rng,
        crs=crs_str, utc_offset_s=int(round(cfg.utc_offset_h * 3600)), kind="polygons",
        tract_of_block=np.concatenate(tob_l), tract_polys=polys,
        meta={"source": str(p), "population_source": pop_source, "residents": float(total),
              "centre_xy": _centre_xy(boundary), "radius_m": _radius_about(boundary, _centre_xy(boundary))},
    )


def _centre_xy(geom) -> list:
    c = shapely.get_coordinates(shapely.centroid(geom))[0]
    return [float(c[0]), float(c[1])]


def _radius_about(geom, centre) -> float:
    """Largest distance (m) from ``centre`` to a vertex of ``geom``."""
    xy = shapely.get_coordinates(geom)
    return float(np.hypot(xy[:, 0] - centre[0], xy[:, 1] - centre[1]).max())


def _points_in_polygon(rng, poly, n):
    minx, miny, maxx, maxy = poly.bounds
    out = np.empty((0, 2))
    shapely.prepare(poly)
    tries = 0
    while len(out) < n:
        m = max(64, (n - len(out)) * 4)
        cand = np.column_stack([rng.uniform(minx, maxx, m), rng.uniform(miny, maxy, m)])
        cand = cand[shapely.contains_xy(poly, cand[:, 0], cand[:, 1])]
        out = np.vstack([out, cand])
        tries += 1
        if tries > 200:
            rp = shapely.get_coordinates(shapely.point_on_surface(poly))
            out = np.vstack([out, np.repeat(rp, n - len(out), axis=0)])
    return out[:n]


def build_world(cfg: WorldConfig, seed: int, residents: int | None = None) -> World:
    """The scenario's world: the polygon file if configured, else the synthetic metro."""
    if cfg.polygons:
        return world_from_polygons(cfg.polygons, cfg, seed=seed, residents=residents)
    return synthetic_world(cfg, seed=seed, residents=residents)
