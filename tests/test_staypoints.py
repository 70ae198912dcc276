"""Time-based stay points (sim.infer.staypoints) against slow, obviously correct Python
references: the stay-point rule, the location grouping, home/work from stay durations
and the method choice."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from sim.core.constants import DAY_S
from sim.core.errors import ConfigError, InputError
from sim.core.traces import Traces
from sim.infer import INFERRED_COLUMNS, InferenceParams
from sim.infer.staypoints import (StayParams, choose_method, infer_auto, infer_home_work_stays, location_labels,
                                  sampling_stats, staypoint_labels, staypoint_table)

CRS = "EPSG:32633"
T0 = 1_700_000_000 - (1_700_000_000 % DAY_S)  # a UTC midnight (a Monday? no matter)


# ============================================================================ references
def ref_stays(t, x, y, D, T, G=None):
    """The module docstring's rule, one fix at a time."""
    n = len(t)
    labels = [-1] * n
    depart = [0] * n
    k = 0
    i = 0
    while i < n:
        j = i + 1
        gap = False
        while j < n:
            if G is not None and t[j] - t[j - 1] > G:
                gap = True
                break
            dx, dy = x[j] - x[i], y[j] - y[i]
            if dx * dx + dy * dy >= D * D:
                break
            j += 1
        end = t[j] if (j < n and not gap) else t[j - 1]
        if end - t[i] >= T:
            for q in range(i, j):
                labels[q] = k
            depart[i] = end
            k += 1
        i = j
    return labels, depart


def ref_locations(x, y, eps):
    """Connected components of the graph 'distance <= eps', numbered by first member."""
    m = len(x)
    comp = [-1] * m
    nxt = 0
    for s in range(m):
        if comp[s] >= 0:
            continue
        comp[s] = nxt
        stack = [s]
        while stack:
            a = stack.pop()
            for b in range(m):
                if comp[b] < 0 and (x[b] - x[a]) ** 2 + (y[b] - y[a]) ** 2 <= eps * eps:
                    comp[b] = nxt
                    stack.append(b)
        nxt += 1
    return comp


def ref_home_work(traces: Traces, sp: StayParams, ip: InferenceParams):
    """Home/work of every trace from the module docstring, with Python sets and loops."""
    start = traces.start_s
    epoch_day0 = (start + traces.utc_offset_s) // DAY_S
    h = lambda v: int(round(v * 3600))  # noqa: E731
    na, nb, wa, wb = h(ip.night_start_h), h(ip.night_end_h), h(ip.work_start_h), h(ip.work_end_h)

    def window(n, a, b):
        return n * DAY_S + a, n * DAY_S + b + (DAY_S if a > b else 0)

    def weekday(n):
        return (epoch_day0 + n + 3) % 7

    out = []
    for i in range(traces.n_traces):
        a, b = traces.offsets[i], traces.offsets[i + 1]
        t_all = traces.t_s[a:b]
        acc = traces.accuracy_m[a:b].astype(float)
        keep = ~(acc > ip.max_accuracy_m) if ip.max_accuracy_m is not None else np.ones(b - a, bool)
        t = [int(v) for v in t_all[keep]]
        x = [float(v) for v in traces.x_m[a:b][keep]]
        y = [float(v) for v in traces.y_m[a:b][keep]]
        lab, dep = ref_stays(t, x, y, sp.dist_threshold_m, sp.time_threshold_s, sp.gap_threshold_s)
        stays = []  # (first, last, depart)
        for q in range(len(t)):
            if lab[q] >= 0 and (q == 0 or lab[q - 1] != lab[q]):
                r = q
                while r + 1 < len(t) and lab[r + 1] == lab[q]:
                    r += 1
                stays.append((q, r, dep[q]))
        sx = [sum(x[q:r + 1]) for q, r, _ in stays]
        sy = [sum(y[q:r + 1]) for q, r, _ in stays]
        cnt_s = [r - q + 1 for q, r, _ in stays]
        loc = ref_locations([u / c for u, c in zip(sx, cnt_s)], [u / c for u, c in zip(sy, cnt_s)],
                            sp.location_eps_m)
        nl = max(loc) + 1 if loc else 0
        night_cov = [dict() for _ in range(nl)]
        work_cov = [dict() for _ in range(nl)]
        for s_, (q, r, d) in enumerate(stays):
            lo_, hi_ = t[q] - start, d - start
            for n in range(lo_ // DAY_S - 1, hi_ // DAY_S + 1):
                ws, we = window(n, na, nb)
                ov = min(hi_, we) - max(lo_, ws)
                if ov > 0:
                    night_cov[loc[s_]][n] = night_cov[loc[s_]].get(n, 0) + ov
                if weekday(n) in ip.work_weekdays:
                    ws, we = window(n, wa, wb)
                    ov = min(hi_, we) - max(lo_, ws)
                    if ov > 0:
                        work_cov[loc[s_]][n] = work_cov[loc[s_]].get(n, 0) + ov
        cnt = [0] * nl
        lx = [0.0] * nl
        ly = [0.0] * nl
        for s_ in range(len(stays)):
            cnt[loc[s_]] += cnt_s[s_]
            lx[loc[s_]] += sx[s_]
            ly[loc[s_]] += sy[s_]
        nights = [sum(1 for v in night_cov[l].values() if v >= sp.min_overlap_s) for l in range(nl)]
        night_s = [sum(night_cov[l].values()) for l in range(nl)]
        wdays = [sum(1 for v in work_cov[l].values() if v >= sp.min_overlap_s) for l in range(nl)]
        work_s = [sum(work_cov[l].values()) for l in range(nl)]
        obs = {n for l in range(nl) for n, v in work_cov[l].items() if v >= sp.min_overlap_s}
        for tv in t:
            rel = tv - start
            d, s = rel // DAY_S, rel % DAY_S
            if wa <= wb:
                w = d if wa <= s < wb else None
            else:
                w = d if s >= wa else (d - 1 if s < wb else None)
            if w is not None and weekday(w) in ip.work_weekdays:
                obs.add(w)
        home = -1
        for c in range(nl):
            if nights[c] == 0:
                continue
            if home < 0 or (nights[c], night_s[c]) > (nights[home], night_s[home]):
                home = c
        if home >= 0 and nights[home] < ip.min_home_nights:
            home = -1
        work = -1
        if not (ip.work_requires_home and home < 0):
            for c in range(nl):
                if c == home or wdays[c] == 0:
                    continue
                if home >= 0:
                    dx = lx[c] / cnt[c] - lx[home] / cnt[home]
                    dy = ly[c] / cnt[c] - ly[home] / cnt[home]
                    if dx * dx + dy * dy < ip.min_work_dist_m ** 2:
                        continue
                if work < 0 or (wdays[c], work_s[c]) > (wdays[work], work_s[work]):
                    work = c
            if work >= 0:
                hn = nights[home] if home >= 0 else 0
                if (wdays[work] < ip.min_work_days or wdays[work] < ip.min_work_share * len(obs)
                        or nights[work] > ip.max_work_night_share * hn):
                    work = -1
        out.append(dict(
            home_x_m=lx[home] / cnt[home] if home >= 0 else np.nan,
            home_y_m=ly[home] / cnt[home] if home >= 0 else np.nan,
            home_nights=nights[home] if home >= 0 else 0, home_pings=cnt[home] if home >= 0 else 0,
            work_x_m=lx[work] / cnt[work] if work >= 0 else np.nan,
            work_y_m=ly[work] / cnt[work] if work >= 0 else np.nan,
            work_days=wdays[work] if work >= 0 else 0, work_pings=cnt[work] if work >= 0 else 0,
            n_pings=int(b - a), n_days_observed=len(set(((t_all - start) // DAY_S).tolist()))))
    return pd.DataFrame(out)


# ============================================================================ helpers
def make_traces(rows, utc_offset_s=0, accuracy=None):
    df = pd.DataFrame(rows, columns=["pseudonym", "t_s", "x_m", "y_m"])
    if accuracy is not None:
        df["accuracy_m"] = accuracy
    return Traces.from_frame(df, crs=CRS, utc_offset_s=utc_offset_s)


def random_walk(rng, n, n_places=3, spread=60.0, step_s=(1, 400)):
    """Fixes that dwell at a few places (noise ``spread``) and jump between them."""
    places = rng.uniform(-3000, 3000, size=(n_places, 2))
    t = T0 + np.cumsum(rng.integers(step_s[0], step_s[1], size=n))
    # occasional long gaps (logger off)
    gaps = rng.random(n) < 0.02
    t = t + np.cumsum(gaps * rng.integers(3600, 30 * 3600, size=n))
    which = np.repeat(rng.integers(0, n_places, size=n // 8 + 1), 8)[:n]
    xy = places[which] + rng.normal(0, spread, size=(n, 2))
    return t.astype(np.int64), xy[:, 0], xy[:, 1]


# ============================================================================ stay points
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("D,T,G", [(100.0, 300, None), (50.0, 0, None), (200.0, 900, 3600), (100.0, 300, 60)])
def test_kernel_equals_reference_randomized(seed, D, T, G):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(5):
        t, x, y = random_walk(rng, int(rng.integers(0, 300)))
        rows += [(f"u{u}", int(a), float(b), float(c)) for a, b, c in zip(t, x, y)]
    tr = make_traces(rows)
    labels, depart = staypoint_labels(tr, D, T, G)
    for i in range(tr.n_traces):
        a, b = tr.offsets[i], tr.offsets[i + 1]
        rl, rd = ref_stays(tr.t_s[a:b].tolist(), tr.x_m[a:b].tolist(), tr.y_m[a:b].tolist(), D, T, G)
        assert labels[a:b].tolist() == rl
        assert depart[a:b].tolist() == rd


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 900), st.floats(-150, 150), st.floats(-150, 150)), min_size=0, max_size=40),
       st.sampled_from([10.0, 50.0, 100.0]), st.integers(0, 1200), st.one_of(st.none(), st.integers(1, 600)))
def test_kernel_equals_reference_hypothesis(steps, D, T, G):
    t = (T0 + np.cumsum([s[0] for s in steps])).astype(np.int64) if steps else np.zeros(0, np.int64)
    rows = [("a", int(tt), s[1], s[2]) for tt, s in zip(t, steps)] or [("a", T0, 0.0, 0.0)]
    tr = make_traces(rows)
    labels, depart = staypoint_labels(tr, D, T, G)
    rl, rd = ref_stays(tr.t_s.tolist(), tr.x_m.tolist(), tr.y_m.tolist(), D, T, G)
    assert labels.tolist() == rl and depart.tolist() == rd


def test_threshold_edges():
    # distance exactly D leaves the run (within means < D); duration exactly T is a stay
    rows = [("a", T0, 0.0, 0.0), ("a", T0 + 100, 99.999, 0.0), ("a", T0 + 300, 100.0, 0.0),
            ("a", T0 + 301, 100.0, 0.0)]
    lab, dep = staypoint_labels(make_traces(rows), 100.0, 300)
    assert lab.tolist() == [0, 0, -1, -1] and dep[0] == T0 + 300  # departs at the leaving fix
    lab, _ = staypoint_labels(make_traces(rows), 100.0, 301)
    assert lab.tolist() == [-1, -1, -1, -1]  # 300 s < 301 s: not a stay
    # gap exactly G does not split; G + 1 does, and the gap is not part of the stay
    rows = [("a", T0, 0.0, 0.0), ("a", T0 + 600, 1.0, 0.0), ("a", T0 + 1200, 2.0, 0.0)]
    lab, dep = staypoint_labels(make_traces(rows), 100.0, 300, gap_threshold_s=600)
    assert lab.tolist() == [0, 0, 0] and dep[0] == T0 + 1200
    lab, dep = staypoint_labels(make_traces(rows), 100.0, 300, gap_threshold_s=599)
    assert lab.tolist() == [-1, -1, -1]  # every run is a single fix of 0 s
    lab, dep = staypoint_labels(make_traces(rows), 100.0, 0, gap_threshold_s=599)
    assert lab.tolist() == [0, 1, 2] and dep[0] == T0 and dep[1] == T0 + 600
    # the last run of a trace counts (until its last fix); a single fix is a 0 s run
    lab, dep = staypoint_labels(make_traces([("a", T0, 0.0, 0.0)]), 100.0, 0)
    assert lab.tolist() == [0] and dep.tolist() == [T0]
    lab, _ = staypoint_labels(make_traces([("a", T0, 0.0, 0.0)]), 100.0, 1)
    assert lab.tolist() == [-1]


def test_overnight_logger_gap_is_one_stay_without_gap_rule():
    # home in the evening, logger off, home again in the morning, then leaves
    rows = [("a", T0 + 20 * 3600, 0.0, 0.0), ("a", T0 + 20 * 3600 + 60, 5.0, 0.0),
            ("a", T0 + 31 * 3600, 8.0, 3.0), ("a", T0 + 31 * 3600 + 60, 900.0, 0.0)]
    lab, dep = staypoint_labels(make_traces(rows), 100.0, 300)  # default gap rule: 24 h
    assert lab.tolist() == [0, 0, 0, -1] and dep[0] == T0 + 31 * 3600 + 60
    lab, dep = staypoint_labels(make_traces(rows), 100.0, 300, gap_threshold_s=None)
    assert lab.tolist() == [0, 0, 0, -1]
    assert StayParams().gap_threshold_s == 86400
    lab, dep = staypoint_labels(make_traces(rows), 100.0, 300, gap_threshold_s=3600)
    assert lab.tolist() == [-1, -1, -1, -1]


def test_staypoint_table_and_params():
    rows = [("a", T0 + 60 * i, float(i % 3), 0.0) for i in range(20)] + [("a", T0 + 5000, 5000.0, 0.0)]
    st_ = staypoint_table(make_traces(rows))
    assert len(st_) == 1
    r = st_.iloc[0]
    assert r.n_fixes == 20 and r.t_start_s == T0 and r.t_end_s == T0 + 5000 and r.duration_s == 5000
    assert r.location == 0 and abs(r.x_m - np.mean([i % 3 for i in range(20)])) < 1e-9
    with pytest.raises(ConfigError):
        staypoint_table(make_traces(rows), dist_threshold_m=0)
    with pytest.raises(ConfigError):
        staypoint_table(make_traces(rows), gap_threshold_s=0)
    with pytest.raises(ConfigError, match="Stay-point parameters"):
        staypoint_table(make_traces(rows), dist_treshold_m=5)
    with pytest.raises(InputError):
        staypoint_labels(pd.DataFrame())


@pytest.mark.parametrize("seed", range(5))
def test_locations_equal_reference_and_dbscan(seed):
    from sklearn.cluster import DBSCAN

    rng = np.random.default_rng(seed)
    sizes = rng.integers(0, 40, size=4)
    off = np.concatenate([[0], np.cumsum(sizes)])
    x = rng.uniform(0, 1000, off[-1])
    y = rng.uniform(0, 1000, off[-1])
    got = location_labels(x, y, off, 120.0)
    for i in range(len(sizes)):
        a, b = off[i], off[i + 1]
        assert got[a:b].tolist() == ref_locations(x[a:b].tolist(), y[a:b].tolist(), 120.0)
        if b > a:
            sk = DBSCAN(eps=120.0, min_samples=1).fit(np.column_stack([x[a:b], y[a:b]])).labels_
            # same partition (sklearn numbers clusters in its own order)
            assert pd.crosstab(got[a:b], sk).astype(bool).sum(axis=1).eq(1).all()
            assert pd.crosstab(sk, got[a:b]).astype(bool).sum(axis=1).eq(1).all()


# ============================================================================ home / work
def week_of(person, home, work, *, works=True, start_day=0, days=10, utc_offset_s=0, step=30, logger_gaps=True):
    """A dense log: at home nights (logger off in between), at work 9-17 on weekdays,
    fixes every ``step`` seconds around arrivals and departures."""
    rows = []
    base = T0 - utc_offset_s
    for d in range(start_day, start_day + days):
        day0 = base + d * DAY_S
        wd = ((T0 // DAY_S) + d + 3) % 7
        if works and wd < 5:
            stays = [(home, day0 + 7 * 3600, day0 + 8 * 3600), (work, day0 + 9 * 3600, day0 + 17 * 3600),
                     (home, day0 + 18 * 3600, day0 + 19 * 3600)]
        else:
            stays = [(home, day0 + 8 * 3600, day0 + 9 * 3600), (home, day0 + 18 * 3600, day0 + 19 * 3600)]
        for (px, py), a, b in stays:
            ts = list(range(a, a + 600, step)) + list(range(b - 600, b, step)) if logger_gaps else \
                list(range(a, b, step))
            rows += [(person, t, px + (t % 7), py + (t % 5)) for t in ts]
    return rows


def test_home_and_work_from_durations():
    rows = week_of("p", (0.0, 0.0), (5000.0, 0.0)) + week_of("q", (200.0, 9000.0), (0, 0), works=False)
    tr = make_traces(rows)
    inf = infer_home_work_stays(tr)
    assert list(inf.columns) == list(INFERRED_COLUMNS)
    p = inf.set_index("pseudonym")
    assert abs(p.loc["p", "home_x_m"]) < 20 and abs(p.loc["p", "work_x_m"] - 5000) < 20
    assert p.loc["p", "home_nights"] >= 8 and p.loc["p", "work_days"] >= 6
    assert np.isnan(p.loc["q", "work_x_m"]) and p.loc["q", "work_days"] == 0
    assert p.loc["q", "home_nights"] >= 8
    ref = ref_home_work(tr, *StayParams.split())
    pd.testing.assert_frame_equal(inf.drop(columns=["pseudonym", "home_lat_deg", "home_lon_deg", "work_lat_deg",
                                                    "work_lon_deg", "window_days"]).reset_index(drop=True),
                                  ref[inf.columns.drop(["pseudonym", "home_lat_deg", "home_lon_deg", "work_lat_deg",
                                                        "work_lon_deg", "window_days"])], check_dtype=False)


@pytest.mark.parametrize("seed", range(12))
def test_home_work_kernel_equals_reference(seed):
    rng = np.random.default_rng(100 + seed)
    rows, acc = [], []
    for u in range(6):
        t, x, y = random_walk(rng, int(rng.integers(0, 400)), n_places=int(rng.integers(1, 4)), step_s=(30, 2400))
        rows += [(f"u{u}", int(a), float(b), float(c)) for a, b, c in zip(t, x, y)]
        acc += rng.choice([5.0, 50.0, 500.0, np.nan], size=len(t)).tolist()
    tr = make_traces(rows, utc_offset_s=int(rng.integers(-12, 13)) * 3600, accuracy=acc)
    params = dict(min_overlap_s=int(rng.choice([60, 1800])), gap_threshold_s=rng.choice([None, 7200]),
                  min_work_days=1, min_work_share=float(rng.choice([0.0, 0.5])), work_requires_home=bool(seed % 2),
                  max_accuracy_m=float(rng.choice([100.0, 1000.0])), location_eps_m=float(rng.choice([50.0, 300.0])),
                  max_work_night_share=float(rng.choice([0.25, np.inf])), min_work_dist_m=float(rng.choice([0, 100])))
    inf = infer_home_work_stays(tr, **params)
    ref = ref_home_work(tr, *StayParams.split(**params))
    cols = ["home_x_m", "home_y_m", "home_nights", "home_pings", "work_x_m", "work_y_m", "work_days", "work_pings",
            "n_pings", "n_days_observed"]
    pd.testing.assert_frame_equal(inf[cols].reset_index(drop=True), ref[cols], check_dtype=False, rtol=1e-12)


def test_min_overlap_is_inclusive():
    # one night at home covering exactly 1800 s of the 22:00-06:00 window
    # (the stay lasts until the fix that leaves: 21:00 to 22:30)
    rows = [("a", T0 + 21 * 3600, 0.0, 0.0), ("a", T0 + 22 * 3600 + 1700, 1.0, 0.0),
            ("a", T0 + 22 * 3600 + 1800, 5000.0, 0.0)]
    tr = make_traces(rows)
    assert infer_home_work_stays(tr, min_overlap_s=1800)["home_nights"].tolist() == [1]
    assert infer_home_work_stays(tr, min_overlap_s=1801)["home_nights"].tolist() == [0]


# ============================================================================ method choice
def test_choose_method_dense_vs_sparse(small_sim):
    dense = make_traces(week_of("p", (0.0, 0.0), (5000.0, 0.0), step=5))
    m, stats_ = choose_method(dense)
    assert m == "staypoints" and stats_["median_interval_s"] == 5
    m, stats_ = choose_method(small_sim.release)
    assert m == "dbscan", stats_
    inf, used = infer_auto(small_sim.release)
    assert used == "dbscan" and list(inf.columns) == list(INFERRED_COLUMNS)
    inf2, used2 = infer_auto(dense, method="auto")
    assert used2 == "staypoints" and inf2["home_nights"].iloc[0] > 0
    with pytest.raises(ConfigError):
        infer_auto(dense, method="kmeans")
    s = sampling_stats(make_traces([("a", T0, 0.0, 0.0)]))
    assert s["n_intervals"] == 0 and math.isnan(s["median_interval_s"])
