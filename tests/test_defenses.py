"""Tests of sim.release.defenses: identity, strength semantics, nestedness, determinism, errors."""
import hashlib
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st
from scipy import stats

import sim.release._kernels as K
import sim.release.defenses as D
from sim.release.defenses import REGISTRY, BrokerContext, apply_defense, apply_defenses, defense_table
from sim.attacks.membership import aggregate_membership_risk
from sim.generate.pseudonyms import pseudonym_hash
from sim.release.aggregate import zone_time_counts
from sim.core.errors import ConfigError, InputError
from sim.core.rng import TAG_DEFENSE, exponential, normal, stream_key, uniform, stable_uid64
from sim.core.constants import DAY_S
from sim.core.traces import Traces

from _defense_world import GridWorld, concat_traces, make_release

SEED = 7
START = 1_699_920_000  # a UTC midnight


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def world():
    return GridWorld()


@pytest.fixture(scope="module")
def rel(world):
    tr, hx, hy, maid = make_release(seed=3, n_traces=30, n_days=3, world=world)
    return tr, BrokerContext(maid, hx, hy, seed=SEED, world=world)


def _traces(pseud, t_s, x_m, y_m, n_days=3, start_s=START, utc_offset_s=0):
    df = pd.DataFrame({"pseudonym": pseud, "t_s": np.asarray(t_s, np.int64),
                       "x_m": np.asarray(x_m, float), "y_m": np.asarray(y_m, float)})
    return Traces.from_frame(df, crs="EPSG:32631", start_s=start_s, n_days=n_days,
                             utc_offset_s=utc_offset_s)


def _cloud(n_traces=20, per=1000, seed=0):
    """Many pings at known positions (for noise statistics)."""
    rng = np.random.default_rng(seed)
    n = n_traces * per
    pseud = np.repeat([f"c{i:03d}" for i in range(n_traces)], per)
    t = START + np.tile(np.arange(per) * 60, n_traces)
    tr = _traces(pseud, t, rng.uniform(0, 3000, n), rng.uniform(0, 3000, n))
    ctx = BrokerContext(np.array([f"m{i}" for i in range(n_traces)], dtype=object),
                        np.zeros(n_traces), np.zeros(n_traces), seed=SEED)
    return tr, ctx


def _uid(s):
    return int.from_bytes(hashlib.sha256(str(s).encode("utf-8")).digest()[:8], "little")


def _key(seed, sub, name):
    return np.uint64(stream_key(np.uint64(stream_key(seed, TAG_DEFENSE, sub)), 0, np.uint64(_uid(name))))


def _same(a: Traces, b: Traces):
    assert list(a.pseudonym) == list(b.pseudonym)
    for f in ("offsets", "t_s", "x_m", "y_m", "accuracy_m"):
        x, y = getattr(a, f), getattr(b, f)
        assert x.dtype == y.dtype, f
        np.testing.assert_array_equal(x, y, err_msg=f)
    assert (a.crs, a.utc_offset_s, a.start_s, a.n_days) == (b.crs, b.utc_offset_s, b.start_s, b.n_days)


NON_IDENTITY = {
    "salt": dict(salt="pepper"),
    "rotate": dict(period_days=1),
    "reset": dict(reset_prob=0.4),
    "grid": dict(cell_m=250.0),
    "zone_centroid": dict(level="block"),
    "time_round": dict(bin_h=2.0),
    "gaussian": dict(sigma_m=80.0),
    "planar_laplace": dict(eps_per_m=2 / 200),
    "subsample": dict(fraction=0.4),
    "daily_cap": dict(max_per_day=4),
    "home_suppression": dict(radius_m=300.0),
    "night_suppression": dict(duration_h=8.0),
    "drop_sparse": dict(min_pings=60),
    "aggregate_k": dict(k=3),
    "aggregate_dp": dict(epsilon=1.0),
}
TRACE_DEFENSES = [n for n, s in REGISTRY.items() if s.output == "traces"]


# ----------------------------------------------------------------------------- registry
def test_registry_declares_every_defense_with_a_valid_identity():
    assert set(NON_IDENTITY) == set(REGISTRY)
    for name, spec in REGISTRY.items():
        assert spec.strength.check(spec.identity, name) == spec.identity or spec.identity is None
        assert spec.is_identity(spec.identity)
        assert not spec.is_identity(NON_IDENTITY[name][spec.strength.name])
    t = defense_table()
    assert list(t["name"]) == list(REGISTRY)
    assert set(t.loc[t.output == "table", "applies_to"]) == {"membership_inference"}


@pytest.mark.parametrize("name", TRACE_DEFENSES)
def test_identity_strength_returns_release_unchanged(name, rel):
    tr, ctx = rel
    spec = REGISTRY[name]
    out, mapping = apply_defense(name, tr, ctx, **{spec.strength.name: spec.identity})
    assert mapping is None
    _same(out, tr)


@pytest.mark.parametrize("name,params", [
    ("gaussian", dict(sigma_m=0.0)), ("planar_laplace", dict(eps_per_m=math.inf)),
    ("subsample", dict(fraction=1.0)), ("home_suppression", dict(radius_m=0.0)),
    ("night_suppression", dict(duration_h=0.0, end_h=6.0)), ("drop_sparse", dict(min_pings=0)),
])
def test_identity_by_formula_not_only_by_shortcut(name, params, rel):
    """The transform itself is the identity at zero strength (bypassing the early return)."""
    tr, ctx = rel
    out, _ = REGISTRY[name].func(tr, ctx, {"name": name}, **params)
    assert out is not tr  # the formula ran (no early return) ...
    _same(out, tr)  # ... and reproduced the input bit for bit (asserts inside)


def test_aggregates_at_identity_are_the_exact_counts(rel, world):
    tr, ctx = rel
    exact = zone_time_counts(tr, world, "tract", 1.0)
    k1, _ = apply_defense("aggregate_k", tr, ctx, k=1)
    pd.testing.assert_frame_equal(k1, exact, check_like=False)
    exact1 = zone_time_counts(tr, world, "tract", 1.0, max_zones_per_bin=1)
    dp, _ = apply_defense("aggregate_dp", tr, ctx, epsilon=math.inf)
    nz = dp[dp["count"] != 0].reset_index(drop=True)
    np.testing.assert_array_equal(nz[["zone_id", "bin", "t_start_s"]], exact1[["zone_id", "bin", "t_start_s"]])
    np.testing.assert_array_equal(nz["count"].to_numpy(), exact1["count"].to_numpy(float))
    assert len(dp) == len(world.zones["tract"]) * dp.attrs["n_bins"]


# ----------------------------------------------------------------------------- errors
def test_unknown_name_lists_the_allowed_ones(rel):
    tr, ctx = rel
    with pytest.raises(ConfigError, match="expected one of.*subsample"):
        apply_defense("subsampel", tr, ctx, fraction=0.5)
    # the name is checked before the inputs
    with pytest.raises(ConfigError):
        apply_defense("nope", object(), object(), fraction=0.5)


@pytest.mark.parametrize("name,params,allowed", [
    ("subsample", dict(fraction=1.5), r"\[0, 1\]"),
    ("subsample", dict(fraction=-0.1), r"\[0, 1\]"),
    ("subsample", dict(fraction=float("nan")), r"\[0, 1\]"),
    ("subsample", dict(fraction=True), r"\[0, 1\]"),
    ("planar_laplace", dict(eps_per_m=0.0), r"\(0, inf\]"),
    ("gaussian", dict(sigma_m=-1.0), r"\[0, inf\)"),
    ("gaussian", dict(sigma_m=math.inf), r"\[0, inf\)"),
    ("rotate", dict(period_days=0), r"integer in \[1, inf\]"),
    ("rotate", dict(period_days=1.5), r"integer in \[1, inf\]"),
    ("daily_cap", dict(max_per_day=0), r"integer in \[1, inf\]"),
    ("zone_centroid", dict(level="county"), "building"),
    ("salt", dict(salt=3), "string"),
    ("night_suppression", dict(duration_h=25.0), r"\[0, 24\]"),
    ("night_suppression", dict(duration_h=8.0, end_h=24.0), r"\[0, 24\)"),
    ("aggregate_dp", dict(epsilon=1.0, mechanism="gauss"), "laplace"),
    ("aggregate_k", dict(k=0), r"\[1, inf\)"),
])
def test_out_of_range_strength_names_allowed_values(name, params, allowed):
    # validation happens before the inputs are even looked at
    with pytest.raises(ConfigError, match=allowed):
        apply_defense(name, None, None, **params)


def test_parameter_and_input_errors(rel, world):
    tr, ctx = rel
    with pytest.raises(ConfigError, match="unknown parameter.*sigma"):
        apply_defense("subsample", tr, ctx, fraction=0.5, sigma=3)
    with pytest.raises(ConfigError, match="needs its strength fraction"):
        apply_defense("subsample", tr, ctx)
    with pytest.raises(InputError, match="ctx describes"):
        apply_defense("subsample", tr, ctx.take([0, 1]), fraction=0.5)
    no_world = BrokerContext(ctx.maid, ctx.home_x_m, ctx.home_y_m, seed=1)
    with pytest.raises(ConfigError, match="needs a world"):
        apply_defense("zone_centroid", tr, no_world, level="block")
    with pytest.raises(ConfigError, match="whole number of seconds"):
        apply_defense("time_round", tr, ctx, bin_h=1e-5)
    with pytest.raises(ConfigError, match="last step"):
        apply_defenses(tr, ctx, [("aggregate_k", dict(k=2)), ("subsample", dict(fraction=0.5))])
    with pytest.raises(InputError, match="equal length"):
        BrokerContext(["a", "b"], [0.0], [0.0], seed=1)
    with pytest.raises(ConfigError, match="seed"):
        BrokerContext(["a"], [0.0], [0.0], seed=-1)


# ----------------------------------------------------------------------------- noise
def test_planar_laplace_mean_displacement_is_2_over_eps():
    tr, ctx = _cloud()
    for r_m in D.LOCATION_GUARD_R_M.values():
        eps = D.location_guard_eps(r_m)
        out, _ = apply_defense("planar_laplace", tr, ctx, eps_per_m=eps)
        d = np.hypot(out.x_m - tr.x_m, out.y_m - tr.y_m)
        se = math.sqrt(2.0) / eps / math.sqrt(len(d))  # sd of Gamma(2, 1/eps) / sqrt(n)
        assert abs(d.mean() - 2.0 / eps) < 5 * se
        assert stats.kstest(d, stats.gamma(2, scale=1 / eps).cdf).pvalue > 1e-3
        ang = np.arctan2(out.y_m - tr.y_m, out.x_m - tr.x_m)
        assert abs(np.cos(ang).mean()) < 5 / math.sqrt(2 * len(d))
        assert abs(np.sin(ang).mean()) < 5 / math.sqrt(2 * len(d))
    assert D.location_guard_eps("high") == pytest.approx(0.001)


def test_gaussian_displacement_matches_rayleigh_mean():
    tr, ctx = _cloud()
    sigma = 50.0
    out, _ = apply_defense("gaussian", tr, ctx, sigma_m=sigma)
    d = np.hypot(out.x_m - tr.x_m, out.y_m - tr.y_m)
    se = sigma * math.sqrt((4 - math.pi) / 2) / math.sqrt(len(d))
    assert abs(d.mean() - sigma * math.sqrt(math.pi / 2)) < 5 * se
    dx = out.x_m - tr.x_m
    assert abs(dx.std() / sigma - 1) < 5 / math.sqrt(2 * len(d))
    assert abs(np.corrcoef(dx, out.y_m - tr.y_m)[0, 1]) < 5 / math.sqrt(len(d))


def test_noise_kernels_match_slow_reference(rel):
    tr, ctx = rel
    g, _ = apply_defense("gaussian", tr, ctx, sigma_m=30.0)
    lp, _ = apply_defense("planar_laplace", tr, ctx, eps_per_m=0.01)
    for i in range(tr.n_traces):
        kg = _key(SEED, K.SUB_GAUSS, tr.pseudonym[i])
        kl = _key(SEED, K.SUB_LAPLACE, tr.pseudonym[i])
        for j, row in enumerate(range(tr.offsets[i], tr.offsets[i + 1])):
            assert g.x_m[row] == tr.x_m[row] + 30.0 * normal(kg, 4 * j)
            assert g.y_m[row] == tr.y_m[row] + 30.0 * normal(kg, 4 * j + 2)
            r = (exponential(kl, 4 * j) + exponential(kl, 4 * j + 1)) / 0.01
            th = 2 * math.pi * uniform(kl, 4 * j + 2)
            assert lp.x_m[row] == pytest.approx(tr.x_m[row] + r * math.cos(th), abs=1e-9)
            assert lp.y_m[row] == pytest.approx(tr.y_m[row] + r * math.sin(th), abs=1e-9)


def test_weaker_noise_uses_the_same_draws(rel):
    tr, ctx = rel
    a, _ = apply_defense("planar_laplace", tr, ctx, eps_per_m=0.01)
    b, _ = apply_defense("planar_laplace", tr, ctx, eps_per_m=0.02)
    np.testing.assert_allclose(b.x_m - tr.x_m, (a.x_m - tr.x_m) / 2, atol=1e-8)
    g1, _ = apply_defense("gaussian", tr, ctx, sigma_m=10.0)
    g2, _ = apply_defense("gaussian", tr, ctx, sigma_m=20.0)
    np.testing.assert_allclose(g2.y_m - tr.y_m, 2 * (g1.y_m - tr.y_m), atol=1e-8)


# ----------------------------------------------------------------------------- coarsening
def test_grid_moves_at_most_half_a_diagonal_to_cell_centres(rel):
    tr, ctx = rel
    for v in (1.0, 37.5, 250.0, 1000.0):
        out, _ = apply_defense("grid", tr, ctx, cell_m=v)
        d = np.hypot(out.x_m - tr.x_m, out.y_m - tr.y_m)
        assert d.max() <= v * math.sqrt(2) / 2 * (1 + 1e-12)
        np.testing.assert_allclose((out.x_m / v - 0.5) % 1.0, 0.0, atol=1e-9)
        again, _ = apply_defense("grid", out, ctx, cell_m=v)
        np.testing.assert_array_equal(again.x_m, out.x_m)


def test_grid_edges_belong_to_the_upper_cell():
    tr = _traces(["a"] * 4, START + np.arange(4), [0.0, 100.0, 99.999, -0.001], [0.0, 200.0, 0.0, 0.0])
    ctx = BrokerContext(["m"], [0.0], [0.0], seed=1)
    out, _ = apply_defense("grid", tr, ctx, cell_m=100.0)
    np.testing.assert_array_equal(out.x_m, [50.0, 150.0, 50.0, -50.0])
    np.testing.assert_array_equal(out.y_m, [50.0, 250.0, 50.0, 50.0])


def test_zone_centroid_matches_reference_and_drops_outside(world):
    ext = world.extent_m
    x = np.array([10.0, 390.0, 401.0, ext - 1, -5.0, ext + 1])
    tr = _traces(["a", "a", "a", "b", "b", "c"], START + np.arange(6), x, x)
    ctx = BrokerContext(["m1", "m2", "m3"], np.zeros(3), np.zeros(3), seed=1, world=world)
    for level in D.LEVELS:
        out, _ = apply_defense("zone_centroid", tr, ctx, level=level)
        assert out.n_pings == 4 and list(out.pseudonym) == ["a", "b"]  # c had only an outside ping
        z = world.locate(x[:4], x[:4], level)
        cx, cy = world.centroid(z, level)
        np.testing.assert_allclose(out.x_m, cx)
        np.testing.assert_allclose(out.y_m, cy)


def test_time_round_is_local_and_order_preserving(rel):
    tr, ctx = rel
    for h in (0.25, 1.0, 3.0, 24.0):
        b = int(h * 3600)
        out, _ = apply_defense("time_round", tr, ctx, bin_h=h)
        assert np.all(out.t_s <= tr.t_s) and np.all(tr.t_s - out.t_s < b)
        assert np.all((out.t_s - tr.start_s) % b == 0)
        np.testing.assert_array_equal(out.x_m, tr.x_m)  # rows not reordered
        out.validate()
    # local time: with UTC+2, a 24 h bin is local midnight, not UTC midnight
    off = 2 * 3600
    start = START - off  # UTC instant of local midnight
    t = np.array([start, start + 1, start + DAY_S - 1, start + DAY_S])
    tl = _traces(["a"] * 4, t, np.zeros(4), np.zeros(4), start_s=start, utc_offset_s=off)
    out, _ = apply_defense("time_round", tl, BrokerContext(["m"], [0.0], [0.0], seed=1), bin_h=24)
    np.testing.assert_array_equal(out.t_s, [start, start, start, start + DAY_S])


# ----------------------------------------------------------------------------- subsampling
def test_subsample_fraction_within_binomial_tolerance():
    tr, ctx = _cloud()
    for f in (0.05, 0.3, 0.9):
        out, _ = apply_defense("subsample", tr, ctx, fraction=f)
        n = tr.n_pings
        assert abs(out.n_pings - f * n) < 5 * math.sqrt(n * f * (1 - f))
    out, _ = apply_defense("subsample", tr, ctx, fraction=0.0)
    assert out.n_pings == 0 and out.n_traces == 0


def test_subsample_kernel_matches_reference_and_is_nested(rel):
    tr, ctx = rel
    masks = {f: D.subsample_mask(tr, SEED, f) for f in (0.1, 0.5, 0.8, 1.0)}
    ref = np.zeros(tr.n_pings, bool)
    for i in range(tr.n_traces):
        k = _key(SEED, K.SUB_SUBSAMPLE, tr.pseudonym[i])
        for j, row in enumerate(range(tr.offsets[i], tr.offsets[i + 1])):
            ref[row] = uniform(k, j) < 0.5
    np.testing.assert_array_equal(masks[0.5], ref)
    assert masks[1.0].all()
    assert np.all(masks[0.1] <= masks[0.5]) and np.all(masks[0.5] <= masks[0.8])


def _day_counts(tr):
    df = pd.DataFrame({"tr": tr.trace_index(), "day": tr.day()})
    return df.groupby(["tr", "day"]).size()


def test_daily_cap_holds_matches_reference_and_is_nested(rel):
    tr, ctx = rel
    before = _day_counts(tr)
    kept = {}
    for cap in (1, 4, 15):
        out, _ = apply_defense("daily_cap", tr, ctx, max_per_day=cap)
        after = pd.DataFrame({"p": np.repeat(out.pseudonym, out.lengths), "day": out.day()}
                             ).groupby(["p", "day"]).size()
        exp = before.clip(upper=cap)
        exp.index = exp.index.set_levels(tr.pseudonym[exp.index.levels[0]], level=0)
        pd.testing.assert_series_equal(after.sort_index(), exp.sort_index(), check_names=False)
        keep = np.empty(tr.n_pings, bool)
        K.cap_kernel(tr.offsets, stable_uid64(tr.pseudonym), K.defense_key(SEED, K.SUB_CAP), tr.day(), cap, keep)
        kept[cap] = keep
    # slow reference for cap 4: per trace-day the 4 smallest draws
    ref = np.zeros(tr.n_pings, bool)
    day = tr.day()
    for i in range(tr.n_traces):
        k = _key(SEED, K.SUB_CAP, tr.pseudonym[i])
        rows = np.arange(tr.offsets[i], tr.offsets[i + 1])
        for d in np.unique(day[rows]):
            r = rows[day[rows] == d]
            u = np.array([uniform(k, int(q - tr.offsets[i])) for q in r])
            ref[r[np.argsort(u, kind="stable")[:4]]] = True
    np.testing.assert_array_equal(kept[4], ref)
    assert np.all(kept[1] <= kept[4]) and np.all(kept[4] <= kept[15])


# ----------------------------------------------------------------------------- suppression
def test_home_suppression_leaves_no_ping_within_radius(rel):
    tr, ctx = rel
    for r in (50.0, 300.0, 2000.0):
        out, _ = apply_defense("home_suppression", tr, ctx, radius_m=r)
        c2 = ctx.follow(tr, out)
        d = np.hypot(out.x_m - np.repeat(c2.home_x_m, out.lengths),
                     out.y_m - np.repeat(c2.home_y_m, out.lengths))
        assert np.all(d >= r)
        d0 = np.hypot(tr.x_m - np.repeat(ctx.home_x_m, tr.lengths), tr.y_m - np.repeat(ctx.home_y_m, tr.lengths))
        assert out.n_pings == int(np.sum(d0 >= r))


def test_home_suppression_radius_is_exclusive_and_nan_home_keeps_all():
    tr = _traces(["a", "a", "a", "b"], START + np.arange(4), [3.0, 2.9, 10.0, 0.0], [4.0, 4.0, 0.0, 0.0])
    ctx = BrokerContext(["m1", "m2"], [0.0, np.nan], [0.0, np.nan], seed=1)
    out, _ = apply_defense("home_suppression", tr, ctx, radius_m=5.0)
    np.testing.assert_array_equal(out.x_m, [3.0, 10.0, 0.0])  # distance exactly 5 is kept


def test_night_suppression_window_edges_in_local_time():
    off = -5 * 3600
    start = START - off
    hours = np.array([21.999, 22.0, 23.5, 24.0, 29.999, 30.0, 35.0, 36.0, 37.0])  # from day 0
    t = start + np.round(hours * 3600).astype(np.int64)
    tr = _traces(["a"] * len(t), t, np.zeros(len(t)), np.zeros(len(t)), start_s=start, utc_offset_s=off)
    ctx = BrokerContext(["m"], [0.0], [0.0], seed=1)
    out, _ = apply_defense("night_suppression", tr, ctx, duration_h=8.0)  # [22, 6)
    kept = [0, 5, 6, 7, 8]
    np.testing.assert_array_equal((out.t_s - start) / 3600, np.round(hours[kept] * 3600) / 3600)
    out, _ = apply_defense("night_suppression", tr, ctx, duration_h=2.0, end_h=13.0)  # [11, 13)
    np.testing.assert_array_equal(out.t_s, np.delete(t, [6, 7]))
    out, _ = apply_defense("night_suppression", tr, ctx, duration_h=24.0)
    assert out.n_pings == 0


def test_drop_sparse_counts_per_maid_inclusive():
    t = START + np.arange(7)
    tr = _traces(["a", "a", "b", "b", "c", "c", "c"], t, np.zeros(7), np.zeros(7))
    ctx = BrokerContext(["m1", "m2", "m1"], np.zeros(3), np.zeros(3), seed=1)  # a and c: same device
    out, _ = apply_defense("drop_sparse", tr, ctx, min_pings=5)
    assert list(out.pseudonym) == ["a", "c"]
    out, _ = apply_defense("drop_sparse", tr, ctx, min_pings=6)
    assert out.n_traces == 0


# ----------------------------------------------------------------------------- pseudonyms
def test_salt_is_documented_sha256(rel):
    tr, ctx = rel
    out, m = apply_defense("salt", tr, ctx, salt="pepper")
    exp = [hashlib.sha256(("pepper" + mm).encode()).hexdigest() for mm in ctx.maid]
    assert list(out.pseudonym) == exp
    assert list(m["source_pseudonym"]) == list(tr.pseudonym) and (m["epoch"] == 0).all()
    np.testing.assert_array_equal(out.t_s, tr.t_s)
    assert D.derive_salt(1) == D.derive_salt(1) != D.derive_salt(2)


def test_rotation_splits_into_epochs_with_mapping(rel):
    tr, ctx = rel
    R = 2
    out, m = apply_defense("rotate", tr, ctx, period_days=R, salt="s")
    out.validate()
    assert out.n_pings == tr.n_pings
    src = pd.Index(tr.pseudonym).get_indexer(m["source_pseudonym"])
    for i in range(out.n_traces):
        day = out.day()[out.offsets[i]:out.offsets[i + 1]]
        e = m["epoch"].iloc[i]
        assert np.all(day // R == e)
        assert (day.min(), day.max()) == (m["first_day"].iloc[i], m["last_day"].iloc[i])
        assert out.pseudonym[i] == hashlib.sha256(f"s{ctx.maid[src[i]]}:{e}".encode()).hexdigest()
    # pings of each source are exactly preserved
    per_src = m.groupby("source_pseudonym")["n_pings"].sum()
    np.testing.assert_array_equal(per_src.reindex(tr.pseudonym).to_numpy(), tr.lengths)
    assert m["n_pings"].sum() == tr.n_pings


def _reset_epochs_reference(tr, ctx, p):
    out = np.zeros(tr.n_pings, np.int64)
    day = tr.day()
    for i in range(tr.n_traces):
        k = _key(SEED, K.SUB_RESET, ctx.maid[i])
        for row in range(tr.offsets[i], tr.offsets[i + 1]):
            out[row] = sum(uniform(k, d) < p for d in range(1, int(day[row]) + 1))
    return out


def test_reset_matches_reference_and_is_nested(rel):
    tr, ctx = rel
    ep = {}
    for p in (0.2, 0.6, 1.0):
        e = np.empty(tr.n_pings, np.int64)
        K.reset_kernel(tr.offsets, stable_uid64(ctx.maid), K.defense_key(SEED, K.SUB_RESET), tr.day(), p, e)
        ep[p] = e
    np.testing.assert_array_equal(ep[0.6], _reset_epochs_reference(tr, ctx, 0.6))
    np.testing.assert_array_equal(ep[1.0], np.maximum(tr.day(), 0))
    # a larger probability refines the partition: every boundary of p=0.2 is one of p=0.6
    same = tr.trace_index()[1:] == tr.trace_index()[:-1]
    b02 = same & (np.diff(ep[0.2]) != 0)
    b06 = same & (np.diff(ep[0.6]) != 0)
    assert np.all(b02 <= b06)
    out, m = apply_defense("reset", tr, ctx, reset_prob=0.6)
    assert out.n_traces == len(m) == len(set(zip(tr.trace_index(), ep[0.6])))


def test_traces_sharing_a_maid_merge_into_one_pseudonym():
    tr = _traces(["a", "a", "b", "b"], START + np.array([0, 100, 50, DAY_S + 5]), [1.0, 2, 3, 4], [0.0] * 4)
    ctx = BrokerContext(["m", "m"], np.zeros(2), np.zeros(2), seed=1)
    out, m = apply_defense("rotate", tr, ctx, period_days=1)
    assert out.n_traces == 2
    np.testing.assert_array_equal(out.x_m, [1.0, 3.0, 2.0, 4.0])  # merged and time-sorted
    assert list(out.pseudonym) == [pseudonym_hash("m", "", 0), pseudonym_hash("m", "", 1)]
    assert list(m["source_pseudonym"]) == ["a", "b"]
    out.validate()


def test_chained_defenses_compose_mapping_and_context(rel):
    tr, ctx = rel
    out, m, c2 = apply_defenses(tr, ctx, [("rotate", dict(period_days=1)),
                                          ("subsample", dict(fraction=0.5)),
                                          ("salt", dict(salt="x"))])
    assert set(m["source_pseudonym"]) <= set(tr.pseudonym)
    assert list(m["pseudonym"]) == list(out.pseudonym)
    src = pd.Index(tr.pseudonym).get_indexer(m["source_pseudonym"])
    np.testing.assert_array_equal(c2.maid, ctx.maid[src])
    np.testing.assert_array_equal(m["n_pings"].to_numpy(), out.lengths)
    # the salt is applied to the MAID of the source device
    assert out.pseudonym[0] == pseudonym_hash(c2.maid[0], "x")


def test_context_from_truth_tables(rel):
    tr, _ = rel
    ps = pd.DataFrame({"pseudonym": tr.pseudonym[::-1], "maid": [f"M{i}" for i in range(tr.n_traces)],
                       "person_id": np.arange(tr.n_traces)[::-1]})
    persons = pd.DataFrame({"person_id": np.arange(tr.n_traces), "home_x_m": np.arange(tr.n_traces) * 1.0,
                            "home_y_m": np.zeros(tr.n_traces)})
    c = BrokerContext.from_truth(tr, ps, persons, seed=3)
    np.testing.assert_array_equal(c.home_x_m, np.arange(tr.n_traces))
    assert c.maid[0] == f"M{tr.n_traces - 1}"
    with pytest.raises(InputError, match="not in the pseudonyms"):
        BrokerContext.from_truth(tr, ps.iloc[1:], persons, seed=3)


# ----------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("name", TRACE_DEFENSES)
def test_deterministic_and_chunk_invariant(name, rel):
    tr, ctx = rel
    p = NON_IDENTITY[name]
    a, ma = apply_defense(name, tr, ctx, **p)
    b, mb = apply_defense(name, tr, ctx, **p)
    _same(a, b)
    h = tr.n_traces // 2
    i1, i2 = np.arange(h), np.arange(h, tr.n_traces)
    p1, m1 = apply_defense(name, tr.take(i1), ctx.take(i1), **p)
    p2, m2 = apply_defense(name, tr.take(i2), ctx.take(i2), **p)
    _same(concat_traces([p1, p2]), a)
    if ma is not None:
        pd.testing.assert_frame_equal(pd.concat([m1, m2], ignore_index=True), ma)


@pytest.mark.parametrize("name", ["subsample", "gaussian", "planar_laplace", "daily_cap", "reset"])
def test_seed_matters_and_trace_order_does_not(name, rel):
    tr, ctx = rel
    p = NON_IDENTITY[name]
    a, _ = apply_defense(name, tr, ctx, **p)
    other = BrokerContext(ctx.maid, ctx.home_x_m, ctx.home_y_m, seed=SEED + 1, world=ctx.world)
    b, _ = apply_defense(name, tr, other, **p)
    assert not (a.n_pings == b.n_pings and np.array_equal(a.x_m, b.x_m)
                and list(a.pseudonym) == list(b.pseudonym))
    rev = np.arange(tr.n_traces)[::-1]
    r, _ = apply_defense(name, tr.take(rev), ctx.take(rev), **p)
    back = pd.Index(r.pseudonym).get_indexer(a.pseudonym)
    _same(r.take(back), a)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=8), st.integers(0, 2**62),
       st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_subsample_nested_and_chunk_invariant_property(lengths, seed, f1, f2):
    n = sum(lengths)
    pseud = np.repeat([f"t{i}" for i in range(len(lengths))], lengths)
    tr = _traces(pseud, START + np.arange(n), np.arange(n, dtype=float), np.zeros(n)) if n else None
    if tr is None:
        return
    lo, hi = min(f1, f2), max(f1, f2)
    m_lo, m_hi = D.subsample_mask(tr, seed, lo), D.subsample_mask(tr, seed, hi)
    assert np.all(m_lo <= m_hi)
    k = tr.n_traces // 2
    parts = [D.subsample_mask(tr.take(np.arange(k)), seed, hi),
             D.subsample_mask(tr.take(np.arange(k, tr.n_traces)), seed, hi)]
    np.testing.assert_array_equal(np.concatenate(parts), m_hi)


# ----------------------------------------------------------------------------- aggregates
def _contrib_reference(tr, world, level, bin_s, n_bins, cap):
    z = world.locate(tr.x_m, tr.y_m, level)
    b = (tr.t_s - tr.start_s) // bin_s
    cells = {}
    for i in range(tr.n_traces):
        rows = range(tr.offsets[i], tr.offsets[i + 1])
        per_bin = {}
        for r in rows:
            if z[r] >= 0 and 0 <= b[r] < n_bins:
                per_bin.setdefault(int(b[r]), {}).setdefault(int(z[r]), 0)
                per_bin[int(b[r])][int(z[r])] += 1
        for bb, zc in per_bin.items():
            ranked = sorted(zc.items(), key=lambda kv: (-kv[1], kv[0]))
            for zz, _ in ranked[: (cap or len(ranked))]:
                cells[(zz, bb)] = cells.get((zz, bb), 0) + 1
    return cells


@pytest.mark.parametrize("cap", [None, 1, 2])
def test_zone_time_counts_match_reference(rel, world, cap):
    tr, _ = rel
    t = zone_time_counts(tr, world, "block", 2.0, max_zones_per_bin=cap)
    ref = _contrib_reference(tr, world, "block", 7200, tr.n_days * 12, cap)
    got = {(int(z), int(b)): int(c) for z, b, c in t[["zone_id", "bin", "count"]].itertuples(index=False)}
    assert got == ref
    assert np.all(t["t_start_s"] == tr.start_s + t["bin"] * 7200)


def test_contribution_ties_go_to_the_lowest_zone(world):
    # two pings in zone of x=150 and two in x=50 within one hour: cap 1 keeps the lower id
    tr = _traces(["a"] * 4, START + np.array([0, 10, 20, 30]), [150.0, 50.0, 150.0, 50.0], [50.0] * 4)
    t = zone_time_counts(tr, world, "building", 1.0, max_zones_per_bin=1)
    assert list(t["zone_id"]) == [0]


def test_k_threshold_leaves_no_cell_below_k(rel, world):
    tr, ctx = rel
    exact = zone_time_counts(tr, world, "block", 1.0).set_index(["zone_id", "bin"])["count"]
    for k in (2, 3, 5):
        t, m = apply_defense("aggregate_k", tr, ctx, k=k, level="block")
        assert m is None and (t["count"] >= k).all()
        got = t.set_index(["zone_id", "bin"])["count"]
        pd.testing.assert_series_equal(got, exact[exact >= k])
        assert t.attrs["no_longer_applies"] == D.TRACE_ATTACKS


def test_dp_noise_scale_mechanisms_and_nestedness(rel, world):
    tr, ctx = rel
    exact = np.zeros(0)
    tabs = {}
    for eps in (0.5, 1.0):
        for mech in ("laplace", "geometric"):
            t, _ = apply_defense("aggregate_dp", tr, ctx, epsilon=eps, mechanism=mech, bin_h=24.0)
            tabs[eps, mech] = t
    base, _ = apply_defense("aggregate_dp", tr, ctx, epsilon=math.inf, bin_h=24.0)
    exact = base["count"].to_numpy()
    t = tabs[1.0, "laplace"]
    delta = t.attrs["sensitivity_l1"]
    assert delta == 3 * 1  # 3 one-day bins, one zone per bin
    noise = t["count"].to_numpy() - exact
    n = len(noise)
    assert abs(np.abs(noise).mean() - delta / 1.0) < 5 * delta / math.sqrt(n)  # E|Lap(b)| = b
    assert abs(noise.mean()) < 5 * math.sqrt(2) * delta / math.sqrt(n)
    # same draws at another epsilon: the noise scales as 1/epsilon
    np.testing.assert_allclose(tabs[0.5, "laplace"]["count"].to_numpy() - exact, 2 * noise, atol=1e-9)
    g = tabs[1.0, "geometric"]["count"]
    assert g.dtype == np.int64
    gn = g.to_numpy() - exact
    a = math.exp(-1.0 / delta)
    assert abs(np.mean(gn != 0) - (1 - (1 - a) / (1 + a))) < 5 * math.sqrt(0.25 / n)
    # chunking/order invariance: reversing the traces gives the same table
    rev = np.arange(tr.n_traces)[::-1]
    r, _ = apply_defense("aggregate_dp", tr.take(rev), ctx.take(rev), epsilon=1.0, bin_h=24.0)
    pd.testing.assert_frame_equal(r, t)


def test_membership_risk_k_threshold_gives_no_protection(rel):
    tr, ctx = rel
    r = aggregate_membership_risk(tr, ctx, 0, "aggregate_k", k=2, level="block").set_index("metric")
    assert r.loc["n_informative_cells", "value"] > 0
    assert r.loc["advantage", "value"] == 1.0
    # a threshold above every cell count hides the target completely
    r = aggregate_membership_risk(tr, ctx, 0, "aggregate_k", k=10**6).set_index("metric")
    assert r.loc["advantage", "value"] == 0.0


def test_membership_risk_under_dp_respects_bound(rel):
    tr, ctx = rel
    r = aggregate_membership_risk(tr, ctx, tr.pseudonym[1], "aggregate_dp", n_trials=4000,
                                  epsilon=0.5, bin_h=24.0).set_index("metric")
    adv, bound = r.loc["advantage", "value"], r.loc["advantage_bound", "value"]
    assert bound == pytest.approx((math.exp(0.5) - 1) / (math.exp(0.5) + 1))
    assert r.loc["advantage", "ci_low"] <= bound
    assert adv > 0  # the attack does learn something at eps = 0.5
    exact = aggregate_membership_risk(tr, ctx, 1, "aggregate_dp", n_trials=10, epsilon=math.inf,
                                      bin_h=24.0).set_index("metric")
    assert exact.loc["advantage", "value"] == 1.0
    with pytest.raises(ConfigError, match="aggregate defense"):
        aggregate_membership_risk(tr, ctx, 0, "subsample", fraction=0.5)
    with pytest.raises(InputError, match="not in the release"):
        aggregate_membership_risk(tr, ctx, "nobody", "aggregate_k", k=2)


# ----------------------------------------------------------------------------- edge cases
def _tiny(world, kind):
    z = np.zeros(0)
    if kind == "empty":
        pseud, off, t, x = [], [0], np.zeros(0, np.int64), z
    elif kind == "one":
        pseud, off, t, x = ["a"], [0, 1], np.array([START + 5]), np.array([120.0])
    else:  # a trace with no ping next to a trace with one
        pseud, off, t, x = ["a", "b"], [0, 0, 1], np.array([START + 5]), np.array([120.0])
    tr = Traces(pseudonym=np.array(pseud, dtype=object), offsets=np.array(off, np.int64),
                t_s=np.asarray(t, np.int64), x_m=np.asarray(x, float), y_m=np.full(len(x), 50.0),
                accuracy_m=np.zeros(len(x), np.float32), crs="EPSG:32631", start_s=START, n_days=2)
    ctx = BrokerContext(np.array([f"m{i}" for i in range(tr.n_traces)], dtype=object),
                        np.zeros(tr.n_traces), np.zeros(tr.n_traces), seed=1, world=world)
    return tr, ctx


@pytest.mark.parametrize("kind", ["empty", "one", "empty_trace"])
@pytest.mark.parametrize("name", list(REGISTRY))
def test_edge_inputs(name, kind, world):
    tr, ctx = _tiny(world, kind)
    out, m = apply_defense(name, tr, ctx, **NON_IDENTITY[name])
    if REGISTRY[name].output == "table":
        assert list(out.columns) == ["zone_id", "bin", "t_start_s", "count"]
        if name == "aggregate_dp":
            assert len(out) == len(world.zones["tract"]) * 48
        else:
            assert len(out) == 0  # one device is below k = 3
        return
    out.validate()
    assert out.n_pings <= tr.n_pings
    if name in ("grid", "gaussian", "planar_laplace", "time_round", "zone_centroid"):
        assert out.n_pings == tr.n_pings and out.n_traces == tr.n_traces
    if m is not None:
        assert len(m) == out.n_traces == (1 if tr.n_pings else 0)
