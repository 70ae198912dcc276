"""Aggregate releases: zone x time-bin counts of distinct pseudonyms, with a k-threshold
(``aggregate_k``) or differentially private noise (``aggregate_dp``), and the helpers the
utility metrics share with them (time bins, night masks).

A count table is what a broker publishes instead of pings; per-trace attacks do not apply
to it (:data:`TRACE_ATTACKS`); membership inference does (:data:`AGGREGATE_ATTACKS`,
measured by :func:`sim.attacks.membership.aggregate_membership_risk`).
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from sim.core.constants import DAY_S, LEVELS
from sim.core.errors import ConfigError, InputError
from sim.core.traces import Traces, derived_cache, ping_zones
from sim.release._kernels import SUB_DP, contrib_kernel, defense_key, dp_noise_kernel

log = logging.getLogger(__name__)

#: Attacks of DESIGN.md §6 that need per-pseudonym traces.
TRACE_ATTACKS = (
    "home_work_linkage",
    "time_to_identification",
    "unicity",
    "top_n_locations",
    "geofence",
    "known_points",
    "relinking",
)
#: What still applies to a zone x time-bin count table.
AGGREGATE_ATTACKS = ("membership_inference",)

def check_traces(traces):
    if not isinstance(traces, Traces):
        raise InputError(f"expected a sim.core.traces.Traces, got {type(traces).__name__}; build one "
                         "with Traces.from_frame.")




def bin_seconds(bin_h: float, what: str) -> int:
    s = bin_h * 3600.0
    si = int(round(s))
    if si < 1 or abs(s - si) > 1e-6:
        raise ConfigError(f"{what}={bin_h!r} hours is not a whole number of seconds >= 1; "
                          "use e.g. 0.25, 1, 2 or 24.")
    return si


def level_zone_ids(world, level) -> np.ndarray:
    if level == "building":
        return np.sort(world.buildings["building_id"].to_numpy(np.int64))
    return np.sort(world.zones[level]["zone_id"].to_numpy(np.int64))


def night_mask(traces: Traces, duration_h: float, end_h: float = 6.0) -> np.ndarray:
    """True for pings whose local time of day is in [end_h - duration_h, end_h) (mod 24).

    The start is inclusive, the end exclusive; ``duration_h >= 24`` covers the whole day
    and ``duration_h == 0`` nothing.
    """
    if duration_h <= 0:
        return np.zeros(traces.n_pings, dtype=bool)
    if duration_h >= 24:
        return np.ones(traces.n_pings, dtype=bool)
    sod = (traces.t_s - traces.start_s) % DAY_S  # local seconds of day, in [0, 86400)
    end = (end_h % 24.0) * 3600.0
    start = ((end_h - duration_h) % 24.0) * 3600.0
    if start < end:
        return (sod >= start) & (sod < end)
    return (sod >= start) | (sod < end)


# ------------------------------------------------------------------ aggregates
def cell_contributions(traces: Traces, world, level: str, bin_s: int, n_bins: int,
                        max_zones_per_bin):
    """Per trace, its distinct (zone, bin) cells; returns (trace, zone, bin) int64 arrays
    (memoised on the traces: membership risk asks for the same cells once per target)."""
    cache = derived_cache(traces)
    key = ("cells", id(world), level, int(bin_s), int(n_bins), max_zones_per_bin)
    hit = cache.get(key)
    if hit is not None and hit[0] is world:
        return hit[1]
    res = cell_contributions_uncached(traces, world, level, bin_s, n_bins, max_zones_per_bin)
    for a in res:
        a.setflags(write=False)
    cache[key] = (world, res)
    return res


def cell_contributions_uncached(traces, world, level, bin_s, n_bins, max_zones_per_bin):
    z = ping_zones(traces, world, level)
    b = (traces.t_s - traces.start_s) // bin_s
    z = np.where((b >= 0) & (b < n_bins), z, -1)
    cap = np.iinfo(np.int64).max if max_zones_per_bin is None else int(max_zones_per_bin)
    n = traces.n_pings
    oz = np.empty(n, dtype=np.int64)
    ob = np.empty(n, dtype=np.int64)
    nw = np.zeros(traces.n_traces, dtype=np.int64)
    contrib_kernel(traces.offsets, z, b.astype(np.int64), cap, oz, ob, nw)
    lengths = traces.lengths
    within = np.arange(n, dtype=np.int64) - np.repeat(traces.offsets[:-1], lengths)
    sel = within < np.repeat(nw, lengths)
    return traces.trace_index()[sel], oz[sel], ob[sel]


def _count_cells(zone, tbin, n_bins):
    """Sorted distinct (zone, bin) keys and their multiplicities."""
    key = zone * np.int64(n_bins) + tbin
    space = (int(zone.max()) + 1) * int(n_bins) if len(zone) else 0
    if space <= max(4 * len(key), 1 << 22):  # dense key space: counting beats sorting
        c = np.bincount(key, minlength=space)
        u = np.flatnonzero(c)
        c = c[u]
    else:
        u, c = np.unique(key, return_counts=True)
    return u // n_bins, u % n_bins, c.astype(np.int64)


def zone_time_counts(traces: Traces, world, level: str = "tract", bin_h: float = 1.0,
                     max_zones_per_bin: int | None = None) -> pd.DataFrame:
    """Exact zone x time-bin counts of distinct traces (no threshold, no noise).

    A trace counts once in cell (zone, bin) if it has a ping located in ``zone`` (by
    ``world.locate`` at ``level``) with ``(t_s - start_s) // bin_s == bin``; with
    ``max_zones_per_bin = c`` only its c zones with most pings in that bin count (ties to
    the lowest zone id).  Pings outside the study area or the window are ignored.
    Returns non-zero cells only: zone_id, bin, t_start_s, count (int64).
    """
    check_traces(traces)
    if world is None:
        raise ConfigError("zone_time_counts needs a world (with locate(x_m, y_m, level)).")
    if level not in LEVELS:
        raise ConfigError(f"level={level!r} is not a zone level; expected one of {LEVELS}.")
    b = bin_seconds(bin_h, "bin_h")
    n_bins = -(-int(traces.n_days) * DAY_S // b)
    _, z, tb = cell_contributions(traces, world, level, b, n_bins, max_zones_per_bin)
    zz, bb, cc = _count_cells(z, tb, n_bins)
    return pd.DataFrame({"zone_id": zz, "bin": bb, "t_start_s": traces.start_s + bb * b,
                         "count": cc})


def _agg_attrs(df, traces, level, bin_s, n_bins, name, **kw):
    df.attrs.update(dict(defense=name, level=level, bin_h=bin_s / 3600.0, n_bins=int(n_bins),
                         start_s=int(traces.start_s), unit="distinct traces per zone and bin",
                         applies_to=AGGREGATE_ATTACKS, no_longer_applies=TRACE_ATTACKS, **kw))
    return df


def transform_aggregate_k(traces, ctx, step, k, level="tract", bin_h=1.0, max_zones_per_bin=None):
    b = bin_seconds(bin_h, "bin_h")
    n_bins = -(-int(traces.n_days) * DAY_S // b)
    t = zone_time_counts(traces, ctx.world, level, bin_h, max_zones_per_bin)
    out = t[t["count"] >= int(k)].reset_index(drop=True)
    log.info("aggregate_k: %d of %d non-empty cells have count >= %d", len(out), len(t), k)
    return _agg_attrs(out, traces, level, b, n_bins, "aggregate_k", k=int(k),
                      max_zones_per_bin=max_zones_per_bin), None


def dp_sensitivity(n_bins: int, max_zones_per_bin: int) -> int:
    """L1 sensitivity of the whole zone x bin table to one trace: n_bins * max_zones_per_bin."""
    return int(n_bins) * int(max_zones_per_bin)


def transform_aggregate_dp(traces, ctx, step, epsilon, level="tract", bin_h=1.0, mechanism="laplace",
                  max_zones_per_bin=1):
    b = bin_seconds(bin_h, "bin_h")
    n_bins = -(-int(traces.n_days) * DAY_S // b)
    zone_ids = level_zone_ids(ctx.world, level)
    _, z, tb = cell_contributions(traces, ctx.world, level, b, n_bins, max_zones_per_bin)
    zi = np.searchsorted(zone_ids, z)
    exact = np.bincount(zi * np.int64(n_bins) + tb, minlength=len(zone_ids) * n_bins
                        ).astype(np.float64).reshape(len(zone_ids), n_bins)
    delta = dp_sensitivity(n_bins, max_zones_per_bin)
    scale = float(delta) / float(epsilon)  # 0 for epsilon = inf
    noise = np.empty_like(exact)
    dp_noise_kernel(zone_ids, n_bins, defense_key(ctx.seed, SUB_DP), scale,
                     mechanism == "geometric", noise)
    count = exact + noise
    count = count.astype(np.int64) if mechanism == "geometric" else count
    bins = np.tile(np.arange(n_bins, dtype=np.int64), len(zone_ids))
    out = pd.DataFrame({"zone_id": np.repeat(zone_ids, n_bins), "bin": bins,
                        "t_start_s": traces.start_s + bins * b, "count": count.ravel()})
    return _agg_attrs(out, traces, level, b, n_bins, "aggregate_dp", epsilon=float(epsilon),
                      mechanism=mechanism, sensitivity_l1=delta, noise_scale=scale,
                      max_zones_per_bin=int(max_zones_per_bin)), None


