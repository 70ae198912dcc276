import numba
import numpy as np
import pandas as pd
import pytest

from sim.attacks import unicity as U
from sim.core.errors import ConfigError, InputError
from sim.core.rng import uniform
from sim.core.traces import Traces

T0 = 1_700_006_400  # a midnight (UTC)


def _traces(rows, start_s=T0):
    df = pd.DataFrame(rows, columns=["pseudonym", "t_s", "x_m", "y_m"])
    return Traces.from_frame(df, crs="EPSG:32631", start_s=start_s, n_days=3)


def _random_traces(seed, n=60, pings=15, area=3000.0):
    rng = np.random.default_rng(seed)
    m = n * pings
    lens = rng.integers(1, 2 * pings, n)
    dev = np.repeat(np.arange(n), lens)
    m = len(dev)
    df = pd.DataFrame({
        "pseudonym": np.array([f"u{i:03d}" for i in range(n)])[dev],
        "t_s": T0 + rng.integers(0, 3 * 86400, m),
        "x_m": rng.choice(np.linspace(0, area, 7), m) + rng.uniform(0, 300, m),
        "y_m": rng.choice(np.linspace(0, area, 5), m),
    })
    return Traces.from_frame(df, crs="EPSG:32631", start_s=T0, n_days=3)


def _ref_counts(traces, v, h, p, seed):
    """Slow reference: same discretisation and draws, sets instead of an index."""
    keys = U.point_keys(traces, v, h)
    pts = [np.unique(keys[traces.offsets[i]:traces.offsets[i + 1]]) for i in range(traces.n_traces)]
    sets = [set(a.tolist()) for a in pts]
    streams = U.trace_streams(traces, np.arange(traces.n_traces), seed)
    out = []
    for i, a in enumerate(pts):
        n = len(a)
        if n < p:
            out.append(0)
            continue
        perm = list(range(n))
        for j in range(p):
            r = min(j + int(uniform(streams[i], j) * (n - j)), n - 1)
            perm[j], perm[r] = perm[r], perm[j]
        chosen = {int(a[q]) for q in perm[:p]}
        out.append(min(2, sum(chosen <= s for s in sets)))
    return np.array(out)


def test_hand_built():
    # points as (cell, hour): A = {c0h0, c1h0, c2h1}; B = {c0h0, c1h0}; C = {c5h2}
    rows = [
        ("A", T0 + 10, 10, 10), ("A", T0 + 20, 510, 10), ("A", T0 + 3700, 1010, 10),
        ("B", T0 + 30, 20, 20), ("B", T0 + 40, 20, 20), ("B", T0 + 50, 600, 400),
        ("C", T0 + 7300, 2600, 10),
    ]
    tr = _traces(rows)
    t, per = U.unicity_attack(tr, p_values=[1, 2, 3], v_values_m=[500], h_values_h=[1], return_per_trace=True)
    per = per.set_index(["pseudonym", "p"])["n_matching"]
    assert per[("A", 3)] == 1          # B lacks A's third point
    assert per[("B", 2)] == 2          # A holds both of B's points
    assert per[("B", 3)] == 0          # B has 2 distinct points: short
    assert per[("C", 1)] == 1
    assert per[("C", 2)] == 0
    row = t[(t.p == 3)].iloc[0]
    assert row["n"] == 1 and row["n_short"] == 2 and row["value"] == 1.0
    row = t[(t.p == 1)].iloc[0]
    assert row["n"] == 3 and row["n_short"] == 0
    assert (t["n_panel"] == 3).all()  # the crowd each trace is compared with


def test_cell_and_bin_boundaries():
    # x = 500 exactly belongs to cell 1 (floor), 499.999 to cell 0; t = start + 3600 is hour bin 1
    rows = [("a", T0 + 3599, 499.999, 0.0), ("b", T0 + 3599, 500.0, 0.0),
            ("c", T0 + 3600, 499.999, 0.0), ("d", T0 + 3600, 500.0, 0.0)]
    tr = _traces(rows)
    keys = U.point_keys(tr, 500, 1)
    assert len(np.unique(keys)) == 4
    _, per = U.unicity_attack(tr, p_values=[1], v_values_m=[500], h_values_h=[1], return_per_trace=True)
    assert (per["n_matching"] == 1).all()
    _, per = U.unicity_attack(tr, p_values=[1], v_values_m=[1000], h_values_h=[2], return_per_trace=True)
    assert (per["n_matching"] == 2).all()  # all four collapse onto one point


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_index_matches_reference(seed):
    tr = _random_traces(seed)
    for v, h in ((500, 1), (1000, 6), (3000, 24)):
        for p in (1, 2, 3, 5):
            _, per = U.unicity_attack(tr, p_values=[p], v_values_m=[v], h_values_h=[h], seed=seed, return_per_trace=True)
            np.testing.assert_array_equal(per["n_matching"].to_numpy(), _ref_counts(tr, v, h, p, seed))


def test_more_points_never_less_unique():
    tr = _random_traces(5, n=80)
    _, per = U.unicity_attack(tr, p_values=[1, 2, 3, 4, 6, 8], v_values_m=[1000], h_values_h=[6], return_per_trace=True)
    wide = per.pivot(index="pseudonym", columns="p", values="n_matching")
    for a, b in zip(wide.columns[:-1], wide.columns[1:]):
        both = (wide[a] > 0) & (wide[b] > 0)
        assert both.sum() > 10
        assert (wide.loc[both, b] <= wide.loc[both, a]).all()
        assert not ((wide.loc[both, a] == 1) & (wide.loc[both, b] != 1)).any()


def test_order_threads_and_sampling_do_not_change_results():
    tr = _random_traces(7, n=70)
    a = U.unicity_attack(tr, p_values=[2, 3], v_values_m=[800], h_values_h=[2], seed=3, return_per_trace=True)[1]
    perm = np.random.default_rng(0).permutation(tr.n_traces)
    b = U.unicity_attack(tr.take(perm), p_values=[2, 3], v_values_m=[800], h_values_h=[2], seed=3, return_per_trace=True)[1]
    key = ["pseudonym", "p"]
    pd.testing.assert_frame_equal(a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True))
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        c = U.unicity_attack(tr, p_values=[2, 3], v_values_m=[800], h_values_h=[2], seed=3, return_per_trace=True)[1]
    finally:
        numba.set_num_threads(old)
    pd.testing.assert_frame_equal(a, c)
    # a subsample: the chosen traces do not depend on order, and their results equal the full run's
    s1 = U.unicity_attack(tr, p_values=[2], v_values_m=[800], h_values_h=[2], seed=3, n_sample=20, return_per_trace=True)[1]
    s2 = U.unicity_attack(tr.take(perm), p_values=[2], v_values_m=[800], h_values_h=[2], seed=3, n_sample=20,
                   return_per_trace=True)[1]
    assert len(s1) == 20 and set(s1.pseudonym) == set(s2.pseudonym)
    t = U.unicity_attack(tr, p_values=[2], v_values_m=[800], h_values_h=[2], seed=3, n_sample=20)
    assert t["n_panel"].iloc[0] == tr.n_traces  # sampling attacks fewer, the crowd stays whole
    full = a[a.p == 2].set_index("pseudonym")["n_matching"]
    np.testing.assert_array_equal(s1.set_index("pseudonym")["n_matching"], full.loc[s1.pseudonym])


def test_seed_changes_draws():
    tr = _random_traces(8, n=60)
    a = U.unicity_attack(tr, p_values=[2], v_values_m=[500], h_values_h=[1], seed=1, return_per_trace=True)[1]
    b = U.unicity_attack(tr, p_values=[2], v_values_m=[500], h_values_h=[1], seed=2, return_per_trace=True)[1]
    assert len(a) == len(b)
    np.testing.assert_array_equal(_ref_counts(tr, 500, 1, 2, 2), b["n_matching"])


def test_empty_and_errors():
    empty = Traces(pseudonym=np.array([], dtype=object), offsets=np.zeros(1, np.int64), t_s=np.zeros(0, np.int64),
                   x_m=np.zeros(0), y_m=np.zeros(0), accuracy_m=np.zeros(0, np.float32), crs="EPSG:32631")
    t = U.unicity_attack(empty, p_values=[1], v_values_m=[100], h_values_h=[1])
    assert t["n"].iloc[0] == 0 and np.isnan(t["value"].iloc[0]) and t["n_panel"].iloc[0] == 0
    tr = _random_traces(0, n=5)
    with pytest.raises(ConfigError, match="p"):
        U.unicity_attack(tr, p_values=[0])
    with pytest.raises(ConfigError):
        U.unicity_attack(tr, p_values=[])
    with pytest.raises(ConfigError, match="v_m"):
        U.unicity_attack(tr, v_values_m=[0])
    with pytest.raises(ConfigError, match="v_m"):
        U.unicity_attack(tr, v_values_m=[-5])
    with pytest.raises(ConfigError, match="h_h"):
        U.unicity_attack(tr, h_values_h=[0])
    with pytest.raises(ConfigError):
        U.unicity_attack(tr, h_values_h=[1e-5])  # not whole seconds
    with pytest.raises(InputError):
        U.unicity_attack(tr.to_frame())


def test_power_law_fit_recovers_exponent():
    rows = []
    for v in (100, 200, 400, 800):
        for h in (1, 2, 4):
            for p in (2, 4):
                rows.append(dict(p=p, v_m=v, h_h=h, metric="unicity", value=0.9 * (v * h) ** (-0.1 * p / 2)))
    rows.append(dict(p=2, v_m=1600, h_h=24, metric="unicity", value=0.0))  # left out of the fit
    fit = U.fit_power_law(pd.DataFrame(rows)).set_index("p")
    assert fit.loc[2, "exponent"] == pytest.approx(-0.1)
    assert fit.loc[4, "exponent"] == pytest.approx(-0.2)
    assert fit.loc[2, "prefactor"] == pytest.approx(0.9)
    assert fit.loc[2, "n_points"] == 12 and fit.loc[2, "r2"] == pytest.approx(1.0)
    one = U.fit_power_law(pd.DataFrame(rows[:1]))
    assert np.isnan(one["exponent"].iloc[0])
    with pytest.raises(ConfigError):
        U.fit_power_law(pd.DataFrame(rows), resolution="x")


def test_bitmap_ranks_are_the_sorted_positions():
    """A wanted key's rank in the bitmap (set bits below it) is its position in the
    sorted wanted keys, across word boundaries and at the first and last bit."""
    rng = np.random.default_rng(3)
    for total in (1, 64, 65, 1000, 5000):
        wanted = np.unique(np.concatenate([rng.integers(0, total, total // 3 + 1), [0, total - 1]]))
        bits = U._key_bits(wanted, (0, 0, 0, 1, 1, total))
        ranks = U._word_ranks(bits)
        got = [ranks[k >> 6] + U._popcount(bits[k >> 6] & ((np.uint64(1) << np.uint64(k & 63)) - np.uint64(1)))
               for k in wanted]
        np.testing.assert_array_equal(got, np.arange(len(wanted)))
        assert U._popcount(np.uint64(2**64 - 1)) == 64 and U._popcount(np.uint64(0)) == 0


@pytest.mark.parametrize("v, h", [(250.0, 1.0), (1000.0, 24.0)])
@pytest.mark.parametrize("bitmap", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_query_index_counts_equal_full_index(seed, bitmap, v, h, monkeypatch):
    """build_query_index keeps only the wanted keys' postings: the same postings as the
    full index for those keys, and the same counts for targets drawn from them (here the
    targets are drawn from another release, so some keys are absent); with the wanted
    keys' bitmap (a key's position from the bitmap's ranks) and without it (a key space
    above KEY_BITS_MAX: a search); at a coarse resolution consecutive pings share keys."""
    if not bitmap:
        monkeypatch.setattr(U, "KEY_BITS_MAX", 0)
    part, other = _random_traces(seed, n=80), _random_traces(seed + 10, n=30)
    origin = U.key_origin((-5, -5, 0), (40, 40, 80))
    draws = U.draw_trace_points(other, np.arange(other.n_traces), [(v, h)], 4, seed)
    n_pts, cells = draws[0]
    keys = U.cell_keys(cells, origin)
    full = U.build_index(part, v, h, origin=origin)
    quick = U.build_query_index(part, v, h, keys, origin=origin)
    for j, k in enumerate(quick.post_keys):
        q = np.searchsorted(full.post_keys, k)
        assert full.post_keys[q] == k
        np.testing.assert_array_equal(quick.post_traces[quick.post_offsets[j]:quick.post_offsets[j + 1]],
                                      full.post_traces[full.post_offsets[q]:full.post_offsets[q + 1]])
    missing = np.setdiff1d(np.intersect1d(keys, full.post_keys), quick.post_keys)
    assert not len(missing)
    for p in (1, 2, 3, 4):
        np.testing.assert_array_equal(U.count_containing(quick, keys, n_pts, p),
                                      U.count_containing(full, keys, n_pts, p))
    # a part with none of the keys, and no keys at all
    none = U.build_query_index(part, v, h, np.zeros(0, dtype=np.int64), origin=origin)
    assert len(none.post_keys) == 0 and not U.count_containing(none, keys, n_pts, 1).any()
