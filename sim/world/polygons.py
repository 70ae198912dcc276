"""A real geography: any polygon file geopandas reads, used as the tract level, with
blocks and buildings derived inside it."""
from __future__ import annotations

import logging
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS

from sim.core.config import WorldConfig
from sim.core.errors import CRSError, InputError
from sim.core.rng import TAG_WORLD, seed_sequence
from sim.world.model import World
from sim.world.synthetic import assemble_world

log = logging.getLogger(__name__)

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
    return assemble_world(
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


