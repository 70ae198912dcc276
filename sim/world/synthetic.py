"""The default geography: a self-contained polycentric metro (dense core and
sub-centres, density decaying with distance), so nothing needs downloading."""
from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from scipy.spatial import cKDTree

from sim.core.config import WorldConfig
from sim.core.rng import TAG_WORLD, seed_sequence
from sim.world.crs import local_crs
from sim.world.model import World

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
    return assemble_world(
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


def assemble_world(xy, exp_res, jobs_w, seeds, boundary, cfg, rng, crs, utc_offset_s, kind,
                   tract_of_block, tract_polys, meta):
    """Build a :class:`World` from block seeds nested in tracts (shared by the synthetic
    metro and real polygon files): blocks, districts, buildings, residents and jobs."""
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


