"""sim.attacks.panel: unicity and top-N uniqueness against panel size, the fitted decay
model and its extrapolation."""
import numpy as np
import pandas as pd
import pytest

from _gridworld import GridWorld
from sim.attacks import panel as P
from sim.attacks import topn as T
from sim.attacks import unicity as U
from sim.core.errors import ConfigError, InputError
from sim.core.traces import Traces

T0 = 1_700_006_400  # a midnight (UTC)
COLS = ["value", "ci_low", "ci_high", "n"]


def _random_traces(seed, n=400, pings=12, n_x=12, n_y=8, n_t=3):
    """Traces over a small universe of (cell, hour) points: crowding grows with n."""
    rng = np.random.default_rng(seed)
    lens = rng.integers(2, 2 * pings, n)
    dev = np.repeat(np.arange(n), lens)
    m = len(dev)
    df = pd.DataFrame({
        "pseudonym": np.array([f"u{i:04d}" for i in range(n)])[dev],
        "t_s": T0 + rng.integers(0, n_t, m) * 3600 + rng.integers(0, 3600, m),
        "x_m": rng.integers(0, n_x, m) * 500.0 + 250.0,
        "y_m": rng.integers(0, n_y, m) * 500.0 + 250.0,
    })
    return Traces.from_frame(df, crs="EPSG:32631", start_s=T0, n_days=1)


def _measured(t):
    return t[t["kind"] == "measured"].set_index("n_panel")


# ------------------------------------------------------------------ sub-panels
def test_panel_sizes_grid():
    s = P.panel_sizes(20_000)
    assert s[0] == 500 and s[-1] == 20_000 and np.all(np.diff(s) > 0)
    r = s[1:] / s[:-1]
    assert np.allclose(r, r[0], rtol=0.01)  # geometric
    assert r[0] <= 10 ** (1 / 4) + 1e-9
    np.testing.assert_array_equal(P.panel_sizes(300), [300])
    np.testing.assert_array_equal(P.panel_sizes(1000, n_min=100, per_decade=1), [100, 1000])
    with pytest.raises(ConfigError):
        P.panel_sizes(0)


def test_subsets_reproducible_order_independent_and_nested():
    tr = _random_traces(1, n=300)
    perm = np.random.default_rng(0).permutation(tr.n_traces)
    tp = tr.take(perm)
    for nested in (False, True):
        for n in (10, 50, 200):
            a = tr.pseudonym[P.panel_subset(tr, n, 7, nested=nested)]
            b = tp.pseudonym[P.panel_subset(tp, n, 7, nested=nested)]
            assert len(a) == n and len(set(a)) == n
            assert set(a) == set(b)  # depends on pseudonyms, not order
            np.testing.assert_array_equal(a, tr.pseudonym[P.panel_subset(tr, n, 7, nested=nested)])
    s = [set(tr.pseudonym[P.panel_subset(tr, n, 7, nested=True)]) for n in (10, 50, 200)]
    assert s[0] < s[1] < s[2]
    # independent sub-panels (default): a different stream per size, so not nested
    i = [set(tr.pseudonym[P.panel_subset(tr, n, 7)]) for n in (50, 200)]
    assert not i[0] <= i[1]
    assert set(tr.pseudonym[P.panel_subset(tr, 50, 8)]) != i[0]  # the seed matters
    np.testing.assert_array_equal(P.panel_subset(tr, 10_000, 7), np.arange(tr.n_traces))  # all


def test_subsets_skip_traces_without_pings():
    tr = _random_traces(2, n=50)
    keep = np.ones(tr.n_pings, bool)
    keep[tr.offsets[3]:tr.offsets[4]] = False
    tr2 = tr.select_pings(keep, drop_empty=False)
    assert tr2.lengths[3] == 0
    for n in (10, 49, 60):
        idx = P.panel_subset(tr2, n, 1)
        assert 3 not in idx and len(idx) == min(n, 49)
    t = U.unicity_attack(tr2, p_values=[2], v_values_m=[500], h_values_h=[1])
    assert t["n_panel"].iloc[0] == 49


# --------------------------------------------------------------------- unicity
@pytest.mark.parametrize("n_sample", [None, 100])
def test_full_size_equals_plain_unicity_attack(n_sample):
    tr = _random_traces(3, n=400)
    tab = P.unicity_vs_panel_size(tr, sizes=[100, 400], p=[2, 3], v_m=500.0, h_h=1.0, seed=5, n_sample=n_sample)
    plain = U.unicity_attack(tr, p_values=[2, 3], v_values_m=[500.0], h_values_h=[1.0], seed=5, n_sample=n_sample)
    assert list(tab.columns) == P.PANEL_COLUMNS
    full = tab[(tab["kind"] == "measured") & (tab["n_panel"] == 400)].set_index("p")
    assert (plain["n_panel"] == 400).all()
    pd.testing.assert_frame_equal(full[COLS], plain.set_index("p")[COLS], check_dtype=False)
    # the default grid ends at the whole panel too
    tab = P.unicity_vs_panel_size(tr, p=2, seed=5)
    assert tab["n_panel"].max() == 400 and set(tab["kind"]) == {"measured"}


def test_sub_panel_equals_unicity_attack_on_that_sub_panel():
    tr = _random_traces(4, n=300)
    tab = P.unicity_vs_panel_size(tr, sizes=[120], p=2, seed=9, nested=True)
    sub = tr.take(P.panel_subset(tr, 120, 9, nested=True))
    plain = U.unicity_attack(sub, p_values=[2], v_values_m=[500.0], h_values_h=[1.0], seed=9)
    np.testing.assert_allclose(tab[COLS].to_numpy(float), plain[COLS].to_numpy(float))


def test_unicity_falls_with_panel_size_and_is_order_independent():
    # 96 cells x 3 hours and 2-23 pings per trace: collisions must grow with the crowd
    tr = _random_traces(5, n=3000)
    sizes = [50, 150, 500, 1500, 3000]
    tab = P.unicity_vs_panel_size(tr, sizes=sizes, p=2, seed=1, nested=True)
    m = _measured(tab).loc[sizes]
    v = m["value"].to_numpy()
    assert v[0] - v[-1] > 0.3  # a real decline
    assert np.all(v[1:] <= m["ci_high"].to_numpy()[:-1])  # non-increasing within the CI
    perm = np.random.default_rng(1).permutation(tr.n_traces)
    tab2 = P.unicity_vs_panel_size(tr.take(perm), sizes=sizes, p=2, seed=1, nested=True)
    pd.testing.assert_frame_equal(tab, tab2)


def test_nested_sub_panels_keep_per_trace_uniqueness_monotone():
    """With nested sub-panels and a trace's points fixed by its pseudonym, a trace
    unique in a panel is unique in every sub-panel containing it."""
    tr = _random_traces(6, n=800)
    prev = None
    for n in (800, 300, 100):
        sub = tr.take(P.panel_subset(tr, n, 2, nested=True))
        _, per = U.unicity_attack(sub, p_values=[2], v_values_m=[500.0], h_values_h=[1.0], seed=2,
                                  return_per_trace=True)
        cur = per.set_index("pseudonym")["n_matching"]
        if prev is not None:
            assert ((prev.loc[cur.index] == 1) <= (cur == 1)).all()
        prev = cur


# ----------------------------------------------------------------------- model
def test_panel_model_properties():
    n = np.array([1, 2, 10, 100, 1e3, 1e4, 1e5, 1e6])
    for mu, sigma in ((-8.0, 0.0), (-10.0, 1.5), (-12.0, 4.0)):
        u = P.panel_model(n, mu, sigma)
        assert u[0] == pytest.approx(1.0)
        assert np.all(np.diff(u) <= 1e-15)
        nn = np.arange(1, 5000, 50.0)
        uu = P.panel_model(nn, mu, sigma)
        assert np.all(np.diff(uu, 2) >= -1e-12)  # convex in n
    # sigma = 0: every trace has the same pi = logistic(mu)
    pi = 1 / (1 + np.exp(8.0))
    np.testing.assert_allclose(P.panel_model(n, -8.0, 0.0), (1 - pi) ** (n - 1), rtol=1e-9)
    # against direct numerical integration over the normal
    z = np.linspace(-12, 12, 200_001)
    w = np.exp(-z**2 / 2) / np.sqrt(2 * np.pi) * (z[1] - z[0])
    ref = [(np.exp(-(k - 1) * np.log1p(np.exp(-10 + 1.5 * z))) * w).sum() for k in n]
    np.testing.assert_allclose(P.panel_model(n, -10.0, 1.5), ref, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("mu,sigma", [(-10.0, 0.0), (-12.0, 1.0), (-14.0, 2.5)])
def test_fit_recovers_known_parameters(mu, sigma):
    sizes = np.unique(np.round(np.geomspace(100, 3e6, 12))).astype(int)
    m = np.full(len(sizes), 10**7)
    u = P.panel_model(sizes, mu, sigma)
    meas = pd.DataFrame({"metric": "unicity", "p": 4, "n_panel": sizes, "value": np.round(u * m) / m, "n": m})
    fit, extra = P.fit_panel_curve(meas, ["p"], target_sizes=[10**8], n_boot=20, seed=0)
    r = fit.iloc[0]
    assert r["converged"] and r["n_sizes"] == len(sizes)
    assert r["mu"] == pytest.approx(mu, abs=0.05)
    assert r["sigma"] == pytest.approx(sigma, abs=0.05)
    e = extra[extra["metric"] == "unicity"].iloc[0]
    assert e["kind"] == "extrapolated" and e["n_panel"] == 10**8
    assert e["value"] == pytest.approx(P.panel_model([10**8], mu, sigma)[0], abs=2e-3)
    assert e["ci_low"] <= e["value"] <= e["ci_high"]
    lb = extra[extra["metric"] == "unicity_lower_bound"].iloc[0]
    assert lb["value"] <= e["value"] + 1e-9  # the convexity bound lies below the curve


def test_fit_with_realistic_counts_covers_the_truth():
    rng = np.random.default_rng(11)
    mu, sigma = -11.0, 1.5
    sizes = np.array([500, 900, 1600, 2800, 5000, 9000, 16000])
    m = sizes.copy()
    k = rng.binomial(m, P.panel_model(sizes, mu, sigma))
    meas = pd.DataFrame({"metric": "unicity", "p": 4, "n_panel": sizes, "value": k / m, "n": m})
    target = 160_000
    _, extra = P.fit_panel_curve(meas, ["p"], target_sizes=[target], n_boot=200, seed=3)
    e = extra[extra["metric"] == "unicity"].iloc[0]
    truth = P.panel_model([target], mu, sigma)[0]
    assert e["ci_low"] <= truth <= e["ci_high"]
    lb = extra[extra["metric"] == "unicity_lower_bound"].iloc[0]
    assert lb["ci_low"] <= truth


def test_extrapolation_to_the_largest_size_reproduces_the_measurement():
    tr = _random_traces(7, n=2500)
    tab, fit = P.unicity_vs_panel_size(tr, sizes=[100, 200, 400, 800, 1600, 2500], p=2, seed=4,
                                       target_sizes=[2500, 25_000], return_fit=True)
    m = _measured(tab).loc[2500]
    ex = tab[(tab["kind"] == "extrapolated") & (tab["n_panel"] == 2500)].set_index("metric")
    assert m["ci_low"] <= ex.loc["unicity", "value"] <= m["ci_high"]
    assert ex.loc["unicity_lower_bound", "value"] == pytest.approx(m["value"], abs=1e-9)  # through the last point
    far = tab[(tab["kind"] == "extrapolated") & (tab["n_panel"] == 25_000)].set_index("metric")
    assert far.loc["unicity", "value"] < m["value"]
    assert far.loc["unicity_lower_bound", "value"] <= far.loc["unicity", "value"] + 0.02
    assert list(fit.columns) == ["p", "v_m", "h_h"] + P.FIT_COLUMNS and len(fit) == 1
    assert (tab.loc[tab["kind"] == "extrapolated", "n"] == m["n"]).all()
    # the seed fixes the intervals
    again = P.unicity_vs_panel_size(tr, sizes=[100, 200, 400, 800, 1600, 2500], p=2, seed=4,
                                    target_sizes=[2500, 25_000])
    pd.testing.assert_frame_equal(tab, again)


def test_single_size_gives_no_fit():
    tr = _random_traces(8, n=100)
    tab, fit = P.unicity_vs_panel_size(tr, sizes=[100], p=2, target_sizes=[1000], return_fit=True)
    assert np.isnan(fit["mu"].iloc[0])
    ex = tab[tab["kind"] == "extrapolated"]
    assert len(ex) == 2 and ex["value"].isna().all()


# ------------------------------------------------------------------------ top-N
W = GridWorld(6400, 6400, (50, 200, 800, 3200))


def test_topn_full_size_equals_topn_uniqueness_and_falls_with_size():
    tr = _random_traces(9, n=1500, n_x=12, n_y=12)
    levels, ns = ("building", "block"), (1, 2)
    tab = P.topn_vs_panel_size(tr, W, sizes=[100, 400, 1500], levels=levels, n_values=ns, seed=2, nested=True)
    assert list(tab.columns) == P.TOPN_PANEL_COLUMNS
    plain = T.topn_uniqueness(tr, W, levels=levels, n_values=ns, seed=2)
    plain = plain[plain["metric"] == "unique"].set_index(["level", "N"])
    assert (plain["n_panel"] == 1500).all()
    full = tab[tab["n_panel"] == 1500].set_index(["level", "N"])
    pd.testing.assert_frame_equal(full.loc[plain.index, COLS], plain[COLS], check_dtype=False)
    # a sub-panel equals topn_uniqueness on that sub-panel
    sub = tr.take(P.panel_subset(tr, 400, 2, nested=True))
    ps = T.topn_uniqueness(sub, W, levels=levels, n_values=ns, seed=2)
    ps = ps[ps["metric"] == "unique"].set_index(["level", "N"])
    got = tab[tab["n_panel"] == 400].set_index(["level", "N"])
    pd.testing.assert_frame_equal(got.loc[ps.index, COLS], ps[COLS], check_dtype=False)
    b = tab[(tab["level"] == "building") & (tab["N"] == 2)].set_index("n_panel")["value"]
    assert b.loc[100] > b.loc[1500]


def test_topn_extrapolation_rows():
    tr = _random_traces(10, n=800, n_x=12, n_y=12)
    tab, fit = P.topn_vs_panel_size(tr, W, sizes=[100, 200, 400, 800], levels=["building"], n_values=[2],
                                    target_sizes=8000, n_boot=50, return_fit=True)
    ex = tab[tab["kind"] == "extrapolated"]
    assert set(ex["metric"]) == {"unique", "unique_lower_bound"} and (ex["n_panel"] == 8000).all()
    assert list(fit.columns) == ["level", "N", "by"] + P.FIT_COLUMNS


def test_errors():
    tr = _random_traces(11, n=50)
    with pytest.raises(ConfigError, match="exceed"):
        P.unicity_vs_panel_size(tr, sizes=[10, 51])
    with pytest.raises(ConfigError):
        P.unicity_vs_panel_size(tr, sizes=[1])
    with pytest.raises(ConfigError):
        P.unicity_vs_panel_size(tr, sizes=[10, 50], target_sizes=[0])
    with pytest.raises(InputError):
        P.unicity_vs_panel_size(tr.to_frame())
    with pytest.raises(InputError):
        P.topn_vs_panel_size(tr.to_frame(), W)
    with pytest.raises(ConfigError):
        P.topn_vs_panel_size(tr, W, by="dwell")
    with pytest.raises(ConfigError):
        P.topn_vs_panel_size(tr, W, levels=["county"])
    with pytest.raises(ConfigError):
        P.fit_panel_curve(pd.DataFrame({"metric": ["unicity"], "p": [2], "n_panel": [10], "value": [1.0],
                                        "n": [10]}), ["p"], target_sizes=[100], n_boot=1)
