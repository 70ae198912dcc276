"""Compact population tables and the fast synthesis kernels.

The persons, devices and register tables hold int32 ids and int16 ages (no object
column); the kernels that replaced NumPy/pandas steps of the synthesis (glibc's hypot
inlined and vectorised, the gravity model's cumulative sums and draws, counting and tie
fixing sorts, id and coordinate gathers) are checked against the plain code they
replaced, kept here as reference functions, and the whole persons and register tables
against the synthesis as first written (same seed, same values).
"""
from __future__ import annotations

import platform

import numpy as np
import pandas as pd
import pytest

import naive_generate as NG
from sim.core.config import PopulationConfig, RegisterConfig, WorldConfig
from sim.core.constants import ZONE_LEVELS
from sim.core.errors import ConfigError
from sim.core.rng import TAG_POP, seed_sequence
from sim.population import (
    ADULT_AGE,
    AGE_DTYPE,
    ID_DTYPE,
    SCHED_DAY,
    SCHED_NIGHT,
    SCHED_NONE,
    SCHEDULES,
    SECOND_SLOT_CHILD_WEIGHT,
    as_ids,
    building_xy,
    check_id_range,
    choose_devices,
    draw_ages,
    employment_probability,
    gravity_cumsum_rows,
    gravity_exponents,
    gravity_pick,
    hypot_glibc,
    make_persons,
    make_register,
    register_names,
    smartphone_probability,
    stable_argsort_descending,
    stable_argsort_ids,
    zone_ids,
)
from sim.world._kernels import GridIndex, counting_argsort
from sim.world.synthetic import synthetic_world

N_RES = 20_000


@pytest.fixture(scope="module")
def world():
    return synthetic_world(WorldConfig(residents=N_RES), seed=4)


@pytest.fixture(scope="module")
def persons(world):
    return make_persons(world, N_RES, PopulationConfig(), seed=4)


# ====================================================================== references
def ref_compose(rng, sizes, ages):
    """``sim.population._compose`` as first written (a stable NumPy argsort)."""
    n, n_hh = len(ages), len(sizes)
    ages = ages[rng.permutation(n)]
    adult = ages >= ADULT_AGE
    assert adult.sum() >= n_hh
    adults, kids = ages[adult], ages[~adult]
    start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    slot = np.arange(n) - np.repeat(start, sizes)
    out = np.empty(n, dtype=np.int64)
    first = slot == 0
    out[first] = adults[:n_hh]
    rest = np.flatnonzero(~first)
    w = np.where(slot[rest] == 1, SECOND_SLOT_CHILD_WEIGHT, 1.0)
    key = np.log(rng.random(len(rest)) + 1e-300) / w
    order = np.argsort(-key, kind="stable")
    out[rest[order[:len(kids)]]] = kids
    out[rest[order[len(kids):]]] = adults[n_hh:]
    return out


def ref_persons(world, n_persons, cfg, seed):
    """``make_persons`` as first written: int64 columns, pandas/NumPy steps, the
    block-by-block gravity model of tests/naive_generate.py."""
    import sim.population as P

    def rng(k):
        return seed_sequence(seed, TAG_POP, P._SUB_PERSONS, k)

    b = world.buildings
    sizes = P._household_sizes(rng(P._P_SIZES), n_persons)
    n_hh = len(sizes)
    ages = ref_compose(rng(P._P_SLOTS), sizes, draw_ages(rng(P._P_AGES), n_persons, cfg))
    hh_building = P._place_households(rng(P._P_UNITS), world, n_hh)
    order = np.argsort(hh_building, kind="stable")
    hh_building = hh_building[order]
    start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    sizes = sizes[order]
    idx = np.repeat(start[order], sizes) + (np.arange(n_persons) - np.repeat(np.cumsum(sizes) - sizes, sizes))
    ages = ages[idx]
    household_id = np.repeat(np.arange(n_hh, dtype=np.int64), sizes)
    home_b = hh_building[household_id]
    n = len(household_id)
    r = rng(P._P_EMPLOY)
    employed = r.random(n) < employment_probability(ages, cfg)
    night = employed & (r.random(n) < cfg.night_shift_share)
    schedule = np.where(employed, np.where(night, SCHED_NIGHT, SCHED_DAY), SCHED_NONE)
    work_b = NG.gravity_workplaces(world, home_b, employed, cfg.commute_decay_km * 1000.0, rng(P._P_WORK))
    phone = rng(P._P_PHONE).random(n) < smartphone_probability(ages, cfg)
    has = work_b >= 0
    hz, wz = world.building_zone_ids(home_b), world.building_zone_ids(work_b)
    return pd.DataFrame({
        "person_id": np.arange(n, dtype=np.int64), "household_id": household_id, "age": ages,
        "home_building_id": home_b, "home_x_m": b["x_m"].to_numpy()[home_b],
        "home_y_m": b["y_m"].to_numpy()[home_b],
        **{f"home_{lvl}_id": hz[f"{lvl}_id"] for lvl in ZONE_LEVELS},
        "work_building_id": work_b,
        "work_x_m": np.where(has, b["x_m"].to_numpy()[np.maximum(work_b, 0)], np.nan),
        "work_y_m": np.where(has, b["y_m"].to_numpy()[np.maximum(work_b, 0)], np.nan),
        **{f"work_{lvl}_id": wz[f"{lvl}_id"] for lvl in ZONE_LEVELS},
        "schedule": pd.Categorical.from_codes(schedule, categories=list(SCHEDULES)),
        "smartphone": phone,
    })


def ref_register_columns(persons, world, cfg, seed):
    """The id and coordinate columns of ``make_register`` as first written
    (``persons.iloc`` of the listed rows, int64 ids, ``np.where`` gathers) for the rows
    ``register_listing`` lists (the part that did not change)."""
    import sim.population as P

    b = world.buildings
    rows, home_b, work_b, _ = P.register_listing(persons, world, cfg.components(), seed)  # who is listed: shared
    p = persons.iloc[rows]
    bx, by = b["x_m"].to_numpy(), b["y_m"].to_numpy()
    hz, wz = world.building_zone_ids(home_b), world.building_zone_ids(work_b)
    return pd.DataFrame({
        "person_id": p["person_id"].to_numpy(), "age": p["age"].to_numpy(np.int64),
        "home_building_id": home_b,
        "home_x_m": np.where(home_b >= 0, bx[np.maximum(home_b, 0)], np.nan),
        "home_y_m": np.where(home_b >= 0, by[np.maximum(home_b, 0)], np.nan),
        **{f"home_{lvl}_id": hz[f"{lvl}_id"] for lvl in ZONE_LEVELS},
        "work_building_id": work_b,
        "work_x_m": np.where(work_b >= 0, bx[np.maximum(work_b, 0)], np.nan),
        "work_y_m": np.where(work_b >= 0, by[np.maximum(work_b, 0)], np.nan),
        **{f"work_{lvl}_id": wz[f"{lvl}_id"] for lvl in ZONE_LEVELS},
    })


def ref_gravity_rows(sx, sy, homes, decay_m, bjobs):
    """Normalised cdf rows of the gravity model with NumPy (np.hypot, np.exp, np.cumsum)
    and whether each row has a positive weight."""
    d = np.hypot(sx[None, :] - sx[homes, None], sy[None, :] - sy[homes, None])
    p = bjobs[None, :] * np.exp(-d / decay_m)
    cdf = np.cumsum(p, axis=1)
    ok = (p > 0).any(axis=1)
    cdf[ok] /= cdf[ok, -1:]
    return cdf, ok


# ====================================================================== dtypes
def test_persons_devices_and_register_are_compact(world, persons):
    id_cols = ["person_id", "household_id", "home_building_id", "work_building_id"] + [
        f"{w}_{lvl}_id" for w in ("home", "work") for lvl in ZONE_LEVELS]
    for c in id_cols:
        assert persons[c].dtype == ID_DTYPE == np.int32, c
    assert persons["age"].dtype == AGE_DTYPE == np.int16
    assert persons["schedule"].dtype == "category" and persons["schedule"].cat.codes.dtype == np.int8
    assert persons["smartphone"].dtype == bool
    for c in ("home_x_m", "home_y_m", "work_x_m", "work_y_m"):
        assert persons[c].dtype == np.float64
    assert not (persons.dtypes == object).any()
    assert persons.memory_usage(deep=True).sum() / len(persons) < 80  # 122 B/row with int64 ids

    devices = choose_devices(persons, 500, seed=4)
    assert devices["device_idx"].dtype == devices["person_id"].dtype == np.int32

    reg = make_register(persons, world, RegisterConfig(profile="voter_file+professional_network"), seed=4)
    for c in [c for c in id_cols if c != "household_id"]:
        assert reg[c].dtype == np.int32, c
    assert reg["age"].dtype == np.int16 and reg["sources"].dtype == "category"
    assert not (reg.dtypes == object).any()


def test_compact_dtypes_survive_parquet(tmp_path, world, persons):
    reg = make_register(persons, world, RegisterConfig(), seed=4)
    for name, df in (("persons", persons), ("register", reg)):
        df.to_parquet(tmp_path / f"{name}.parquet", index=False)
        back = pd.read_parquet(tmp_path / f"{name}.parquet")
        assert back["person_id"].dtype == np.int32 and back["age"].dtype == np.int16
        pd.testing.assert_frame_equal(back, df, check_dtype=False, check_categorical=False)


def test_ids_that_do_not_fit_int32_are_refused():
    check_id_range(2**31 - 1, "persons")  # ids 0 .. 2**31 - 2 fit
    with pytest.raises(ConfigError, match="world.residents"):
        check_id_range(2**31 + 5, "persons")
    with pytest.raises(ConfigError, match="int32"):
        as_ids(np.array([0, 2**31], dtype=np.int64), "building ids")
    assert as_ids(np.array([-1, 0, 2**31 - 1]), "ids").dtype == np.int32
    assert as_ids(np.zeros(0, dtype=np.int64), "ids").dtype == np.int32


# ====================================================================== same values
def test_persons_are_the_tables_first_written(world, persons):
    """Same seed, same values: every column equals the int64 / NumPy version."""
    want = ref_persons(world, N_RES, PopulationConfig(), seed=4)
    pd.testing.assert_frame_equal(persons, want, check_dtype=False, check_exact=True)


@pytest.mark.parametrize("profile", ["people_search", "voter_file+people_search+professional_network"])
def test_register_is_the_table_first_written(world, persons, profile):
    cfg = RegisterConfig(profile=profile)
    got = make_register(persons, world, cfg, seed=4)
    want = ref_register_columns(persons, world, cfg, seed=4)
    pd.testing.assert_frame_equal(got[want.columns], want, check_dtype=False, check_exact=True)
    assert list(got["name"]) == list(register_names(want["person_id"].to_numpy()))
    lean = make_register(persons, world, cfg, seed=4, names=False)  # the same table without the names
    pd.testing.assert_frame_equal(lean, got.drop(columns="name"), check_exact=True)


def test_the_same_seed_gives_identical_tables(world, persons):
    again = make_persons(world, N_RES, PopulationConfig(), seed=4)
    pd.testing.assert_frame_equal(again, persons, check_exact=True)
    cfg = RegisterConfig()
    pd.testing.assert_frame_equal(make_register(again, world, cfg, 4), make_register(persons, world, cfg, 4),
                                  check_exact=True)
    other = make_persons(world, N_RES, PopulationConfig(), seed=5)
    assert not other["home_building_id"].equals(persons["home_building_id"])


# ====================================================================== kernels
_GLIBC = platform.system() == "Linux" and platform.machine() in ("x86_64", "AMD64") and \
    tuple(int(v) for v in (platform.libc_ver()[1] or "0.0").split(".")[:2]) >= (2, 35)


def _edge_pairs():
    big, tiny = 2.0 ** 600, 2.0 ** -500
    vals = [0.0, -0.0, 1.0, -1.0, 3.0, 4.0, 1e-300, 5e-324, 2.0 ** -459, 2.0 ** -460, 2.0 ** 511,
            2.0 ** 512, big, tiny, 1e308, np.inf, -np.inf, np.nan, 12345.678, 1e-8, 2.0 ** -54]
    x, y = np.meshgrid(vals, vals)
    return x.ravel(), y.ravel()


@pytest.mark.skipif(not _GLIBC, reason="np.hypot is glibc's (>= 2.35, x86-64) only there")
def test_hypot_is_glibc_hypot_bit_for_bit():
    x, y = _edge_pairs()
    rng = np.random.default_rng(0)
    for scale in (1.0, 3e4, 1e-3, 1e300, 1e-300, 1e-160):
        a = rng.normal(0, scale, 20_000)
        b = rng.normal(0, scale, 20_000) * rng.choice([1.0, 1e-8, 1e-17, 0.5], 20_000)
        x, y = np.concatenate([x, a]), np.concatenate([y, b])
    got = np.array([hypot_glibc(u, v) for u, v in zip(x, y)])
    want = np.hypot(x, y)
    same = (got.view(np.int64) == want.view(np.int64)) | (np.isnan(got) & np.isnan(want))
    assert same.all(), (x[~same][:5], y[~same][:5])


@pytest.mark.skipif(not _GLIBC, reason="np.hypot is glibc's (>= 2.35, x86-64) only there")
@pytest.mark.parametrize("decay_m", [6000.0, 250.0, 1e-3])
def test_gravity_exponents_are_numpys(decay_m):
    rng = np.random.default_rng(1)
    sx = rng.normal(0, 8000, 300)
    sy = rng.normal(0, 8000, 300)
    sx[10:20] = sx[0]  # equal x: the fix-up pass
    sy[30:40] = sy[5]
    sx[50], sy[50] = sx[51], sy[51]  # two seeds at one point
    sx[60] = np.nan
    homes = np.array([0, 5, 50, 51, 60, 299, 0])
    out = np.empty((len(homes), len(sx)))
    gravity_exponents(sx, sy, homes, decay_m, out)
    want = -np.hypot(sx[None, :] - sx[homes, None], sy[None, :] - sy[homes, None]) / decay_m
    assert np.array_equal(out.view(np.int64), want.view(np.int64))
    gravity_exponents(sx, sy, homes[:0], decay_m, out[:0])  # no home: nothing to do


@pytest.mark.parametrize("decay_m", [6000.0, 40.0])
def test_gravity_draws_match_numpy_cumsum_and_searchsorted(decay_m):
    rng = np.random.default_rng(2)
    n = 400
    sx, sy = rng.normal(0, 5000, n), rng.normal(0, 5000, n)
    bjobs = rng.pareto(1.5, n) * (rng.random(n) < 0.7)
    bjobs[:3] = 0.0
    homes = np.arange(0, n, 7)
    w = np.empty((len(homes), n))
    gravity_exponents(sx, sy, homes, decay_m, w)
    np.exp(w, out=w)
    ok = gravity_cumsum_rows(w, bjobs)
    cdf, ok_ref = ref_gravity_rows(sx, sy, homes, decay_m, bjobs)
    assert np.array_equal(ok, ok_ref)
    rows = np.flatnonzero(ok)
    m = rng.integers(0, 5, len(rows))
    lo = np.concatenate([[0], np.cumsum(m)[:-1]])
    hi = lo + m
    u = rng.random(int(m.sum()))
    u[:3] = [0.0, np.nextafter(1.0, 0.0), cdf[rows[0], 0]]  # on a cdf value: side="right"
    got = np.full(int(m.sum()), -7, dtype=np.int64)
    gravity_pick(w, rows, lo, hi, u, got)
    want = np.concatenate([np.minimum(np.searchsorted(cdf[r], u[a:b], side="right"), n - 1)
                           for r, a, b in zip(rows, lo, hi)])
    assert np.array_equal(got, want)


def test_gravity_rows_without_jobs_are_not_ok():
    w = np.ones((2, 4))
    assert not gravity_cumsum_rows(w, np.zeros(4)).any()
    assert gravity_cumsum_rows(np.ones((0, 4)), np.ones(4)).shape == (0,)


@pytest.mark.parametrize("keys,n_keys", [
    (np.zeros(0, dtype=np.int64), 3), (np.array([2]), 3), (np.zeros(50, dtype=np.int64), 1),
    (np.random.default_rng(3).integers(0, 40, 5000), 40), (np.array([3, 1, 3, 0, 1, 3], dtype=np.int32), 4),
])
def test_counting_sort_is_a_stable_argsort(keys, n_keys):
    assert np.array_equal(stable_argsort_ids(keys, n_keys), np.argsort(keys, kind="stable"))


@pytest.mark.parametrize("key", [
    np.zeros(0), np.array([1.5]), np.zeros(40), np.array([0.0, -0.0, 0.0, -0.0]),
    np.repeat(np.random.default_rng(4).normal(size=300), 7),
    np.round(np.random.default_rng(5).normal(size=5000), 1), np.random.default_rng(6).normal(size=5000),
    np.array([-np.inf, 1.0, np.inf, 1.0, -np.inf]),
])
def test_descending_sort_is_a_stable_argsort(key):
    assert np.array_equal(stable_argsort_descending(key), np.argsort(-key, kind="stable"))


def test_gathers_match_where_and_building_zone_ids(world):
    b = world.buildings
    idx = np.array([0, -1, world.n_buildings - 1, 7, -1, 3], dtype=np.int32)
    bx, by = b["x_m"].to_numpy(), b["y_m"].to_numpy()
    x, y = building_xy(bx, by, idx)
    assert np.array_equal(x, np.where(idx >= 0, bx[np.maximum(idx, 0)], np.nan), equal_nan=True)
    assert np.array_equal(y, np.where(idx >= 0, by[np.maximum(idx, 0)], np.nan), equal_nan=True)
    got, want = zone_ids(world, idx), world.building_zone_ids(idx)
    for k in want:
        assert got[k].dtype == np.int32 and np.array_equal(got[k], want[k])
    empty = zone_ids(world, np.zeros(0, dtype=np.int32))
    assert all(len(v) == 0 for v in empty.values())
    assert len(building_xy(bx, by, np.zeros(0, dtype=np.int64))[0]) == 0


@pytest.mark.parametrize("keys,n_keys", [
    (np.zeros(0, dtype=np.int64), 4), (np.array([0]), 1), (np.array([5, 5, 0, 5, 2]), 6),
    (np.random.default_rng(7).integers(0, 1000, 20_000), 1000),
])
def test_counting_argsort_offsets_are_searchsorted(keys, n_keys):
    order, start = counting_argsort(keys, n_keys)
    assert np.array_equal(order, np.argsort(keys, kind="stable"))
    assert np.array_equal(start, np.searchsorted(keys[order], np.arange(n_keys + 1)))


def test_grid_index_buckets_are_the_stable_argsort(world):
    xy = world.buildings[["x_m", "y_m"]].to_numpy()
    g = GridIndex(xy)
    x0, y0, cell = g.params
    cid = np.floor((xy[:, 1] - y0) / cell).astype(np.int64) * g.nx + np.floor((xy[:, 0] - x0) / cell).astype(np.int64)
    order = np.argsort(cid, kind="stable")
    assert np.array_equal(g.order, order)
    assert np.array_equal(g.start, np.searchsorted(cid[order], np.arange(g.nx * g.ny + 1)))
    q = GridIndex(xy[:1])
    assert q.query(xy[:3, 0], xy[:3, 1]).tolist() == [0, 0, 0]


def _nearest_brute(xy, x, y):
    """The lowest index among the seeds at the smallest squared distance (the same float
    arithmetic as the kernel)."""
    d = (xy[None, :, 0] - x[:, None]) ** 2 + (xy[None, :, 1] - y[:, None]) ** 2
    return np.argmin(d, axis=1)


@pytest.mark.parametrize("case", ["random", "lattice_ties", "duplicates", "clustered", "one_seed"])
def test_grid_index_query_is_the_brute_force_nearest(case):
    rng = np.random.default_rng(11)
    if case == "random":
        xy = rng.uniform(-500, 500, (700, 2))
    elif case == "lattice_ties":  # queries on cell midpoints and corners: exact ties
        g = np.arange(0, 200, 10.0)
        xy = np.column_stack([np.repeat(g, len(g)), np.tile(g, len(g))])[rng.permutation(len(g) ** 2)]
    elif case == "duplicates":
        base = rng.uniform(0, 100, (150, 2))
        xy = np.concatenate([base, base[rng.integers(0, 150, 150)]])
    elif case == "clustered":  # dense clumps and empty space (many empty cells)
        centres = rng.uniform(-5000, 5000, (6, 2))
        xy = (centres[rng.integers(0, 6, 800)] + rng.normal(0, 20, (800, 2)))
    else:
        xy = np.array([[3.0, 4.0]])
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    span = np.maximum(hi - lo, 1.0)
    q = rng.uniform(lo - 0.3 * span, hi + 0.3 * span, (3000, 2))  # inside and outside the grid
    if case == "lattice_ties":
        h = np.arange(-5, 205, 5.0)
        q = np.concatenate([q, np.column_stack([np.repeat(h, len(h)), np.tile(h, len(h))])])
    q = np.concatenate([q, xy[:50], [[1e7, -1e7]]])  # the seeds themselves, and a far point
    got = GridIndex(xy).query(q[:, 0], q[:, 1])
    assert np.array_equal(got, _nearest_brute(xy, q[:, 0], q[:, 1]))
