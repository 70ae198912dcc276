"""Known-points attack: find a target's pseudonym from m noisy sightings.

The attacker knows m (place, time) observations of a target (geotagged posts, a
neighbour's sightings).  They are simulated from the target trace's own pings:

* m distinct pings are drawn uniformly (partial Fisher-Yates on the trace's pings,
  stream ``stream_key(seed, TAG_ATTACK, hash(pseudonym) ^ SALT)``, draws 0..);
* each position gets isotropic Gaussian noise of ``sigma_m`` metres per axis, and each
  time a uniform jitter in ``[-jitter_s, +jitter_s]`` seconds.  The same standard
  deviates are reused across ``sigma_m`` values (common random numbers), and the
  observations for m+1 extend those for m.

*Candidates* are the traces that have, for **every** observation, a ping within
``radius_m`` (Euclidean distance <= radius_m, inclusive) and within ``tol_s`` seconds
(|dt| <= tol_s, inclusive).  *Success* = exactly one candidate and it is the target
trace.  Defaults: ``radius_m = 3 * sigma_m + 50`` and ``tol_s = jitter_s + 60``.

Index: pings are bucketed in a grid of (radius_m x radius_m x tol_s) cells; the first
observation's candidates come from its 27 neighbouring cells, later observations only
test the surviving candidates (binary search in each candidate's time-sorted pings).

Out of core (``sim.pipeline.stream_attacks``): :func:`target_observations` reads only
the targets' own pings; :func:`match_observations` counts one part's candidates on the
whole release's grid (:func:`grid_origin` of its extremes), so the counts summed over
parts, and the hits or-ed, equal :func:`match_counts` on the whole release.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from sim.core.jit import jit, pjit, prange
from sim.core.errors import InputError
from sim.core.rng import TAG_ATTACK, normal, uniform, stable_uid64
from sim.core.traces import Traces
from sim.attacks._common import check_int, check_positive, rate_row, stats
from sim.attacks.unicity import draw_points, stream_keys, sample_traces

SALT = np.uint64(0x5A17_0003)
_C_X = 1000  # counter bases of the observation draws
_C_T = 1_000_000


# ----------------------------------------------------------------------------- kernels
@jit
def _observations(key, a, n, m, sigma_m, jitter_s, x_m, y_m, t_s, ox, oy, ot):
    """m observations of the trace whose pings are rows a..a+n-1."""
    perm = np.empty(n, dtype=np.int64)
    draw_points(key, n, m, perm)  # m distinct pings, same draws as the unicity attack
    for j in range(m):
        row = a + perm[j]
        ox[j] = x_m[row] + sigma_m * normal(key, _C_X + 4 * j)
        oy[j] = y_m[row] + sigma_m * normal(key, _C_X + 4 * j + 2)
        ot[j] = t_s[row] + np.int64(np.floor((2.0 * uniform(key, _C_T + j) - 1.0) * jitter_s + 0.5))


@jit
def _has_ping_near(offsets, x_m, y_m, t_s, c, ox, oy, ot, r2, tol_s):
    a, b = offsets[c], offsets[c + 1]
    lo, hi = a, b
    tmin = ot - tol_s
    while lo < hi:
        mid = (lo + hi) >> 1
        if t_s[mid] < tmin:
            lo = mid + 1
        else:
            hi = mid
    tmax = ot + tol_s
    for j in range(lo, b):
        if t_s[j] > tmax:
            break
        dx = x_m[j] - ox
        dy = y_m[j] - oy
        if dx * dx + dy * dy <= r2:
            return True
    return False


@jit
def _attack_one(i, key, m, sigma_m, jitter_s, radius_m, tol_s, offsets, x_m, y_m, t_s, trace_of,
                cell_keys, cell_rows, x0, y0, t0, nx, ny, nt, count_out, hit_out):
    a = offsets[i]
    n = offsets[i + 1] - a
    m = min(m, n)  # counts/hits beyond the trace length stay 0/False
    if m == 0:
        return
    ox = np.empty(m, dtype=np.float64)
    oy = np.empty(m, dtype=np.float64)
    ot = np.empty(m, dtype=np.int64)
    _observations(key, a, n, m, sigma_m, jitter_s, x_m, y_m, t_s, ox, oy, ot)
    _match_one(i, ox, oy, ot, m, radius_m, tol_s, offsets, x_m, y_m, t_s, trace_of, cell_keys, cell_rows,
               x0, y0, t0, nx, ny, nt, count_out, hit_out)


@jit
def _match_one(i, ox, oy, ot, m, radius_m, tol_s, offsets, x_m, y_m, t_s, trace_of, cell_keys, cell_rows,
               x0, y0, t0, nx, ny, nt, count_out, hit_out):
    """Candidates of the first 1..m observations (ox, oy, ot) among the traces: their
    number into count_out[:m] and whether trace ``i`` (-1: none) is one into hit_out."""
    r2 = radius_m * radius_m
    cw = max(radius_m, 1.0)
    # candidates of observation 0 from the 27 neighbouring cells
    cx, cy, ct = _grid_cell(ox[0], oy[0], ot[0], x0, y0, t0, cw, tol_s)
    buf = np.empty(16, dtype=np.int64)
    nb = 0
    for dx in range(-1, 2):
        gx = cx + dx
        if gx < 0 or gx >= nx:
            continue
        for dy in range(-1, 2):
            gy = cy + dy
            if gy < 0 or gy >= ny:
                continue
            for dt in range(-1, 2):
                gt = ct + dt
                if gt < 0 or gt >= nt:
                    continue
                k = (np.int64(gx) * ny + gy) * nt + gt
                lo = np.searchsorted(cell_keys, k)
                hi = np.searchsorted(cell_keys, k + 1)
                for q in range(lo, hi):
                    row = cell_rows[q]
                    ddx = x_m[row] - ox[0]
                    ddy = y_m[row] - oy[0]
                    if ddx * ddx + ddy * ddy <= r2 and abs(t_s[row] - ot[0]) <= tol_s:
                        if nb == len(buf):
                            nbuf = np.empty(2 * len(buf), dtype=np.int64)
                            nbuf[:nb] = buf[:nb]
                            buf = nbuf
                        buf[nb] = trace_of[row]
                        nb += 1
    cand = np.unique(buf[:nb])
    alive = len(cand)
    for j in range(m):
        if j > 0:
            w = 0
            for q in range(alive):
                c = cand[q]
                if _has_ping_near(offsets, x_m, y_m, t_s, c, ox[j], oy[j], ot[j], r2, tol_s):
                    cand[w] = c
                    w += 1
            alive = w
        count_out[j] = alive
        hit = False
        for q in range(alive):
            if cand[q] == i:
                hit = True
                break
        hit_out[j] = hit


@pjit
def _attack_kernel(targets, keys, m, sigma_m, jitter_s, radius_m, tol_s, offsets, x_m, y_m, t_s, trace_of,
                   cell_keys, cell_rows, x0, y0, t0, nx, ny, nt, counts, hits):
    for s in prange(len(targets)):
        _attack_one(targets[s], keys[s], m, sigma_m, jitter_s, radius_m, tol_s, offsets, x_m, y_m, t_s,
                    trace_of, cell_keys, cell_rows, x0, y0, t0, nx, ny, nt, counts[s], hits[s])


@pjit
def _observe_kernel(rows, keys, m, sigma_m, jitter_s, offsets, x_m, y_m, t_s, ox, oy, ot, m_eff):
    for s in prange(len(rows)):
        a = offsets[rows[s]]
        n = offsets[rows[s] + 1] - a
        k = min(m, n)
        m_eff[s] = k
        if k > 0:
            _observations(keys[s], a, n, k, sigma_m, jitter_s, x_m, y_m, t_s, ox[s], oy[s], ot[s])


@pjit
def _match_kernel(hit_rows, ox, oy, ot, m_eff, radius_m, tol_s, offsets, x_m, y_m, t_s, trace_of,
                  cell_keys, cell_rows, x0, y0, t0, nx, ny, nt, counts, hits):
    for s in prange(len(m_eff)):
        if m_eff[s] > 0:
            _match_one(hit_rows[s], ox[s], oy[s], ot[s], m_eff[s], radius_m, tol_s, offsets, x_m, y_m, t_s,
                       trace_of, cell_keys, cell_rows, x0, y0, t0, nx, ny, nt, counts[s], hits[s])


# ------------------------------------------------------------------------ public API
def traces_bounds(traces: Traces) -> tuple:
    """``(x_min, x_max, y_min, y_max, t_min, t_max)`` of the pings (None when empty)."""
    if traces.n_pings == 0:
        return None
    return (float(np.min(traces.x_m)), float(np.max(traces.x_m)), float(np.min(traces.y_m)),
            float(np.max(traces.y_m)), int(np.min(traces.t_s)), int(np.max(traces.t_s)))


def grid_origin(bounds, radius_m: float, tol_s: int) -> tuple:
    """``(x0, y0, t0, nx, ny, nt)``: the known-points grid (cells of max(radius_m, 1)
    metres and tol_s seconds) anchored at the pings' minima, sized to their maxima
    (``bounds`` of :func:`traces_bounds`).  The grid of a whole release, passed to every
    part, makes each part's candidates exactly the whole release's in that part."""
    cw = max(radius_m, 1.0)
    x0, x1, y0, y1, t0, t1 = bounds
    nx = int(np.floor((np.float64(x1) - x0) / cw)) + 1
    ny = int(np.floor((np.float64(y1) - y0) / cw)) + 1
    nt = int(((t1 - t0) // tol_s if tol_s > 0 else t1 - t0)) + 1
    if nx * ny * nt >= 2**62:
        raise InputError("the known-points grid does not fit int64 keys; use a larger radius_m or tol_s.")
    return float(x0), float(y0), int(t0), nx, ny, nt


def _cell_index(traces: Traces, radius_m: float, tol_s: int, origin=None, wanted=None):
    """The pings' grid keys sorted (stable: pings in order within a key) and their rows.
    With ``wanted`` (sorted keys) only the pings whose key is wanted are indexed: a
    lookup of a wanted key then gives exactly the full index's rows, without sorting
    every ping."""
    cw = max(radius_m, 1.0)
    x0, y0, t0, nx, ny, nt = grid_origin(traces_bounds(traces), radius_m, tol_s) if origin is None else origin
    n = traces.n_pings
    want = wanted is not None
    wanted = np.zeros(0, dtype=np.int64) if not want else np.ascontiguousarray(wanted, dtype=np.int64)
    keys = np.empty(n, dtype=np.int64)
    mask = np.zeros(n if want else 0, dtype=np.bool_)  # with wanted: whether a ping's key is wanted
    _ping_keys(np.ascontiguousarray(traces.x_m, dtype=np.float64), np.ascontiguousarray(traces.y_m, dtype=np.float64),
               np.ascontiguousarray(traces.t_s, dtype=np.int64), float(x0), float(y0), np.int64(t0), float(cw),
               np.int64(tol_s), np.int64(ny), np.int64(nt), wanted, keys, mask)
    if want:
        rows = np.flatnonzero(mask)
        order = rows[np.argsort(keys[rows], kind="stable")]
    else:
        order = np.argsort(keys, kind="stable")
    return keys[order], order.astype(np.int64), x0, y0, t0, nx, ny, nt


@jit
def _grid_cell(x, y, t, x0, y0, t0, cw, tol_s):
    """The (column, row, time slot) of the known-points grid holding a point."""
    ct = (t - t0) // tol_s if tol_s > 0 else t - t0
    return np.int64(np.floor((x - x0) / cw)), np.int64(np.floor((y - y0) / cw)), ct


@pjit
def _ping_keys(x, y, t, x0, y0, t0, cw, tol_s, ny, nt, wanted, keys, mask):  # pragma: no cover - numba
    """Every ping's grid key and, when ``mask`` has a row per ping, whether the key is in
    the sorted ``wanted`` keys (one parallel pass: no sort of every ping)."""
    flag = len(mask) > 0
    for j in prange(len(x)):
        cx, cy, ct = _grid_cell(x[j], y[j], t[j], x0, y0, t0, cw, tol_s)
        k = (cx * ny + cy) * nt + ct
        keys[j] = k
        if flag:
            q = np.searchsorted(wanted, k)
            mask[j] = q < len(wanted) and wanted[q] == k


def _first_observation_cells(ox, oy, ot, m_eff, origin, radius_m: float, tol_s: int) -> np.ndarray:
    """The sorted grid keys of the 27 cells around every target's first observation: the
    only cells :func:`_match_one` looks up in the index (later observations are checked
    on the candidates' own pings).  Computed as the kernel computes them."""
    x0, y0, t0, nx, ny, nt = origin
    cw = max(radius_m, 1.0)
    sel = np.asarray(m_eff) > 0
    if not sel.any():
        return np.zeros(0, dtype=np.int64)
    cx = np.floor((np.asarray(ox, dtype=np.float64)[sel, 0] - x0) / cw).astype(np.int64)
    cy = np.floor((np.asarray(oy, dtype=np.float64)[sel, 0] - y0) / cw).astype(np.int64)
    t = np.asarray(ot, dtype=np.int64)[sel, 0]
    ct = (t - t0) // tol_s if tol_s > 0 else t - t0
    d = np.array([-1, 0, 1], dtype=np.int64)
    keys = (((cx[:, None, None, None] + d[None, :, None, None]) * ny + (cy[:, None, None, None] + d[None, None, :, None]))
            * nt + (ct[:, None, None, None] + d[None, None, None, :]))
    return np.unique(keys.ravel())


def target_observations(traces: Traces, targets: np.ndarray, *, m: int, sigma_m: float, jitter_s: float,
                        seed: int):
    """The first ``m`` simulated observations of each target trace (module docstring).

    Returns ``(ox, oy, ot, m_eff)``: float64, float64, int64 arrays of shape
    (len(targets), m) and int64 (len(targets),) = min(m, the trace's pings); entries
    beyond ``m_eff`` are unspecified.  Only the targets' own pings are read.
    """
    targets = np.ascontiguousarray(targets, dtype=np.int64)
    nt_ = len(targets)
    ox = np.zeros((nt_, m), dtype=np.float64)
    oy = np.zeros((nt_, m), dtype=np.float64)
    ot = np.zeros((nt_, m), dtype=np.int64)
    m_eff = np.zeros(nt_, dtype=np.int64)
    if nt_ == 0:
        return ox, oy, ot, m_eff
    keys = np.empty(nt_, dtype=np.uint64)
    stream_keys(np.uint64(seed), np.uint64(TAG_ATTACK), stable_uid64(traces.pseudonym[targets]) ^ SALT, keys)
    _observe_kernel(targets, keys, np.int64(m), float(sigma_m), float(jitter_s),
                    np.ascontiguousarray(traces.offsets, dtype=np.int64),
                    np.ascontiguousarray(traces.x_m, dtype=np.float64),
                    np.ascontiguousarray(traces.y_m, dtype=np.float64),
                    np.ascontiguousarray(traces.t_s, dtype=np.int64), ox, oy, ot, m_eff)
    return ox, oy, ot, m_eff


def match_observations(traces: Traces, ox, oy, ot, m_eff, hit_rows, *, radius_m: float, tol_s: int,
                       origin=None):
    """Per target and k = 1..m: how many traces of ``traces`` have a ping near each of
    the target's first k observations, and whether trace ``hit_rows[s]`` (-1: none, e.g.
    the target lies in another part) is one of them.

    ``origin`` is the grid (:func:`grid_origin`; default the traces' own).  Summed over
    the parts of a release with the whole release's grid (and the hits or-ed), this is
    :func:`match_counts` of the whole release.  Returns (counts, hits) of shape
    (len(m_eff), m).
    """
    m = np.shape(ox)[1] if np.ndim(ox) == 2 else 0
    counts = np.zeros((len(m_eff), m), dtype=np.int64)
    hits = np.zeros((len(m_eff), m), dtype=bool)
    if len(m_eff) == 0 or traces.n_pings == 0:
        return counts, hits
    if origin is None:
        origin = grid_origin(traces_bounds(traces), radius_m, tol_s)
    wanted = _first_observation_cells(ox, oy, ot, m_eff, origin, radius_m, tol_s)  # not every ping's cell
    cell_keys, cell_rows, x0, y0, t0, nx, ny, nt = _cell_index(traces, radius_m, tol_s, origin, wanted)
    _match_kernel(
        np.ascontiguousarray(hit_rows, dtype=np.int64), np.ascontiguousarray(ox, dtype=np.float64),
        np.ascontiguousarray(oy, dtype=np.float64), np.ascontiguousarray(ot, dtype=np.int64),
        np.ascontiguousarray(m_eff, dtype=np.int64), float(radius_m), np.int64(tol_s),
        np.ascontiguousarray(traces.offsets, dtype=np.int64), np.ascontiguousarray(traces.x_m, dtype=np.float64),
        np.ascontiguousarray(traces.y_m, dtype=np.float64), np.ascontiguousarray(traces.t_s, dtype=np.int64),
        traces.trace_index(), cell_keys, cell_rows, x0, y0, np.int64(t0), np.int64(nx), np.int64(ny),
        np.int64(nt), counts, hits,
    )
    return counts, hits


def match_counts(traces: Traces, targets: np.ndarray, *, m: int, sigma_m: float, jitter_s: float,
                 radius_m: float, tol_s: int, seed: int):
    """Per target and k = 1..m: candidate count and whether the target is among them.

    Returns (counts, hits): int64 and bool arrays of shape (len(targets), m).
    """
    counts = np.zeros((len(targets), m), dtype=np.int64)
    hits = np.zeros((len(targets), m), dtype=bool)
    if len(targets) == 0:
        return counts, hits
    cell_keys, cell_rows, x0, y0, t0, nx, ny, nt = _cell_index(traces, radius_m, tol_s)
    trace_of = traces.trace_index()
    keys = np.empty(len(targets), dtype=np.uint64)
    stream_keys(np.uint64(seed), np.uint64(TAG_ATTACK), stable_uid64(traces.pseudonym[targets]) ^ SALT, keys)
    _attack_kernel(
        np.ascontiguousarray(targets, dtype=np.int64), keys, np.int64(m), float(sigma_m), float(jitter_s),
        float(radius_m), np.int64(tol_s), np.ascontiguousarray(traces.offsets, dtype=np.int64),
        np.ascontiguousarray(traces.x_m, dtype=np.float64), np.ascontiguousarray(traces.y_m, dtype=np.float64),
        np.ascontiguousarray(traces.t_s, dtype=np.int64), trace_of, cell_keys, cell_rows, x0, y0, np.int64(t0),
        np.int64(nx), np.int64(ny), np.int64(nt), counts, hits,
    )
    return counts, hits


def known_points_attack(
    traces: Traces,
    *,
    m_values=(1, 2, 3, 4, 5),
    sigma_values_m=(0.0, 50.0, 200.0),
    jitter_s: float = 600.0,
    radius_m: float | None = None,
    tol_s: int | None = None,
    n_targets: int | None = 1000,
    seed: int = 0,
    ci: str = "wilson",
    return_per_target: bool = False,
):
    """Success rate of the known-points attack vs m and position noise.

    Parameters
    ----------
    traces : Traces (the release)
    m_values : numbers of observations known (>= 1)
    sigma_values_m : position noise per axis, metres (>= 0)
    jitter_s : half-width of the uniform time jitter, seconds (>= 0)
    radius_m : match radius, metres (inclusive); default ``3 * sigma + 50`` per sigma
    tol_s : time tolerance, whole seconds (inclusive); default ``jitter_s + 60``
    n_targets : number of target traces (seeded, order-independent choice) or None = all
    seed, ci : as elsewhere

    Returns
    -------
    Tidy DataFrame: m, sigma_m, jitter_s, radius_m, tol_s, metric ("success", and
    "target_kept" = the true trace survives, "median_candidates"), value, ci_low,
    ci_high, n (targets with >= m pings), n_short.  With ``return_per_target`` also
    (pseudonym, m, sigma_m, n_candidates, target_kept, success).
    """
    if not isinstance(traces, Traces):
        raise InputError(f"traces must be a sim.core.traces.Traces, got {type(traces).__name__}.")
    ms, sigmas, jitter_s, tol_s = check_known_points_args(m_values, sigma_values_m, jitter_s, tol_s)
    targets = sample_traces(traces, n_targets, seed)
    m_max = max(ms)
    lengths = traces.lengths[targets]
    rows, per = [], []
    for si, sigma in enumerate(sigmas):
        r_m = match_radius(sigma, radius_m)
        ok_t = targets[lengths >= 1]
        counts, hits = match_counts(traces, ok_t, m=m_max, sigma_m=sigma, jitter_s=jitter_s,
                                    radius_m=r_m, tol_s=tol_s, seed=seed)
        r, pt = known_points_rows(traces.lengths[ok_t], counts, hits, ms=ms, si=si, sigma_m=sigma,
                                  jitter_s=jitter_s, radius_m=r_m, tol_s=tol_s, n_targets=len(targets), seed=seed,
                                  ci=ci)
        rows += r
        if return_per_target:
            per += [pd.DataFrame({"pseudonym": traces.pseudonym[ok_t[has]], **cols}) for has, cols in pt]
    table = pd.DataFrame(rows, columns=KNOWN_POINTS_COLUMNS)
    if return_per_target:
        return table, (pd.concat(per, ignore_index=True) if per else pd.DataFrame())
    return table


#: columns of the :func:`known_points_attack` table
KNOWN_POINTS_COLUMNS = ["m", "sigma_m", "jitter_s", "radius_m", "tol_s", "metric", "value", "ci_low", "ci_high", "n",
                        "n_short"]


def check_known_points_args(m_values, sigma_values_m, jitter_s, tol_s):
    """``(ms, sigmas, jitter_s, tol_s)`` validated, with the default ``tol_s``."""
    ms = sorted({check_int("m (observations)", m, 1) for m in np.atleast_1d(m_values)})
    sigmas = [check_positive("sigma_m", s, allow_zero=True) for s in np.atleast_1d(sigma_values_m)]
    jitter_s = check_positive("jitter_s", jitter_s, allow_zero=True)
    if tol_s is None:
        tol_s = int(np.ceil(jitter_s)) + 60
    tol_s = check_int("tol_s (whole seconds)", tol_s, 0)
    return ms, sigmas, jitter_s, tol_s


def match_radius(sigma_m: float, radius_m: float | None = None) -> float:
    """The match radius for noise ``sigma_m``: ``radius_m``, default ``3 * sigma_m + 50``."""
    return check_positive("radius_m", 3.0 * sigma_m + 50.0 if radius_m is None else radius_m, allow_zero=True)


def known_points_rows(lengths, counts, hits, *, ms, si, sigma_m, jitter_s, radius_m, tol_s, n_targets, seed, ci):
    """Table rows of one noise level from the targets' match results.

    ``lengths`` are the pings of the targets that have any, ``counts``/``hits`` their
    :func:`match_counts` (columns k = 1..max(ms)); ``n_targets`` counts every target.
    Returns ``(rows, per_target)``: per_target holds, per m, the mask of targets with
    >= m pings and their n_candidates, target_kept, success columns.
    """
    ln = np.asarray(lengths)
    rows, per = [], []
    for m in ms:
        has = ln >= m
        c = counts[has, m - 1]
        h = hits[has, m - 1]
        succ = (c == 1) & h
        p = dict(m=m, sigma_m=sigma_m, jitter_s=jitter_s, radius_m=radius_m, tol_s=tol_s)
        n_short = int(n_targets - has.sum())
        for name, arr in (("success", succ), ("target_kept", h)):
            rows.append({**rate_row(name, arr, ci, seed, (m, si), **p), "n_short": n_short})
        med = stats.summary_ci(c, statistic="median", seed=seed, tags=(m, si, 1))
        rows.append({**p, "metric": "median_candidates", **med, "n_short": n_short})
        per.append((has, {"m": m, "sigma_m": sigma_m, "n_candidates": c, "target_kept": h, "success": succ}))
    return rows, per
