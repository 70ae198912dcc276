"""The ping generator: numba kernels against the slow references in
tests/naive_generate.py, plausibility of daily schedules, determinism (block size,
thread count, Dask backend, seeds), the schema and order of DIR/pings, pseudonyms and
ID rotation, the population tables, and (slow) streaming memory.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import uuid

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import shapely

import naive_generate as N
from sim.generate import _kernels as K
from sim.core.config import Scenario
from sim.generate.engine import (
    PINGS_SCHEMA,
    PROJECT_CHUNK,
    DeviceInputs,
    generate,
    generate_block,
    hour_cdf,
    kernel_params,
    part_records,
    simulate_block,
    synthesize,
    to_latlon_inplace,
)
from sim.generate.pseudonyms import maid_bytes, maids, pseudonym_of, pseudonyms_of
from sim.release.dataset import dataset_digest, read_manifest
from sim.world.model import World

PING_COLUMNS = ["pseudonym", "t_s", "lat_deg", "lon_deg", "accuracy_m"]


@pytest.fixture(scope="module")
def params(small_sim):
    return kernel_params(small_sim.scenario, small_sim.world)


@pytest.fixture(scope="module")
def inputs(small_sim):
    return DeviceInputs.from_tables(small_sim.persons, small_sim.devices)


def _variants(params):
    """Parameter vectors exercising other branches (bursty, heavy, silent, slow, fast)."""
    out = {"default": params}
    p = params.copy()
    p[N.P_MEDIAN_RATE], p[N.P_RATE_SIGMA], p[N.P_SESSION], p[N.P_GAP] = 80.0, 0.3, 1.0, 5.0
    out["heavy"] = p  # lam >= 30: normal branch of poisson
    p = params.copy()
    p[N.P_SILENT], p[N.P_MEDIAN_RATE] = 0.9, 2.0
    out["silent"] = p
    p = params.copy()
    p[N.P_SPEED], p[N.P_OVERHEAD], p[N.P_COARSE_SHARE] = 3.0, 0.0, 1.0
    out["slow_coarse"] = p
    return out


def test_parameter_layout_is_mirrored():
    for name in dir(K):
        if name.startswith("P_") or name.startswith("SCHED_") or name in ("DAY", "MAX_SEG", "MAX_PLACES", "DAY_SHIFT"):
            assert getattr(N, name) == getattr(K, name), name
    assert K.N_PARAMS == len([n for n in dir(K) if n.startswith("P_")]) == 19


# ====================================================================== kernels vs reference
@pytest.mark.parametrize("variant", ["default", "heavy", "silent"])
@pytest.mark.parametrize("seed,g0,weekday0", [(5, 0, 0), (2**63 - 1, 123_456, 4), (0, 7, 6)])
def test_count_pings_matches_reference(params, variant, seed, g0, weekday0):
    p = _variants(params)[variant]
    n_dev, n_days = 25, 9
    got = K.count_pings(seed, g0, n_dev, n_days, weekday0, p)
    ref = [sum(N.device_day_counts(seed, g0 + i, n_days, weekday0, p)) for i in range(n_dev)]
    assert got.dtype == np.int64
    assert got.tolist() == ref
    # the per-day worker too, called directly
    kc = np.uint64(N.stream_key(seed, N.TAG_COUNT, g0))
    rate, ps = N.device_rate(seed, g0, p)
    assert K.device_rate(seed, g0, p) == (rate, ps)
    for d in range(n_days):
        we = (weekday0 + d) % 7 >= 5
        assert K.day_count(kc, d, rate, ps, p[N.P_WEEKEND_RATE], we) == N.day_count(int(kc), d, rate, ps,
                                                                                  p[N.P_WEEKEND_RATE], we)


def test_count_pings_of_no_device_is_empty(params):
    assert K.count_pings(5, 0, 0, 7, 0, params).shape == (0,)


@pytest.mark.parametrize("variant", ["default", "heavy"])
@pytest.mark.parametrize("n", [0, 1, 2, 3, 17, 250, 3000])
@pytest.mark.parametrize("day", [0, 6, 3659])
def test_ping_times_matches_reference(params, variant, n, day):
    p = _variants(params)[variant]
    cdf = hour_cdf()
    kt = N.stream_key(11, N.TAG_TIMES, n + day)
    out = np.full(n + 5, -7, dtype=np.int64)
    K.ping_times(out, np.uint64(kt), day, n, cdf, p)
    assert out[:n].tolist() == N.ping_times(kt, day, n, cdf, p)
    assert (out[n:] == -7).all()  # nothing written past n
    if n:
        assert out[0] >= 0 and out[n - 1] <= 86399
        assert (np.diff(out[:n]) > 0).all()


@pytest.mark.parametrize("n", [1, 2, 500, 5000, 20_000])
def test_ping_times_day_end_bump(params, n):
    """All sessions in the last hour with long gaps: many times clip to 86399, the
    strictly-increasing bump overflows the day and is pushed back below midnight."""
    cdf = np.ones(24)
    cdf[:23] = 0.0
    p = params.copy()
    p[N.P_SESSION], p[N.P_GAP] = 1000.0, 3600.0
    kt = N.stream_key(3, N.TAG_TIMES, n)
    out = np.empty(n, dtype=np.int64)
    K.ping_times(out, np.uint64(kt), 2, n, cdf, p)
    ref = N.ping_times(kt, 2, n, cdf, p)
    assert out.tolist() == ref
    assert out[-1] == 86399 and out[0] >= 0
    assert (np.diff(out) > 0).all()
    if n >= 500:  # the back-shift really happened: a contiguous run ends at midnight
        assert out[-1] - out[-(n // 10)] == n // 10 - 1


def _run_days(ks, ke, sched, hx, hy, wx, wy, params, days, weekday0):
    """Kernel build_day over consecutive days (EPR memory carried), with the reference
    alongside; returns lists of (kernel segments, reference segments, weekday)."""
    seg = np.empty((K.MAX_SEG, 6))
    px, py, vis = np.empty(K.MAX_PLACES), np.empty(K.MAX_PLACES), np.zeros(K.MAX_PLACES)
    n_places, places, out = 0, [], []
    for d in range(days):
        wd = (weekday0 + d) % 7
        n, n_places = K.build_day(seg, np.uint64(ks), np.uint64(ke), d, wd, sched, hx, hy, wx, wy, px, py, vis,
                                  n_places, params)
        ref = N.build_day(ks, ke, d, wd, sched, hx, hy, wx, wy, places, params)
        assert n_places == len(places)
        np.testing.assert_array_equal(np.column_stack([px[:n_places], py[:n_places], vis[:n_places]]),
                                      np.array(places).reshape(-1, 3))
        out.append((seg[:n].copy(), N.segs_array(ref), wd))
    return out


SCHED_CASES = [
    ("day_worker", N.SCHED_DAY, 3000.0, -2500.0),
    ("night_worker", N.SCHED_NIGHT, -4000.0, 1000.0),
    ("no_work", N.SCHED_NONE, np.nan, np.nan),
    ("day_sched_without_work", N.SCHED_DAY, np.nan, np.nan),
    ("night_sched_without_work", N.SCHED_NIGHT, np.nan, np.nan),
]


@pytest.mark.parametrize("variant", ["default", "slow_coarse"])
@pytest.mark.parametrize("case", SCHED_CASES, ids=lambda c: c[0])
def test_build_day_matches_reference(params, variant, case):
    _, sched, wx, wy = case
    p = _variants(params)[variant]
    for dev in range(25):
        ks, ke = N.stream_key(5, N.TAG_SCHED, dev), N.stream_key(5, N.TAG_EPR, dev)
        for got, ref, wd in _run_days(ks, ke, sched, 120.0, -80.0, wx, wy, p, days=14, weekday0=dev % 7):
            np.testing.assert_array_equal(got, ref, err_msg=f"device {dev} weekday {wd}")


@pytest.mark.parametrize("n_places", [0, 1, 2, 7, 63, 64])
def test_epr_place_matches_reference(params, n_places):
    """Direct calls, including an empty memory (must explore) and a full one (64
    places: must return)."""
    rng = np.random.default_rng(n_places)
    for trial in range(200):
        px, py = np.empty(K.MAX_PLACES), np.empty(K.MAX_PLACES)
        vis = np.zeros(K.MAX_PLACES)
        px[:n_places], py[:n_places] = rng.uniform(-9000, 9000, (2, n_places))
        vis[:n_places] = rng.integers(1, 20, n_places)
        places = [[px[j], py[j], vis[j]] for j in range(n_places)]
        ke = N.stream_key(2, N.TAG_EPR, trial)
        c = (trial % 5) << 20
        ax, ay = rng.uniform(-14000, 14000, 2)
        j, S = K._epr_place(np.uint64(ke), np.uint64(c), ax, ay, px, py, vis, n_places, params)
        P = N.DayPlan(places)
        assert j == P.epr(ke, c, ax, ay, params)
        assert S == len(P.places)
        np.testing.assert_array_equal(np.column_stack([px[:S], py[:S], vis[:S]]), np.array(P.places).reshape(-1, 3))
        if n_places == 0:
            assert (j, S) == (0, 1)
        if n_places == K.MAX_PLACES:
            assert S == K.MAX_PLACES
        if S > n_places:  # explored: inside the metro (clipped at 0.98 radius)
            assert np.hypot(px[j], py[j]) <= 0.98 * params[N.P_RADIUS] * (1 + 1e-12)


def test_trip_threshold_and_segment_cap(params):
    ks = np.uint64(N.stream_key(1, N.TAG_SCHED, 1))
    assert K._trip_s(ks, 0, 0.0, 0.0, 0.999, 0.0, params) == 0.0  # under 1 m: no trip
    d = K._trip_s(ks, 0, 0.0, 0.0, 1.0, 0.0, params)  # exactly 1 m: a trip (with overhead)
    assert d == N.trip_s(int(ks), 0, 0.0, 0.0, 1.0, 0.0, params) > 60.0
    seg = np.zeros((K.MAX_SEG, 6))
    assert K._add_seg(seg, K.MAX_SEG, 0.0, 1.0, 0, 0, 0, 0) == K.MAX_SEG  # full: dropped
    assert K._add_seg(seg, 3, 5.0, 5.0, 0, 0, 0, 0) == 3  # empty interval: dropped
    assert K._add_seg(seg, 3, 5.0, 6.0, 1, 2, 3, 4) == 4 and seg[3].tolist() == [5, 6, 1, 2, 3, 4]


def test_fill_pings_matches_reference(small_sim, params, inputs):
    scn = small_sim.scenario
    cdf = hour_cdf()
    # the first 30 consecutive devices that hold every schedule type (day, night, none)
    sched = inputs.slice(0, len(inputs.sched)).sched
    g0 = next(i for i in range(len(sched) - 30) if set(sched[i:i + 30].tolist()) == {0, 1, 2})
    g1 = g0 + 30
    sub = inputs.slice(g0, g1)
    wd0 = 3
    counts = K.count_pings(scn.seed, g0, g1 - g0, scn.pings.days, wd0, params)
    off = np.zeros(g1 - g0 + 1, dtype=np.int64)
    np.cumsum(counts, out=off[1:])
    n = int(off[-1])
    t, x, y, a = np.empty(n, np.int64), np.empty(n), np.empty(n), np.empty(n, np.float32)
    written = K.fill_pings(scn.seed, g0, off, scn.pings.days, wd0, sub.sched, sub.hx, sub.hy, sub.wx, sub.wy,
                           params, cdf, t, x, y, a)
    assert np.array_equal(written, counts)
    assert set(sub.sched.tolist()) == {0, 1, 2}  # all schedule types covered
    for i in range(g1 - g0):
        T, X, Y, A = N.fill_device(scn.seed, g0 + i, scn.pings.days, wd0, int(sub.sched[i]), sub.hx[i], sub.hy[i],
                                   sub.wx[i], sub.wy[i], params, cdf)
        s = slice(off[i], off[i + 1])
        assert t[s].tolist() == T
        assert np.array_equal(x[s], X) and np.array_equal(y[s], Y)
        assert np.array_equal(a[s], np.asarray(A, dtype=np.float32))


def test_epochs_and_maids_match_reference():
    for rot, reset in [(0, 0.0), (3, 0.0), (0, 0.3), (2, 0.5), (1, 0.0)]:
        ep = K.epochs_by_day(9, 100, 12, 10, rot, reset)
        for i in range(12):
            assert ep[i].tolist() == N.epochs_by_day(9, 100 + i, 10, rot, reset)
    dev = np.array([0, 5, 5, 2**40])
    epo = np.array([0, 0, 3, 1])
    got = maids(9, dev, epo)
    assert got == [N.maid(9, int(d), int(e)) for d, e in zip(dev, epo)]
    for m in got:
        u = uuid.UUID(m)
        assert u.version == 4 and u.variant == uuid.RFC_4122 and str(u) == m


# ====================================================================== publishing a block
def _random_block(rng, n_dev, n_days, start_s, rotation, reset):
    """Per-device time-sorted pings (some devices without any) and their epochs."""
    counts = rng.integers(0, 40, n_dev) * (rng.random(n_dev) > 0.2)
    offsets = np.zeros(n_dev + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    t = np.concatenate([np.sort(rng.integers(0, n_days * 86400, c)) for c in counts] or [np.zeros(0)])
    t = (t.astype(np.int64) + start_s).astype(np.int64)
    ep = K.epochs_by_day(3, 7, n_dev, n_days, rotation, reset)
    pair_off = np.zeros(n_dev + 1, dtype=np.int64)
    np.cumsum(ep[:, -1].astype(np.int64) + 1, out=pair_off[1:])
    return offsets, t, ep, pair_off


@pytest.mark.parametrize("rotation,reset", [(0, 0.0), (3, 0.0), (0, 0.3), (1, 0.0), (2, 0.5)])
@pytest.mark.parametrize("n_dev", [0, 1, 57])
def test_pair_counts_matches_reference(rotation, reset, n_dev):
    rng = np.random.default_rng(n_dev + 10 * rotation)
    start_s = 1_700_000_000
    offsets, t, ep, pair_off = _random_block(rng, n_dev, 9, start_s, rotation, reset)
    got = K.pair_counts(offsets, t, start_s, ep, pair_off)
    assert got.tolist() == N.pair_counts(offsets, t, start_s, ep.tolist(), pair_off)
    assert got.sum() == len(t)


@pytest.mark.parametrize("seed", range(4))
def test_gather_runs_matches_reference(seed):
    rng = np.random.default_rng(seed)
    n_src = int(rng.integers(0, 300))
    t = rng.integers(0, 10**9, n_src)
    x, y = rng.normal(0, 5000, (2, n_src))
    acc = rng.random(n_src).astype(np.float32)
    n_runs = int(rng.integers(0, 30))
    starts = rng.integers(0, max(n_src, 1), n_runs)
    lens = np.minimum(rng.integers(0, 20, n_runs) * (rng.random(n_runs) > 0.2), n_src - starts)
    lens = np.maximum(lens, 0)
    dst = np.zeros(n_runs + 1, dtype=np.int64)
    np.cumsum(lens, out=dst[1:])
    n = int(dst[-1])
    out = [np.full(n, -1, np.int64), np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan, np.float32),
           np.full(n, -1, np.int32)]
    K.gather_runs(starts.astype(np.int64), dst, t, x, y, acc, *out)
    (rt, rx, ry, ra), code = N.gather_runs(starts, dst, [t, x, y, acc])
    assert out[0].tolist() == rt and out[4].tolist() == code
    assert np.array_equal(out[1], rx) and np.array_equal(out[2], ry)
    assert np.array_equal(out[3], np.asarray(ra, dtype=np.float32))


class _UtmWorld:
    """The projection of a world in a real CRS (pyproj path of the projection)."""

    @staticmethod
    def to_latlon(x, y):
        from sim.world.crs import project_to_latlon

        return project_to_latlon(x, y, "EPSG:32616")


@pytest.mark.parametrize("n", [0, 1, PROJECT_CHUNK - 1, PROJECT_CHUNK, PROJECT_CHUNK + 1, 2 * PROJECT_CHUNK + 7])
def test_chunked_projection_is_the_projection(small_sim, n):
    rng = np.random.default_rng(n)
    for world, (cx, cy) in ((small_sim.world, (0.0, 0.0)), (_UtmWorld(), (440_000.0, 4_630_000.0))):
        x, y = cx + rng.normal(0, 9000, n), cy + rng.normal(0, 9000, n)
        if n:
            x[0] = np.nan  # NaN stays NaN
        lat, lon = world.to_latlon(x.copy(), y.copy())
        got_lat, got_lon = to_latlon_inplace(world, x, y)
        assert got_lat is x and got_lon is y  # written over the inputs
        assert np.array_equal(got_lat, lat, equal_nan=True) and np.array_equal(got_lon, lon, equal_nan=True)
        assert np.array_equal(got_lat.view(np.int64), lat.view(np.int64))  # bit for bit


def test_vectorised_maids_and_pseudonyms_match_reference():
    rng = np.random.default_rng(0)
    dev = np.concatenate([[0, 5, 2**40, 2**63 - 1], rng.integers(0, 2**62, 300)])
    epo = np.concatenate([[0, 3, 1, 7], rng.integers(0, 60, 300)])
    ascii_ = maid_bytes(9, dev, epo)
    want = [N.maid(9, int(d), int(e)) for d, e in zip(dev, epo)]
    assert ascii_.dtype == np.dtype("S36") and [m.decode() for m in ascii_] == want
    assert maids(9, dev, epo) == want
    for salt in ("", "pepper", "sel-épicé"):
        assert pseudonyms_of(ascii_, salt) == [pseudonym_of(m, salt) for m in want]
    assert maids(9, [], []) == [] and pseudonyms_of(maid_bytes(9, [], [])) == []


@pytest.mark.parametrize("rotation,reset", [(0, 0.0), (2, 0.0), (0, 0.3)])
def test_generate_block_publishes_like_the_reference(small_sim, params, inputs, rotation, reset):
    """The whole block against a plain Python sort: every ping under the pseudonym of its
    (device, epoch of its day), rows by (pseudonym, t_s), positions projected to degrees,
    and the pseudonym history (day span and pings of every pair)."""
    scn = small_sim.scenario.replace(ids__rotation_days=rotation, ids__daily_reset_prob=reset, ids__salt="s")
    g0, g1 = 40, 95
    offsets, t, x, y, acc = simulate_block(scn, inputs, g0, g1, params)
    lat, lon = small_sim.world.to_latlon(x, y)
    ep = [N.epochs_by_day(scn.seed, g, scn.pings.days, rotation, reset) for g in range(g0, g1)]
    dev = np.repeat(np.arange(g1 - g0), np.diff(offsets))
    day = (t - scn.start_s) // 86400
    name = {}
    for i in range(g1 - g0):
        for e in sorted(set(ep[i])):
            name[i, e] = pseudonym_of(N.maid(scn.seed, g0 + i, e), "s")
    who = [name[int(i), ep[int(i)][int(d)]] for i, d in zip(dev, day)]
    want = N.published_rows(who, t, lat.tolist(), lon.tolist(), acc.tolist())
    blk = generate_block(scn, small_sim.world, inputs, g0, g1, params)
    tab = blk.pings
    assert tab.schema == PINGS_SCHEMA
    assert tab.column("pseudonym").cast(pa.string()).to_pylist() == want[0]
    assert tab.column("t_s").to_pylist() == want[1]
    assert np.array_equal(tab.column("lat_deg").to_numpy(), np.array(want[2]))
    assert np.array_equal(tab.column("lon_deg").to_numpy(), np.array(want[3]))
    assert np.array_equal(tab.column("accuracy_m").to_numpy(), np.array(want[4], dtype=np.float32))
    h = blk.history
    assert h["device_idx"].tolist() == [g0 + i for i in range(g1 - g0) for _ in sorted(set(ep[i]))]
    for row in h.itertuples():
        i = row.device_idx - g0
        days_e = [d for d in range(scn.pings.days) if ep[i][d] == row.epoch]
        assert (row.first_day, row.last_day) == (days_e[0], days_e[-1])
        assert row.pseudonym == name[i, row.epoch] and row.maid == N.maid(scn.seed, row.device_idx, row.epoch)
        assert row.n_pings == sum(1 for w in who if w == row.pseudonym)
    assert np.array_equal(blk.device_pings, np.diff(offsets))


def test_manifest_part_records_match_a_rescan(small_dataset):
    """generate records every part as it writes it; the records equal reading the files."""
    folder, man = small_dataset
    assert man["parts"] == part_records(folder / "pings")
    assert [p["file"] for p in man["parts"]] == sorted(p["file"] for p in man["parts"])


# ====================================================================== schedule plausibility
def _all_days(small_sim, params, inputs, days=14, weekday0=0):
    out = []
    for i in range(len(inputs.sched)):
        ks, ke = N.stream_key(7, N.TAG_SCHED, i), N.stream_key(7, N.TAG_EPR, i)
        seg = np.empty((K.MAX_SEG, 6))
        px, py, vis = np.empty(K.MAX_PLACES), np.empty(K.MAX_PLACES), np.zeros(K.MAX_PLACES)
        npl = 0
        for d in range(days):
            wd = (weekday0 + d) % 7
            n, npl = K.build_day(seg, np.uint64(ks), np.uint64(ke), d, wd, inputs.sched[i], inputs.hx[i],
                                 inputs.hy[i], inputs.wx[i], inputs.wy[i], px, py, vis, npl, params)
            out.append((i, wd, seg[:n].copy()))
    return out


def test_build_day_segments_are_contiguous_and_cover_the_day(small_sim, params, inputs):
    for i, wd, s in _all_days(small_sim, params, inputs):
        assert 1 <= len(s) < K.MAX_SEG
        assert s[0, 0] == 0.0
        assert (s[:, 1] > s[:, 0]).all()
        assert np.array_equal(s[1:, 0], s[:-1, 1])  # no gaps, no overlaps
        assert (s[:, 0] < 86400).all() and s[-1, 1] >= 86400.0
        jump = np.hypot(s[1:, 2] - s[:-1, 4], s[1:, 3] - s[:-1, 5])
        assert (jump < 1.0).all()  # positions continuous (trips < 1 m are instant)


def test_build_day_starts_at_home_or_at_work_after_a_night_shift(small_sim, params, inputs):
    seen = set()
    for i, wd, s in _all_days(small_sim, params, inputs):
        home = np.array([inputs.hx[i], inputs.hy[i]])
        work = np.array([inputs.wx[i], inputs.wy[i]])
        night_shift_ended = inputs.sched[i] == N.SCHED_NIGHT and np.isfinite(work).all() and 1 <= wd <= 5
        start = work if night_shift_ended else home
        assert np.array_equal(s[0, 2:4], start), (i, wd)
        seen.add(bool(night_shift_ended))
    assert seen == {True, False}


def test_days_join_up_across_midnight(small_sim, params, inputs):
    """Chained as the generator chains them (each day starts where the previous one
    ended), nobody teleports at midnight: someone still out travels home first."""
    travelled_home = 0
    for i in range(len(inputs.sched)):
        ks, ke = N.stream_key(7, N.TAG_SCHED, i), N.stream_key(7, N.TAG_EPR, i)
        seg = np.empty((K.MAX_SEG, 6))
        px, py, vis = np.empty(K.MAX_PLACES), np.empty(K.MAX_PLACES), np.zeros(K.MAX_PLACES)
        npl, ex, ey = 0, np.nan, np.nan
        home = (inputs.hx[i], inputs.hy[i])
        for d in range(14):
            n, npl = K.build_day(seg, np.uint64(ks), np.uint64(ke), d, d % 7, inputs.sched[i], inputs.hx[i],
                                 inputs.hy[i], inputs.wx[i], inputs.wy[i], px, py, vis, npl, params, ex, ey)
            night_shift_ended = inputs.sched[i] == N.SCHED_NIGHT and np.isfinite(inputs.wx[i]) and 1 <= d % 7 <= 5
            if d > 0 and not night_shift_ended:
                assert np.hypot(seg[0, 2] - ex, seg[0, 3] - ey) < 1.0, (i, d)
                if np.hypot(ex - home[0], ey - home[1]) > 1.0:
                    travelled_home += 1
                    assert np.hypot(seg[0, 4] - home[0], seg[0, 5] - home[1]) < 1.0  # first move: home
            ex, ey = seg[n - 1, 4], seg[n - 1, 5]
    assert travelled_home > 0  # the case occurs in this sample


def test_day_workers_go_to_work_on_weekdays_only(small_sim, params, inputs):
    at_work = {True: [], False: []}
    for i, wd, s in _all_days(small_sim, params, inputs):
        if inputs.sched[i] != N.SCHED_DAY or not np.isfinite(inputs.wx[i]):
            continue
        stays = s[(s[:, 2] == s[:, 4]) & (s[:, 3] == s[:, 5])]
        hit = ((stays[:, 2] == inputs.wx[i]) & (stays[:, 3] == inputs.wy[i])).any()
        if inputs.wx[i] != inputs.hx[i]:
            at_work[wd < 5].append(hit)
    assert len(at_work[True]) > 500
    assert 0.85 < np.mean(at_work[True]) <= 0.99  # 5 % absent
    assert not any(at_work[False])


def test_trips_move_at_the_configured_speed(small_sim, params, inputs):
    for speed, overhead in [(None, None), (40.0, 2.0)]:
        p = params.copy()
        if speed:
            p[N.P_SPEED], p[N.P_OVERHEAD] = speed, overhead
        logr = []
        for i, wd, s in _all_days(small_sim, p, inputs, days=7):
            d = np.hypot(s[:, 4] - s[:, 2], s[:, 5] - s[:, 3])
            trip = d >= 1.0
            base = p[N.P_OVERHEAD] * 60.0 + d[trip] / (p[N.P_SPEED] / 3.6)
            logr.extend(np.log((s[trip, 1] - s[trip, 0]) / base))
        logr = np.asarray(logr)
        assert len(logr) > 1000
        assert abs(logr.mean()) < 0.02  # duration = door-to-door time * lognormal(0, 0.15)
        assert 0.13 < logr.std() < 0.17


# ====================================================================== determinism
def _gen(scn, path, **kw):
    generate(scn, path, progress=False, **kw)
    return dataset_digest(path)


def test_digest_does_not_depend_on_block_size(small_scenario, small_dataset, tmp_path):
    ref = dataset_digest(small_dataset[0])
    assert len(list((small_dataset[0] / "pings").glob("part-*.parquet"))) == 4
    for b in (1000, 7):
        assert _gen(small_scenario.replace(block_devices=b), tmp_path / f"b{b}") == ref, b
    assert len(list((tmp_path / "b7" / "pings").glob("part-*.parquet"))) == 43
    # truth tables too
    for f in ("truth/persons.parquet", "truth/devices.parquet", "truth/pseudonyms.parquet", "register.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(small_dataset[0] / f), pd.read_parquet(tmp_path / "b7" / f))


def test_generate_block_is_a_pure_function_of_the_device_range(small_sim, params, inputs):
    scn, w = small_sim.scenario, small_sim.world
    whole = generate_block(scn, w, inputs, 0, 60, params)
    parts = [generate_block(scn, w, inputs, a, b, params) for a, b in [(0, 1), (1, 25), (25, 60)]]
    assert np.array_equal(whole.device_pings, np.concatenate([p.device_pings for p in parts]))
    as_df = lambda tab: tab.to_pandas().astype({"pseudonym": str})  # noqa: E731
    t_whole = as_df(whole.pings).sort_values(["pseudonym", "t_s"])
    t_parts = pd.concat([as_df(p.pings) for p in parts]).sort_values(["pseudonym", "t_s"])
    pd.testing.assert_frame_equal(t_whole.reset_index(drop=True), t_parts.reset_index(drop=True))
    h = pd.concat([p.history for p in parts], ignore_index=True)
    pd.testing.assert_frame_equal(whole.history, h)


_CHILD = textwrap.dedent("""
    import json, sys
    import numba
    from sim.core.config import Scenario
    from sim.generate import generate
    from sim.release.dataset import dataset_digest
    scn = Scenario.from_dict(json.loads(sys.argv[1]))
    generate(scn, sys.argv[2], progress=False)
    print(json.dumps({"digest": dataset_digest(sys.argv[2]), "threads": numba.get_num_threads()}))
""")


def test_digest_does_not_depend_on_thread_count(small_scenario, small_dataset, tmp_path):
    ref = dataset_digest(small_dataset[0])
    for threads in (1, 2):
        env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
        r = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(small_scenario.to_dict()),
                            str(tmp_path / f"t{threads}")], env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout.strip().splitlines()[-1])
        assert out["threads"] == threads
        assert out["digest"] == ref, threads


def test_local_cluster_opens_no_dashboard_and_listens_on_loopback_only():
    pytest.importorskip("dask.distributed")
    import psutil
    from dask.distributed import Client

    from sim.generate.engine import local_cluster

    def listening():
        return {(c.laddr.ip, c.laddr.port) for c in psutil.net_connections(kind="tcp") if c.status == "LISTEN"}

    before = listening()
    cluster = local_cluster(1)
    client = Client(cluster)
    try:
        new = listening() - before
    finally:
        client.close()
        cluster.close()
    assert new, "the cluster should listen somewhere"
    assert all(ip == "127.0.0.1" for ip, _ in new), new
    assert 8787 not in {port for _, port in new}


def test_dask_backend_gives_the_same_digest(small_scenario, small_dataset, tmp_path):
    pytest.importorskip("dask.distributed")
    man = generate(small_scenario, tmp_path / "dask", progress=False, backend="dask", n_workers=2)
    assert man["backend"] == "dask"
    assert dataset_digest(tmp_path / "dask") == dataset_digest(small_dataset[0])
    a = pd.read_parquet(small_dataset[0] / "truth" / "pseudonyms.parquet")
    b = pd.read_parquet(tmp_path / "dask" / "truth" / "pseudonyms.parquet")
    pd.testing.assert_frame_equal(a, b)


def test_unknown_backend_is_rejected(small_scenario, tmp_path):
    from sim.core.errors import ConfigError

    with pytest.raises(ConfigError, match="backend"):
        generate(small_scenario, tmp_path, progress=False, backend="spark")


def test_seed_changes_everything_and_repeats_exactly(small_scenario, small_dataset, tmp_path):
    ref = dataset_digest(small_dataset[0])
    assert _gen(small_scenario, tmp_path / "again") == ref
    m1, m2 = read_manifest(small_dataset[0]), read_manifest(tmp_path / "again")
    assert m1["config_hash"] == m2["config_hash"] and m1["rows"] == m2["rows"]
    other = _gen(small_scenario.replace(seed=6), tmp_path / "s6")
    assert other != ref
    p5 = pd.read_parquet(small_dataset[0] / "truth" / "pseudonyms.parquet")
    p6 = pd.read_parquet(tmp_path / "s6" / "truth" / "pseudonyms.parquet")
    assert not set(p5["maid"]) & set(p6["maid"])


# ====================================================================== DIR/pings schema and order
def _parts(folder):
    parts = sorted((folder / "pings").glob("part-*.parquet"))
    assert parts
    return parts


def test_pings_schema(small_dataset):
    for p in _parts(small_dataset[0]):
        sch = pq.read_schema(p)
        assert sch.names == PING_COLUMNS
        ps = sch.field("pseudonym").type
        assert pa.types.is_string(ps) or (pa.types.is_dictionary(ps) and pa.types.is_string(ps.value_type))
        assert sch.field("t_s").type == pa.int64()
        assert sch.field("lat_deg").type == pa.float64()
        assert sch.field("lon_deg").type == pa.float64()
        assert sch.field("accuracy_m").type == pa.float32()


def test_pings_sorted_and_each_pseudonym_in_one_part(small_dataset):
    seen = {}
    for k, p in enumerate(_parts(small_dataset[0])):
        t = pq.read_table(p)
        name = np.asarray(t.column("pseudonym").to_pylist(), dtype=object)
        ts = t.column("t_s").to_numpy()
        assert t.num_rows > 0
        same = name[1:] == name[:-1]
        assert (name[1:] >= name[:-1]).all()  # pseudonyms ascending
        assert (np.diff(ts)[same] > 0).all()  # strictly increasing t_s per pseudonym
        for u in np.unique(name):
            assert u not in seen, f"{u} in parts {seen.get(u)} and {k}"
            seen[u] = k
    assert len(seen) == small_dataset[1]["rows"]["pseudonyms"]


def test_pings_hold_no_internal_ids(small_dataset):
    folder = small_dataset[0]
    t = pq.read_table(folder / "pings")
    assert t.column_names == PING_COLUMNS
    names = set(pc.unique(t.column("pseudonym").cast(pa.string())).to_pylist())
    assert all(len(s) == 64 and set(s) <= set("0123456789abcdef") for s in names)
    hist = pd.read_parquet(folder / "truth" / "pseudonyms.parquet")
    persons = pd.read_parquet(folder / "truth" / "persons.parquet")
    internal = set(hist["maid"]) | {str(v) for v in hist["device_idx"]} | {str(v) for v in persons["person_id"]}
    assert not names & internal
    # no value of the release encodes the device order: pseudonyms are unrelated to device_idx
    order = hist.sort_values("pseudonym")["device_idx"].to_numpy()
    assert not (np.diff(order) >= 0).all()


def test_pings_content_matches_truth(small_dataset, small_scenario):
    folder, man = small_dataset
    t = pq.read_table(folder / "pings")
    hist = pd.read_parquet(folder / "truth" / "pseudonyms.parquet")
    devices = pd.read_parquet(folder / "truth" / "devices.parquet")
    # pseudonym = sha256(maid)
    assert (hist["pseudonym"] == [hashlib.sha256(m.encode()).hexdigest() for m in hist["maid"]]).all()
    counts = pd.Series(t.column("pseudonym").cast(pa.string()).to_pylist()).value_counts()
    h = hist.set_index("pseudonym")
    assert set(counts.index) == set(h.index[h["n_pings"] > 0])
    assert (h.loc[counts.index, "n_pings"].to_numpy() == counts.to_numpy()).all()
    # devices: first MAID, ping totals
    first = hist[hist["epoch"] == 0].set_index("device_idx")["maid"]
    assert (devices["maid"].to_numpy() == first.loc[devices["device_idx"]].to_numpy()).all()
    assert devices["maid"].is_unique
    assert int(devices["n_pings"].sum()) == t.num_rows == man["rows"]["pings"]
    # times inside the window, accuracies inside the documented clamp
    ts = t.column("t_s").to_numpy()
    assert ts.min() >= small_scenario.start_s
    assert ts.max() < small_scenario.start_s + 86400 * small_scenario.pings.days
    acc = t.column("accuracy_m").to_numpy()
    assert acc.min() >= 2.0 and acc.max() <= 5000.0


def test_pings_lie_in_the_world(small_dataset):
    folder = small_dataset[0]
    t = pq.read_table(folder / "pings")
    w = World.load(folder / "world")
    lat, lon = t.column("lat_deg").to_numpy(), t.column("lon_deg").to_numpy()
    assert np.isfinite(lat).all() and np.isfinite(lon).all()
    assert (np.abs(lat) <= 90).all() and (np.abs(lon) <= 180).all()
    x, y = w.from_latlon(lat, lon)
    d = shapely.distance(w.boundary, shapely.points(x, y))
    sd = t.column("accuracy_m").to_numpy() / 1.515
    assert (d <= 6 * sd + 1.0).all()  # outside only by GPS error
    assert (d == 0).mean() > 0.99


def test_manifest_rows_match_files(small_dataset):
    folder, man = small_dataset
    assert read_manifest(folder) == json.loads(json.dumps(man, default=str))
    rows = man["rows"]
    assert rows["pings"] == sum(pq.ParquetFile(p).metadata.num_rows for p in _parts(folder))
    assert rows["devices"] == len(pd.read_parquet(folder / "truth" / "devices.parquet"))
    assert rows["persons"] == len(pd.read_parquet(folder / "truth" / "persons.parquet"))
    assert rows["register"] == len(pd.read_parquet(folder / "register.parquet"))
    names = pc.unique(pq.read_table(folder / "pings", columns=["pseudonym"]).column(0).cast(pa.string()))
    assert rows["pseudonyms"] == len(names)
    assert man["seed"] == 5 and man["n_days"] == 7
    assert Scenario.from_dict(man["scenario"]).config_hash() == man["config_hash"]
    assert not list(folder.glob(".staging-*")) and not list(folder.glob(".old-*"))


def test_truth_and_register_follow_the_contracts(small_dataset):
    folder = small_dataset[0]
    persons = pd.read_parquet(folder / "truth" / "persons.parquet")
    need = ["person_id", "household_id", "home_building_id", "home_x_m", "home_y_m", "home_block_id",
            "home_tract_id", "home_district_id", "work_building_id", "work_x_m", "work_y_m", "work_block_id",
            "work_tract_id", "work_district_id", "schedule"]
    assert set(need) <= set(persons.columns)
    assert set(["device_idx", "person_id", "maid", "pings_per_day"]) <= set(
        pd.read_parquet(folder / "truth" / "devices.parquet").columns)
    assert set(["pseudonym", "device_idx", "person_id", "epoch", "maid", "first_day", "last_day"]) <= set(
        pd.read_parquet(folder / "truth" / "pseudonyms.parquet").columns)
    reg = pd.read_parquet(folder / "register.parquet")
    assert set(["person_id", "name", "home_building_id", "home_x_m", "home_y_m", "home_block_id",
                "home_tract_id", "home_district_id", "work_building_id", "work_x_m", "work_y_m"]) <= set(reg.columns)


def test_salted_pseudonyms(tmp_path):
    scn = Scenario().replace(n_devices=30, world__residents=300, pings__days=2, seed=8, ids__salt="pepper")
    generate(scn, tmp_path / "salt", progress=False)
    hist = pd.read_parquet(tmp_path / "salt" / "truth" / "pseudonyms.parquet")
    want = [hashlib.sha256(("pepper" + m).encode()).hexdigest() for m in hist["maid"]]
    assert (hist["pseudonym"] == want).all()
    assert all(pseudonym_of(m) != p for m, p in zip(hist["maid"], hist["pseudonym"]))
    names = set(pq.read_table(tmp_path / "salt" / "pings").column("pseudonym").cast(pa.string()).to_pylist())
    assert names == set(hist.loc[hist["n_pings"] > 0, "pseudonym"])


@pytest.mark.parametrize("rotation,reset", [(3, 0.0), (0, 0.25)])
def test_rotation_and_resets_give_new_pseudonyms(tmp_path, rotation, reset):
    days = 7
    scn = Scenario().replace(n_devices=40, world__residents=400, pings__days=days, seed=4,
                             ids__rotation_days=rotation, ids__daily_reset_prob=reset)
    generate(scn, tmp_path / "rot", progress=False)
    hist = pd.read_parquet(tmp_path / "rot" / "truth" / "pseudonyms.parquet")
    assert hist["pseudonym"].is_unique and hist["maid"].is_unique
    assert (hist["pseudonym"] == [hashlib.sha256(m.encode()).hexdigest() for m in hist["maid"]]).all()
    for dev, h in hist.groupby("device_idx"):
        h = h.sort_values("epoch")
        assert h["epoch"].tolist() == list(range(len(h)))
        # epochs tile the window: consecutive, non-overlapping day spans
        assert h["first_day"].iloc[0] == 0 and h["last_day"].iloc[-1] == days - 1
        assert (h["first_day"].to_numpy()[1:] == h["last_day"].to_numpy()[:-1] + 1).all()
        if rotation:
            starts = list(range(0, days, rotation))
            assert h["first_day"].tolist() == starts
            assert h["last_day"].tolist() == [min(s + rotation, days) - 1 for s in starts]
    if reset:
        assert hist.groupby("device_idx").size().max() > 1
    # every ping falls on a day of its pseudonym's epoch
    t = pq.read_table(tmp_path / "rot" / "pings").to_pandas()
    day = (t["t_s"] - scn.start_s) // 86400
    h = hist.set_index("pseudonym")
    fd = h.loc[t["pseudonym"].astype(str), "first_day"].to_numpy()
    ld = h.loc[t["pseudonym"].astype(str), "last_day"].to_numpy()
    assert ((day >= fd) & (day <= ld)).all()


def test_a_release_without_pings(tmp_path):
    from sim.api import load

    scn = Scenario().replace(n_devices=3, world__residents=100, pings__days=1, pings__median_pings_per_day=0.01,
                             pings__rate_sigma=0.0, pings__silent_day_prob=0.99, seed=1)
    man = generate(scn, tmp_path / "empty", progress=False)
    assert man["rows"]["pings"] == 0 and man["rows"]["pseudonyms"] == 0 and man["rows"]["devices"] == 3
    assert pq.read_schema(_parts(tmp_path / "empty")[0]).names == PING_COLUMNS
    s = load(tmp_path / "empty")
    assert s.release.n_pings == 0 and s.release.n_traces == 0
    assert len(s.devices) == 3 and (s.devices["n_pings"] == 0).all()


# ====================================================================== population
def test_population_tables(small_sim):
    scn, w = small_sim.scenario, small_sim.world
    p = small_sim.persons
    b = w.buildings
    assert len(p) == scn.residents and p["person_id"].tolist() == list(range(len(p)))
    # household members share a home, homes are residential buildings
    assert (p.groupby("household_id")["home_building_id"].nunique() == 1).all()
    assert (b["residents"].to_numpy()[p["home_building_id"]] > 0).all()
    np.testing.assert_array_equal(p["home_x_m"], b["x_m"].to_numpy()[p["home_building_id"]])
    for lvl in ("block", "tract", "district"):
        np.testing.assert_array_equal(p[f"home_{lvl}_id"], b[f"{lvl}_id"].to_numpy()[p["home_building_id"]])
    # work only for the employed (day/night), at job buildings
    emp = p["schedule"].astype(str).isin(["day", "night"]).to_numpy()
    has = p["work_building_id"].to_numpy() >= 0
    assert not (has & ~emp).any()
    assert has[emp].mean() > 0.95
    assert (b["jobs"].to_numpy()[p.loc[has, "work_building_id"]] > 0).all()
    assert p.loc[~has, ["work_x_m", "work_y_m"]].isna().all().all()
    assert (p.loc[~has, ["work_block_id", "work_tract_id", "work_district_id"]] == -1).all().all()
    # employment_rate is the rate of the working ages (16-64); nobody under 16 works
    age = p["age"].to_numpy()
    wa = (age >= 16) & (age <= 64)
    er = scn.population.employment_rate
    assert abs(emp[wa].mean() - er) < 5 * np.sqrt(er * (1 - er) / wa.sum())
    assert not emp[age < 16].any()
    # devices: distinct persons, dense index
    d = small_sim.devices
    assert d["device_idx"].tolist() == list(range(len(d))) and d["person_id"].is_unique
    # register: coverage (of the adults it may list) and wrong homes at the configured rates
    reg = small_sim.register
    rv = scn.register.resolved()
    cov, n = rv["coverage"], int((age >= 18).sum())
    assert abs(len(reg) / n - cov) < 5 * np.sqrt(cov * (1 - cov) / n)
    truth_home = p.set_index("person_id").loc[reg["person_id"], "home_building_id"].to_numpy()
    wrong = (reg["home_building_id"].to_numpy() != truth_home).mean()
    assert wrong <= rv["error_rate"] + 5 * np.sqrt(rv["error_rate"] / len(reg)) + 0.01
    listed_work = reg["work_building_id"].to_numpy() >= 0
    truth_work = p.set_index("person_id").loc[reg["person_id"], "work_building_id"].to_numpy()
    assert (reg["work_building_id"].to_numpy()[listed_work] == truth_work[listed_work]).all()


def test_commute_distance_follows_decay(tmp_path):
    """Shorter gravity decay scale -> shorter home-work distances."""
    near = synthesize(Scenario().replace(n_devices=10, world__residents=3000, population__commute_decay_km=1.0))
    far = synthesize(Scenario().replace(n_devices=10, world__residents=3000, population__commute_decay_km=30.0))

    def med(p):
        d = np.hypot(p["home_x_m"] - p["work_x_m"], p["home_y_m"] - p["work_y_m"])
        return float(np.nanmedian(d))

    assert med(near.persons) < 0.7 * med(far.persons)


def test_in_memory_simulation_equals_the_generated_release(small_sim, small_dataset):
    from sim.api import load

    s2 = load(small_dataset[0])
    a, b = small_sim.release, s2.release
    assert np.array_equal(a.pseudonym, b.pseudonym)
    assert np.array_equal(a.offsets, b.offsets) and np.array_equal(a.t_s, b.t_s)
    np.testing.assert_allclose(a.x_m, b.x_m, atol=1e-6)
    np.testing.assert_allclose(a.y_m, b.y_m, atol=1e-6)
    assert np.array_equal(a.accuracy_m, b.accuracy_m)
    assert (a.start_s, a.n_days, a.utc_offset_s) == (b.start_s, b.n_days, b.utc_offset_s)


# ====================================================================== streaming memory
_MEM_CHILD = textwrap.dedent("""
    import sys
    from sim.core.config import Scenario
    from sim.generate import generate
    n, b, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    scn = Scenario().replace(n_devices=n, block_devices=b, world__residents=80_000, pings__days=14, seed=1)
    generate(scn, out, progress=False)
""")


def _peak_rss_mb(n, block, out):
    """Peak resident memory (MB) of a child process generating n devices, sampled with
    psutil every 10 ms."""
    import time

    psutil = pytest.importorskip("psutil")
    proc = subprocess.Popen([sys.executable, "-c", _MEM_CHILD, str(n), str(block), str(out)],
                            stderr=subprocess.PIPE, text=True)
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, ps.memory_info().rss)
        except psutil.NoSuchProcess:  # pragma: no cover
            break
        time.sleep(0.01)
    assert proc.returncode == 0, proc.stderr.read()
    return peak / 2**20


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_devices(tmp_path):
    small = _peak_rss_mb(2_000, 1_000, tmp_path / "a")
    big = _peak_rss_mb(8_000, 1_000, tmp_path / "b")
    unblocked = _peak_rss_mb(8_000, 8_000, tmp_path / "c")
    print(f"peak RSS: 2k devices {small:.0f} MB, 8k devices {big:.0f} MB, 8k in one block {unblocked:.0f} MB")
    assert big / small < 1.5
    # the measurement is sensitive enough: one 8k-device block (~1.6M pings) costs visibly more
    assert unblocked > big + 40
