"""sim.core.rng (counter-based splitmix64 streams) against the pure-Python reference in
tests/naive_generate.py, plus distribution sanity checks and seed validation.

Keys >= 2**63 are passed as np.uint64: numba types a Python int argument as int64.
"""
from __future__ import annotations

import math

import numba
import numpy as np
import pytest

import naive_generate as N
from sim.core import rng as R
from sim.core.errors import ConfigError

U64_EDGES = [0, 1, 2, 2**32 - 1, 2**53, 2**63 - 1, 2**63, 2**64 - 2, 2**64 - 1]


def _keys(n, seed):
    g = np.random.default_rng(seed)
    return [int(v) for v in g.integers(0, 2**64, size=n, dtype=np.uint64)] + U64_EDGES


def _counters(n, seed):
    g = np.random.default_rng(seed)
    small = [int(v) for v in g.integers(0, 1 << 40, size=n)]
    return small + [0, 1, 63, 64, 1 << 20, (3659 << 20) + 1000, 2**53 - 1, 2**53, 2**53 + 1,
                    2**63, 2**64 - 2]


# ------------------------------------------------------------------ vs reference
def test_mix64_matches_reference():
    for z in _keys(3000, 1):
        assert int(R.mix64(np.uint64(z))) == N.mix64(z), z


def test_mix64_is_a_bijection_on_a_sample():
    zs = np.unique(np.random.default_rng(2).integers(0, 2**64, 20_000, dtype=np.uint64))
    out = {int(R.mix64(z)) for z in zs}
    assert len(out) == len(zs)


@pytest.mark.parametrize("as_uint64", [False, True])
def test_stream_key_matches_reference(as_uint64):
    g = np.random.default_rng(3)
    seeds = [int(v) for v in g.integers(0, 2**63, 500)] + [0, 1, 2**63 - 1]
    idx = [int(v) for v in g.integers(0, 2**40, 500)] + [0, 1, 2**40]
    for i, s in enumerate(seeds):
        tag = i % 13
        ix = idx[i % len(idx)]
        if as_uint64:
            got = R.stream_key(np.uint64(s), np.uint64(tag), np.uint64(ix))
        else:  # how kernels call it: int64 seed and device index
            got = R.stream_key(s, tag, ix)
        assert int(got) == N.stream_key(s, tag, ix), (s, tag, ix)


def test_bits_uniform_normal_exponential_match_reference():
    keys = _keys(60, 4)
    ctrs = _counters(60, 5)
    for k in keys:
        kk = np.uint64(k)
        for c in ctrs:
            cc = np.uint64(c)
            assert int(R.bits(kk, cc)) == N.bits(k, c)
            assert R.uniform(kk, cc) == N.uniform(k, c)
            assert R.uniform_open(kk, cc) == N.uniform_open(k, c)
            assert R.exponential(kk, cc) == N.exponential(k, c)
            if c < 2**64 - 1:
                assert R.normal(kk, cc) == N.normal(k, c), (k, c)


def test_int64_counters_give_the_same_draws_as_uint64():
    """Kernels pass counters both as int literals (int64) and as np.uint64."""
    k = np.uint64(N.stream_key(7, 3, 11))
    for c in [0, 1, 5, 1 << 20, 2**40 + 3]:
        assert R.uniform(k, c) == R.uniform(k, np.uint64(c))
        assert R.normal(k, c) == R.normal(k, np.uint64(c))
        assert R.poisson(k, c, 4.5) == R.poisson(k, np.uint64(c), 4.5)


LAMBDAS = [-1.0, 0.0, 1e-9, 0.3, 1.0, 5.0, 12.0, 29.999999, 30.0, 30.000001, 200.0, 1e4, 2e4]


@pytest.mark.parametrize("lam", LAMBDAS)
def test_poisson_matches_reference(lam):
    for k in _keys(40, 6):
        for c in _counters(40, 7)[:45]:
            assert R.poisson(np.uint64(k), np.uint64(c), lam) == N.poisson(k, c, lam), (k, c, lam)


def test_poisson_branch_threshold_is_30_inclusive():
    """lam < 30: inversion of one uniform; lam >= 30: rounded normal approximation."""
    k = N.stream_key(1, 2, 3)
    for c in range(200):
        z = N.normal(k, c)
        assert R.poisson(np.uint64(k), c, 30.0) == max(0, math.floor(30.0 + math.sqrt(30.0) * z + 0.5))
    # just below: the count is the smallest k with CDF(k) >= u
    from scipy.stats import poisson as sp_poisson

    lam = 29.5
    for c in range(200):
        u = N.uniform(k, c)
        got = R.poisson(np.uint64(k), c, lam)
        assert sp_poisson.cdf(got, lam) >= u - 1e-12
        if got > 0:
            assert sp_poisson.cdf(got - 1, lam) < u + 1e-12


def test_poisson_of_non_positive_rate_is_zero():
    k = np.uint64(N.stream_key(9, 9, 9))
    assert all(R.poisson(k, c, lam) == 0 for c in range(50) for lam in (0.0, -3.0))


# ------------------------------------------------------------------ distributions
@numba.njit
def _draws(key, n, what, lam):
    out = np.empty(n)
    for i in range(n):
        if what == 0:
            out[i] = R.uniform(key, np.uint64(2 * i))
        elif what == 1:
            out[i] = R.uniform_open(key, np.uint64(2 * i))
        elif what == 2:
            out[i] = R.normal(key, np.uint64(2 * i))
        elif what == 3:
            out[i] = R.exponential(key, np.uint64(2 * i))
        else:
            out[i] = R.poisson(key, np.uint64(64 * i), lam)
    return out


N_DRAWS = 200_000


def _within(mean, expected, sd, n, z=5.0):
    return abs(mean - expected) <= z * sd / math.sqrt(n)


def test_uniform_range_and_moments():
    key = np.uint64(N.stream_key(42, 1, 0))
    u = _draws(key, N_DRAWS, 0, 0.0)
    assert u.min() >= 0.0 and u.max() < 1.0
    assert _within(u.mean(), 0.5, math.sqrt(1 / 12), N_DRAWS)
    counts = np.bincount((u * 20).astype(int), minlength=20)
    chi2 = ((counts - N_DRAWS / 20) ** 2 / (N_DRAWS / 20)).sum()
    assert chi2 < 60  # 19 dof; p ~ 1e-6
    # lag-1 correlation of consecutive draws
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 5 / math.sqrt(N_DRAWS)


def test_uniform_open_excludes_both_ends():
    key = np.uint64(N.stream_key(42, 1, 1))
    u = _draws(key, N_DRAWS, 1, 0.0)
    assert u.min() > 0.0 and u.max() < 1.0


def test_normal_moments():
    x = _draws(np.uint64(N.stream_key(42, 1, 2)), N_DRAWS, 2, 0.0)
    assert _within(x.mean(), 0.0, 1.0, N_DRAWS)
    assert abs(x.var() - 1.0) < 5 * math.sqrt(2 / N_DRAWS)
    assert abs(np.mean(np.abs(x) < 1.0) - 0.6827) < 0.005


def test_exponential_moments():
    x = _draws(np.uint64(N.stream_key(42, 1, 3)), N_DRAWS, 3, 0.0)
    assert x.min() > 0.0 and np.isfinite(x).all()
    assert _within(x.mean(), 1.0, 1.0, N_DRAWS)


@pytest.mark.parametrize("lam", [0.7, 3.0, 29.0, 30.0, 120.0])
def test_poisson_moments(lam):
    n = 50_000
    x = _draws(np.uint64(N.stream_key(42, 1, 4)), n, 4, lam)
    assert (x >= 0).all() and np.all(x == np.round(x))
    assert _within(x.mean(), lam, math.sqrt(lam), n)
    assert abs(x.var() / lam - 1.0) < 0.05


def test_streams_do_not_collide():
    keys = {N.stream_key(s, t, i) for s in (0, 1, 42) for t in range(1, 13) for i in range(300)}
    assert len(keys) == 3 * 12 * 300
    # numba agrees on a sample of them
    for s, t, i in [(0, 1, 0), (42, 12, 299), (1, 7, 150)]:
        assert int(R.stream_key(s, t, i)) == N.stream_key(s, t, i)


def test_purpose_tags_are_distinct_and_mirrored():
    tags = {n: getattr(R, n) for n in dir(R) if n.startswith("TAG_")}
    assert len(set(tags.values())) == len(tags)
    for n in ("TAG_RATE", "TAG_COUNT", "TAG_TIMES", "TAG_SCHED", "TAG_EPR", "TAG_GPS", "TAG_MAID"):
        assert getattr(N, n) == tags[n]


# ------------------------------------------------------------------ numpy side
def test_seed_sequence_is_reproducible_and_tag_dependent():
    a = R.seed_sequence(5, 8, 1).random(10)
    assert np.array_equal(a, R.seed_sequence(5, 8, 1).random(10))
    assert not np.array_equal(a, R.seed_sequence(5, 8, 2).random(10))
    assert not np.array_equal(a, R.seed_sequence(6, 8, 1).random(10))
    assert not np.array_equal(R.seed_sequence(5, 1, 8).random(10), a)  # tag order matters
    assert np.array_equal(R.seed_sequence(np.int64(5), np.int32(8), 1).random(10), a)


@pytest.mark.parametrize("seed", [0, 1, 2**63 - 1, np.int64(7), np.uint32(3)])
def test_check_seed_accepts(seed):
    assert R.check_seed(seed) == int(seed)


@pytest.mark.parametrize("seed", [-1, 2**63, 1.0, 1.5, "1", None, True, [1]])
def test_check_seed_rejects(seed):
    with pytest.raises(ConfigError, match="seed"):
        R.check_seed(seed)
