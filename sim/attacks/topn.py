"""Uniqueness of each device's top-N locations (Zang & Bolot 2011).

Definitions
-----------
* A device's *places* at a zone level are the zones (``world.locate``) of its pings;
  pings outside the study area (zone -1) are ignored.
* Places are ranked by ``by``: ``"pings"`` (number of pings in the zone) or ``"days"``
  (number of distinct local days with a ping in the zone — less sensitive to a phone
  that pings a lot while sitting at one place).  Ties go to the smaller zone id.
* The *signature* for N is the set of the N top-ranked zones (unordered, as in Zang &
  Bolot's top-N location sets; ``ordered=True`` keeps the rank order).  Devices with
  fewer than N places have no N-signature: they are counted as ``n_short`` and left out
  of that N's denominator.
* Anonymity set of a device = number of devices in the release with the same signature;
  unique = set size 1.

Out of core (``sim.pipeline.stream_attacks``): every trace's signature comes from its own
pings, so each part gives its distinct signatures with counts (:func:`signature_counts`),
summed per signature over parts (:func:`merge_signature_counts`); a signature counted c
times is c traces of set size c, and both figures depend only on that multiset.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from sim.core.jit import jit, pjit, prange
from sim.core.errors import ConfigError, InputError
from sim.core.traces import Traces, ping_zones
from sim.attacks._common import check_int, check_levels, rate_row, stats

BY = ("pings", "days")


@jit
def _top_one(zones, days, by_days, n_max, out_row):
    """Top n_max places of one trace into out_row (padded with -1); returns #places."""
    m = 0
    for j in range(len(zones)):
        if zones[j] >= 0:
            m += 1
    if m == 0:
        return 0
    key = np.empty(m, dtype=np.int64)
    k = 0
    for j in range(len(zones)):
        if zones[j] >= 0:
            key[k] = zones[j] * np.int64(1 << 20) + days[j]  # days < 2**20
            k += 1
    key.sort()
    # run-length per zone
    zl = np.empty(m, dtype=np.int64)
    cl = np.empty(m, dtype=np.int64)
    nz = 0
    prev_zone = -1
    prev_key = -1
    for j in range(m):
        z = key[j] >> 20
        if z != prev_zone:
            zl[nz] = z
            cl[nz] = 0
            nz += 1
            prev_zone = z
            prev_key = -1
        if by_days:
            if key[j] != prev_key:
                cl[nz - 1] += 1
        else:
            cl[nz - 1] += 1
        prev_key = key[j]
    used = np.zeros(nz, dtype=np.bool_)
    for r in range(min(n_max, nz)):
        best = -1
        for q in range(nz):
            if used[q]:
                continue
            if best < 0 or cl[q] > cl[best] or (cl[q] == cl[best] and zl[q] < zl[best]):
                best = q
        used[best] = True
        out_row[r] = zl[best]
    return nz


@pjit
def _top_kernel(offsets, zones, days, by_days, n_max, out, n_places):
    for i in prange(len(offsets) - 1):
        a, b = offsets[i], offsets[i + 1]
        n_places[i] = _top_one(zones[a:b], days[a:b], by_days, n_max, out[i])


def top_locations(traces: Traces, world, level: str, *, n_max: int = 3, by: str = "pings"):
    """Top-``n_max`` zones of every trace at ``level``.

    Returns
    -------
    (top, n_places) : int64 arrays of shape (n_traces, n_max) and (n_traces,)
        ``top[i, r]`` is the zone of rank r (0 = most visited) or -1 if the trace has
        fewer places; ``n_places[i]`` is the number of distinct zones of trace i.
    """
    if by not in BY:
        raise ConfigError(f"by must be one of {BY}, got {by!r}.")
    n_max = check_int("n_max", n_max, 1)
    check_levels((level,), world)
    nt = traces.n_traces
    top = np.full((nt, n_max), -1, dtype=np.int64)
    n_places = np.zeros(nt, dtype=np.int64)
    if traces.n_pings == 0:
        return top, n_places
    zones = np.ascontiguousarray(ping_zones(traces, world, level))
    days = np.ascontiguousarray(traces.day(), dtype=np.int64)
    days = days - days.min()
    check_day_span(int(days.max()) + 1)
    _top_kernel(np.ascontiguousarray(traces.offsets, dtype=np.int64), zones, days, by == "days", np.int64(n_max), top, n_places)
    return top, n_places


def check_day_span(n_days: int) -> None:
    """InputError when the pings span 2**20 local days or more (the ranking key's limit)."""
    if n_days > 2**20:
        raise InputError("window longer than 2**20 days; top-N places support shorter windows.")


def signatures(top: np.ndarray, n_places: np.ndarray, n: int, ordered: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(sig, has)``: every trace's N-signature (its top-N zones, sorted unless
    ``ordered``; shape (n_traces, N)) and whether it has one (>= N places)."""
    sig = top[:, :n].copy()
    if not ordered:
        sig.sort(axis=1)
    return sig, n_places >= n


def signature_counts(top: np.ndarray, n_places: np.ndarray, n: int, ordered: bool = False):
    """The distinct N-signatures of the traces with counts: ``(sigs, counts, n_short)``
    (sigs sorted, shape (k, N); n_short = traces with < N places).  Counts of the parts
    of a release, summed per signature (:func:`merge_signature_counts`), are the whole
    release's."""
    sig, has = signatures(top, n_places, n, ordered)
    if not has.any():
        return np.zeros((0, n), dtype=np.int64), np.zeros(0, dtype=np.int64), int(len(has))
    u, cnt = np.unique(sig[has], axis=0, return_counts=True)
    return u.astype(np.int64), cnt.astype(np.int64), int((~has).sum())


def merge_signature_counts(parts) -> tuple[np.ndarray, np.ndarray]:
    """Sum ``(sigs, counts)`` pairs (of :func:`signature_counts`) per signature."""
    parts = [(s, c) for s, c in parts if len(c)]
    if not parts:
        return np.zeros((0, 0), dtype=np.int64), np.zeros(0, dtype=np.int64)
    sigs = np.concatenate([s for s, _ in parts])
    cnt = np.concatenate([c for _, c in parts])
    u, inv = np.unique(sigs, axis=0, return_inverse=True)
    return u, np.bincount(inv.ravel(), weights=cnt, minlength=len(u)).astype(np.int64)


def signature_set_sizes(top: np.ndarray, n_places: np.ndarray, n: int, ordered: bool = False) -> np.ndarray:
    """Anonymity-set size of each trace's N-signature (0 for traces with < N places)."""
    sig, has = signatures(top, n_places, n, ordered)
    out = np.zeros(len(top), dtype=np.int64)
    if has.any():
        _, inv, cnt = np.unique(sig[has], axis=0, return_inverse=True, return_counts=True)
        out[has] = cnt[inv.ravel()]
    return out


#: columns of the :func:`topn_uniqueness` table
TOPN_COLUMNS = ["level", "N", "by", "metric", "value", "ci_low", "ci_high", "n", "n_short", "n_panel"]


def topn_rows(sizes: np.ndarray, *, level: str, li: int, n: int, by: str, n_short: int, n_panel: int, ci: str,
              seed: int) -> list:
    """The two table rows (unique, median_set_size) of one level and N from the set
    sizes of the traces that have an N-signature (any order: both figures depend on
    the multiset only)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    p = dict(level=level, N=n, by=by)
    r = rate_row("unique", sizes == 1, ci, seed, (li, n), **p)
    r["n_short"] = int(n_short)
    r["n_panel"] = int(n_panel)
    med = stats.summary_ci(sizes, statistic="median", seed=seed, tags=(li, n, 1))
    return [r, {**p, "metric": "median_set_size", **med, "n_short": int(n_short), "n_panel": int(n_panel)}]


def check_topn_args(levels, n_values, by, world) -> tuple[tuple, list]:
    """``(levels, ns)`` validated (ConfigError naming the bad value)."""
    levels = check_levels(levels, world)
    ns = [check_int("N (number of top places)", n, 1) for n in np.atleast_1d(n_values)]
    if by not in BY:
        raise ConfigError(f"by must be one of {BY}, got {by!r}.")
    return levels, ns


def topn_uniqueness(
    traces: Traces,
    world,
    *,
    levels=None,
    n_values=(1, 2, 3),
    by: str = "pings",
    ordered: bool = False,
    ci: str = "wilson",
    seed: int = 0,
    return_per_trace: bool = False,
):
    """Share of devices whose top-N places are unique, per level and N.

    Returns a tidy DataFrame: level, N, by, metric ("unique" with interval, or
    "median_set_size" with bootstrap interval), value, ci_low, ci_high, n (devices
    with >= N places), n_short, n_panel (traces with a ping in the release: the crowd
    the signatures are compared within; see :mod:`sim.attacks.panel`).  With ``return_per_trace`` also a table pseudonym,
    level, N, set_size (0 when short).
    """
    if not isinstance(traces, Traces):
        raise InputError(f"traces must be a sim.core.traces.Traces, got {type(traces).__name__}.")
    levels = check_levels(levels, world)
    ns = [check_int("N (number of top places)", n, 1) for n in np.atleast_1d(n_values)]
    n_panel = int(np.count_nonzero(traces.lengths))
    rows, per = [], []
    for li, lv in enumerate(levels):
        top, n_places = top_locations(traces, world, lv, n_max=max(ns), by=by)
        for n in ns:
            size = signature_set_sizes(top, n_places, n, ordered)
            has = size > 0
            rows += topn_rows(size[has], level=lv, li=li, n=n, by=by, n_short=int((~has).sum()), n_panel=n_panel,
                              ci=ci, seed=seed)
            if return_per_trace:
                per.append(pd.DataFrame({"pseudonym": traces.pseudonym, "level": lv, "N": n, "set_size": size}))
    table = pd.DataFrame(rows, columns=TOPN_COLUMNS)
    if return_per_trace:
        return table, (pd.concat(per, ignore_index=True) if per else pd.DataFrame())
    return table
