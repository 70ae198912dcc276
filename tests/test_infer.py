"""Tests of sim.infer: the numba path against slow references, edge cases, errors.

References (in this file, deliberately naive):
* ``ref_dbscan`` — O(n^2) DBSCAN with the documented border rule;
* ``ref_infer_trace`` — home/work rules written with Python sets and sorts;
* scikit-learn ``DBSCAN`` per pseudonym for the core-point partition.
"""
from __future__ import annotations

import math
from collections import defaultdict

import numba
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.base import clone
from sklearn.cluster import DBSCAN
from sklearn.exceptions import NotFittedError

from sim.core.errors import ConfigError, CRSError, InputError
from sim.infer import INFERRED_COLUMNS, PLACE_COLUMNS, HomeWorkInference, InferenceParams, home_work_from_labels, infer_home_work, infer_prefixes, place_table
from sim.infer import _kernels as K
from sim.core.traces import Traces

MONDAY = 1704067200  # 2024-01-01 00:00 UTC was a Monday
CRS = "EPSG:32633"
H = 3600


# ============================================================================ synthetic data
def make_traces(n=24, days=14, seed=0, rate=(3, 30), utc_offset_s=0, noise_m=8.0,
                bad_share=0.05, origin=(400000.0, 5000000.0)):
    """Pseudonyms with a home (nights), a workplace (weekday daytime), errands and noise.

    Kinds cycle day, day, day, night-shift, no-work.  Returns (Traces, truth DataFrame).
    """
    rng = np.random.default_rng(seed)
    start = MONDAY - utc_offset_s
    rows, truth = [], []
    for p in range(n):
        kind = ("day", "day", "day", "night", "none")[p % 5]
        home = np.asarray(origin) + rng.uniform(0, 20000, 2)
        ang = rng.uniform(0, 2 * np.pi)
        work = home + rng.uniform(1500, 6000) * np.array([np.cos(ang), np.sin(ang)])
        if kind == "none":
            work = np.array([np.nan, np.nan])
        shops = home + rng.normal(0, 1500, (3, 2))
        r = rng.uniform(*rate)
        for d in range(days):
            wd = d % 7
            k = rng.poisson(r)
            for s in np.sort(rng.integers(0, 86400, k)):
                h = s / 3600
                pos = home
                if kind == "day" and wd < 5 and 9 <= h < 17:
                    pos = work
                elif kind == "night" and ((wd < 5 and h >= 21.5) or (0 < wd <= 5 and h < 6.5)):
                    pos = work
                elif 10 <= h < 12 and rng.random() < 0.5:
                    pos = shops[rng.integers(3)]
                elif rng.random() < 0.05:
                    pos = home + rng.normal(0, 3000, 2)
                bad = rng.random() < bad_share
                acc = rng.uniform(300, 1000) if bad else rng.uniform(5, 30)
                xy = pos + rng.normal(0, acc if bad else noise_m, 2)
                rows.append((f"p{p:04d}", start + d * 86400 + int(s), xy[0], xy[1], acc))
        truth.append((f"p{p:04d}", kind, *home, *work))
    df = pd.DataFrame(rows, columns=["pseudonym", "t_s", "x_m", "y_m", "accuracy_m"])
    tr = Traces.from_frame(df, crs=CRS, utc_offset_s=utc_offset_s, start_s=start, n_days=days)
    truth = pd.DataFrame(truth, columns=["pseudonym", "schedule", "home_x_m", "home_y_m",
                                         "work_x_m", "work_y_m"])
    return tr, truth


def frame(rows, **kw):
    """Traces from (pseudonym, t_s, x_m, y_m[, accuracy_m]) tuples."""
    cols = ["pseudonym", "t_s", "x_m", "y_m", "accuracy_m"][: len(rows[0])] if rows else \
        ["pseudonym", "t_s", "x_m", "y_m", "accuracy_m"]
    df = pd.DataFrame(rows, columns=cols)
    if not rows:
        df = df.astype({"t_s": np.int64, "x_m": float, "y_m": float, "accuracy_m": np.float32})
    kw.setdefault("start_s", MONDAY)
    kw.setdefault("crs", CRS)
    return Traces.from_frame(df, **kw)


def at(day, hour, minute=0):
    return MONDAY + day * 86400 + int(hour * H) + minute * 60


@pytest.fixture(scope="module")
def synth():
    return make_traces()


# ============================================================================ references
def ref_dbscan(x, y, eps, min_samples):
    """Naive DBSCAN with the documented border rule and canonical labels."""
    n = len(x)
    if n == 0:
        return np.zeros(0, np.int64)
    dx = x[:, None] - x[None, :]
    dy = y[:, None] - y[None, :]
    d2 = dx * dx + dy * dy
    nb = d2 <= eps * eps
    core = nb.sum(1) >= min_samples
    ci = np.flatnonzero(core)
    comp = np.full(n, -1)
    if len(ci):
        _, c = connected_components(csr_matrix(nb[np.ix_(ci, ci)]), directed=False)
        comp[ci] = c
    owner = np.full(n, -1)
    for i in range(n):
        if core[i]:
            owner[i] = i
            continue
        cand = [j for j in ci if nb[i, j]]
        if cand:
            owner[i] = min(cand, key=lambda j: (d2[i, j], j))
    lab = np.full(n, -1, np.int64)
    names = {}
    for i in range(n):
        if owner[i] >= 0:
            lab[i] = names.setdefault(comp[owner[i]], len(names))
    return lab


def ref_window_id(rel, a, b):
    day, sod = divmod(int(rel), 86400)
    if a < b:
        return day if a <= sod < b else None
    if sod >= a:
        return day
    return day - 1 if sod < b else None


def ref_home_work(rel, x, y, lab, p: InferenceParams, epoch_day0):
    """(home_xy, home_nights, home_pings, work_xy, work_days, work_pings) by plain rules."""
    na, nb_ = round(p.night_start_h * H), round(p.night_end_h * H)
    wa, wb = round(p.work_start_h * H), round(p.work_end_h * H)
    nights, wdays, npings, wpings, members = (defaultdict(set), defaultdict(set),
                                              defaultdict(int), defaultdict(int),
                                              defaultdict(list))
    obs_work = set()
    for r, xi, yi, c in zip(rel, x, y, lab):
        w = ref_window_id(r, wa, wb)
        if w is not None and (epoch_day0 + w + 3) % 7 not in p.work_weekdays:
            w = None
        if w is not None:
            obs_work.add(w)
        if c < 0:
            continue
        members[c].append((xi, yi))
        nid = ref_window_id(r, na, nb_)
        if nid is not None:
            nights[c].add(nid)
            npings[c] += 1
        if w is not None:
            wdays[c].add(w)
            wpings[c] += 1

    def centre(c):
        a = members[c]
        return (sum(v[0] for v in a) / len(a), sum(v[1] for v in a) / len(a))

    cands = [c for c in members if nights[c]]
    home = max(cands, key=lambda c: (len(nights[c]), npings[c], -c)) if cands else None
    if home is not None and len(nights[home]) < p.min_home_nights:
        home = None
    wc = []
    if home is None and p.work_requires_home:
        members_for_work = []
    else:
        members_for_work = list(members)
    for c in members_for_work:
        if c == home or not wdays[c]:
            continue
        if home is not None and math.dist(centre(c), centre(home)) < p.min_work_dist_m:
            # kernel compares squared distances; avoid ties at the threshold in random data
            continue
        wc.append(c)
    work = max(wc, key=lambda c: (len(wdays[c]), wpings[c], -c)) if wc else None
    if work is not None:
        hn = len(nights[home]) if home is not None else 0
        if (len(wdays[work]) < p.min_work_days
                or len(wdays[work]) < p.min_work_share * len(obs_work)
                or len(nights[work]) > p.max_work_night_share * hn):
            work = None
    nan2 = (np.nan, np.nan)
    return (centre(home) if home is not None else nan2,
            len(nights[home]) if home is not None else 0,
            len(members[home]) if home is not None else 0,
            centre(work) if work is not None else nan2,
            len(wdays[work]) if work is not None else 0,
            len(members[work]) if work is not None else 0)


def ref_infer(traces: Traces, labeler=None, **params):
    """Reference table: naive DBSCAN (or ``labeler``) + plain rules, trace by trace."""
    p = InferenceParams.make(**params)
    epoch_day0 = (traces.start_s + traces.utc_offset_s) // 86400
    out = []
    for i in range(traces.n_traces):
        a, b = traces.offsets[i], traces.offsets[i + 1]
        t, x, y = traces.t_s[a:b], traces.x_m[a:b], traces.y_m[a:b]
        acc = traces.accuracy_m[a:b].astype(np.float64)
        keep = np.ones(b - a, bool) if p.max_accuracy_m is None else ~(acc > p.max_accuracy_m)
        lab = (labeler or ref_dbscan)(x[keep], y[keep], p.eps_m, p.min_samples)
        hxy, hn, hp, wxy, wd, wp = ref_home_work(t[keep] - traces.start_s, x[keep], y[keep],
                                                 lab, p, epoch_day0)
        days = len(set(((t - traces.start_s) // 86400).tolist()))
        out.append(dict(pseudonym=traces.pseudonym[i], home_x_m=hxy[0], home_y_m=hxy[1],
                        home_nights=hn, home_pings=hp, work_x_m=wxy[0], work_y_m=wxy[1],
                        work_days=wd, work_pings=wp, n_pings=b - a, n_days_observed=days))
    return pd.DataFrame(out)


def assert_same_table(got: pd.DataFrame, ref: pd.DataFrame, rtol=1e-12):
    assert len(got) == len(ref)
    for c in ref.columns:
        g, r = got[c].to_numpy(), ref[c].to_numpy()
        if c.endswith("_m"):
            np.testing.assert_allclose(g.astype(float), r.astype(float), rtol=rtol, atol=1e-6,
                                       equal_nan=True, err_msg=c)
        else:
            np.testing.assert_array_equal(g, r, err_msg=c)


def relabel_first_seen(lab):
    out = np.full(len(lab), -1, np.int64)
    names = {}
    for i, c in enumerate(lab):
        if c >= 0:
            out[i] = names.setdefault(c, len(names))
    return out


# ============================================================================ DBSCAN kernel
def kernel_dbscan(x, y, eps, min_samples):
    lab = np.empty(len(x), np.int64)
    nc = K.dbscan_trace(np.asarray(x, float), np.asarray(y, float), float(eps), min_samples, lab)
    assert nc == (lab.max() + 1 if len(lab) else 0)
    return lab


@settings(max_examples=150, deadline=None)
@given(
    pts=st.lists(st.tuples(st.integers(-12, 12), st.integers(-12, 12)), min_size=0, max_size=40),
    eps=st.sampled_from([1.0, 2.0, 2.5, 3.0, 5.0]),
    min_samples=st.integers(1, 5),
)
def test_dbscan_kernel_matches_naive_reference_on_integer_grids(pts, eps, min_samples):
    # integer coordinates: many exact ties and distances exactly equal to eps (inclusive)
    x = np.array([p[0] for p in pts], float)
    y = np.array([p[1] for p in pts], float)
    np.testing.assert_array_equal(kernel_dbscan(x, y, eps, min_samples),
                                  ref_dbscan(x, y, eps, min_samples))


def clumped_points(seed):
    """160 points: 120 in four clumps of sd 12 m, 40 scattered, in random order."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 400, (4, 2))
    xy = np.vstack([centres[rng.integers(4, size=120)] + rng.normal(0, 12, (120, 2)),
                    rng.uniform(-100, 500, (40, 2))])
    return xy[rng.permutation(len(xy))]


@pytest.mark.parametrize("seed", range(8))
def test_dbscan_kernel_matches_naive_and_sklearn_on_random_points(seed):
    xy = clumped_points(seed)
    eps, ms = 20.0, 4
    lab = kernel_dbscan(xy[:, 0], xy[:, 1], eps, ms)
    np.testing.assert_array_equal(lab, ref_dbscan(xy[:, 0], xy[:, 1], eps, ms))
    sk = DBSCAN(eps=eps, min_samples=ms, algorithm="kd_tree").fit(xy)
    core = np.zeros(len(xy), bool)
    core[sk.core_sample_indices_] = True
    # same noise, same partition of core points (up to labelling)
    np.testing.assert_array_equal(lab < 0, sk.labels_ < 0)
    np.testing.assert_array_equal(relabel_first_seen(np.where(core, lab, -1)),
                                  relabel_first_seen(np.where(core, sk.labels_, -1)))
    # border points: both labels name a place holding a core point within eps
    d = np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1])
    for i in np.flatnonzero(~core & (lab >= 0)):
        near = core & (d[i] <= eps)
        assert lab[i] in set(lab[near]) and sk.labels_[i] in set(sk.labels_[near])


def prefix_dbscan(x, y, eps, min_samples, m):
    """dbscan_prefix of the first m points, on the grid of all of them."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) == 0:
        return np.zeros(0, np.int64)
    keys, ny = K._grid_keys(x, y, float(eps))
    order = np.argsort(keys, kind="mergesort")
    lab = np.empty(m, np.int64)
    nc = K.dbscan_prefix(order, keys, ny, x, y, m, float(eps), min_samples, lab)
    assert nc == (lab.max() + 1 if m else 0)
    return lab


@settings(max_examples=100, deadline=None)
@given(
    pts=st.lists(st.tuples(st.integers(-12, 12), st.integers(-12, 12)), min_size=0, max_size=40),
    eps=st.sampled_from([1.0, 2.0, 2.5, 5.0]),
    min_samples=st.integers(1, 5),
    cut=st.floats(0.0, 1.0),
)
def test_dbscan_of_a_prefix_on_the_whole_grid_matches_the_naive_reference(pts, eps, min_samples, cut):
    """The grid of all the points (anchored at their minimum, not the prefix's) gives
    the first m points the places a naive DBSCAN of those m points gives."""
    x = np.array([p[0] for p in pts], float)
    y = np.array([p[1] for p in pts], float)
    m = int(round(cut * len(x)))
    np.testing.assert_array_equal(prefix_dbscan(x, y, eps, min_samples, m),
                                  ref_dbscan(x[:m], y[:m], eps, min_samples))


@pytest.mark.parametrize("seed", range(4))
def test_dbscan_of_every_prefix_matches_the_naive_reference(seed):
    xy = clumped_points(seed)
    for m in (0, 1, 5, 30, 77, 121, 160):
        lab = prefix_dbscan(xy[:, 0], xy[:, 1], 20.0, 4, m)
        np.testing.assert_array_equal(lab, ref_dbscan(xy[:m, 0], xy[:m, 1], 20.0, 4))


def growing_dbscan(x, y, eps, min_samples, ms):
    """dbscan_prefixes: the labels of each prefix x[:m] for m in ms, carried over."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ms = np.asarray(ms, np.int64)
    lab = np.full((len(ms), len(x)), -9, np.int64)
    nc = K.dbscan_prefixes(x, y, float(eps), min_samples, ms, lab)
    out = [lab[w, :m] for w, m in enumerate(ms)]
    for w, m in enumerate(ms):
        assert nc[w] == (out[w].max() + 1 if m else 0)
        assert (lab[w, m:] == -9).all()  # nothing written past the prefix
    return out


@settings(max_examples=150, deadline=None)
@given(
    pts=st.lists(st.tuples(st.integers(-12, 12), st.integers(-12, 12)), min_size=0, max_size=40),
    eps=st.sampled_from([1.0, 2.0, 2.5, 5.0]),
    min_samples=st.integers(1, 5),
    cuts=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=6),
)
def test_dbscan_of_growing_prefixes_matches_the_naive_reference(pts, eps, min_samples, cuts):
    """Each prefix's places, carried over from the shorter prefixes (core times, places
    joined as cores appear, owners updated by new cores only), are a naive DBSCAN's of
    that prefix from scratch; integer points make exact ties and distances equal to eps."""
    x = np.array([p[0] for p in pts], float)
    y = np.array([p[1] for p in pts], float)
    ms = sorted(int(round(c * len(x))) for c in cuts)
    for m, lab in zip(ms, growing_dbscan(x, y, eps, min_samples, ms)):
        np.testing.assert_array_equal(lab, ref_dbscan(x[:m], y[:m], eps, min_samples))


@pytest.mark.parametrize("seed", range(6))
def test_dbscan_of_growing_prefixes_matches_each_prefix_from_scratch(seed):
    """Clumps and scattered points, prefixes growing by a few points and by many (and
    repeated): the labels of dbscan_prefix on each prefix, and the naive reference's."""
    xy = clumped_points(seed)
    ms = [0, 1, 2, 5, 5, 30, 31, 77, 121, 160, 160]
    for m, lab in zip(ms, growing_dbscan(xy[:, 0], xy[:, 1], 20.0, 4, ms)):
        np.testing.assert_array_equal(lab, prefix_dbscan(xy[:, 0], xy[:, 1], 20.0, 4, m))
        np.testing.assert_array_equal(lab, ref_dbscan(xy[:m, 0], xy[:m, 1], 20.0, 4))


def test_dbscan_threshold_is_inclusive_and_min_samples_counts_self():
    # (0,0)-(3,4) are exactly 5 m apart
    x, y = np.array([0.0, 3.0]), np.array([0.0, 4.0])
    assert list(kernel_dbscan(x, y, 5.0, 2)) == [0, 0]
    assert list(kernel_dbscan(x, y, np.nextafter(5.0, 0), 2)) == [-1, -1]
    assert list(kernel_dbscan(x, y, 5.0, 3)) == [-1, -1]
    assert list(kernel_dbscan(x[:1], y[:1], 5.0, 1)) == [0]  # a lone point is core at 1


def test_dbscan_border_point_joins_nearest_core_ties_to_earliest():
    # left place: core 0 (+ -10, -12, -5); right place: core 28 (+ 38, 40, 33); eps 15,
    # min_samples 4.  A point b between them sees 0, 28 and itself: 3 < 4, so border.
    left = [0.0, -10, -12, -5]
    right = [28.0, 38, 40, 33]

    def run(xs, b):
        x = np.array(xs + [b])
        return kernel_dbscan(x, np.zeros(len(x)), 15.0, 4)

    lab = run(left + right, 13.0)  # 13 m to the left core, 15 m (inclusive) to the right
    assert lab[0] != lab[4] and lab[8] == lab[0]
    lab = run(left + right, 15.0)
    assert lab[8] == lab[4]
    # equidistant (14 m): ties go to the earliest core point
    lab = run(left + right, 14.0)
    assert lab[8] == lab[0]
    lab = run(right + left, 14.0)
    assert lab[8] == lab[0]  # now index 0 is the right place's core
    np.testing.assert_array_equal(lab, ref_dbscan(np.array(right + left + [14.0]), np.zeros(9), 15.0, 4))
    lab = run(left + right, 16.0)  # 12 m to the right core, 16 m from the left one
    assert lab[8] == lab[4] != lab[0]


def test_dbscan_empty_one_and_duplicates():
    assert len(kernel_dbscan([], [], 10.0, 3)) == 0
    assert list(kernel_dbscan([1.0], [2.0], 10.0, 2)) == [-1]
    assert list(kernel_dbscan([1.0] * 5, [2.0] * 5, 10.0, 5)) == [0] * 5


# ============================================================================ home/work vs reference
def test_infer_matches_reference(synth):
    tr, _ = synth
    got = infer_home_work(tr)
    assert list(got.columns) == list(INFERRED_COLUMNS)
    ref = ref_infer(tr)
    assert_same_table(got, ref)
    assert (got.window_days == tr.n_days).all()


@pytest.mark.parametrize("params", [
    dict(eps_m=30.0, min_samples=2, max_accuracy_m=None),
    dict(eps_m=80.0, min_samples=5, night_start_h=0.0, night_end_h=5.0, min_home_nights=3),
    dict(work_start_h=20.0, work_end_h=4.0, work_weekdays=(0, 2, 4, 5), min_work_days=1,
         min_work_share=0.0, max_work_night_share=10.0, min_work_dist_m=0.0),
    dict(work_requires_home=False, min_home_nights=4, min_samples=2),
])
def test_infer_matches_reference_other_params(params):
    tr, _ = make_traces(n=10, days=9, seed=3, utc_offset_s=-5 * H)
    assert_same_table(infer_home_work(tr, **params), ref_infer(tr, **params))


def test_sklearn_dbscan_per_pseudonym_gives_same_home_work(synth):
    tr, _ = synth
    p = InferenceParams()
    acc = tr.accuracy_m.astype(float)
    keep = ~(acc > p.max_accuracy_m)
    labels = np.full(tr.n_pings, -2, np.int64)
    ambiguous = np.zeros(tr.n_traces, bool)
    for i in range(tr.n_traces):
        a, b = tr.offsets[i], tr.offsets[i + 1]
        rows = np.arange(a, b)[keep[a:b]]
        xy = np.column_stack([tr.x_m[rows], tr.y_m[rows]])
        sk = DBSCAN(eps=p.eps_m, min_samples=p.min_samples, algorithm="kd_tree").fit(xy)
        labels[rows] = relabel_first_seen(sk.labels_)
        ours = ref_dbscan(xy[:, 0], xy[:, 1], p.eps_m, p.min_samples)
        ambiguous[i] = not np.array_equal(ours, relabel_first_seen(sk.labels_))
    from_sk = home_work_from_labels(tr, labels)
    fast = infer_home_work(tr)
    assert ambiguous.mean() < 0.5  # the comparison must cover most traces
    clear = ~ambiguous
    assert_same_table(fast[clear].reset_index(drop=True),
                      from_sk[clear].reset_index(drop=True)[fast.columns])
    # even with ambiguous border pings the chosen places agree to within eps
    for kind in ("home", "work"):
        d = np.hypot(fast[f"{kind}_x_m"] - from_sk[f"{kind}_x_m"],
                     fast[f"{kind}_y_m"] - from_sk[f"{kind}_y_m"])
        assert (d[fast[f"{kind}_x_m"].notna()] < p.eps_m).all()


def test_hdbscan_labels_plug_in_and_agree_on_clear_homes(synth):
    # HDBSCAN is no exact reference (density levels, not a radius: its places gather
    # more outlying pings, which moves their mean), but plugged in through
    # home_work_from_labels it must find the same home places of day workers
    from sklearn.cluster import HDBSCAN

    tr, truth = synth
    keep = ~(tr.accuracy_m.astype(float) > 200.0)
    labels = np.full(tr.n_pings, -1, np.int64)
    for i in range(tr.n_traces):
        rows = np.arange(tr.offsets[i], tr.offsets[i + 1])[keep[tr.offsets[i]:tr.offsets[i + 1]]]
        xy = np.column_stack([tr.x_m[rows], tr.y_m[rows]])
        labels[rows] = HDBSCAN(min_cluster_size=5, copy=True).fit(xy).labels_
    hd = home_work_from_labels(tr, labels)
    fast = infer_home_work(tr)
    day = (truth.schedule == "day").to_numpy()
    d = np.hypot(hd.home_x_m - fast.home_x_m, hd.home_y_m - fast.home_y_m)[day]
    assert (d < 150.0).all() and np.median(d) < 25.0


def test_home_work_from_labels_equals_fast_path_with_fast_labels(synth):
    tr, _ = synth
    m = HomeWorkInference().fit(tr)
    lab = np.where(m.labels_ < 0, -1, m.labels_)
    assert_same_table(home_work_from_labels(tr, lab), m.inferred_)


def test_inference_finds_true_home_and_work(synth):
    tr, truth = synth
    got = infer_home_work(tr)
    he = np.hypot(got.home_x_m - truth.home_x_m, got.home_y_m - truth.home_y_m)
    we = np.hypot(got.work_x_m - truth.work_x_m, got.work_y_m - truth.work_y_m)
    day = (truth.schedule == "day").to_numpy()
    assert (he[truth.schedule != "night"] < 20).all()
    assert (we[day] < 20).all()
    # no workplace -> no "work"; night shift -> work unknown rather than the swapped home
    assert got.work_x_m[truth.schedule.isin(["none", "night"]).to_numpy()].isna().all()


# ============================================================================ prefixes
def test_prefixes_equal_inference_on_prefix(synth):
    tr, _ = synth
    days = [7, 1, 3, 2, 14, 20]
    px = infer_prefixes(tr, days)
    assert list(px.columns) == list(INFERRED_COLUMNS)
    assert sorted(set(px.window_days)) == sorted(days)
    assert len(px) == len(days) * tr.n_traces
    for d in sorted(days):
        one = px[px.window_days == d].reset_index(drop=True)
        exp = infer_home_work(tr.prefix(d))
        assert_same_table(one.drop(columns="window_days"), exp.drop(columns="window_days"))
        # and the naive reference on the prefix (the kernel sorts a trace into its grid
        # once for all windows; the reference clusters each prefix from scratch)
        assert_same_table(one, ref_infer(tr.prefix(d)))
    # monotone support: more days never lower the number of observed days
    wide = px.pivot(index="pseudonym", columns="window_days", values="n_days_observed")
    assert (wide.diff(axis=1).fillna(0) >= 0).all().all()


def test_estimator_predict_prefixes_matches_function(synth):
    tr, _ = synth
    m = HomeWorkInference(eps_m=40.0).fit(tr)
    pd.testing.assert_frame_equal(m.predict_prefixes(tr, [1, 2]), infer_prefixes(tr, [1, 2], eps_m=40.0))


# ============================================================================ edge cases
def test_edge_case_traces():
    rows = [
        # one ping, at night
        ("a_one", at(0, 23), 0.0, 0.0, 5.0),
        # all pings at one spot, at night over two nights (spanning midnight)
        *[("b_spot", at(d, hh), 100.0, 100.0, 5.0) for d in (0, 1) for hh in (22.5, 23.5)],
        ("b_spot", at(1, 2), 100.0, 100.0, 5.0),
        # no night pings: only daytime
        *[("c_day", at(d, 12), 500.0, 500.0, 5.0) for d in range(5)],
        # duplicate timestamps
        *[("d_dup", at(0, 23), 700.0, 700.0, 5.0) for _ in range(4)],
        # one day only
        *[("e_oneday", at(2, hh), 900.0, 900.0, 5.0) for hh in (1, 2, 3, 4)],
    ]
    tr = frame(rows, n_days=3)
    got = infer_home_work(tr, min_samples=3).set_index("pseudonym")
    ref = ref_infer(tr, min_samples=3).set_index("pseudonym")
    assert_same_table(got[ref.columns].reset_index(), ref.reset_index())
    assert np.isnan(got.loc["a_one", "home_x_m"]) and got.loc["a_one", "home_nights"] == 0
    assert got.loc["a_one", "n_pings"] == 1 and got.loc["a_one", "n_days_observed"] == 1
    # 22:30 and 23:30 on day 0 and 1, 02:00 on day 1 (night of day 0): 2 nights
    assert got.loc["b_spot", "home_nights"] == 2 and got.loc["b_spot", "home_x_m"] == 100.0
    assert got.loc["b_spot", "home_pings"] == 5
    assert np.isnan(got.loc["c_day", "home_x_m"]) and np.isnan(got.loc["c_day", "work_x_m"])
    c_day = infer_home_work(tr, min_samples=3, work_requires_home=False).set_index("pseudonym")
    assert c_day.loc["c_day", "work_days"] == 5 and c_day.loc["c_day", "work_x_m"] == 500.0
    assert got.loc["d_dup", "home_nights"] == 1 and got.loc["d_dup", "home_pings"] == 4
    # 01:00..04:00 of day 2 belong to the night that opened on day 1
    assert got.loc["e_oneday", "home_nights"] == 1 and got.loc["e_oneday", "n_days_observed"] == 1


def test_empty_traces_in_csr_and_empty_traces_object():
    tr, _ = make_traces(n=5, days=6, seed=1)
    pre = tr.prefix(1)
    # pings only from day 3 on for one pseudonym -> empty in the 1-day prefix
    late = tr.select_pings(~((tr.trace_index() == 2) & (tr.day() < 3)))
    px = infer_prefixes(late, [1, 6])
    row = px[(px.window_days == 1) & (px.pseudonym == tr.pseudonym[2])].iloc[0]
    assert row.n_pings == 0 and np.isnan(row.home_x_m) and row.home_nights == 0
    assert_same_table(infer_home_work(pre), ref_infer(pre))
    empty = frame([], n_days=1)
    for out in (infer_home_work(empty), infer_prefixes(empty, [1, 2])):
        assert list(out.columns) == list(INFERRED_COLUMNS) and len(out) == 0
    m = HomeWorkInference().fit(empty)
    assert len(m.labels_) == 0 and len(m.places_) == 0 and list(m.places_.columns) == list(PLACE_COLUMNS)
    # a Traces object whose every trace is empty
    allempty = tr.select_pings(np.zeros(tr.n_pings, bool), drop_empty=False)
    out = infer_home_work(allempty)
    assert len(out) == tr.n_traces and out.home_x_m.isna().all() and (out.n_pings == 0).all()


def test_window_thresholds_inclusive_start_exclusive_end():
    # night 22-06: 22:00:00 is in, 06:00:00 is out, 05:59:59 is in (previous night)
    rows = [("n", at(0, 22), 0.0, 0.0), ("n", at(0, 22), 0.0, 0.0), ("n", at(0, 22), 0.0, 0.0),
            ("m", at(1, 6), 0.0, 0.0), ("m", at(1, 6), 0.0, 0.0), ("m", at(1, 6), 0.0, 0.0),
            ("k", at(1, 6) - 1, 0.0, 0.0), ("k", at(1, 6) - 1, 0.0, 0.0), ("k", at(1, 6) - 1, 0.0, 0.0)]
    got = infer_home_work(frame(rows), min_samples=3).set_index("pseudonym")
    assert got.loc["n", "home_nights"] == 1
    assert got.loc["m", "home_nights"] == 0
    assert got.loc["k", "home_nights"] == 1


def test_min_support_thresholds_are_inclusive():
    home = [("p", at(d, 23), 0.0, 0.0) for d in range(3)]
    work = [("p", at(d, 12), 5000.0, 0.0) for d in range(2)]  # Mon, Tue
    tr = frame(home + work)
    kw = dict(min_samples=1, eps_m=10.0)
    got = infer_home_work(tr, min_home_nights=3, min_work_days=2, **kw).iloc[0]
    assert got.home_nights == 3 and got.work_days == 2
    got = infer_home_work(tr, min_home_nights=4, min_work_days=3, **kw).iloc[0]
    assert np.isnan(got.home_x_m) and np.isnan(got.work_x_m)
    # share: 2 work days out of 2 observed working days -> 1.0 is enough (inclusive)
    assert infer_home_work(tr, min_work_share=1.0, **kw).iloc[0].work_days == 2
    # a third observed working day elsewhere makes the share 2/3
    tr3 = frame(home + work + [("p", at(2, 12), -9000.0, 0.0)])
    assert infer_home_work(tr3, min_work_share=2 / 3, **kw).iloc[0].work_days == 2
    assert np.isnan(infer_home_work(tr3, min_work_share=0.7, **kw).iloc[0].work_x_m)
    # distance to home: exactly min_work_dist_m is allowed
    assert infer_home_work(tr, min_work_dist_m=5000.0, **kw).iloc[0].work_days == 2
    assert np.isnan(infer_home_work(tr, min_work_dist_m=5000.5, **kw).iloc[0].work_x_m)


def test_work_night_share_rule():
    # a second place with nights too: allowed up to max_work_night_share * home nights
    home = [("p", at(d, 23), 0.0, 0.0) for d in range(4)]
    work = [("p", at(d, 12), 5000.0, 0.0) for d in range(4)] + [("p", at(4, 23), 5000.0, 0.0)]
    tr = frame(home + work)
    kw = dict(min_samples=1, eps_m=10.0)
    assert infer_home_work(tr, max_work_night_share=0.25, **kw).iloc[0].work_days == 4  # 1 <= 0.25*4
    assert np.isnan(infer_home_work(tr, max_work_night_share=0.24, **kw).iloc[0].work_x_m)


def test_accuracy_filter_is_inclusive_and_nan_kept():
    rows = [("p", at(0, 23), 0.0, 0.0, 200.0), ("p", at(1, 23), 0.0, 0.0, 200.5),
            ("p", at(2, 23), 0.0, 0.0, np.nan)]
    got = infer_home_work(frame(rows), min_samples=1).iloc[0]
    assert got.home_nights == 2 and got.n_pings == 3
    assert infer_home_work(frame(rows), min_samples=1, max_accuracy_m=None).iloc[0].home_nights == 3
    m = HomeWorkInference(min_samples=1).fit(frame(rows))
    assert list(m.labels_) == [0, K.DROPPED, 0]


def test_weekday_and_local_time():
    # Sat/Sun daytime pings are not working days; a UTC offset moves the windows
    rows = [("p", at(d, 12), 0.0, 0.0) for d in (5, 6, 12, 13)]
    kw = dict(min_samples=1, min_work_days=1, work_requires_home=False)
    assert infer_home_work(frame(rows), **kw).iloc[0].work_days == 0
    assert infer_home_work(frame(rows), work_weekdays=(5, 6), **kw).iloc[0].work_days == 4
    # 23:00 UTC is 01:00 at UTC+2 (start_s is local midnight: MONDAY - 2 h)
    off = 2 * H
    rows = [("p", at(0, 23), 0.0, 0.0)]
    got = infer_home_work(frame(rows, utc_offset_s=off, start_s=MONDAY - off),
                          min_samples=1, night_start_h=0.5, night_end_h=2.0).iloc[0]
    assert got.home_nights == 1
    got = infer_home_work(frame(rows), min_samples=1, night_start_h=0.5, night_end_h=2.0).iloc[0]
    assert got.home_nights == 0


# ============================================================================ invariances
def test_translation_invariance(synth):
    tr, _ = synth
    a = infer_home_work(tr)
    b = infer_home_work(tr.replace(x_m=tr.x_m + 123456.75, y_m=tr.y_m - 98765.5))
    for c in ("home_nights", "home_pings", "work_days", "work_pings", "n_pings"):
        np.testing.assert_array_equal(a[c], b[c])
    np.testing.assert_allclose(b.home_x_m - 123456.75, a.home_x_m, atol=1e-6)
    np.testing.assert_allclose(b.work_y_m + 98765.5, a.work_y_m, atol=1e-6)


def test_time_shift_with_window_is_invariant(synth):
    tr, _ = synth
    shift = 7 * 86400 * 10  # whole weeks: weekdays unchanged
    a = infer_prefixes(tr, [2, 14])
    b = infer_prefixes(tr.replace(t_s=tr.t_s + shift, start_s=tr.start_s + shift), [2, 14])
    pd.testing.assert_frame_equal(a, b)


def test_trace_order_invariance(synth):
    tr, _ = synth
    perm = np.random.default_rng(5).permutation(tr.n_traces)
    a = infer_prefixes(tr, [3, 14])
    b = infer_prefixes(tr.take(perm), [3, 14])
    key = ["window_days", "pseudonym"]
    pd.testing.assert_frame_equal(a.sort_values(key).reset_index(drop=True),
                                  b.sort_values(key).reset_index(drop=True))


def test_identical_across_thread_counts(synth):
    tr, _ = synth
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = infer_prefixes(tr, [1, 7, 14])
        lab1 = HomeWorkInference().fit(tr).labels_
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = infer_prefixes(tr, [1, 7, 14])
        lab2 = HomeWorkInference().fit(tr).labels_
    finally:
        numba.set_num_threads(before)
    pd.testing.assert_frame_equal(one, two)
    np.testing.assert_array_equal(lab1, lab2)


def test_latlon_from_pyproj(synth):
    import pyproj

    tr, _ = synth
    got = infer_home_work(tr)
    ok = got.home_x_m.notna()
    lon, lat = pyproj.Transformer.from_crs(CRS, "EPSG:4326", always_xy=True).transform(
        got.home_x_m[ok].to_numpy(), got.home_y_m[ok].to_numpy())
    np.testing.assert_allclose(got.home_lat_deg[ok], lat)
    np.testing.assert_allclose(got.home_lon_deg[ok], lon)
    assert got.home_lat_deg[~ok].isna().all() and got.work_lat_deg[got.work_x_m.isna()].isna().all()


# ============================================================================ estimator
def test_estimator_contract(synth):
    tr, _ = synth
    m = HomeWorkInference(eps_m=40.0, min_samples=4)
    assert m.get_params()["eps_m"] == 40.0 and not hasattr(m, "labels_")
    c = clone(m).set_params(min_samples=2)
    assert c.min_samples == 2 and m.min_samples == 4
    with pytest.raises(NotFittedError):
        m.predict(tr)
    assert m.fit(tr) is m
    assert m.labels_.shape == (tr.n_pings,) and m.n_places_.shape == (tr.n_traces,)
    pd.testing.assert_frame_equal(m.predict(tr), infer_home_work(tr, eps_m=40.0, min_samples=4))
    pd.testing.assert_frame_equal(m.inferred_, m.predict(tr))
    # places_: one row per place, home/work flags agree with the inferred table
    pl = m.places_
    assert len(pl) == m.n_places_.sum()
    homes = pl[pl.is_home].set_index("pseudonym")
    inf = m.inferred_.set_index("pseudonym")
    known = inf.home_x_m.notna()
    assert set(homes.index) == set(inf.index[known])
    np.testing.assert_array_equal(homes.x_m, inf.loc[homes.index, "home_x_m"])
    np.testing.assert_array_equal(homes.nights, inf.loc[homes.index, "home_nights"])
    works = pl[pl.is_work].set_index("pseudonym")
    assert set(works.index) == set(inf.index[inf.work_x_m.notna()])
    # labels are canonical: place k first appears after place k-1 within a trace
    for i in range(tr.n_traces):
        lab = m.labels_[tr.offsets[i]:tr.offsets[i + 1]]
        lab = lab[lab >= 0]
        _, first = np.unique(lab, return_index=True)
        assert (np.diff(first) > 0).all()


def test_place_table_matches_reference_counts(synth):
    tr, _ = synth
    m = HomeWorkInference().fit(tr)
    pl = m.places_
    tri = tr.trace_index()
    for i in range(0, tr.n_traces, 5):
        sel = (tri == i) & (m.labels_ >= 0)
        for place, g in pl[pl.pseudonym == tr.pseudonym[i]].groupby("place"):
            rows = np.flatnonzero(sel & (m.labels_ == place))
            assert g.n_pings.iloc[0] == len(rows)
            assert g.x_m.iloc[0] == pytest.approx(tr.x_m[rows].mean(), rel=1e-12)
    plain = place_table(tr, m.labels_)
    assert not plain.is_home.any() and not plain.is_work.any()
    pd.testing.assert_frame_equal(plain.drop(columns=["is_home", "is_work"]),
                                  pl.drop(columns=["is_home", "is_work"]))


# ============================================================================ errors
@pytest.mark.parametrize("params, match", [
    (dict(eps_m=0.0), "eps_m must be >"),
    (dict(eps_m=-5.0), "eps_m"),
    (dict(eps_m=float("nan")), "finite"),
    (dict(eps_m="50"), "number"),
    (dict(min_samples=0), "min_samples must be >= 1"),
    (dict(min_samples=2.5), "integer"),
    (dict(max_accuracy_m=0.0), "max_accuracy_m"),
    (dict(night_start_h=22.0, night_end_h=22.0), "night window .* is empty"),
    (dict(work_start_h=9.0, work_end_h=9.0), "working-hours window .* is empty"),
    (dict(night_start_h=25.0), "night_start_h must be <= 24"),
    (dict(night_start_h=24.0, night_end_h=6.0), "must be < 24"),
    (dict(work_weekdays=()), "work_weekdays is empty"),
    (dict(work_weekdays=(7,)), "<= 6"),
    (dict(work_weekdays=None), "work_weekdays must be"),
    (dict(min_work_share=1.5), "min_work_share"),
    (dict(min_work_dist_m=float("nan")), "finite"),
    (dict(work_requires_home="yes"), "True or False"),
    (dict(bogus=1), "unknown inference parameter"),
])
def test_bad_parameters_raise_config_error(synth, params, match):
    tr, _ = synth
    with pytest.raises(ConfigError, match=match):
        infer_home_work(tr, **params)
    if "bogus" not in params:
        with pytest.raises(ConfigError, match=match):
            HomeWorkInference(**params).fit(tr)


def test_whole_day_window_is_allowed(synth):
    tr, _ = synth
    got = infer_home_work(tr, night_start_h=0.0, night_end_h=24.0)
    assert (got.home_nights <= got.n_days_observed).all() and got.home_nights.max() > 0


def test_bad_inputs_raise_input_error(synth):
    tr, _ = synth
    with pytest.raises(InputError, match="must be a sim.core.traces.Traces"):
        infer_home_work(tr.to_frame())
    with pytest.raises(InputError, match="one integer per ping"):
        home_work_from_labels(tr, np.zeros(3, int))
    with pytest.raises(InputError, match="one integer per ping"):
        home_work_from_labels(tr, np.zeros(tr.n_pings))
    with pytest.raises(ConfigError, match="days"):
        infer_prefixes(tr, [0, 1])
    with pytest.raises(ConfigError, match="days is empty"):
        infer_prefixes(tr, [])
    with pytest.raises(ConfigError, match="integer"):
        infer_prefixes(tr, [1.5])
    with pytest.raises(CRSError, match="traces.crs"):
        infer_home_work(tr.replace(crs="not a crs"))
    with pytest.raises(ConfigError, match="too small"):
        infer_home_work(tr, eps_m=1e-9)
    bad = Traces(pseudonym=np.array(["a"], object), offsets=np.array([0, 2]),
                 t_s=np.array([5, 1]), x_m=np.zeros(2), y_m=np.zeros(2),
                 accuracy_m=np.zeros(2, np.float32), crs=CRS)
    with pytest.raises(InputError, match="not sorted"):
        infer_home_work(bad)


def test_fitted_labels_are_the_naive_dbscan_of_each_trace_kept_pings():
    """labels_ of a fit: per trace, the naive reference DBSCAN of the pings the accuracy
    filter keeps, DROPPED for the others."""
    tr, _ = make_traces(n=12, days=6, seed=5)
    acc = np.asarray(tr.accuracy_m, dtype=np.float64).copy()
    acc[::7] = 500.0  # beyond max_accuracy_m: dropped
    tr = tr.replace(accuracy_m=acc.astype(np.float32))
    m = HomeWorkInference().fit(tr)
    p = InferenceParams.make()
    for i in range(tr.n_traces):
        a, b = tr.offsets[i], tr.offsets[i + 1]
        keep = ~(acc[a:b] > p.max_accuracy_m)
        want = np.full(b - a, K.DROPPED)
        want[keep] = ref_dbscan(tr.x_m[a:b][keep], tr.y_m[a:b][keep], p.eps_m, p.min_samples)
        np.testing.assert_array_equal(m.labels_[a:b], want)
    assert (m.labels_ == K.DROPPED).any() and (m.labels_ >= 0).any()
