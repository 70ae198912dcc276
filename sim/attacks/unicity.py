"""Unicity of p random spatio-temporal points (de Montjoye et al. 2013).

Definitions
-----------
* A ping at (x_m, y_m, t_s) becomes the *point* (floor(x_m / v_m), floor(y_m / v_m),
  floor((t_s - start_s) / (h_h * 3600))): a square cell of ``v_m`` metres on a grid
  anchored at the CRS origin and a time bin of ``h_h`` hours starting at the window's
  local midnight.  A trace's points are its *distinct* points.
* For a sampled trace with at least ``p`` distinct points, ``p`` of them are drawn
  uniformly without replacement by a partial Fisher-Yates shuffle driven by the
  counter-based stream ``stream_key(seed, TAG_ATTACK, hash(pseudonym) ^ SALT)``.  The
  first ``p`` draws do not depend on ``p``, so the (p+1)-point sample extends the p-point
  sample: unicity is exactly monotone along a sweep over p.
* The trace is *unique* if no other trace contains all ``p`` points.  Traces with fewer
  than ``p`` distinct points are not sampled; they are reported as ``n_short``.
* Unicity = share of sampled traces that are unique (Wilson interval by default).

Algorithm
---------
Points are keyed by one int64; each trace's keys are sorted and deduplicated in one
numba pass; a stable global sort of (key, trace) pairs gives a posting list per key with
trace numbers ascending.  For each sampled trace the p posting lists are intersected
starting from the rarest (binary search of each candidate in the others), stopping as
soon as a second trace matches.  No trace is compared with every other.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from sim.core.jit import jit, pjit, prange
from sim.core.errors import ConfigError, InputError
from sim.core.rng import TAG_ATTACK, stream_key, uniform, stable_uid64
from sim.core.traces import Traces
from sim.attacks._common import check_int, check_positive, rate_row, uniforms

log = logging.getLogger(__name__)

SALT = np.uint64(0x5A17_0001)  # sub-stream of TAG_ATTACK for unicity point draws
SALT_SAMPLE = np.uint64(0x5A17_0002)  # sub-stream for choosing which traces to sample
_MAX_KEY = 2**62


# ----------------------------------------------------------------------------- kernels
@pjit
def _sort_dedupe_count(offsets, keys, counts):
    """Sort each trace's keys in place and count its distinct keys."""
    for i in prange(len(offsets) - 1):
        a, b = offsets[i], offsets[i + 1]
        if b > a:
            keys[a:b] = np.sort(keys[a:b])
            c = 1
            for j in range(a + 1, b):
                if keys[j] != keys[j - 1]:
                    c += 1
            counts[i] = c
        else:
            counts[i] = 0


@pjit
def _dedupe_fill(offsets, keys, out_offsets, out):
    for i in prange(len(offsets) - 1):
        a, b = offsets[i], offsets[i + 1]
        if b > a:
            o = out_offsets[i]
            out[o] = keys[a]
            o += 1
            for j in range(a + 1, b):
                if keys[j] != keys[j - 1]:
                    out[o] = keys[j]
                    o += 1


@jit
def draw_points(key, n, p, perm):
    """Partial Fisher-Yates: perm[:p] become p distinct indices of range(n)."""
    for j in range(n):
        perm[j] = j
    for j in range(p):
        r = j + int(uniform(key, j) * (n - j))
        if r >= n:
            r = n - 1
        t = perm[j]
        perm[j] = perm[r]
        perm[r] = t


@jit
def _contains(post_traces, a, b, trace):
    """Is ``trace`` in the sorted slice post_traces[a:b]?"""
    lo, hi = a, b
    while lo < hi:
        mid = (lo + hi) >> 1
        if post_traces[mid] < trace:
            lo = mid + 1
        else:
            hi = mid
    return lo < b and post_traces[lo] == trace


@jit
def _matches_one(i, stream, p, pt_offsets, pt_post, post_offsets, post_traces, max_count, perm, chosen, lens):
    """Number of traces (capped at max_count) containing p random points of trace i;
    0 when trace i has fewer than p distinct points."""
    a = pt_offsets[i]
    n = pt_offsets[i + 1] - a
    if n < p:
        return 0
    draw_points(stream, n, p, perm)
    for j in range(p):
        chosen[j] = pt_post[a + perm[j]]
        lens[j] = post_offsets[chosen[j] + 1] - post_offsets[chosen[j]]
    # insertion sort of the chosen postings by length (rarest first)
    for j in range(1, p):
        c, ln = chosen[j], lens[j]
        k = j - 1
        while k >= 0 and lens[k] > ln:
            chosen[k + 1] = chosen[k]
            lens[k + 1] = lens[k]
            k -= 1
        chosen[k + 1] = c
        lens[k + 1] = ln
    r0 = chosen[0]
    count = 0
    for q in range(post_offsets[r0], post_offsets[r0 + 1]):
        cand = post_traces[q]
        ok = True
        for j in range(1, p):
            pj = chosen[j]
            if not _contains(post_traces, post_offsets[pj], post_offsets[pj + 1], cand):
                ok = False
                break
        if ok:
            count += 1
            if count >= max_count:
                break
    return count


@pjit
def _unicity_kernel(sample, streams, p, pt_offsets, pt_post, post_offsets, post_traces, max_count, out):
    for s in prange(len(sample)):
        i = sample[s]
        n = pt_offsets[i + 1] - pt_offsets[i]
        perm = np.empty(max(n, 1), dtype=np.int64)
        chosen = np.empty(p, dtype=np.int64)
        lens = np.empty(p, dtype=np.int64)
        out[s] = _matches_one(i, streams[s], p, pt_offsets, pt_post, post_offsets, post_traces, max_count, perm, chosen, lens)


@pjit
def stream_keys(seed, tag, index, out):
    """out[i] = stream_key(seed, tag, index[i]) for every i (parallel)."""
    for i in prange(len(index)):
        out[i] = stream_key(seed, tag, index[i])


# ------------------------------------------------------------------------ the index
class PointIndex:
    """Distinct (cell, time bin) points per trace plus posting lists per point.

    Attributes
    ----------
    pt_offsets : int64 (n_traces + 1,)   CSR over each trace's distinct sorted keys
    pt_keys    : int64 (n_points,)       the keys
    pt_post    : int64 (n_points,)       posting number of each trace point
    post_offsets : int64 (n_post + 1,)   CSR over posting lists
    post_traces  : int64 (n_points,)     trace numbers, ascending within each posting
    post_keys    : int64 (n_post,)       the key of each posting (ascending)
    """

    def __init__(self, pt_offsets, pt_keys, pt_post, post_offsets, post_traces, post_keys):
        self.pt_offsets = pt_offsets
        self.pt_keys = pt_keys
        self.pt_post = pt_post
        self.post_offsets = post_offsets
        self.post_traces = post_traces
        self.post_keys = post_keys

    @property
    def n_traces(self):
        return len(self.pt_offsets) - 1


def point_keys(traces: Traces, v_m: float, h_h: float) -> np.ndarray:
    """int64 key of the (cell, time bin) point of every ping (see module docstring)."""
    v_m = check_positive("v_m (cell size, metres)", v_m)
    h_h = check_positive("h_h (time bin, hours)", h_h)
    bin_s = h_h * 3600.0
    if abs(bin_s - round(bin_s)) > 1e-9 or round(bin_s) < 1:
        raise ConfigError(f"h_h * 3600 must be a whole number of seconds >= 1, got h_h={h_h!r}.")
    bin_s = int(round(bin_s))
    if traces.n_pings == 0:
        return np.zeros(0, dtype=np.int64)
    ix = np.floor(np.asarray(traces.x_m, dtype=np.float64) / v_m).astype(np.int64)
    iy = np.floor(np.asarray(traces.y_m, dtype=np.float64) / v_m).astype(np.int64)
    tb = (np.asarray(traces.t_s, dtype=np.int64) - np.int64(traces.start_s)) // bin_s
    ix -= ix.min()
    iy -= iy.min()
    tb -= tb.min()
    nx, ny, nt = int(ix.max()) + 1, int(iy.max()) + 1, int(tb.max()) + 1
    if nx * ny * nt >= _MAX_KEY:
        raise ConfigError(
            f"{nx} x {ny} cells x {nt} time bins do not fit one int64 key; use a larger v_m or h_h "
            "(or a shorter window)."
        )
    return (ix * ny + iy) * nt + tb


def build_index(traces: Traces, v_m: float, h_h: float) -> PointIndex:
    """Discretise ``traces`` at (v_m metres, h_h hours) and build the posting index."""
    keys = point_keys(traces, v_m, h_h)
    off = np.ascontiguousarray(traces.offsets, dtype=np.int64)
    nt = traces.n_traces
    counts = np.zeros(nt, dtype=np.int64)
    if nt:
        _sort_dedupe_count(off, keys, counts)
    pt_off = np.zeros(nt + 1, dtype=np.int64)
    np.cumsum(counts, out=pt_off[1:])
    pt_keys = np.empty(int(pt_off[-1]), dtype=np.int64)
    if nt:
        _dedupe_fill(off, keys, pt_off, pt_keys)
    owner = np.repeat(np.arange(nt, dtype=np.int64), counts)
    order = np.argsort(pt_keys, kind="stable")  # traces stay ascending inside a posting
    sk = pt_keys[order]
    new = np.ones(len(sk), dtype=bool)
    if len(sk):
        new[1:] = sk[1:] != sk[:-1]
    post_of_sorted = np.cumsum(new) - 1
    pt_post = np.empty(len(sk), dtype=np.int64)
    pt_post[order] = post_of_sorted
    starts = np.flatnonzero(new)
    post_off = np.append(starts, len(sk)).astype(np.int64)
    return PointIndex(pt_off, pt_keys, pt_post, post_off, owner[order], sk[starts])


def sample_traces(traces: Traces, n_sample: int | None, seed: int) -> np.ndarray:
    """Indices of the traces to attack: all, or the ``n_sample`` with the smallest
    seeded hash of their pseudonym (independent of trace order), ascending."""
    n = traces.n_traces
    if n_sample is None or n_sample >= n:
        return np.arange(n, dtype=np.int64)
    n_sample = check_int("n_sample", n_sample, 1)
    u = uniforms(seed, TAG_ATTACK, stable_uid64(traces.pseudonym) ^ SALT_SAMPLE, 0)
    return np.sort(np.argsort(u, kind="stable")[:n_sample]).astype(np.int64)


def matching_counts(index: PointIndex, sample: np.ndarray, streams: np.ndarray, p: int, max_count: int = 2) -> np.ndarray:
    """For each sampled trace: number of traces holding its p drawn points, capped at
    ``max_count`` (1 = unique); 0 when the trace has fewer than p distinct points."""
    out = np.zeros(len(sample), dtype=np.int64)
    if len(sample):
        _unicity_kernel(
            np.ascontiguousarray(sample, dtype=np.int64), np.ascontiguousarray(streams, dtype=np.uint64),
            np.int64(p), index.pt_offsets, index.pt_post, index.post_offsets, index.post_traces,
            np.int64(max_count), out,
        )
    return out


def trace_streams(traces: Traces, sample: np.ndarray, seed: int) -> np.ndarray:
    """Stream keys of the unicity point draws of the sampled traces."""
    idx = stable_uid64(traces.pseudonym[sample]) ^ SALT
    out = np.empty(len(idx), dtype=np.uint64)
    if len(idx):
        stream_keys(np.uint64(seed), np.uint64(TAG_ATTACK), idx.astype(np.uint64), out)
    return out


def _check_ps(p_values):
    ps = [p_values] if isinstance(p_values, (int, np.integer)) else list(p_values)
    if not ps:
        raise ConfigError("p_values is empty; give at least one number of points, e.g. [1, 2, 4].")
    return [check_int("p (number of points)", p, 1) for p in ps]


def unicity_attack(
    traces: Traces,
    *,
    p_values=(1, 2, 3, 4, 5),
    v_values_m=(500.0,),
    h_values_h=(1.0,),
    n_sample: int | None = None,
    seed: int = 0,
    ci: str = "wilson",
    return_per_trace: bool = False,
):
    """Unicity of p random points over a sweep of p, cell size v and time bin h.

    Parameters
    ----------
    traces : Traces
        The release (metric CRS).
    p_values : int or iterable of int >= 1
        Numbers of points known to the attacker.
    v_values_m : iterable of float > 0
        Spatial cell sizes in metres.
    h_values_h : iterable of float > 0
        Time-bin lengths in hours (``h * 3600`` must be whole seconds).
    n_sample : int, optional
        Attack only this many traces (a seeded, order-independent choice); default all.
    seed : int
        Root seed of the point draws.
    ci : "wilson" or "bootstrap"
        Interval of the unicity share.
    return_per_trace : bool
        Also return a per-(trace, p, v, h) table with the capped match count.

    Returns
    -------
    DataFrame (tidy): p, v_m, h_h, metric ("unicity"), value, ci_low, ci_high, n (sampled
    traces with >= p distinct points), n_short (sampled traces with fewer), n_panel (the
    traces with a ping in the release: the crowd a trace must stand out from; unicity
    falls as it grows, see :mod:`sim.attacks.panel`).  With
    ``return_per_trace``, a tuple (table, per_trace) where per_trace has pseudonym, p,
    v_m, h_h, n_matching (0 short, 1 unique, 2 means >= 2).
    """
    if not isinstance(traces, Traces):
        raise InputError(f"traces must be a sim.core.traces.Traces, got {type(traces).__name__}.")
    ps = _check_ps(p_values)
    vs = [check_positive("v_m (cell size, metres)", v) for v in np.atleast_1d(v_values_m)]
    hs = [check_positive("h_h (time bin, hours)", h) for h in np.atleast_1d(h_values_h)]
    sample = sample_traces(traces, n_sample, seed)
    streams = trace_streams(traces, sample, seed)
    n_panel = int(np.count_nonzero(traces.lengths))
    rows, per = [], []
    for v in vs:
        for h in hs:
            idx = build_index(traces, v, h)
            for p in ps:
                cnt = matching_counts(idx, sample, streams, p)
                has = cnt > 0
                r = rate_row("unicity", cnt[has] == 1, ci, seed, (p, int(v * 1000), int(h * 3600)), p=p, v_m=v, h_h=h)
                r["n_short"] = int((~has).sum())
                r["n_panel"] = n_panel
                rows.append(r)
                if return_per_trace:
                    per.append(pd.DataFrame({"pseudonym": traces.pseudonym[sample], "p": p, "v_m": v, "h_h": h, "n_matching": cnt}))
    table = pd.DataFrame(rows, columns=["p", "v_m", "h_h", "metric", "value", "ci_low", "ci_high", "n", "n_short",
                                       "n_panel"])
    if return_per_trace:
        return table, (pd.concat(per, ignore_index=True) if per else pd.DataFrame())
    return table


def fit_power_law(table: pd.DataFrame, *, resolution: str = "vh") -> pd.DataFrame:
    """Fit unicity = c * resolution**b by least squares on log-log, per p.

    ``resolution`` is "vh" (v_m * h_h, metre-hours: coarsening either axis), "v" or
    "h".  Rows with unicity 0 (log undefined) are left out.  Returns one row per p:
    p, exponent (b; de Montjoye et al. report unicity falling roughly as the 1/10
    power of resolution, i.e. b about -0.1), exponent_se, prefactor (c), r2, n_points.
    """
    if resolution not in ("vh", "v", "h"):
        raise ConfigError(f"resolution must be 'vh', 'v' or 'h', got {resolution!r}.")
    out = []
    for p, g in table[table["metric"] == "unicity"].groupby("p", sort=True):
        res = {"vh": g["v_m"] * g["h_h"], "v": g["v_m"], "h": g["h_h"]}[resolution].to_numpy(dtype=float)
        val = g["value"].to_numpy(dtype=float)
        ok = (val > 0) & (res > 0) & np.isfinite(val)
        x, y = np.log(res[ok]), np.log(val[ok])
        n = int(ok.sum())
        if n < 2 or np.ptp(x) == 0:
            out.append(dict(p=p, exponent=np.nan, exponent_se=np.nan, prefactor=np.nan, r2=np.nan, n_points=n))
            continue
        A = np.column_stack([np.ones(n), x])
        coef, *_ = np.linalg.lstsq(A, y, rcond=None)
        resid = y - A @ coef
        ss_res = float(resid @ resid)
        ss_tot = float(((y - y.mean()) ** 2).sum())
        se = np.sqrt(ss_res / (n - 2) / ((x - x.mean()) ** 2).sum()) if n > 2 else np.nan
        out.append(
            dict(p=p, exponent=float(coef[1]), exponent_se=float(se), prefactor=float(np.exp(coef[0])),
                 r2=1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0, n_points=n)
        )
    return pd.DataFrame(out, columns=["p", "exponent", "exponent_se", "prefactor", "r2", "n_points"])
