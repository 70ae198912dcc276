"""Time-based stay points, and home/work from stay durations (dense GPS logs).

Dense logs (a fix every few seconds while moving, nothing while the phone sleeps or the
logger is off) defeat ping-count clustering: a car waiting at a light piles up more
fixes than a night at home.  Here places come from *stay points* and are weighed by the
*time* spent there and the number of distinct nights and days, never by fix counts.

Stay points (the distance-and-duration rule of Li et al. 2008, as trackintel's
``generate_staypoints(method="sliding")`` uses it)
-------------------------------------------------------------------------------
For one trace with fixes ``0..n-1`` in time order (distances Euclidean in metres of
``traces.crs``)::

    i = 0
    while i < n:
        j = i + 1
        while j < n and not gap(j) and dist(i, j) < D:   # the run's anchor is fix i
            j += 1
        # run = fixes i..j-1, maximal
        end = t[j] if (j < n and not gap(j)) else t[j-1]
        stay if end - t[i] >= T   (arrival t[i], departure end)
        i = j

* ``D = dist_threshold_m``: a fix is *within* the run when its distance to the run's
  first fix is ``< D`` (strict); a fix at ``>= D`` ends the run (as trackintel).
* ``T = time_threshold_s``: a run is a stay when ``end - t[i] >= T`` (inclusive).  When
  the run ends because fix ``j`` left the disc, the stay lasts until ``t[j]`` (the person
  left between ``t[j-1]`` and ``t[j]``; trackintel counts it the same way).
* ``gap(j)`` is ``t[j] - t[j-1] > G`` (strict) with ``G = gap_threshold_s`` (None: no
  gap rule).  A gap ends the run at fix ``j-1`` and the stay, if long enough, lasts until
  ``t[j-1]``: the gap is never part of a stay.  (trackintel discards a run cut by a gap;
  here it is kept when its observed part is long enough.)  The default ``G = 86400``
  (24 h) is long on purpose: a logger switched off at home in the evening and on again
  there in the morning gives one stay covering the night — which is what home detection
  on such logs needs — while a phone silent for days is not taken to have stayed put.
  (trackintel's default is 15 min, which loses those nights.)
* The last run of a trace is judged like any other, with ``end = t[n-1]`` (trackintel's
  ``include_last=True``).
* The stay's position is the mean of its fixes.

Places and home/work
--------------------
Stay points of a trace are grouped into *locations* by single linkage: stays whose
positions are at distance ``<= location_eps_m`` (inclusive) are in one location, i.e.
DBSCAN with ``min_samples = 1`` (trackintel's ``generate_locations`` defaults: 100 m,
1 sample); locations are numbered by their earliest stay.  A location's position is the
mean of the fixes of its stays.

Support per location:

* **nights** — distinct local nights (window ``[night_start_h, night_end_h)``, wrapping
  midnight, identified by the day it opens, as in :mod:`sim.infer`) during which the
  location's stays cover at least ``min_overlap_s`` seconds in total (inclusive);
  ``night_s`` is the total covered night time;
* **working days** — distinct local days of ``work_weekdays`` whose working-hours window
  the location's stays cover for at least ``min_overlap_s``; ``work_s`` the total time.

Then the rules of :mod:`sim.infer` apply unchanged (the same compiled
``choose_home_work``), with seconds in place of ping counts as tie-breakers: home = most
nights (ties: more night seconds, then the earliest location), unknown below
``min_home_nights``; work = among other locations at ``>= min_work_dist_m`` from home,
most working days (ties: more working seconds, then earliest), reported only if its days
are ``>= min_work_days`` and ``>= min_work_share`` x the trace's observed working days
(working-hours windows of ``work_weekdays`` holding a fix or counted at a location) and
its nights are ``<= max_work_night_share`` x the home's nights; with
``work_requires_home`` work is unknown when home is.  Fixes with ``accuracy_m >
max_accuracy_m`` are dropped before stay detection (NaN accuracy is kept).

Output: the columns :data:`sim.infer.INFERRED_COLUMNS`; ``home_pings``/``work_pings``
count the fixes in the location's stays, ``n_pings`` every fix of the trace (before the
accuracy filter), ``n_days_observed`` its distinct local days.

Choosing the method (:func:`choose_method`)
-------------------------------------------
``"staypoints"`` when the data are **dense**: the median interval between consecutive
fixes of a trace (pooled over all traces) is ``< 60 s`` **and** the median number of
fixes per active trace-day is ``>= 100``; otherwise ``"dbscan"`` (:mod:`sim.infer` on
pings).  The second condition keeps broker panels, whose app-session bursts put pings
seconds apart but only a few dozen a day, on DBSCAN.  (GeoLife: a fix every 1-5 s,
hundreds to thousands a day; the synthetic broker panel: median 64 s, ~11 a day.)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numba
import numpy as np
import pandas as pd

from sim.core.constants import DAY_S
from sim.core.errors import ConfigError, CRSError, InputError
from sim.infer._kernels import find_root, union_roots
from sim.core.jit import jit, pjit, prange
from sim.core.traces import Traces
from sim.infer import INFERRED_COLUMNS, InferenceParams, infer_home_work
from sim.infer import _kernels as K

__all__ = ["StayParams", "staypoint_labels", "staypoint_table", "location_labels", "infer_home_work_stays",
           "sampling_stats", "choose_method", "infer_auto", "METHODS", "DENSE_MAX_INTERVAL_S",
           "DENSE_MIN_FIXES_PER_DAY", "STAYPOINT_COLUMNS"]

METHODS = ("auto", "staypoints", "dbscan")
#: dense when the median interval between consecutive fixes is below this (seconds) ...
DENSE_MAX_INTERVAL_S = 60.0
#: ... and the median number of fixes per active trace-day is at least this
DENSE_MIN_FIXES_PER_DAY = 100
STAYPOINT_COLUMNS = ("pseudonym", "trace", "stay", "n_fixes", "x_m", "y_m", "t_start_s", "t_end_s",
                     "duration_s", "location")
_NO_ID = K.NO_ID


# ============================================================================ params
@dataclass(frozen=True)
class StayParams:
    """Stay-point and location parameters (the rest comes from :class:`InferenceParams`).

    dist_threshold_m : float > 0 — a fix at ``>= D`` from the run's first fix ends it.
    time_threshold_s : int >= 0 — a run lasting ``>= T`` seconds is a stay.
    gap_threshold_s : int > 0 or None — consecutive fixes more than ``G`` apart end a run
        (default 86400 s; None: never).
    location_eps_m : float > 0 — stays within this distance (inclusive) share a location.
    min_overlap_s : int >= 1 — seconds of a night / working window a location must cover
        to count that night / working day.
    """

    dist_threshold_m: float = 100.0
    time_threshold_s: int = 300
    gap_threshold_s: int | None = 86400
    location_eps_m: float = 100.0
    min_overlap_s: int = 1800

    @classmethod
    def names(cls) -> tuple:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def split(cls, **params) -> tuple["StayParams", InferenceParams]:
        """Validate ``params``: StayParams fields and InferenceParams fields."""
        mine = {k: v for k, v in params.items() if k in cls.names()}
        rest = {k: v for k, v in params.items() if k not in cls.names()}
        try:
            ip = InferenceParams.make(**rest)
        except ConfigError as e:
            if "unknown inference parameter" in str(e):
                raise ConfigError(f"{e} Stay-point parameters: {list(cls.names())}.") from None
            raise
        return cls(**mine).validated(), ip

    def validated(self) -> "StayParams":
        d = _num("dist_threshold_m", self.dist_threshold_m, lo_open=0.0)
        t = _whole("time_threshold_s", self.time_threshold_s, lo=0)
        g = None if self.gap_threshold_s is None else _whole("gap_threshold_s", self.gap_threshold_s, lo=1)
        e = _num("location_eps_m", self.location_eps_m, lo_open=0.0)
        o = _whole("min_overlap_s", self.min_overlap_s, lo=1)
        return StayParams(d, t, g, e, o)

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _num(name, v, lo_open=None):
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
        raise ConfigError(f"{name} must be a finite number, got {v!r}.")
    if lo_open is not None and v <= lo_open:
        raise ConfigError(f"{name} must be > {lo_open:g}, got {v!r}.")
    return float(v)


def _whole(name, v, lo):
    if isinstance(v, (float, np.floating)) and math.isfinite(v) and float(v).is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ConfigError(f"{name} must be a whole number of seconds >= {lo}, got {v!r}.")
    return int(v)


def _check(traces) -> Traces:
    if not isinstance(traces, Traces):
        raise InputError(f"traces must be a sim.core.traces.Traces, got {type(traces).__name__}; build one "
                         "with Traces.from_frame(df, crs=...) or sim.release.readers.read_pings.")
    return traces.validate()


# ============================================================================ kernels
@jit
def stays_one(t, x, y, d2, time_s, gap_s, use_gap, labels, depart):
    """Stay points of one trace: ``labels[q]`` = stay number (0, 1, ...) or -1, and
    ``depart[q]`` = departure time at each stay's first fix (0 elsewhere).  Returns the
    number of stays.  See the module docstring for the rule."""
    n = len(t)
    k = 0
    i = 0
    while i < n:
        j = i + 1
        gap_end = False
        while j < n:
            if use_gap and t[j] - t[j - 1] > gap_s:
                gap_end = True
                break
            dx = x[j] - x[i]
            dy = y[j] - y[i]
            if dx * dx + dy * dy >= d2:
                break
            j += 1
        if j < n and not gap_end:
            end = t[j]
        else:
            end = t[j - 1]
        if end - t[i] >= time_s:
            for q in range(i, j):
                labels[q] = k
            depart[i] = end
            k += 1
        else:
            for q in range(i, j):
                labels[q] = -1
        i = j
    return k


@pjit
def _stays_kernel(off, t, x, y, d2, time_s, gap_s, use_gap, labels, depart, n_stays):
    for i in prange(len(off) - 1):
        a, b = off[i], off[i + 1]
        n_stays[i] = stays_one(t[a:b], x[a:b], y[a:b], d2, time_s, gap_s, use_gap, labels[a:b], depart[a:b])


@jit
def locations_one(x, y, eps2, out):
    """Single-linkage groups (distance^2 <= eps2) of one trace's stays, numbered by their
    earliest stay; returns the number of locations."""
    m = len(x)
    parent = np.arange(m)
    for a in range(m):
        for b in range(a + 1, m):
            dx = x[b] - x[a]
            dy = y[b] - y[a]
            if dx * dx + dy * dy <= eps2:
                union_roots(parent, a, b)
    nl = 0
    num = np.full(m, -1, dtype=np.int64)
    for a in range(m):
        r = find_root(parent, a)
        if num[r] < 0:
            num[r] = nl
            nl += 1
        out[a] = num[r]
    return nl


@pjit
def _locations_kernel(soff, x, y, eps2, out, n_loc):
    for i in prange(len(soff) - 1):
        a, b = soff[i], soff[i + 1]
        n_loc[i] = locations_one(x[a:b], y[a:b], eps2, out[a:b])


@jit
def _push(buf, n, value):
    """``buf[n] = value`` on a growable int64 buffer holding ``n`` values; returns the
    buffer (a copy of twice the size when it was full)."""
    if n == len(buf):
        nb = np.empty(2 * len(buf), dtype=np.int64)
        nb[:n] = buf[:n]
        buf = nb
    buf[n] = value
    return buf


@jit
def _window_bounds(n, wa, wb):
    ws = n * 86400 + wa
    we = n * 86400 + wb
    if wa > wb:
        we += 86400
    return ws, we


@jit
def _fix_window(rel, wa, wb):
    """Window id (opening day) of a fix at ``rel`` seconds, or NO_ID."""
    d = rel // 86400
    s = rel - d * 86400
    if wa <= wb:
        if s >= wa and s < wb:
            return d
        return _NO_ID
    if s >= wa:
        return d
    if s < wb:
        return d - 1
    return _NO_ID


@jit
def _accumulate(l, n, ov, cur, acc, count, total, min_ov):
    if cur[l] != n:
        if cur[l] != _NO_ID and acc[l] >= min_ov:
            count[l] += 1
        cur[l] = n
        acc[l] = 0
    acc[l] += ov
    total[l] += ov


@jit
def home_work_one(st_a, st_b, st_sx, st_sy, st_n, st_loc, n_loc, fix_rel, epoch_day0, night_a, night_b,
                  work_a, work_b, wd_mask, min_ov, min_home_nights, min_work_days, min_work_share,
                  max_work_night_share, min_work_dist_m, work_requires_home, of, oi):
    """Home/work of one trace from its stays (``st_*``: arrival/departure in seconds since
    ``start_s``, sums of fix x/y, fix counts, location) and its kept fixes' ``fix_rel``."""
    nl = n_loc
    cnt = np.zeros(nl, dtype=np.int64)
    sx = np.zeros(nl)
    sy = np.zeros(nl)
    nights = np.zeros(nl, dtype=np.int64)
    night_s = np.zeros(nl, dtype=np.int64)
    wdays = np.zeros(nl, dtype=np.int64)
    work_s = np.zeros(nl, dtype=np.int64)
    cur_n = np.full(nl, _NO_ID, dtype=np.int64)
    acc_n = np.zeros(nl, dtype=np.int64)
    cur_w = np.full(nl, _NO_ID, dtype=np.int64)
    acc_w = np.zeros(nl, dtype=np.int64)
    wids = np.empty(16, dtype=np.int64)
    nw = 0
    for s in range(len(st_a)):
        l = st_loc[s]
        cnt[l] += st_n[s]
        sx[l] += st_sx[s]
        sy[l] += st_sy[s]
        a = st_a[s]
        b = st_b[s]
        lo = a // 86400 - 1
        hi = b // 86400
        for n in range(lo, hi + 1):
            ws, we = _window_bounds(n, night_a, night_b)
            ov = min(b, we) - max(a, ws)
            if ov > 0:
                _accumulate(l, n, ov, cur_n, acc_n, nights, night_s, min_ov)
            if wd_mask[(epoch_day0 + n + 3) % 7]:
                ws, we = _window_bounds(n, work_a, work_b)
                ov = min(b, we) - max(a, ws)
                if ov > 0:
                    if cur_w[l] != n and cur_w[l] != _NO_ID and acc_w[l] >= min_ov:
                        wids = _push(wids, nw, cur_w[l])
                        nw += 1
                    _accumulate(l, n, ov, cur_w, acc_w, wdays, work_s, min_ov)
    for l in range(nl):  # close the last window of every location
        if cur_n[l] != _NO_ID and acc_n[l] >= min_ov:
            nights[l] += 1
        if cur_w[l] != _NO_ID and acc_w[l] >= min_ov:
            wdays[l] += 1
            wids = _push(wids, nw, cur_w[l])
            nw += 1
    # observed working days: windows holding a fix, or counted at a location
    last = _NO_ID
    for q in range(len(fix_rel)):
        w = _fix_window(fix_rel[q], work_a, work_b)
        if w != _NO_ID and w != last and wd_mask[(epoch_day0 + w + 3) % 7]:
            wids = _push(wids, nw, w)
            nw += 1
            last = w
    n_work_obs = 0
    if nw:
        u = np.sort(wids[:nw])
        n_work_obs = 1
        for q in range(1, nw):
            if u[q] != u[q - 1]:
                n_work_obs += 1
    home, work = K.choose_home_work(nl, cnt, sx, sy, nights, night_s, wdays, work_s, n_work_obs,
                                    min_home_nights, min_work_days, min_work_share, max_work_night_share,
                                    min_work_dist_m, work_requires_home)
    oi[0] = home
    oi[1] = work
    if home >= 0:
        of[0] = sx[home] / cnt[home]
        of[1] = sy[home] / cnt[home]
        oi[2] = nights[home]
        oi[3] = cnt[home]
    if work >= 0:
        of[2] = sx[work] / cnt[work]
        of[3] = sy[work] / cnt[work]
        oi[4] = wdays[work]
        oi[5] = cnt[work]


@pjit
def _home_work_kernel(soff, st_a, st_b, st_sx, st_sy, st_n, st_loc, n_loc, foff, fix_rel, epoch_day0, night_a,
                      night_b, work_a, work_b, wd_mask, min_ov, min_home_nights, min_work_days, min_work_share,
                      max_work_night_share, min_work_dist_m, work_requires_home, out_f, out_i):
    for i in prange(len(soff) - 1):
        a, b = soff[i], soff[i + 1]
        home_work_one(st_a[a:b], st_b[a:b], st_sx[a:b], st_sy[a:b], st_n[a:b], st_loc[a:b], n_loc[i],
                      fix_rel[foff[i]:foff[i + 1]], epoch_day0, night_a, night_b, work_a, work_b, wd_mask,
                      min_ov, min_home_nights, min_work_days, min_work_share, max_work_night_share,
                      min_work_dist_m, work_requires_home, out_f[i], out_i[i])


# ============================================================================ public
def staypoint_labels(traces: Traces, dist_threshold_m: float = 100.0, time_threshold_s: int = 300,
                     gap_threshold_s: int | None = 86400):
    """Per fix: stay number within its trace (-1 none) and, at each stay's first fix, its
    departure time (0 elsewhere).  Returns ``(labels, depart)``, int64 arrays."""
    traces = _check(traces)
    sp = StayParams(dist_threshold_m, time_threshold_s, gap_threshold_s).validated()
    n = traces.n_pings
    labels = np.full(n, -1, dtype=np.int64)
    depart = np.zeros(n, dtype=np.int64)
    n_stays = np.zeros(traces.n_traces, dtype=np.int64)
    if n:
        with numba.parallel_chunksize(8):
            _stays_kernel(np.ascontiguousarray(traces.offsets, dtype=np.int64),
                          np.ascontiguousarray(traces.t_s, dtype=np.int64),
                          np.ascontiguousarray(traces.x_m, dtype=np.float64),
                          np.ascontiguousarray(traces.y_m, dtype=np.float64),
                          sp.dist_threshold_m ** 2, np.int64(sp.time_threshold_s),
                          np.int64(sp.gap_threshold_s or 0), sp.gap_threshold_s is not None, labels, depart,
                          n_stays)
    return labels, depart


def _stay_arrays(traces: Traces, labels, depart):
    """Per stay (trace order, then time): trace, stay, first row, n_fixes, sums of x/y,
    arrival, departure."""
    n = traces.n_pings
    tr = traces.trace_index()
    lab = labels
    first = np.zeros(n, dtype=bool)
    if n:
        first[0] = lab[0] >= 0
        first[1:] = (lab[1:] >= 0) & ((lab[1:] != lab[:-1]) | (tr[1:] != tr[:-1]))
    sid = np.cumsum(first) - 1
    rows = np.flatnonzero(first)
    m = len(rows)
    member = lab >= 0
    nf = np.bincount(sid[member], minlength=m).astype(np.int64)
    sx = np.bincount(sid[member], weights=traces.x_m[member], minlength=m)
    sy = np.bincount(sid[member], weights=traces.y_m[member], minlength=m)
    return dict(trace=tr[rows], stay=lab[rows], row=rows, n=nf, sx=sx, sy=sy, t_start=traces.t_s[rows],
                t_end=depart[rows])


def _locations(traces: Traces, st: dict, eps_m: float):
    m = len(st["trace"])
    soff = np.zeros(traces.n_traces + 1, dtype=np.int64)
    np.cumsum(np.bincount(st["trace"], minlength=traces.n_traces), out=soff[1:])
    loc = np.full(m, -1, dtype=np.int64)
    n_loc = np.zeros(traces.n_traces, dtype=np.int64)
    if m:
        x = st["sx"] / st["n"]
        y = st["sy"] / st["n"]
        _locations_kernel(soff, np.ascontiguousarray(x), np.ascontiguousarray(y), float(eps_m) ** 2, loc, n_loc)
    return soff, loc, n_loc


def staypoint_table(traces: Traces, **params) -> pd.DataFrame:
    """One row per stay point (:data:`STAYPOINT_COLUMNS`): its trace, number, fixes, mean
    position, arrival, departure, duration and location (see the module docstring).
    Accepts :class:`StayParams` fields and ``max_accuracy_m``; other
    :class:`InferenceParams` fields are validated and ignored."""
    sp, ip = StayParams.split(**params)
    traces = _check(traces)
    kept = _accuracy_filter(traces, ip)
    labels, depart = staypoint_labels(kept, sp.dist_threshold_m, sp.time_threshold_s, sp.gap_threshold_s)
    st = _stay_arrays(kept, labels, depart)
    _, loc, _ = _locations(kept, st, sp.location_eps_m)
    return pd.DataFrame({
        "pseudonym": np.asarray(kept.pseudonym, dtype=object)[st["trace"]],
        "trace": st["trace"], "stay": st["stay"], "n_fixes": st["n"],
        "x_m": st["sx"] / np.maximum(st["n"], 1), "y_m": st["sy"] / np.maximum(st["n"], 1),
        "t_start_s": st["t_start"], "t_end_s": st["t_end"], "duration_s": st["t_end"] - st["t_start"],
        "location": loc,
    }, columns=list(STAYPOINT_COLUMNS))


def location_labels(x, y, offsets, eps_m: float) -> np.ndarray:
    """Single-linkage location number of each point (CSR ``offsets`` over groups), points
    at distance ``<= eps_m`` linked; numbered by first appearance within each group."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64)
    off = np.ascontiguousarray(offsets, dtype=np.int64)
    out = np.full(len(x), -1, dtype=np.int64)
    n_loc = np.zeros(len(off) - 1, dtype=np.int64)
    if len(x):
        _locations_kernel(off, x, y, float(eps_m) ** 2, out, n_loc)
    return out


def _accuracy_filter(traces: Traces, ip: InferenceParams) -> Traces:
    if ip.max_accuracy_m is None:
        return traces
    acc = np.asarray(traces.accuracy_m, dtype=np.float64)
    keep = ~(acc > ip.max_accuracy_m)  # NaN kept
    return traces if keep.all() else traces.select_pings(keep, drop_empty=False)


def _hour_s(h: float) -> int:
    return int(round(h * 3600.0))


def infer_home_work_stays(traces: Traces, **params) -> pd.DataFrame:
    """Home and work of every trace from time-based stay points (module docstring).

    ``params``: any :class:`StayParams` or :class:`InferenceParams` field (``eps_m`` and
    ``min_samples`` are DBSCAN's and ignored here).  Returns one row per trace with the
    columns :data:`sim.infer.INFERRED_COLUMNS`; ``window_days = traces.n_days``.
    """
    sp, ip = StayParams.split(**params)
    traces = _check(traces)
    return _home_work_table(traces, sp, ip, window_days=traces.n_days)


def _home_work_table(traces: Traces, sp: StayParams, ip: InferenceParams, window_days) -> pd.DataFrame:
    nt = traces.n_traces
    # support over every fix (before the accuracy filter)
    tr_all = traces.trace_index()
    n_pings = traces.lengths.astype(np.int64)
    day = traces.day()
    n_days = np.zeros(nt, dtype=np.int64)
    if traces.n_pings:
        key = np.unique(tr_all * np.int64(4 * 10**7) + (day - day.min()))
        n_days = np.bincount(key // np.int64(4 * 10**7), minlength=nt).astype(np.int64)
    kept = _accuracy_filter(traces, ip)
    labels, depart = staypoint_labels(kept, sp.dist_threshold_m, sp.time_threshold_s, sp.gap_threshold_s)
    st = _stay_arrays(kept, labels, depart)
    soff, loc, n_loc = _locations(kept, st, sp.location_eps_m)
    out_f = np.full((nt, 4), np.nan)
    out_i = np.zeros((nt, 6), dtype=np.int64)
    out_i[:, :2] = -1
    wd_mask = np.zeros(7, dtype=np.bool_)
    wd_mask[list(ip.work_weekdays)] = True
    epoch_day0 = (int(traces.start_s) + int(traces.utc_offset_s)) // DAY_S
    start = np.int64(traces.start_s)
    if nt:
        with numba.parallel_chunksize(8):
            _home_work_kernel(
                soff, np.ascontiguousarray(st["t_start"] - start), np.ascontiguousarray(st["t_end"] - start),
                np.ascontiguousarray(st["sx"]), np.ascontiguousarray(st["sy"]), np.ascontiguousarray(st["n"]),
                loc, n_loc, np.ascontiguousarray(kept.offsets, dtype=np.int64),
                np.ascontiguousarray(kept.t_s - start, dtype=np.int64), np.int64(epoch_day0),
                np.int64(_hour_s(ip.night_start_h)), np.int64(_hour_s(ip.night_end_h)),
                np.int64(_hour_s(ip.work_start_h)), np.int64(_hour_s(ip.work_end_h)), wd_mask,
                np.int64(sp.min_overlap_s), np.int64(ip.min_home_nights), np.int64(ip.min_work_days),
                float(ip.min_work_share), float(ip.max_work_night_share), float(ip.min_work_dist_m),
                bool(ip.work_requires_home), out_f, out_i)
    return _table(traces, out_f, out_i, n_pings, n_days, window_days)


def _table(traces, out_f, out_i, n_pings, n_days, window_days) -> pd.DataFrame:
    from sim.world.crs import project_to_latlon

    def latlon(x, y):
        lat = np.full(len(x), np.nan)
        lon = np.full(len(x), np.nan)
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.any():
            try:
                la, lo = project_to_latlon(x[ok], y[ok], traces.crs)
            except Exception as exc:  # pyproj raises several types
                raise CRSError(f"cannot convert from traces.crs={traces.crs!r:.200} to EPSG:4326 ({exc}); give "
                               "Traces a projected CRS pyproj understands, e.g. 'EPSG:32633'.") from None
            lat[ok], lon[ok] = la, lo
        return lat, lon

    hlat, hlon = latlon(out_f[:, 0], out_f[:, 1])
    wlat, wlon = latlon(out_f[:, 2], out_f[:, 3])
    return pd.DataFrame({
        "pseudonym": np.asarray(traces.pseudonym, dtype=object),
        "home_x_m": out_f[:, 0], "home_y_m": out_f[:, 1], "home_lat_deg": hlat, "home_lon_deg": hlon,
        "home_nights": out_i[:, 2], "home_pings": out_i[:, 3],
        "work_x_m": out_f[:, 2], "work_y_m": out_f[:, 3], "work_lat_deg": wlat, "work_lon_deg": wlon,
        "work_days": out_i[:, 4], "work_pings": out_i[:, 5],
        "n_pings": n_pings, "n_days_observed": n_days,
        "window_days": np.full(traces.n_traces, int(window_days), dtype=np.int64),
    }, columns=list(INFERRED_COLUMNS))


# ============================================================================ method choice
def sampling_stats(traces: Traces) -> dict:
    """Median interval between consecutive fixes of a trace (pooled), median fixes per
    active trace-day, and the numbers they rest on."""
    traces = _check(traces)
    n = traces.n_pings
    if n < 2:
        return dict(median_interval_s=math.nan, median_fixes_per_day=float(n), n_intervals=0, n_trace_days=int(n > 0))
    dt = np.diff(traces.t_s)
    same = np.diff(traces.trace_index()) == 0
    dt = dt[same]
    tr = traces.trace_index()
    day = traces.day()
    _, per_day = np.unique(tr * np.int64(4 * 10**7) + (day - day.min()), return_counts=True)
    return dict(median_interval_s=float(np.median(dt)) if len(dt) else math.nan,
                median_fixes_per_day=float(np.median(per_day)), n_intervals=int(len(dt)),
                n_trace_days=int(len(per_day)))


def choose_method(traces: Traces) -> tuple[str, dict]:
    """("staypoints" or "dbscan", sampling statistics) by the rule in the module docstring."""
    st = sampling_stats(traces)
    dense = (st["median_interval_s"] < DENSE_MAX_INTERVAL_S
             and st["median_fixes_per_day"] >= DENSE_MIN_FIXES_PER_DAY)
    st["rule"] = (f"staypoints if median interval < {DENSE_MAX_INTERVAL_S:g} s and median fixes per active "
                  f"trace-day >= {DENSE_MIN_FIXES_PER_DAY}, else dbscan")
    return ("staypoints" if dense else "dbscan"), st


def infer_auto(traces: Traces, method: str = "auto", **params) -> tuple[pd.DataFrame, str]:
    """Home/work with the method ``method`` ("auto": :func:`choose_method`); returns
    (inferred table, method used).  Stay-point parameters are ignored by "dbscan" and
    ``eps_m``/``min_samples`` by "staypoints"."""
    if method not in METHODS:
        raise ConfigError(f"method must be one of {METHODS}, got {method!r}.")
    traces = _check(traces)
    if method == "auto":
        method, _ = choose_method(traces)
    sp, ip = StayParams.split(**params)
    if method == "staypoints":
        return _home_work_table(traces, sp, ip, traces.n_days), method
    return infer_home_work(traces, **ip.as_dict()), method
