import numpy as np
import pandas as pd
import pytest

from sim.attacks import known_points as K

from sim.attacks.unicity import stream_keys
from sim.core.errors import ConfigError, InputError
from sim.core.rng import TAG_ATTACK, normal, uniform, stable_uid64
from sim.core.traces import Traces

T0 = 1_700_006_400


def _tr(rows):
    df = pd.DataFrame(rows, columns=["pseudonym", "t_s", "x_m", "y_m"])
    return Traces.from_frame(df, crs="EPSG:32631", start_s=T0, n_days=2)


def _random(seed, n=40):
    rng = np.random.default_rng(seed)
    lens = rng.integers(1, 25, n)
    dev = np.repeat(np.arange(n), lens)
    m = len(dev)
    df = pd.DataFrame({"pseudonym": np.array([f"k{i:02d}" for i in range(n)])[dev],
                       "t_s": T0 + rng.integers(0, 6 * 3600, m),
                       "x_m": rng.choice([0.0, 300.0, 600.0], m) + rng.normal(0, 40, m),
                       "y_m": rng.choice([0.0, 300.0], m) + rng.normal(0, 40, m)})
    return Traces.from_frame(df, crs="EPSG:32631", start_s=T0, n_days=1)


def _reference(tr, m, sigma, jitter, radius, tol, seed):
    keys = np.empty(tr.n_traces, dtype=np.uint64)
    stream_keys(np.uint64(seed), np.uint64(TAG_ATTACK), stable_uid64(tr.pseudonym) ^ K.SALT, keys)
    counts = np.zeros((tr.n_traces, m), np.int64)
    hits = np.zeros((tr.n_traces, m), bool)
    off = tr.offsets
    for i in range(tr.n_traces):
        a, n = off[i], off[i + 1] - off[i]
        key = keys[i]
        perm = list(range(n))
        alive = set(range(tr.n_traces))
        for j in range(min(m, n)):
            r = min(j + int(uniform(key, j) * (n - j)), n - 1)
            perm[j], perm[r] = perm[r], perm[j]
            row = a + perm[j]
            ox = tr.x_m[row] + sigma * normal(key, K._C_X + 4 * j)
            oy = tr.y_m[row] + sigma * normal(key, K._C_X + 4 * j + 2)
            ot = tr.t_s[row] + int(np.floor((2.0 * uniform(key, K._C_T + j) - 1.0) * jitter + 0.5))
            near = ((tr.x_m - ox) ** 2 + (tr.y_m - oy) ** 2 <= radius * radius) & (np.abs(tr.t_s - ot) <= tol)
            alive &= set(tr.trace_index()[near].tolist())
            counts[i, j] = len(alive)
            hits[i, j] = i in alive
    return counts, hits


@pytest.mark.parametrize("sigma,jitter,radius,tol", [(0.0, 0.0, 0.0, 0), (30.0, 300.0, 100.0, 400), (80.0, 900.0, 250.0, 600)])
def test_against_reference(sigma, jitter, radius, tol):
    tr = _random(1)
    c, h = K.match_counts(tr, np.arange(tr.n_traces), m=5, sigma_m=sigma, jitter_s=jitter, radius_m=radius,
                          tol_s=tol, seed=4)
    rc, rh = _reference(tr, 5, sigma, jitter, radius, tol, 4)
    np.testing.assert_array_equal(c, rc)
    np.testing.assert_array_equal(h, rh)


def test_hand_built_exact_observations():
    # B holds every ping of A plus one of its own: A can never be singled out, B can
    rows = [("A", T0 + 0, 0.0, 0.0), ("A", T0 + 100, 500.0, 0.0),
            ("B", T0 + 0, 0.0, 0.0), ("B", T0 + 100, 500.0, 0.0), ("B", T0 + 200, 900.0, 900.0),
            ("C", T0 + 5000, 3000.0, 3000.0)]
    tr = _tr(rows)
    t, per = K.known_points_attack(tr, m_values=[1, 2, 3], sigma_values_m=[0.0], jitter_s=0, radius_m=0.0, tol_s=0,
                                   n_targets=None, return_per_target=True)
    per = per.set_index(["pseudonym", "m"])
    assert per.loc[("A", 2), "n_candidates"] == 2 and not per.loc[("A", 2), "success"]
    assert per.loc[("B", 3), "n_candidates"] == 1 and per.loc[("B", 3), "success"]
    assert per.loc[("C", 1), "success"]
    assert ("A", 3) not in per.index  # A has only 2 pings
    s = t[(t.metric == "success")].set_index("m")
    assert s.loc[3, "n"] == 1 and s.loc[3, "n_short"] == 2 and s.loc[3, "value"] == 1.0
    assert (t[t.metric == "target_kept"]["value"] == 1.0).all()  # no noise: the target always survives


def test_thresholds_are_inclusive():
    r, tol = 100.0, 60
    rows = [("T", T0 + 1000, 0.0, 0.0),
            ("on_edge", T0 + 1000 + tol, r, 0.0),           # distance == r, |dt| == tol: a candidate
            ("too_far", T0 + 1000, r + 0.01, 0.0),          # just beyond r
            ("too_late", T0 + 1000 + tol + 1, 0.0, 0.0)]    # just beyond tol
    tr = _tr(rows)
    c, h = K.match_counts(tr, np.array([tr.pseudonym.tolist().index("T")]), m=1, sigma_m=0.0, jitter_s=0.0,
                          radius_m=r, tol_s=tol, seed=0)
    assert c[0, 0] == 2 and h[0, 0]


def test_more_observations_never_more_candidates():
    tr = _random(2, n=60)
    c, h = K.match_counts(tr, np.arange(tr.n_traces), m=6, sigma_m=50.0, jitter_s=600.0, radius_m=200.0, tol_s=700,
                          seed=1)
    ln = np.minimum(tr.lengths, 6)
    for i in range(tr.n_traces):
        k = ln[i]
        assert np.all(np.diff(c[i, :k]) <= 0)
        assert not np.any(h[i, 1:k] & ~h[i, : k - 1])


def test_noise_lowers_success_and_defaults():
    tr = _random(3, n=60)
    t = K.known_points_attack(tr, m_values=[1, 3], sigma_values_m=[0.0, 300.0], n_targets=None)
    s = t[t.metric == "success"].set_index(["m", "sigma_m"])
    assert s.loc[(3, 0.0), "value"] >= s.loc[(1, 0.0), "value"]
    assert (t["radius_m"].unique() == [50.0, 950.0]).all() and (t["tol_s"] == 660).all()
    a = K.known_points_attack(tr, m_values=[2], sigma_values_m=[50.0], n_targets=10, seed=9)
    b = K.known_points_attack(tr.take(np.arange(tr.n_traces)[::-1]), m_values=[2], sigma_values_m=[50.0],
                              n_targets=10, seed=9)
    pd.testing.assert_frame_equal(a, b)


def test_errors():
    tr = _random(0, n=5)
    with pytest.raises(ConfigError):
        K.known_points_attack(tr, m_values=[0])
    with pytest.raises(ConfigError):
        K.known_points_attack(tr, sigma_values_m=[-1])
    with pytest.raises(ConfigError):
        K.known_points_attack(tr, radius_m=-1.0)
    with pytest.raises(InputError):
        K.known_points_attack(tr.to_frame())


@pytest.mark.parametrize("tol_s", [600, 0])
def test_cell_index_of_wanted_keys_equals_the_full_index(tol_s):
    """The known-points index restricted to the cells the targets' first observations
    look up gives, for every one of those keys, exactly the full index's rows (in order),
    and exactly the full index's entries of those keys; no wanted key, no entry."""
    from sim.attacks import known_points as K

    rng = np.random.default_rng(4)
    n = 3000
    off = np.array([0, 700, 1500, 3000])
    tr = Traces(pseudonym=np.array(["a", "b", "c"], dtype=object), offsets=off,
                t_s=np.sort(rng.integers(0, 86400 * 3, n)).astype(np.int64), x_m=rng.uniform(0, 2000, n),
                y_m=rng.uniform(0, 2000, n), accuracy_m=np.full(n, 10, np.float32), crs="EPSG:3857",
                utc_offset_s=0, start_s=0, n_days=3)
    ox, oy, ot, m_eff = K.target_observations(tr, np.array([0, 2]), m=3, sigma_m=50.0,
                                              jitter_s=300.0 if tol_s else 0.0, seed=1)
    origin = K.grid_origin(K.traces_bounds(tr), 150.0, tol_s)
    wanted = K._first_observation_cells(ox, oy, ot, m_eff, origin, 150.0, tol_s)
    fk, fr = K._cell_index(tr, 150.0, tol_s, origin)[:2]
    sk, sr = K._cell_index(tr, 150.0, tol_s, origin, wanted)[:2]
    assert 0 < len(sk) < len(fk)
    for k in wanted:
        np.testing.assert_array_equal(sr[np.searchsorted(sk, k):np.searchsorted(sk, k + 1)],
                                      fr[np.searchsorted(fk, k):np.searchsorted(fk, k + 1)])
    keep = np.isin(fk, wanted)
    np.testing.assert_array_equal(sk, fk[keep])
    np.testing.assert_array_equal(sr, fr[keep])
    ek, er = K._cell_index(tr, 150.0, tol_s, origin, np.zeros(0, dtype=np.int64))[:2]
    assert len(ek) == len(er) == 0
