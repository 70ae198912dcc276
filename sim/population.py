"""Persons, households, workplaces, devices and the attacker's register.

Persons get an age from ACS 2019 age bands (:data:`AGE_BANDS`) and live in households
(sizes from :data:`sim.core.config.HOUSEHOLD_SIZE_SHARES`) that always hold an adult;
children live only with adults.  Each household occupies one housing unit of the
world's housing stock (``World.buildings["units"]``): a single-unit building holds one
household, the households of a multi-unit building share its address point.
Employment depends on age (nobody under 16); workplaces come from a gravity model with
exponential distance decay over job density.  Smartphone ownership depends on age
(nobody under ``min_device_age``) and the broker's panel is drawn from the owners.  The
register lists adults only, as one or several record profiles
(:data:`sim.core.config.REGISTER_PROFILES`) describe.

Every source and assumption is written next to its parameter in
:mod:`sim.core.config`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from scipy.special import ndtri

from sim.core.config import (
    HOUSEHOLD_SIZE_SHARES,
    HOUSEHOLD_SIZES,
    PopulationConfig,
    RegisterConfig,
    mean_household_size,
)
from sim.core.constants import ZONE_LEVELS
from sim.core.errors import ConfigError
from sim.core.jit import jit, pjit, prange
from sim.core.rng import TAG_POP, seed_sequence
from sim.world._kernels import counting_argsort
from sim.world.model import World

log = logging.getLogger(__name__)

SCHEDULES = ("day", "night", "none")
SCHED_DAY, SCHED_NIGHT, SCHED_NONE = 0, 1, 2

#: Age of majority: the register lists nobody younger; every household has one adult.
ADULT_AGE = 18
#: Youngest working age: nobody younger has a job.
MIN_WORK_AGE = 16

#: Age bands (first year, last year, share %): approximate, ACS 2019 1-year, table DP05
#: (US: under 5 6.0, 5-9 6.1, 10-14 6.4, 15-19 6.4 split 3:2 at 18, 20-24 6.6, 25-34 14.0,
#: 35-44 12.7, 45-54 12.6, 55-59 6.6, 60-64 6.4, 65-74 9.6, 75-84 4.9, 85+ 2.0, drawn up to
#: 99).  Under 18: 22.3 %, 65+: 16.5 %.  The under-18, 18-64 and 65+ groups are rescaled
#: to ``PopulationConfig.share_under_18`` / ``share_65_plus``; ages are uniform within a band.
AGE_BANDS = (
    (0, 4, 6.0), (5, 9, 6.1), (10, 14, 6.4), (15, 17, 3.84), (18, 19, 2.56), (20, 24, 6.6),
    (25, 34, 14.0), (35, 44, 12.7), (45, 54, 12.6), (55, 59, 6.6), (60, 64, 6.4),
    (65, 74, 9.6), (75, 84, 4.9), (85, 99, 2.0),
)

#: Relative employment-population ratio by age band within 16-64 (approximate, BLS CPS
#: 2019 annual averages: 16-19 about 31 %, 20-24 66 %, 25-54 80.0 %, 55-64 64 %);
#: rescaled so the 16-64 mean is ``PopulationConfig.employment_rate``.
EMPLOYMENT_PROFILE = ((16, 19, 0.31), (20, 24, 0.664), (25, 54, 0.800), (55, 64, 0.64))

#: Weight of the second slot of a household (after the adult householder) when the
#: children are placed, against 1 for the third and later slots: most two-person
#: households are two adults, most children live in households of three or more
#: (assumption; about 1 in 10 two-person households is a parent and a child).
SECOND_SLOT_CHILD_WEIGHT = 0.1

# sub-streams of seed_sequence(seed, TAG_POP, ...)
_SUB_PERSONS, _SUB_DEVICES, _SUB_REGISTER, _SUB_GPS_BIAS = 1, 2, 3, 4
_P_SIZES, _P_AGES, _P_SLOTS, _P_UNITS, _P_EMPLOY, _P_WORK, _P_PHONE = 1, 2, 3, 4, 5, 6, 7
#: stable sub-stream of each register profile (a profile lists the same persons alone or
#: in a combination)
_PROFILE_STREAM = {"people_search": 1, "voter_file": 2, "professional_network": 3}

#: dtype of the id columns of persons, devices and register (person, household,
#: building and zone ids; -1 = none): ten million persons take 1.2 GB as int64
ID_DTYPE = np.int32
#: dtype of ages (whole years)
AGE_DTYPE = np.int16


def check_id_range(n: int, what: str) -> None:
    """Refuse ``n`` ids (0..n-1) that would not fit :data:`ID_DTYPE`."""
    if int(n) > np.iinfo(ID_DTYPE).max:
        raise ConfigError(
            f"{int(n):,} {what} exceed the {np.iinfo(ID_DTYPE).max:,} ids the population tables hold "
            f"({np.dtype(ID_DTYPE).name}); lower world.residents or n_devices.")


def as_ids(a: np.ndarray, what: str) -> np.ndarray:
    """Integer ids (-1 = none) as :data:`ID_DTYPE`, refused when one does not fit."""
    a = np.asarray(a)
    if a.dtype == ID_DTYPE:
        return a
    if len(a) and int(a.max()) > np.iinfo(ID_DTYPE).max:
        check_id_range(int(a.max()) + 1, what)
    return a.astype(ID_DTYPE)


# ====================================================================== compact kernels
def stable_argsort_ids(keys: np.ndarray, n_keys: int) -> np.ndarray:
    """``np.argsort(keys, kind="stable")`` of integer keys in [0, n_keys), by counting
    sort (linear time)."""
    return counting_argsort(np.ascontiguousarray(keys), int(n_keys))[0]


@jit
def _sort_tied_runs(sorted_keys, order):
    """Within every run of equal ``sorted_keys``, put ``order`` in ascending order (what
    a stable sort leaves there)."""
    n = len(order)
    i = 0
    while i < n:
        j = i + 1
        while j < n and sorted_keys[j] == sorted_keys[i]:
            j += 1
        if j - i > 1:
            order[i:j] = np.sort(order[i:j])
        i = j


def stable_argsort_descending(key: np.ndarray) -> np.ndarray:
    """``np.argsort(-key, kind="stable")`` of float keys without NaN: NumPy's fast
    (unstable) sort, then tied keys put back in index order."""
    neg = -np.asarray(key, dtype=np.float64)
    order = np.argsort(neg)
    s = neg[order]
    if len(s) > 1 and (s[1:] == s[:-1]).any():
        _sort_tied_runs(s, order)
    return order


@pjit
def _gather_xy(bx, by, b, ox, oy):
    for i in prange(len(b)):
        if b[i] >= 0:
            ox[i], oy[i] = bx[b[i]], by[b[i]]
        else:
            ox[i], oy[i] = np.nan, np.nan


def building_xy(bx: np.ndarray, by: np.ndarray, building_id: np.ndarray):
    """(x_m, y_m) of the given buildings (NaN for -1), as ``np.where(b >= 0,
    bx[max(b, 0)], nan)``."""
    b = np.ascontiguousarray(building_id)
    ox, oy = np.empty(len(b)), np.empty(len(b))
    _gather_xy(bx, by, b, ox, oy)
    return ox, oy


@pjit
def _gather_ids(table, b, out):
    for i in prange(len(b)):
        out[i] = table[b[i]] if b[i] >= 0 else -1


def zone_ids(world: World, building_id: np.ndarray) -> dict:
    """:meth:`World.building_zone_ids` as :data:`ID_DTYPE` arrays (-1 passes through)."""
    b = np.ascontiguousarray(building_id)
    out = {}
    for lvl in ZONE_LEVELS:
        col = world.buildings[f"{lvl}_id"].to_numpy()
        if len(col) and int(col.max()) > np.iinfo(ID_DTYPE).max:  # pragma: no cover - world holds fewer
            raise ConfigError(f"{lvl} ids of the world exceed {np.dtype(ID_DTYPE).name}")
        o = np.empty(len(b), dtype=ID_DTYPE)
        _gather_ids(np.ascontiguousarray(col, dtype=ID_DTYPE), b, o)
        out[f"{lvl}_id"] = o
    return out


@dataclass
class Population:
    persons: pd.DataFrame
    devices: pd.DataFrame
    register: pd.DataFrame


# ====================================================================== ages
def age_band_shares(cfg: PopulationConfig) -> np.ndarray:
    """Share of each :data:`AGE_BANDS` band after rescaling the under-18 and 65+ groups
    to ``cfg.share_under_18`` and ``cfg.share_65_plus`` (the 18-64 bands take the rest)."""
    lo = np.array([b[0] for b in AGE_BANDS])
    w = np.array([b[2] for b in AGE_BANDS], dtype=np.float64)
    kid, old = lo < ADULT_AGE, lo >= 65
    mid = ~kid & ~old
    target = {"kid": cfg.share_under_18, "old": cfg.share_65_plus,
              "mid": 1.0 - cfg.share_under_18 - cfg.share_65_plus}
    out = np.zeros_like(w)
    for key, m in (("kid", kid), ("old", old), ("mid", mid)):
        out[m] = w[m] / w[m].sum() * target[key]
    return out


def draw_ages(rng, n: int, cfg: PopulationConfig) -> np.ndarray:
    """``n`` ages in whole years: a band by :func:`age_band_shares`, uniform within it."""
    p = age_band_shares(cfg)
    band = rng.choice(len(AGE_BANDS), size=n, p=p / p.sum())
    lo = np.array([b[0] for b in AGE_BANDS])[band]
    hi = np.array([b[1] for b in AGE_BANDS])[band]
    return (lo + np.floor(rng.random(n) * (hi - lo + 1))).astype(np.int64)


# ====================================================================== households
def _household_sizes(rng, n_persons: int) -> np.ndarray:
    """Household sizes (ACS 2019 distribution) summing to exactly ``n_persons``."""
    sizes_v = np.asarray(HOUSEHOLD_SIZES)
    probs = np.asarray(HOUSEHOLD_SIZE_SHARES, dtype=np.float64)
    n_est = int(n_persons / mean_household_size() * 1.1) + 10
    sizes = rng.choice(sizes_v, size=n_est, p=probs / probs.sum())
    cum = np.cumsum(sizes)
    while cum[-1] < n_persons:  # pragma: no cover - n_est has a 10 % margin
        more = rng.choice(sizes_v, size=n_est, p=probs / probs.sum())
        sizes = np.concatenate([sizes, more])
        cum = np.cumsum(sizes)
    n_hh = int(np.searchsorted(cum, n_persons) + 1)
    sizes = sizes[:n_hh].copy()
    sizes[-1] -= int(cum[n_hh - 1] - n_persons)
    return sizes.astype(np.int64)


def _compose(rng, sizes: np.ndarray, ages: np.ndarray) -> np.ndarray:
    """Ages laid out household by household (slot 0 of each household is an adult).

    Every household's first member (the householder) is an adult; the children go to the
    other slots, the second slot weighted by :data:`SECOND_SLOT_CHILD_WEIGHT` against 1
    for the later ones (weighted sampling without replacement); the remaining adults fill
    the rest.  If there are fewer adults than households (only with extreme
    ``share_under_18`` in a tiny population), the missing householders are made adults
    by redrawing their age among the adults' ages (logged).
    """
    n, n_hh = len(ages), len(sizes)
    perm = rng.permutation(n)
    ages = ages[perm]
    adult = ages >= ADULT_AGE
    if adult.sum() < n_hh:
        short = n_hh - int(adult.sum())
        log.warning("population: %d more households than adults; %d children made adults", short, short)
        kids = np.flatnonzero(~adult)[:short]
        pool = ages[adult] if adult.any() else np.array([ADULT_AGE])
        ages[kids] = rng.choice(pool, size=short) if adult.any() else ADULT_AGE
        adult = ages >= ADULT_AGE
    adults, kids = ages[adult], ages[~adult]
    start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    slot = np.arange(n) - np.repeat(start, sizes)  # slot number within the household
    out = np.empty(n, dtype=np.int64)
    first = slot == 0
    out[first] = adults[:n_hh]
    rest = np.flatnonzero(~first)
    w = np.where(slot[rest] == 1, SECOND_SLOT_CHILD_WEIGHT, 1.0)
    key = np.log(rng.random(len(rest)) + 1e-300) / w  # Efraimidis-Spirakis keys
    order = stable_argsort_descending(key)
    kid_slots = rest[order[:len(kids)]]
    adult_slots = rest[order[len(kids):]]
    out[kid_slots] = kids
    out[adult_slots] = adults[n_hh:]
    return out


def _units(world: World) -> np.ndarray:
    """Housing units per building: ``buildings["units"]``, or (a world without that
    column) expected residents over the mean household size, >= 1 where anybody lives."""
    b = world.buildings
    if "units" in b.columns:
        return b["units"].to_numpy(np.int64)
    res = b["residents"].to_numpy(np.float64)
    return np.where(res > 0, np.maximum(1, np.round(res / mean_household_size())), 0).astype(np.int64)


def _place_households(rng, world: World, n_hh: int) -> np.ndarray:
    """Home building of each household: one household per housing unit, the units chosen
    uniformly without replacement (the rest stay vacant).  More households than units
    (a world built for fewer residents) double up in units drawn with replacement."""
    units = _units(world)
    unit_b = np.repeat(np.arange(len(units), dtype=np.int64), units)
    if len(unit_b) == 0:
        raise ConfigError("the world has no housing units (no building with residents); check the world.")
    if n_hh <= len(unit_b):
        return unit_b[rng.choice(len(unit_b), size=n_hh, replace=False)]
    log.warning("population: %d households for %d housing units; %d share a unit",
                n_hh, len(unit_b), n_hh - len(unit_b))
    extra = unit_b[rng.integers(0, len(unit_b), size=n_hh - len(unit_b))]
    return np.concatenate([unit_b, extra])


# ====================================================================== employment, phones
def employment_probability(ages: np.ndarray, cfg: PopulationConfig) -> np.ndarray:
    """P(employed) per person: 0 under 16; the BLS age profile in 16-64 scaled so its mean
    over these persons is ``cfg.employment_rate`` (capped at 1); ``employment_rate_65_plus``
    at 65+."""
    ages = np.asarray(ages)
    shape = np.zeros(len(ages))
    for lo, hi, r in EMPLOYMENT_PROFILE:
        shape[(ages >= lo) & (ages <= hi)] = r
    work = (ages >= MIN_WORK_AGE) & (ages <= 64)
    p = np.zeros(len(ages))
    if work.any() and cfg.employment_rate > 0:
        s = shape[work]
        target = float(cfg.employment_rate)
        if target >= 1.0:
            p[work] = 1.0
        else:
            lo_f, hi_f = 0.0, 1.0 / s[s > 0].min()
            for _ in range(60):  # mean(min(1, f * s)) = target, monotone in f
                f = 0.5 * (lo_f + hi_f)
                if np.minimum(1.0, f * s).mean() < target:
                    lo_f = f
                else:
                    hi_f = f
            p[work] = np.minimum(1.0, 0.5 * (lo_f + hi_f) * s)
    p[ages >= 65] = cfg.employment_rate_65_plus
    return p


def smartphone_probability(ages: np.ndarray, cfg: PopulationConfig) -> np.ndarray:
    """P(owns a smartphone with an advertising ID) per person: 0 under
    ``cfg.min_device_age``; then the Pew share of the person's age band."""
    a = np.asarray(ages)
    p = np.select(
        [a < ADULT_AGE, a < 30, a < 50, a < 65],
        [cfg.smartphone_share_13_17, cfg.smartphone_share_18_29, cfg.smartphone_share_30_49,
         cfg.smartphone_share_50_64],
        cfg.smartphone_share_65_plus,
    ).astype(np.float64)
    p[a < cfg.min_device_age] = 0.0
    return p


# ====================================================================== persons
def make_persons(world: World, n_persons: int, cfg: PopulationConfig, seed: int) -> pd.DataFrame:
    """Persons in households, with age, home and (for the employed) work buildings.

    Returns the truth ``persons`` table of docs/CONTRACTS.md: person_id, household_id,
    age, home_building_id, home_x_m, home_y_m, home_<level>_id, work_building_id,
    work_x_m, work_y_m, work_<level>_id, schedule, smartphone.  Persons are ordered by
    home building (spatial locality), household members next to each other, the adult
    householder first.  Ids are :data:`ID_DTYPE` (int32; -1 = no work), ages
    :data:`AGE_DTYPE`, coordinates float64, schedule a categorical: about 76 bytes a
    person.
    """
    def rng(k):
        return seed_sequence(seed, TAG_POP, _SUB_PERSONS, k)

    b = world.buildings
    sizes = _household_sizes(rng(_P_SIZES), n_persons)
    n_hh = len(sizes)
    ages = _compose(rng(_P_SLOTS), sizes, draw_ages(rng(_P_AGES), n_persons, cfg))
    hh_building = _place_households(rng(_P_UNITS), world, n_hh)
    check_id_range(n_persons, "persons")
    check_id_range(world.n_buildings, "buildings")
    # persons ordered by home building (a counting sort: np.argsort(kind="stable"))
    order = stable_argsort_ids(hh_building, world.n_buildings)
    hh_building = hh_building[order]
    start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    sizes = sizes[order]
    idx = np.repeat(start[order], sizes) + (np.arange(n_persons) - np.repeat(np.cumsum(sizes) - sizes, sizes))
    ages = ages[idx].astype(AGE_DTYPE)
    del idx, order, start
    household_id = np.repeat(np.arange(n_hh, dtype=ID_DTYPE), sizes)
    home_b = hh_building.astype(ID_DTYPE)[household_id]
    n = len(household_id)
    r = rng(_P_EMPLOY)
    employed = r.random(n) < employment_probability(ages, cfg)
    night = employed & (r.random(n) < cfg.night_shift_share)
    schedule = np.where(employed, np.where(night, SCHED_NIGHT, SCHED_DAY), SCHED_NONE).astype(np.int8)
    del night
    work_b = _gravity_workplaces(world, home_b, employed, cfg.commute_decay_km * 1000.0, rng(_P_WORK))
    del employed
    phone = rng(_P_PHONE).random(n) < smartphone_probability(ages, cfg)
    bx, by = b["x_m"].to_numpy(np.float64), b["y_m"].to_numpy(np.float64)
    (hx, hy), (wx, wy) = building_xy(bx, by, home_b), building_xy(bx, by, work_b)
    hz, wz = zone_ids(world, home_b), zone_ids(world, work_b)
    cols = {
        "person_id": np.arange(n, dtype=ID_DTYPE), "household_id": household_id,
        "age": ages,
        "home_building_id": home_b, "home_x_m": hx, "home_y_m": hy,
        **{f"home_{lvl}_id": hz[f"{lvl}_id"] for lvl in ZONE_LEVELS},
        "work_building_id": work_b, "work_x_m": wx, "work_y_m": wy,
        **{f"work_{lvl}_id": wz[f"{lvl}_id"] for lvl in ZONE_LEVELS},
        "schedule": pd.Categorical.from_codes(schedule, categories=list(SCHEDULES)),
        "smartphone": phone,
    }
    return pd.DataFrame(cols, copy=False)  # every column is a new array: no copy needed


def _gravity_workplaces(world, home_b, employed, decay_m, rng):
    """Work building per employed person: P(block c | home block b) ~ jobs_c exp(-d_bc/L),
    then a building within c with probability ~ its jobs."""
    b = world.buildings
    blk = b["block_id"].to_numpy()
    jobs = b["jobs"].to_numpy()
    n_blocks = len(world.zones["block"])
    bjobs = np.bincount(blk, weights=jobs, minlength=n_blocks)
    seeds = world.block_seed_xy
    home_blk = blk[home_b]
    out = np.full(len(home_b), -1, dtype=ID_DTYPE)
    # buildings with jobs, grouped by block
    jb = np.flatnonzero(jobs > 0)
    jb = jb[np.argsort(blk[jb], kind="stable")]
    starts = np.searchsorted(blk[jb], np.arange(n_blocks + 1))
    emp_idx = np.flatnonzero(employed)
    order = emp_idx[stable_argsort_ids(home_blk[emp_idx], n_blocks)]
    hb_sorted = home_blk[order]
    bounds = np.searchsorted(hb_sorted, np.arange(n_blocks + 1))
    wblk = np.full(len(order), -1, dtype=np.int64)
    # home blocks with employed residents, a few at a time: the kernels compute what
    # np.hypot, the cumulative sum, the division and np.searchsorted give row by row;
    # exp stays NumPy's
    homes = np.flatnonzero(bounds[1:] > bounds[:-1])
    sx, sy = np.ascontiguousarray(seeds[:, 0]), np.ascontiguousarray(seeds[:, 1])
    bjobs = bjobs.astype(np.float64)
    rows = max(1, GRAVITY_CHUNK // max(n_blocks, 1))
    buf = np.empty((min(rows, len(homes)), n_blocks))
    for c0 in range(0, len(homes), rows):
        hbs = homes[c0:c0 + rows]
        w = buf[:len(hbs)]
        gravity_exponents(sx, sy, hbs, float(decay_m), w)
        np.exp(w, out=w)
        ok = np.flatnonzero(gravity_cumsum_rows(w, bjobs))
        lo, hi = bounds[hbs][ok], bounds[hbs + 1][ok]
        u = rng.random(int((hi - lo).sum()))  # the draws of every home block in order, at once
        gravity_pick(w, ok, lo, hi, u, wblk)
    # building inside the chosen block with probability ~ its jobs (one vectorised pass)
    cum = np.concatenate([[0.0], np.cumsum(jobs[jb])])
    lo_c = cum[starts[:-1]]
    tot_c = cum[starts[1:]] - lo_c
    sel = np.flatnonzero(wblk >= 0)
    c = wblk[sel]
    target = lo_c[c] + rng.random(len(sel)) * tot_c[c]
    k = np.searchsorted(cum, target, side="right") - 1
    k = np.clip(k, starts[c], np.maximum(starts[c + 1] - 1, starts[c]))
    ok = tot_c[c] > 0
    out[order[sel[ok]]] = jb[k[ok]]
    return out


#: weights computed at a time by :func:`_gravity_workplaces` (home blocks x blocks)
GRAVITY_CHUNK = 1 << 21


#: constants of glibc's hypot (sysdeps/ieee754/dbl-64/e_hypot.c, glibc >= 2.35)
_HYPOT_SCALE, _HYPOT_LARGE, _HYPOT_TINY, _HYPOT_EPS = 2.0 ** -600, 2.0 ** 511, 2.0 ** -459, 2.0 ** -54


@jit
def _hypot_kernel(ax, ay):
    """glibc's hypot kernel without FMA (ax >= ay >= 0, squares in range): the rounded
    root corrected by Borges' (2019) unfused step."""
    h = np.sqrt(ax * ax + ay * ay)
    if h <= 2.0 * ay:
        delta = h - ay
        t1 = ax * (2.0 * delta - ax)
        t2 = (delta - 2.0 * (ax - ay)) * delta
    else:
        delta = h - ax
        t1 = 2.0 * delta * (ax - 2.0 * ay)
        t2 = (4.0 * delta - ay) * ay + delta * delta
    return h - (t1 + t2) / (2.0 * h)


@jit
def hypot_glibc(x, y):
    """hypot(x, y) as glibc >= 2.35 computes it on x86-64 (no FMA), which is what
    np.hypot and numba's np.hypot call there: bit for bit, every branch (the tests
    check it against np.hypot)."""
    if not (np.isfinite(x) and np.isfinite(y)):
        if np.isinf(x) or np.isinf(y):
            return np.inf
        return x + y
    x, y = abs(x), abs(y)
    ax = y if x < y else x
    ay = x if x < y else y
    if ax > _HYPOT_LARGE:
        if ay <= ax * _HYPOT_EPS:
            return ax + ay
        return _hypot_kernel(ax * _HYPOT_SCALE, ay * _HYPOT_SCALE) / _HYPOT_SCALE
    if ay < _HYPOT_TINY:
        if ax >= ay / _HYPOT_EPS:
            return ax + ay
        return _hypot_kernel(ax / _HYPOT_SCALE, ay / _HYPOT_SCALE) * _HYPOT_SCALE
    if ay <= ax * _HYPOT_EPS:
        return ax + ay
    return _hypot_kernel(ax, ay)


@pjit
def gravity_exponents(sx, sy, homes, decay_m, out):
    """out[r, j] = -hypot(sx[j] - sx[h], sy[j] - sy[h]) / decay_m for home block
    h = homes[r]: the exponent of the distance decay, as NumPy computes it.

    hypot is :func:`hypot_glibc`: the common case (finite, neither difference tiny
    nor huge nor negligible against the other) in a branch-free pass the compiler
    vectorises, then the other pairs (the home block itself, equal coordinates, NaN)
    again through :func:`hypot_glibc`."""
    n = len(sx)
    for r in prange(len(homes)):
        hx, hy = sx[homes[r]], sy[homes[r]]
        row = out[r]
        for j in range(n):
            x, y = abs(sx[j] - hx), abs(sy[j] - hy)
            ax = y if x < y else x
            ay = x if x < y else y
            h = np.sqrt(ax * ax + ay * ay)
            c = h <= 2.0 * ay
            delta = h - (ay if c else ax)
            t1 = ax * (2.0 * delta - ax) if c else 2.0 * delta * (ax - 2.0 * ay)
            t2 = (delta - 2.0 * (ax - ay)) * delta if c else (4.0 * delta - ay) * ay + delta * delta
            row[j] = -(h - (t1 + t2) / (2.0 * h)) / decay_m
        for j in range(n):
            x, y = abs(sx[j] - hx), abs(sy[j] - hy)
            ax = y if x < y else x
            ay = x if x < y else y
            if not (ay >= _HYPOT_TINY and ax <= _HYPOT_LARGE and ay > ax * _HYPOT_EPS):
                row[j] = -hypot_glibc(sx[j] - hx, sy[j] - hy) / decay_m


@pjit
def gravity_cumsum_rows(w, bjobs):
    """Row r of ``w`` holds exp(exponents); it becomes the cumulative sum of
    p = bjobs * w[r] (added left to right, as np.cumsum).  Returns whether each row has
    a positive weight."""
    n_r, n = w.shape
    ok = np.zeros(n_r, dtype=np.bool_)
    for r in prange(n_r):
        s = 0.0
        pos = False
        for j in range(n):
            p = bjobs[j] * w[r, j]
            pos = pos or p > 0.0
            s += p
            w[r, j] = s
        ok[r] = pos
    return ok


@pjit
def gravity_pick(cum, rows, lo, hi, u, out):
    """For k-th row r = rows[k] of cumulative sums ``cum``:
    out[lo[k]:hi[k]] = min(searchsorted(cum[r] / cum[r, -1], u_k, side="right"), n - 1),
    u_k the next hi[k] - lo[k] values of ``u``.  The normalised cdf is divided only
    where the binary search reads it (the same quotients, so the same answer: the cdf
    is non-decreasing)."""
    n = cum.shape[1]
    m = hi - lo
    first = np.zeros(len(rows) + 1, dtype=np.int64)
    for k in range(len(rows)):
        first[k + 1] = first[k] + m[k]
    for k in prange(len(rows)):
        c = cum[rows[k]]
        tot = c[n - 1]
        for q in range(m[k]):
            v = u[first[k] + q]
            a, b = 0, n  # first index whose cdf exceeds v
            while a < b:
                mid = (a + b) >> 1
                if c[mid] / tot <= v:
                    a = mid + 1
                else:
                    b = mid
            out[lo[k] + q] = min(a, n - 1)


def single_household_share(persons: pd.DataFrame) -> float:
    """Share of persons whose home building holds no other household."""
    if len(persons) == 0:
        return float("nan")
    hh = persons.drop_duplicates("household_id")
    n_hh = hh.groupby("home_building_id").size()
    per = n_hh.reindex(persons["home_building_id"].to_numpy()).to_numpy()
    return float((per == 1).mean())


# ====================================================================== devices
def choose_devices(persons: pd.DataFrame, n_devices: int, seed: int) -> pd.DataFrame:
    """The broker's panel: ``n_devices`` smartphone owners chosen uniformly without
    replacement (``persons["smartphone"]``; every person when the column is absent).

    device_idx is dense (0..n-1) in a seeded random order of persons, independent of
    identity; the MAID column is filled by the
    generator (it depends on ID rotation).
    """
    if "smartphone" in persons.columns:
        owners = np.flatnonzero(persons["smartphone"].to_numpy(bool))
        what = "smartphone owners (persons aged min_device_age or more who own one)"
    else:
        owners = np.arange(len(persons))
        what = "persons"
    if n_devices > len(owners):
        raise ConfigError(
            f"n_devices={n_devices} exceeds the {len(owners)} {what} among {len(persons)} persons; "
            "lower n_devices or population.device_share, or raise world.residents"
        )
    rng = seed_sequence(seed, TAG_POP, _SUB_DEVICES)
    # device_idx follows a seeded random order of persons, never person_id order: part
    # files hold blocks of devices, so a sorted order would let a pseudonym's part number
    # narrow its owner's register id (a side channel in the release).
    pos = rng.choice(len(owners), size=n_devices, replace=False)
    pid = persons["person_id"].to_numpy()[owners[pos]]
    return pd.DataFrame({"device_idx": np.arange(n_devices, dtype=ID_DTYPE), "person_id": as_ids(pid, "person ids")})


# ====================================================================== GPS bias
def building_gps_bias(n_buildings: int, median_m: float, sigma: float, seed: int) -> np.ndarray:
    """(n_buildings, 2) bias vectors (metres) of indoor fixes, one per building.

    Direction uniform, length lognormal with median ``median_m`` and log-sd ``sigma``
    (``pings.indoor_bias_median_m`` / ``indoor_bias_sigma``).  Row b depends only on
    (seed, b): two uniforms of the stream ``seed_sequence(seed, TAG_POP, 4)`` drawn in
    building order, so it does not depend on blocks, devices or the number of buildings.
    """
    if n_buildings == 0:
        return np.zeros((0, 2))
    u = seed_sequence(seed, TAG_POP, _SUB_GPS_BIAS).random((int(n_buildings), 2))
    if median_m <= 0:
        return np.zeros((int(n_buildings), 2))
    length = median_m * np.exp(sigma * ndtri(np.clip(u[:, 1], 1e-12, 1 - 1e-12)))
    a = 2.0 * np.pi * u[:, 0]
    return np.column_stack([length * np.cos(a), length * np.sin(a)])


# ====================================================================== register
_FIRST = ("Alex Ana Ben Bo Cara Chen Dana Dev Eli Emma Femi Gus Hana Ivan Jo Kai Lea Luis Mara "
          "Mo Nia Omar Pia Raj Rosa Sam Tara Uma Vic Wen Yara Zoe").split()
_LAST = ("Abara Berg Costa Diaz Evans Fischer Garcia Haddad Ito Jones Kim Lopez Moreau Nowak "
         "Okafor Patel Quinn Rossi Silva Tanaka Ueda Varga Wang Xu Yilmaz Zhou").split()


def _profile_listing(persons, res, name, prof, seed):
    """One profile's records over all persons: (listed, home building or -1, employer
    building or -1).  Draws are per person (independent of the other profiles and of the
    values, so a higher coverage lists a superset)."""
    rng = seed_sequence(seed, TAG_POP, _SUB_REGISTER, _PROFILE_STREAM[name])
    n = len(persons)
    u = rng.random((n, 4))  # listed, home shown, wrong home, employer shown
    wrong_b = res[rng.integers(0, len(res), size=n)] if len(res) else np.zeros(n, dtype=np.int64)
    age = persons["age"].to_numpy()
    work = persons["work_building_id"].to_numpy(np.int64)
    eligible = age >= ADULT_AGE
    if prof["eligible"] == "employed_adults":
        eligible &= work >= 0
    listed = eligible & (u[:, 0] < prof["coverage"])
    home = persons["home_building_id"].to_numpy(np.int64)
    home = np.where(u[:, 2] < prof["error_rate"], wrong_b, home)
    home = np.where(listed & (u[:, 1] < prof["home_coverage"]), home, -1)
    emp = np.where(listed & (work >= 0) & (u[:, 3] < prof["employer_coverage"]), work, -1)
    return listed, home, emp


def register_listing(persons: pd.DataFrame, world: World, comps, seed: int) -> tuple:
    """Who the profiles ``comps`` (``RegisterConfig.components()``) list: ``(rows, home,
    work, sources)`` — the persons' rows listed by any profile, and for each the home
    building of the first profile showing one, the employer likewise (-1: none; int64)
    and the bit mask of the profiles listing it."""
    n = len(persons)
    res = np.flatnonzero(world.buildings["residents"].to_numpy() > 0)
    listed_any = np.zeros(n, dtype=bool)
    home_b = np.full(n, -1, dtype=np.int64)
    work_b = np.full(n, -1, dtype=np.int64)
    src_bits = np.zeros(n, dtype=np.int64)
    for i, (name, prof) in enumerate(comps):
        listed, home, emp = _profile_listing(persons, res, name, prof, seed)
        listed_any |= listed
        src_bits |= listed.astype(np.int64) << i
        home_b = np.where((home_b < 0) & (home >= 0), home, home_b)
        work_b = np.where((work_b < 0) & (emp >= 0), emp, work_b)
    rows = np.flatnonzero(listed_any)
    return rows, home_b[rows], work_b[rows], src_bits[rows]


def make_register(persons: pd.DataFrame, world: World, cfg: RegisterConfig, seed: int, *,
                  names: bool = True) -> pd.DataFrame:
    """The attacker's register: adults with their home address (and some employers).

    ``cfg.profile`` names one or several record profiles joined by "+" (see
    :class:`~sim.core.config.RegisterConfig`); each lists ``coverage`` of its eligible
    persons (adults, or employed adults), shows the home address of ``home_coverage`` of
    them (``error_rate`` of those a wrong one: another residential building drawn at
    random) and the employer of ``employer_coverage`` of the listed employed.  A
    combination lists the union: the home from the first profile (in the order written)
    that shows one, the employer likewise.  Each profile's draws come from its own
    stream, so a combination lists exactly the union of the profiles' registers.

    Columns (docs/CONTRACTS.md): person_id, name, age, home_building_id, home_x_m,
    home_y_m, home_<level>_id, work_building_id, work_x_m, work_y_m, work_<level>_id
    (-1/NaN where not listed), sources (the profiles listing the person, "+"-joined).
    Rows are ordered by person_id.  Ids are :data:`ID_DTYPE`, ages :data:`AGE_DTYPE`.
    ``names=False`` leaves out the name column (no attack reads it; at millions of rows
    it is the largest column), the other columns unchanged.
    """
    comps = cfg.components()
    b = world.buildings
    rows, home_b, work_b, src_bits = register_listing(persons, world, comps, seed)
    pid = as_ids(persons["person_id"].to_numpy()[rows], "person ids")
    home_b, work_b = as_ids(home_b, "building ids"), as_ids(work_b, "building ids")
    bx, by = b["x_m"].to_numpy(np.float64), b["y_m"].to_numpy(np.float64)
    (hx, hy), (wx, wy) = building_xy(bx, by, home_b), building_xy(bx, by, work_b)
    hz, wz = zone_ids(world, home_b), zone_ids(world, work_b)
    cols = {
        "person_id": pid,
        **({"name": register_names(pid)} if names else {}),
        "age": persons["age"].to_numpy()[rows].astype(AGE_DTYPE),
        "home_building_id": home_b, "home_x_m": hx, "home_y_m": hy,
        **{f"home_{lvl}_id": hz[f"{lvl}_id"] for lvl in ZONE_LEVELS},
        "work_building_id": work_b, "work_x_m": wx, "work_y_m": wy,
        **{f"work_{lvl}_id": wz[f"{lvl}_id"] for lvl in ZONE_LEVELS},
    }
    names = [c[0] for c in comps]
    masks = np.unique(src_bits)
    labels = ["+".join(nm for j, nm in enumerate(names) if m >> j & 1) for m in masks.tolist()]
    # as pd.Categorical(list of labels): the categories are the labels in sorted order
    cats = sorted(labels)
    code_of_mask = np.array([cats.index(lab) for lab in labels], dtype=np.int64)
    cols["sources"] = pd.Categorical.from_codes(code_of_mask[np.searchsorted(masks, src_bits)], categories=cats)
    return pd.DataFrame(cols, copy=False)  # every column is a new array: no copy needed


def register_names(person_id):
    """The register's (synthetic) name of each person id: "<first> <last> #<person_id>",
    first name number (id * 7919) mod 32, last name number (id * 104729 // 7) mod 26.

    A pandas array of the default string dtype, as a list of str gives in a table (an
    empty list for no ids, which pandas stores as float64 like the list it stands for)."""
    pid = np.asarray(person_id, dtype=np.int64)
    if len(pid) == 0:
        return []
    first = pa.array(_FIRST).take(pa.array((pid * 7919) % len(_FIRST)))
    last = pa.array(_LAST).take(pa.array((pid * 104729 // 7) % len(_LAST)))
    number = pc.cast(pa.array(pid), pa.string())  # decimal digits, as str(int)
    text = pc.binary_join_element_wise(first, pa.scalar(" "), last, pa.scalar(" #"), number, "")
    return pd.array(text, dtype=pd.StringDtype(storage="pyarrow", na_value=np.nan))
