import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from sim.core import stats
from sim.core.errors import ConfigError, InputError


def test_wilson_matches_textbook_formula():
    k, n, z = 7, 20, sps.norm.ppf(0.975)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    lo, hi = stats.wilson_ci(k, n)
    assert lo == pytest.approx(centre - half, rel=1e-12)
    assert hi == pytest.approx(centre + half, rel=1e-12)


def test_wilson_edges_and_vector():
    lo, hi = stats.wilson_ci(0, 10)
    assert lo == 0.0 and 0 < hi < 0.35
    lo, hi = stats.wilson_ci(10, 10)
    assert hi == 1.0 and 0.65 < lo < 1
    lo, hi = stats.wilson_ci(0, 0)
    assert math.isnan(lo) and math.isnan(hi)
    lo, hi = stats.wilson_ci(np.array([0, 5, 10]), np.array([10, 10, 10]))
    assert lo.shape == (3,) and np.all(lo <= np.array([0, 0.5, 1.0])) and np.all(hi >= [0, 0.5, 1.0])
    # narrower with more data
    assert np.diff(stats.wilson_ci(50, 100))[0] < np.diff(stats.wilson_ci(5, 10))[0]


def test_wilson_bad_input():
    with pytest.raises(InputError):
        stats.wilson_ci(11, 10)
    with pytest.raises(ConfigError):
        stats.wilson_ci(1, 10, alpha=1.5)


def test_wilson_coverage_close_to_nominal():
    rng = np.random.default_rng(1)
    n, p = 60, 0.3
    k = rng.binomial(n, p, size=4000)
    lo, hi = stats.wilson_ci(k, np.full_like(k, n))
    cover = np.mean((lo <= p) & (p <= hi))
    assert 0.92 < cover < 0.98


def test_bootstrap_is_seeded_and_binary_fast_path_agrees():
    v = np.r_[np.ones(30, bool), np.zeros(70, bool)]
    a = stats.bootstrap_ci(v, seed=3, tags=(1,))
    b = stats.bootstrap_ci(v, seed=3, tags=(1,))
    c = stats.bootstrap_ci(v, seed=4, tags=(1,))
    assert a == b and a != c
    assert a[0] == pytest.approx(0.3)
    # the binomial fast path and generic resampling estimate the same interval
    generic = stats.bootstrap_ci(v.astype(float) + 0.0, seed=3, n_boot=4000)  # float -> not binary
    fast = stats.bootstrap_ci(v, seed=3, n_boot=4000)
    assert generic[1] == pytest.approx(fast[1], abs=0.03)
    assert generic[2] == pytest.approx(fast[2], abs=0.03)


def test_bootstrap_median_and_edges():
    v = np.arange(1, 101, dtype=float)
    est, lo, hi = stats.bootstrap_ci(v, statistic="median", seed=0)
    assert est == 50.5 and lo < est < hi
    assert all(math.isnan(x) for x in stats.bootstrap_ci([], seed=0))
    assert stats.bootstrap_ci([5.0], seed=0) == (5.0, 5.0, 5.0)
    with pytest.raises(InputError):
        stats.bootstrap_ci([1.0, np.nan])
    with pytest.raises(ConfigError):
        stats.bootstrap_ci([1.0], statistic="mode")
    with pytest.raises(ConfigError):
        stats.bootstrap_ci([1.0], n_boot=3)


def test_rate_dict():
    r = stats.rate(np.array([1, 1, 0, 0], bool))
    assert r["value"] == 0.5 and r["n"] == 4 and r["ci_low"] < 0.5 < r["ci_high"]
    rb = stats.rate(np.array([1, 1, 0, 0], bool), method="bootstrap", seed=2)
    assert rb["value"] == 0.5 and rb["n"] == 4
    assert math.isnan(stats.rate([])["value"])
    with pytest.raises(ConfigError):
        stats.rate([True], method="exact")


def test_combine_replicates():
    t = pd.DataFrame({
        "level": ["a"] * 3 + ["b"] * 3 + ["c"],
        "replicate": [0, 1, 2, 0, 1, 2, 0],
        "value": [0.1, 0.2, 0.3, 0.5, 0.5, 0.5, 0.9],
        "n": [10] * 7,
    })
    out = stats.combine_replicates(t, "level").set_index("level")
    assert out.loc["a", "value"] == pytest.approx(0.2)
    half = sps.t.ppf(0.975, 2) * 0.1 / math.sqrt(3)
    assert out.loc["a", "ci_low"] == pytest.approx(0.2 - half)
    assert out.loc["a", "n"] == 30 and out.loc["a", "n_replicates"] == 3
    assert out.loc["b", "ci_low"] == pytest.approx(0.5) and out.loc["b", "ci_high"] == pytest.approx(0.5)
    assert math.isnan(out.loc["c", "ci_low"])
    with pytest.raises(InputError):
        stats.combine_replicates(t.drop(columns="replicate"), "level")
    with pytest.raises(InputError):
        stats.combine_replicates(pd.concat([t, t]), "level")


def test_bootstrap_counts_shortcut_matches_index_resampling():
    # the multinomial-over-distinct-values resample has the distribution of index resampling
    rng = np.random.default_rng(0)
    v = rng.integers(0, 6, 300).astype(float)
    est, lo, hi = stats.bootstrap_ci(v, statistic="median", seed=1, n_boot=4000)
    idx = rng.integers(0, len(v), (4000, len(v)))
    ref = np.quantile(np.median(v[idx], axis=1), [0.025, 0.975])
    assert est == np.median(v)
    assert (lo, hi) == tuple(ref)  # medians of small integers: the quantiles coincide exactly
    est, lo, hi = stats.bootstrap_ci(v, statistic="mean", seed=1, n_boot=4000)
    ref = np.quantile(v[idx].mean(axis=1), [0.025, 0.975])
    assert lo == pytest.approx(ref[0], abs=0.03) and hi == pytest.approx(ref[1], abs=0.03)
