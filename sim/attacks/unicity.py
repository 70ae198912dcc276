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

Out of core (``sim.pipeline.stream_attacks``): the sample is the ``n_sample`` smallest
:func:`sample_uniforms`, so per-part candidates merge into it; :func:`draw_trace_points`
draws each sampled trace's points from its own pings, sorted lexicographically by
(ix, iy, tb) — the order of the keys under any origin; :func:`resolution_origin` gives
the whole release's key space from its coordinate extremes; and
:func:`count_containing` counts a part's traces holding a target's points.  Summed over
parts and capped, the counts equal :func:`matching_counts` on the whole release.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from sim.core.jit import jit, pjit, prange
from sim.core.errors import ConfigError, InputError
from sim.core.rng import TAG_ATTACK, stream_key, uniform, stable_uid64
from sim.core.traces import Traces
from sim.world._kernels import counting_argsort
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
    return _intersect_count(p, post_offsets, post_traces, max_count, chosen, lens)


@jit
def _intersect_count(p, post_offsets, post_traces, max_count, chosen, lens):
    """Number of traces (capped at max_count) in all p postings ``chosen`` (of lengths
    ``lens``; both reordered in place, rarest first)."""
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
def _count_kernel(keys, n_points, p, post_keys, post_offsets, post_traces, max_count, out):
    """out[s] = traces (capped at max_count) holding the first p of target s's keys."""
    for s in prange(len(n_points)):
        out[s] = 0
        if n_points[s] < p:
            continue
        chosen = np.empty(p, dtype=np.int64)
        lens = np.empty(p, dtype=np.int64)
        found = True
        for j in range(p):
            q = np.searchsorted(post_keys, keys[s, j])
            if q >= len(post_keys) or post_keys[q] != keys[s, j]:
                found = False
                break
            chosen[j] = q
            lens[j] = post_offsets[q + 1] - post_offsets[q]
        if found:
            out[s] = _intersect_count(p, post_offsets, post_traces, max_count, chosen, lens)


@pjit
def _draw_kernel(pt_offsets, streams, p_max, out):
    """out[i, :min(p_max, n_i)] = the first draws of trace i's Fisher-Yates over its
    n_i distinct points (indices into them); -1 beyond."""
    for i in prange(len(pt_offsets) - 1):
        n = pt_offsets[i + 1] - pt_offsets[i]
        m = min(p_max, n)
        if m == 0:
            continue
        perm = np.empty(n, dtype=np.int64)
        draw_points(streams[i], n, m, perm)
        for j in range(m):
            out[i, j] = perm[j]


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


def check_resolution(v_m: float, h_h: float) -> tuple[float, int]:
    """``(v_m, bin_s)``: a valid cell size (metres) and time bin (whole seconds) or ConfigError."""
    v_m = check_positive("v_m (cell size, metres)", v_m)
    h_h = check_positive("h_h (time bin, hours)", h_h)
    bin_s = h_h * 3600.0
    if abs(bin_s - round(bin_s)) > 1e-9 or round(bin_s) < 1:
        raise ConfigError(f"h_h * 3600 must be a whole number of seconds >= 1, got h_h={h_h!r}.")
    return v_m, int(round(bin_s))


def point_cells(traces: Traces, v_m: float, h_h: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(ix, iy, tb)``: the absolute cell column, cell row and time bin (int64) of every
    ping (floor(x_m / v_m), floor(y_m / v_m), (t_s - start_s) // (h_h * 3600))."""
    v_m, bin_s = check_resolution(v_m, h_h)
    ix = np.floor(np.asarray(traces.x_m, dtype=np.float64) / v_m).astype(np.int64)
    iy = np.floor(np.asarray(traces.y_m, dtype=np.float64) / v_m).astype(np.int64)
    tb = (np.asarray(traces.t_s, dtype=np.int64) - np.int64(traces.start_s)) // bin_s
    return ix, iy, tb


def key_origin(lo, hi) -> tuple:
    """The key space of points whose (ix, iy, tb) lie between ``lo`` and ``hi``
    (inclusive triples): ``(ix0, iy0, tb0, nx, ny, nt)``; ConfigError when
    ``nx * ny * nt`` does not fit one int64 key."""
    ix0, iy0, tb0 = (int(v) for v in lo)
    nx, ny, nt = (int(h) - int(v) + 1 for v, h in zip(lo, hi))
    if nx * ny * nt >= _MAX_KEY:
        raise ConfigError(
            f"{nx} x {ny} cells x {nt} time bins do not fit one int64 key; use a larger v_m or h_h "
            "(or a shorter window)."
        )
    return ix0, iy0, tb0, nx, ny, nt


def resolution_origin(bounds, start_s: int, v_m: float, h_h: float) -> tuple:
    """:func:`key_origin` of every ping inside ``bounds`` = (x_min, x_max, y_min, y_max,
    t_min, t_max) — equal to the origin :func:`point_keys` takes from pings with those
    extremes (floor and integer division are monotone, so the extreme cells are the
    cells of the extreme coordinates).  Used to key every part of a streamed release
    as the whole release would be keyed."""
    v_m, bin_s = check_resolution(v_m, h_h)
    x0, x1, y0, y1, t0, t1 = bounds
    lo = (np.floor(np.float64(x0) / v_m), np.floor(np.float64(y0) / v_m), (int(t0) - int(start_s)) // bin_s)
    hi = (np.floor(np.float64(x1) / v_m), np.floor(np.float64(y1) / v_m), (int(t1) - int(start_s)) // bin_s)
    return key_origin(lo, hi)


def point_keys(traces: Traces, v_m: float, h_h: float, *, origin=None) -> np.ndarray:
    """int64 key of the (cell, time bin) point of every ping (see module docstring).

    ``origin`` (:func:`key_origin`) fixes the key space; default the traces' own extreme
    cells.  Keys order points lexicographically by (ix, iy, tb) in either case.
    """
    ix, iy, tb = point_cells(traces, v_m, h_h)
    if traces.n_pings == 0:
        return np.zeros(0, dtype=np.int64)
    if origin is None:
        origin = key_origin((ix.min(), iy.min(), tb.min()), (ix.max(), iy.max(), tb.max()))
    ix0, iy0, tb0, nx, ny, nt = origin
    ix -= ix0
    iy -= iy0
    tb -= tb0
    return (ix * ny + iy) * nt + tb


def build_index(traces: Traces, v_m: float, h_h: float, *, origin=None) -> PointIndex:
    """Discretise ``traces`` at (v_m metres, h_h hours) and build the posting index
    (``origin``: the key space, as :func:`point_keys`)."""
    keys = point_keys(traces, v_m, h_h, origin=origin)
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


@jit
def _popcount(w):  # pragma: no cover - numba
    """Set bits of a uint64 word (SWAR)."""
    w = w - ((w >> np.uint64(1)) & np.uint64(0x5555555555555555))
    w = (w & np.uint64(0x3333333333333333)) + ((w >> np.uint64(2)) & np.uint64(0x3333333333333333))
    w = (w + (w >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.int64((w * np.uint64(0x0101010101010101)) >> np.uint64(56))


@jit
def _word_ranks(bits):  # pragma: no cover - numba
    """Set bits in the words before each word of ``bits`` (int64): the rank of a key is
    its word's rank plus the set bits below it in its word."""
    out = np.empty(len(bits), dtype=np.int64)
    acc = 0
    for w in range(len(bits)):
        out[w] = acc
        acc += _popcount(bits[w])
    return out


@pjit
def _query_hits(offsets, x, y, t, v_m, bin_s, t0, origin, wanted, cells, bits, ranks, counts,
                scratch):  # pragma: no cover - numba
    """Per trace: the distinct positions in ``wanted`` of its ping keys (ascending),
    written to ``scratch`` at the trace's own ping offset (a trace has at most as many as
    it has pings), their number to ``counts``.  ``cells`` flags the cells (ix * ny + iy,
    origin-relative) of the wanted keys, so most pings are rejected without a search;
    ``bits`` (:func:`_key_bits`, or empty) flags the wanted keys themselves and
    ``ranks`` (:func:`_word_ranks` of ``bits``) gives a wanted key's position without a
    search: the number of wanted keys below it.  A ping with the key of the ping before
    it that passed the cell check is skipped (the same key, the same answer)."""
    ix0, iy0, tb0, nx, ny, nt = origin
    n_bits = len(bits) * 64
    for i in prange(len(offsets) - 1):
        a, b = offsets[i], offsets[i + 1]
        m = 0
        last = np.int64(-1)
        for j in range(a, b):
            c = (np.int64(np.floor(x[j] / v_m)) - ix0) * ny + (np.int64(np.floor(y[j] / v_m)) - iy0)
            if c < 0 or c >= len(cells) or not cells[c]:
                continue
            k = c * nt + ((t[j] - t0) // bin_s - tb0)
            if k == last:
                continue
            last = k
            if n_bits:
                if k < 0 or k >= n_bits:
                    continue
                word = bits[k >> 6]
                below = np.uint64(k & 63)
                if not (word >> below) & np.uint64(1):
                    continue
                scratch[a + m] = ranks[k >> 6] + _popcount(word & ((np.uint64(1) << below) - np.uint64(1)))
                m += 1
                continue
            q = np.searchsorted(wanted, k)
            if q < len(wanted) and wanted[q] == k:
                scratch[a + m] = q
                m += 1
        if m > 1:
            scratch[a:a + m] = np.sort(scratch[a:a + m])
        c = 0
        for j in range(m):
            if j == 0 or scratch[a + j] != scratch[a + j - 1]:
                scratch[a + c] = scratch[a + j]
                c += 1
        counts[i] = c


@pjit
def _gather_hits(offsets, scratch, starts, out):  # pragma: no cover - numba
    """Concatenate every trace's ``scratch[offsets[i]:offsets[i] + n_i]`` at ``starts[i]``."""
    for i in prange(len(offsets) - 1):
        a, s = offsets[i], starts[i]
        for j in range(starts[i + 1] - s):
            out[s + j] = scratch[a + j]


#: largest key space (bits) :func:`build_query_index` flags its wanted keys in (32 MiB)
KEY_BITS_MAX = 1 << 28


@jit
def _set_bits(bits, keys):  # pragma: no cover - numba
    for k in keys:
        bits[k >> 6] |= np.uint64(1) << np.uint64(k & 63)


def _key_bits(wanted: np.ndarray, origin) -> np.ndarray:
    """A bitmap (uint64 words) over the whole key space with the ``wanted`` keys set, or
    an empty array when the space exceeds :data:`KEY_BITS_MAX` bits."""
    _, _, _, nx, ny, nt = (int(v) for v in origin)
    total = nx * ny * nt
    if total > KEY_BITS_MAX:
        return np.zeros(0, dtype=np.uint64)
    bits = np.zeros((total + 63) // 64, dtype=np.uint64)
    _set_bits(bits, wanted[(wanted >= 0) & (wanted < total)])
    return bits


def _wanted_cells(wanted: np.ndarray, origin) -> np.ndarray:
    """Flags of the cells (ix * ny + iy, origin-relative) holding a wanted key."""
    _, _, _, nx, ny, nt = (int(v) for v in origin)
    cells = np.zeros(nx * ny, dtype=np.bool_)
    c = wanted // nt
    cells[c[(c >= 0) & (c < nx * ny)]] = True
    return cells


def build_query_index(traces: Traces, v_m: float, h_h: float, wanted, *, origin=None) -> PointIndex:
    """The posting lists of :func:`build_index` for the keys in ``wanted`` only — all
    :func:`count_containing` reads for targets whose drawn keys are in ``wanted`` (the
    same ``post_keys``, ``post_offsets`` and ``post_traces`` for those keys; the per-trace
    ``pt_*`` arrays are left empty).  One parallel pass over the pings (each key looked up
    in the sorted wanted keys), no sort of every point: counting a small sample against
    a large part is cheap.  ``origin`` as :func:`point_keys` (default the traces' own)."""
    v_m, bin_s = check_resolution(v_m, h_h)
    wanted = np.unique(np.asarray(wanted, dtype=np.int64).ravel())
    nt = int(traces.n_traces)
    empty = np.zeros(0, dtype=np.int64)
    if not len(wanted) or not traces.n_pings:
        return PointIndex(np.zeros(nt + 1, dtype=np.int64), empty, empty, np.zeros(1, dtype=np.int64), empty, empty)
    if origin is None:
        ix, iy, tb = point_cells(traces, v_m, h_h)
        origin = key_origin((ix.min(), iy.min(), tb.min()), (ix.max(), iy.max(), tb.max()))
        del ix, iy, tb
    args = (np.ascontiguousarray(traces.offsets, dtype=np.int64), np.ascontiguousarray(traces.x_m, dtype=np.float64),
            np.ascontiguousarray(traces.y_m, dtype=np.float64), np.ascontiguousarray(traces.t_s, dtype=np.int64),
            np.float64(v_m), np.int64(bin_s), np.int64(traces.start_s), np.asarray(origin, dtype=np.int64), wanted,
            _wanted_cells(wanted, origin))
    bits = _key_bits(wanted, origin)
    args += (bits, _word_ranks(bits))
    counts = np.zeros(nt, dtype=np.int64)
    scratch = np.empty(traces.n_pings, dtype=np.int64)  # one pass over the pings: hits at each trace's offset
    _query_hits(*args, counts, scratch)
    starts = np.zeros(nt + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    hits = np.empty(int(starts[-1]), dtype=np.int64)
    if len(hits):
        _gather_hits(args[0], scratch, starts, hits)
    del scratch
    owner = np.repeat(np.arange(nt, dtype=np.int64), counts)
    # by key, traces ascending within a key: a counting sort of the hits' positions
    order, start = counting_argsort(hits, len(wanted))
    uk = np.flatnonzero(start[1:] > start[:-1])  # the positions of the keys some trace holds
    return PointIndex(np.zeros(nt + 1, dtype=np.int64), empty, empty, np.append(start[uk], len(hits)).astype(np.int64),
                      owner[order], wanted[uk])


def sample_uniforms(pseudonym, seed: int) -> np.ndarray:
    """The seeded uniform of each pseudonym that :func:`sample_traces` ranks by (a pure
    function of the pseudonym and the seed, so any part of a release gives the same)."""
    return uniforms(seed, TAG_ATTACK, stable_uid64(pseudonym) ^ SALT_SAMPLE, 0)


def sample_traces(traces: Traces, n_sample: int | None, seed: int) -> np.ndarray:
    """Indices of the traces to attack: all, or the ``n_sample`` with the smallest
    seeded hash of their pseudonym (independent of trace order; ties, should two
    uniforms be equal, go to the earlier trace), ascending."""
    n = traces.n_traces
    if n_sample is None or n_sample >= n:
        return np.arange(n, dtype=np.int64)
    n_sample = check_int("n_sample", n_sample, 1)
    u = sample_uniforms(traces.pseudonym, seed)
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


def draw_trace_points(traces: Traces, rows, resolutions, p_max: int, seed: int) -> list:
    """The points the unicity attack draws from traces ``rows``, as absolute cells, for
    every (v_m, h_h) of ``resolutions``.

    Each trace's distinct (ix, iy, tb) points (:func:`point_cells`) are sorted
    lexicographically — the order of their keys under any :func:`key_origin` — and the
    first ``min(p_max, n)`` draws of the trace's partial Fisher-Yates shuffle
    (:func:`draw_points`, stream :func:`trace_streams`) are taken; the p-point sample of
    :func:`unicity_attack` is their first p.  The keys are those of the selected traces'
    own key space (any origin orders points alike), so a part of a release gives exactly
    the points the whole release gives.

    Returns one ``(n_points, cells)`` per resolution: int64 (len(rows),) distinct points
    per trace, and int64 (len(rows), p_max, 3) of (ix, iy, tb) in draw order (padding
    -1 beyond ``min(p_max, n_points)``; a real cell may also be -1, so use ``n_points``).
    """
    rows = np.asarray(rows, dtype=np.int64)
    p_max = check_int("p (number of points)", p_max, 1)
    sub = traces.take(rows)
    streams = trace_streams(traces, rows, seed)
    off = np.ascontiguousarray(sub.offsets, dtype=np.int64)
    out = []
    for v_m, h_h in resolutions:
        ix, iy, tb = point_cells(sub, v_m, h_h)
        counts = np.zeros(len(rows), dtype=np.int64)
        if len(ix):
            lo, hi = (ix.min(), iy.min(), tb.min()), (ix.max(), iy.max(), tb.max())
            nx, ny, nt = (int(b) - int(a) + 1 for a, b in zip(lo, hi))
        if len(ix) and nx * ny * nt < _MAX_KEY:
            keys = ((ix - lo[0]) * ny + (iy - lo[1])) * nt + (tb - lo[2])
            _sort_dedupe_count(off, keys, counts)
            pt_off = np.zeros(len(rows) + 1, dtype=np.int64)
            np.cumsum(counts, out=pt_off[1:])
            pts = np.empty(int(pt_off[-1]), dtype=np.int64)
            _dedupe_fill(off, keys, pt_off, pts)
            pts_t = pts % nt + lo[2]
            rest = pts // nt
            cols = (rest // ny + lo[0], rest % ny + lo[1], pts_t)
        else:  # a key space beyond int64 (the whole release's is then too: the reduce says so)
            tr = sub.trace_index()
            o = np.lexsort((tb, iy, ix, tr))
            ix, iy, tb, tr = ix[o], iy[o], tb[o], tr[o]
            new = np.ones(len(tr), dtype=bool)
            if len(tr):
                new[1:] = (tr[1:] != tr[:-1]) | (ix[1:] != ix[:-1]) | (iy[1:] != iy[:-1]) | (tb[1:] != tb[:-1])
            counts = np.bincount(tr[new], minlength=len(rows)).astype(np.int64)
            pt_off = np.zeros(len(rows) + 1, dtype=np.int64)
            np.cumsum(counts, out=pt_off[1:])
            cols = (ix[new], iy[new], tb[new])
        pick = np.full((len(rows), p_max), -1, dtype=np.int64)
        if len(rows):
            _draw_kernel(pt_off, streams, np.int64(p_max), pick)
        cells = np.full((len(rows), p_max, 3), -1, dtype=np.int64)
        ok = pick >= 0
        at = (pt_off[:-1, None] + pick)[ok]
        cells[ok] = np.column_stack([c[at] for c in cols])
        out.append((counts, cells))
    return out


def cell_keys(cells: np.ndarray, origin) -> np.ndarray:
    """Keys (:func:`point_keys` with ``origin``) of (ix, iy, tb) cells, shape (..., 3)
    (padding cells give meaningless keys, which :func:`count_containing` never reads)."""
    ix0, iy0, tb0, nx, ny, nt = origin
    cells = np.asarray(cells, dtype=np.int64)
    return ((cells[..., 0] - ix0) * ny + (cells[..., 1] - iy0)) * nt + (cells[..., 2] - tb0)


def count_containing(index: PointIndex, keys: np.ndarray, n_points: np.ndarray, p: int,
                     max_count: int = 2) -> np.ndarray:
    """For each target (row of ``keys``, its drawn point keys in draw order): the number
    of traces of ``index`` that hold its first ``p`` keys, capped at ``max_count``; 0
    when the target has fewer than p distinct points (``n_points``).  Summed over the
    parts of a release (and capped again) this is :func:`matching_counts` of the whole
    release."""
    keys = np.ascontiguousarray(keys, dtype=np.int64)
    out = np.zeros(len(n_points), dtype=np.int64)
    if len(n_points) and len(index.post_keys):
        _count_kernel(keys, np.ascontiguousarray(n_points, dtype=np.int64), np.int64(p),
                      np.ascontiguousarray(index.post_keys, dtype=np.int64), index.post_offsets,
                      index.post_traces, np.int64(max_count), out)
    return out


#: columns of the :func:`unicity_attack` table
UNICITY_COLUMNS = ["p", "v_m", "h_h", "metric", "value", "ci_low", "ci_high", "n", "n_short", "n_panel"]


def unicity_row(counts: np.ndarray, p: int, v_m: float, h_h: float, n_panel: int, ci: str, seed: int) -> dict:
    """The table row of one (p, v, h) from the sampled traces' capped match counts."""
    has = counts > 0
    r = rate_row("unicity", counts[has] == 1, ci, seed, (p, int(v_m * 1000), int(h_h * 3600)), p=p, v_m=v_m, h_h=h_h)
    r["n_short"] = int((~has).sum())
    r["n_panel"] = int(n_panel)
    return r


def check_unicity_args(p_values, v_values_m, h_values_h) -> tuple[list, list, list]:
    """``(ps, vs, hs)`` validated (ConfigError naming the bad value)."""
    ps = _check_ps(p_values)
    vs = [check_positive("v_m (cell size, metres)", v) for v in np.atleast_1d(v_values_m)]
    hs = [check_positive("h_h (time bin, hours)", h) for h in np.atleast_1d(h_values_h)]
    return ps, vs, hs


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
    ps, vs, hs = check_unicity_args(p_values, v_values_m, h_values_h)
    sample = sample_traces(traces, n_sample, seed)
    streams = trace_streams(traces, sample, seed)
    n_panel = int(np.count_nonzero(traces.lengths))
    rows, per = [], []
    for v in vs:
        for h in hs:
            idx = build_index(traces, v, h)
            for p in ps:
                cnt = matching_counts(idx, sample, streams, p)
                rows.append(unicity_row(cnt, p, v, h, n_panel, ci, seed))
                if return_per_trace:
                    per.append(pd.DataFrame({"pseudonym": traces.pseudonym[sample], "p": p, "v_m": v, "h_h": h, "n_matching": cnt}))
    table = pd.DataFrame(rows, columns=UNICITY_COLUMNS)
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
