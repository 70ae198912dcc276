"""The default geography: a self-contained polycentric metro (dense core and
sub-centres, density decaying with distance), so nothing needs downloading."""
from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from scipy.spatial import cKDTree
from threadpoolctl import threadpool_limits

from sim.core.config import WorldConfig, mean_household_size
from sim.core.jit import jit
from sim.core.rng import TAG_WORLD, seed_sequence
from sim.world.crs import local_crs
from sim.world.model import World

#: Structure types of the housing stock: single-household dwellings (1 unit: detached,
#: attached, mobile home) and multi-unit buildings of 2-4, 5-19 and 20+ units.
STRUCTURE_TYPES = ("single", "2-4", "5-19", "20+")
#: Relative shares of the three multi-unit bands among multi-unit housing units
#: (approximate, ACS 2019 1-year, DP04: 7.8 %, 9.2 %, 9.2 % of all units).
MULTI_UNIT_BAND_SHARES = (7.8, 9.2, 9.2)
#: Unit-count range of each structure type (inclusive; 20+ capped at 300: assumption).
UNITS_RANGE = ((1, 1), (2, 4), (5, 19), (20, 300))
#: Density exponent factor e_b of each type (odds ~ density^(k * e_b); assumption).
DENSITY_FACTOR = (0.0, 0.5, 1.0, 1.5)
#: Within a band, P(n units) ~ n^-UNITS_POWER (assumption; reproduces DP04's split of
#: units between 2 and 3-4 and between 5-9 and 10-19).
UNITS_POWER = 2.0


def _units_pmfs():
    """(values, probabilities) of the units per building of every structure type."""
    out = []
    for lo, hi in UNITS_RANGE:
        n = np.arange(lo, hi + 1, dtype=np.int64)
        w = n.astype(np.float64) ** -UNITS_POWER
        out.append((n, w / w.sum()))
    return out


def unit_type_shares(cfg: WorldConfig) -> np.ndarray:
    """Metro-wide share of housing units in each of :data:`STRUCTURE_TYPES`."""
    multi = np.asarray(MULTI_UNIT_BAND_SHARES, dtype=np.float64)
    multi = multi / multi.sum() * (1.0 - cfg.single_unit_share)
    return np.concatenate([[cfg.single_unit_share], multi])


def _density_powers(f, k):
    """(len(f), n_types) array f^(k e_t) of relative densities ``f`` (floored at 1e-12)."""
    e = np.asarray(DENSITY_FACTOR)
    lf = np.log(np.maximum(f, 1e-12))[:, None]
    return np.exp(k * e[None, :] * lf)


def _type_probs(f, coef, k, powers=None):
    """P(type | relative density f) of a housing unit: coef_t f^(k e_t), normalised.

    ``powers``: :func:`_density_powers` of (f, k) when already computed."""
    w = coef[None, :] * (_density_powers(f, k) if powers is None else powers)
    return w / w.sum(axis=1, keepdims=True)


@jit
def mean_type_probs(powers, coef):
    """``_type_probs(None, coef, k, powers).mean(axis=0)`` in one pass, bit for bit.

    Row i: w = coef * powers[i], probabilities w / sum(w) with the sum taken left to
    right; the mean adds the rows in order and divides by the row count, which is how
    NumPy reduces a C-ordered (m, n_types) array along either axis (the tests check it
    against NumPy).  A row summing to 0 gives NaN, as 0 / 0 in NumPy.
    """
    m, n_t = powers.shape
    acc = np.zeros(n_t)
    w = np.empty(n_t)
    for i in range(m):
        s = 0.0
        for t in range(n_t):
            w[t] = coef[t] * powers[i, t]
            s += w[t]
        for t in range(n_t):
            acc[t] += w[t] / s if s != 0.0 else np.nan
    for t in range(n_t):
        acc[t] = acc[t] / m if m > 0 else np.nan
    return acc


def _calibrate(f, shares, k, iters=200, powers=None):
    """Coefficients so that the mean over units (sampled at densities ``f``) of
    P(type | f) equals ``shares`` (``iters`` steps of iterative proportional fitting).

    A step is a deterministic function of the coefficients alone, and in floating point
    the iteration falls into a cycle (almost always a fixed point) after a few dozen
    steps.  Once a state repeats, the state after ``iters`` steps is read off the cycle:
    bit for bit the result of running every step, at a fraction of the cost.
    ``powers``: :func:`_density_powers` of (f, k) when already computed.
    """
    powers = _density_powers(f, k) if powers is None else powers
    coef = np.where(shares > 0, shares, 0.0).astype(np.float64)
    seen: dict = {}
    states: list = []
    for it in range(iters):
        m = mean_type_probs(powers, coef)
        ok = m > 0
        coef[ok] *= shares[ok] / m[ok]
        coef /= max(coef.sum(), 1e-300)
        key = coef.tobytes()
        if key in seen:  # state after step `it` == state after step `a`: period it - a
            a = seen[key]
            return np.frombuffer(states[a + (iters - 1 - a) % (it - a)], dtype=np.float64).copy()
        seen[key] = it
        states.append(key)
    return coef


def housing_stock(rng, n_units, sample_xy, cfg: WorldConfig):
    """Residential buildings holding ``n_units`` housing units in total.

    ``sample_xy(m)`` draws m points with density proportional to the residential density
    surface (where housing units are) and returns ``(xy, rel)``: the points and the local
    density relative to the peak, (0, 1], at each of them.  Each housing unit's
    structure type has odds rising with density (``cfg.multi_unit_density_exponent``),
    calibrated so the metro-wide unit shares are :func:`unit_type_shares`.  Buildings are
    thinned by 1 / E[units | density] so that units, not buildings, follow the density
    surface.

    Returns ``(xy, units, structure)``: building positions, units per building (>= 1) and
    the index into :data:`STRUCTURE_TYPES`.
    """
    shares = unit_type_shares(cfg)
    k = float(cfg.multi_unit_density_exponent)
    pmfs = _units_pmfs()
    mean_units = np.array([float((n * p).sum()) for n, p in pmfs])
    m0 = max(2048, int(n_units * 1.1) + 64)
    xy0, rel0 = sample_xy(m0)
    powers0 = _density_powers(rel0, k)
    coef = _calibrate(rel0, shares, k, powers=powers0)
    xs, us, ts = [], [], []
    total, first = 0, True
    while total < n_units:
        if first:
            xy, powers = xy0, powers0
        else:
            xy, rel = sample_xy(max(1024, int((n_units - total) * 1.1) + 64))
            powers = _density_powers(rel, k)
        first = False
        pu = _type_probs(None, coef, k, powers)
        pb = pu / mean_units[None, :]
        accept = pb.sum(axis=1)  # <= 1 (single units have mean 1)
        keep = rng.random(len(xy)) < accept
        pb = pb[keep] / accept[keep, None]
        cdf = np.cumsum(pb, axis=1)
        t = np.minimum((rng.random(len(pb))[:, None] > cdf).sum(axis=1), len(STRUCTURE_TYPES) - 1)
        units = np.ones(len(t), dtype=np.int64)
        u = rng.random(len(t))
        for j, (n, p) in enumerate(pmfs):
            sel = t == j
            if len(n) > 1 and sel.any():
                units[sel] = n[np.minimum(np.searchsorted(np.cumsum(p), u[sel], side="right"), len(n) - 1)]
        cum = total + np.cumsum(units)
        stop = int(np.searchsorted(cum, n_units))  # first building reaching n_units
        if stop < len(units):
            units, t, xy_k = units[:stop + 1], t[:stop + 1], xy[keep][:stop + 1]
            units[-1] -= int(cum[stop] - n_units)  # exactly n_units (the last may shrink)
            if units[-1] < 1:
                units, t, xy_k = units[:-1], t[:-1], xy_k[:-1]
        else:
            xy_k = xy[keep]
        xs.append(xy_k)
        us.append(units)
        ts.append(t)
        total += int(units.sum())
    units = np.concatenate(us)
    return np.vstack(xs), units, np.concatenate(ts).astype(np.int64)


def n_housing_units(residents: int, cfg: WorldConfig) -> int:
    """Housing units to build for ``residents`` people: the expected households
    (residents / mean household size) plus ``cfg.vacancy_rate`` vacant units."""
    return max(1, int(np.ceil(residents / mean_household_size() / (1.0 - cfg.vacancy_rate))))


def _density(xy, centres, scales, weights):
    """The density surface at points ``xy``: sum over centres of w exp(-distance / scale)."""
    d = np.zeros(len(xy))
    for c, s, w in zip(centres, scales, weights):
        r = np.hypot(xy[:, 0] - c[0], xy[:, 1] - c[1])
        d += w * np.exp(-r / s)
    return d


#: Polar cells (rings x sectors) over which the rejection sampler bounds the density.
BOUND_RINGS, BOUND_SECTORS = 128, 512


def _density_bound(radius_m, centres, scales, weights, power):
    """(BOUND_RINGS, BOUND_SECTORS) upper bounds of ``_density ** power`` over the polar
    cells of the disk (ring i: radius in [i, i+1] * radius_m / BOUND_RINGS; sector j:
    angle in [j, j+1] * 2 pi / BOUND_SECTORS).

    A cell lies inside the circle around its mid point of radius
    rho = sqrt((dr / 2)^2 + (r_outer da / 2)^2), so no point of it is nearer a centre
    than (distance of the mid point) - rho.  rho is padded by 1 % + 1 m, which covers a
    point that rounding puts in a neighbouring cell, and the bound by a relative 1e-6,
    which covers the rounding of the density itself (~1e-15).
    """
    dr = radius_m / BOUND_RINGS
    da = 2.0 * np.pi / BOUND_SECTORS
    r_mid = (np.arange(BOUND_RINGS) + 0.5) * dr
    a_mid = (np.arange(BOUND_SECTORS) + 0.5) * da
    rho = np.hypot(dr / 2.0, (r_mid + dr / 2.0) * da / 2.0) * 1.01 + 1.0
    mx = r_mid[:, None] * np.cos(a_mid)[None, :]
    my = r_mid[:, None] * np.sin(a_mid)[None, :]
    bound = np.zeros((BOUND_RINGS, BOUND_SECTORS))
    for c, s, w in zip(centres, scales, weights):
        dmin = np.maximum(np.hypot(mx - c[0], my - c[1]) - rho[:, None], 0.0)
        bound += w * np.exp(-dmin / s)
    return bound ** power * (1.0 + 1e-6)


@jit
def below_cell_bound(u_r, u_a, u_keep, bound, n_rings, n_sectors):
    """Indices i (ascending) with u_keep[i] < bound[cell of i]: the candidate at radius
    sqrt(u_r) and angle 2 pi u_a (as fractions of the disk's) lies in ring
    min(floor(sqrt(u_r) n_rings), n_rings - 1) and sector
    min(floor(u_a n_sectors), n_sectors - 1); ``bound`` is the flattened
    (n_rings, n_sectors) array of :func:`_density_bound`."""
    out = np.empty(len(u_r), dtype=np.int64)
    k = 0
    for i in range(len(u_r)):
        ring = min(int(np.sqrt(u_r[i]) * n_rings), n_rings - 1)
        sector = min(int(u_a[i] * n_sectors), n_sectors - 1)
        if u_keep[i] < bound[ring * n_sectors + sector]:
            out[k] = i
            k += 1
    return out[:k]


def _sample_density(rng, n, radius_m, centres, scales, weights, power=1.0):
    """n points in a disk with density ~ density_surface**power (rejection sampling).

    Returns ``(xy, f)``: the points and density_surface**power at each of them.

    Every round draws, for m candidates, m uniforms for the radius, m for the angle and
    m for the acceptance test, in that order.  A candidate whose acceptance uniform
    already exceeds an upper bound of the density over its polar cell
    (:func:`_density_bound`) is rejected without evaluating the density, so the density
    is computed only for the few that may be accepted; the accepted points are exactly
    those of evaluating every candidate.
    """
    fmax = float(sum(weights)) ** power
    bound = _density_bound(radius_m, centres, scales, weights, power).ravel()
    xs, fs, got = [], [], 0
    while got < n:
        m = max(1024, int((n - got) * 3))
        u_r = rng.random(m)
        u_a = rng.random(m)
        u_keep = rng.random(m) * fmax
        cand = below_cell_bound(u_r, u_a, u_keep, bound, BOUND_RINGS, BOUND_SECTORS)
        r = radius_m * np.sqrt(u_r[cand])
        a = 2 * np.pi * u_a[cand]
        xy = np.column_stack([r * np.cos(a), r * np.sin(a)])
        f = _density(xy, centres, scales, weights) ** power
        keep = u_keep[cand] < f
        xs.append(xy[keep])
        fs.append(f[keep])
        got += int(keep.sum())
    return np.concatenate(xs)[:n], np.concatenate(fs)[:n]


def _relative(sample, peak):
    """``(xy, density)`` of :func:`_sample_density` -> ``(xy, density / peak)``."""
    xy, f = sample
    return xy, f / peak


def synthetic_world(cfg: WorldConfig | None = None, seed: int = 42, residents: int | None = None,
                    utc_offset_s: int | None = None) -> World:
    """Build the built-in polycentric synthetic metro.

    Housing units follow a density surface (a dense core plus ``n_subcentres``
    sub-centres, exponential decay); they sit in single-household dwellings or in
    multi-unit buildings, the latter more frequent where density is high
    (:func:`housing_stock`, shares of ``cfg.single_unit_share`` etc.).  Job buildings are more concentrated than homes.
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
    # residential buildings: the housing stock (single-household dwellings and
    # multi-unit buildings, the latter more frequent where density is high)
    res_xy, units, _ = housing_stock(
        rng, n_housing_units(residents, cfg),
        lambda m: _relative(_sample_density(rng, m, R, centres, scales, weights), sum(weights)), cfg,
    )
    n_res_b = len(res_xy)
    cap = units.astype(np.float64)
    # job buildings: more concentrated
    n_jobs = cfg.jobs_per_resident * residents
    n_job_b = max(10, int(n_jobs // 25))
    job_xy, _ = _sample_density(rng, n_job_b, R, centres, scales, weights, power=1.6)
    jobs = rng.pareto(1.5, n_job_b) + 1.0
    jobs = jobs / jobs.sum() * n_jobs
    xy = np.vstack([res_xy, job_xy])
    residents_w = np.concatenate([cap, np.zeros(n_job_b)])
    jobs_w = np.concatenate([np.zeros(n_res_b), jobs])
    units_all = np.concatenate([units, np.zeros(n_job_b, dtype=np.int64)])
    # expected residents per building (households are placed later, one per unit)
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
        kind="synthetic", tract_of_block=None, tract_polys=None, units=units_all,
        meta={"anchor_lat_deg": cfg.anchor_lat_deg, "anchor_lon_deg": cfg.anchor_lon_deg,
              "radius_m": R, "centre_xy": [0.0, 0.0], "centres_xy": [list(c) for c in centres]},
    )


def _kmeans_groups(xy, weights, k, rng):
    from sklearn.cluster import KMeans

    k = int(max(1, min(k, len(xy))))
    if k == 1:
        return np.zeros(len(xy), dtype=np.int64)
    km = KMeans(n_clusters=k, n_init=1, random_state=int(rng.integers(2**31 - 1)), max_iter=100)
    # one BLAS thread: the k-means++ seeding makes thousands of tiny products, which
    # two BLAS threads make several times slower on a busy machine (each product is
    # computed whole by one thread either way, so the result is the same)
    with threadpool_limits(limits=1, user_api="blas"):
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
                   tract_of_block, tract_polys, meta, units=None):
    """Build a :class:`World` from block seeds nested in tracts (shared by the synthetic
    metro and real polygon files): blocks, districts, buildings, residents and jobs.

    ``units``: housing units per building; None derives them from ``exp_res`` (expected
    residents over the mean household size and the vacancy rate, at least 1 where
    anybody lives)."""
    if units is None:
        per_unit = mean_household_size() * (1.0 - getattr(cfg, "vacancy_rate", 0.0))
        units = np.where(exp_res > 0, np.maximum(1, np.round(exp_res / per_unit)), 0).astype(np.int64)
    n_blocks = len(seeds)
    tree = cKDTree(seeds)
    if tract_of_block is None:
        block = tree.query(xy, workers=-1)[1].astype(np.int64)  # each point alone: any thread count
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
        "residents": exp_res, "jobs": jobs_w, "units": np.asarray(units, dtype=np.int64),
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


