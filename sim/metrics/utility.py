"""Utility metrics: what a defense costs an honest analyst (DESIGN.md §7).

Each metric compares a defended release with the undefended one (and with the truth
where the task has one).  :func:`utility_table` gathers them in a tidy table
``(metric, value, description)``.

Definitions
-----------
Errors between two count tables ``D`` (defended) and ``R`` (reference) over the union of
their keys (a missing key counts 0):

* normalised L1 (:func:`normalised_l1`): ``sum |D - R| / sum |R|``; penalises lost
  volume (a 10 % subsample has error ~0.9 on counts); 0 when ``D == R``.
* total variation (:func:`total_variation`): ``0.5 * sum |D / sum D - R / sum R|`` on
  the *shares* (negative noisy counts clipped at 0 first); insensitive to uniform
  thinning; in [0, 1].

Origin-destination flows (:func:`od_matrix`): every pair of consecutive pings (i, i+1)
of one trace with ``0 <= t[i+1] - t[i] <= max_gap_s`` (inclusive) whose zones (at
``level``, by ``world.locate``) are both inside the study area and differ is one trip
from zone(i) to zone(i+1).  Consecutive pings rather than stays: simple, and it makes
the cost of position noise (spurious boundary crossings) and of thinning (gaps longer
than ``max_gap_s``) visible.

Visits (:func:`visit_counts`): distinct traces per (zone, time bin of ``bin_h`` hours
from local midnight of day 0) — the same table an aggregate release publishes.

Residents (:func:`resident_estimate`): each trace's *modal night zone* (the zone of most
of its pings with local time in [night_start_h, night_end_h), ties to the lowest zone
id) counts one resident there.  The analyst scales the estimate to the true total (the
panel share is assumed known) and the error is the normalised L1 against the truth.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from sim.release.defenses import LEVELS
from sim.release.aggregate import bin_seconds, night_mask, zone_time_counts
from sim.core.errors import ConfigError, InputError
from sim.core.constants import DAY_S
from sim.core.traces import Traces, ping_zones

log = logging.getLogger(__name__)


# =============================================================================
# Error measures
# =============================================================================
def _align(defended: pd.Series, reference: pd.Series):
    d, r = defended, reference
    if not d.index.is_unique:
        d = d.groupby(level=list(range(d.index.nlevels))).sum()
    if not r.index.is_unique:
        r = r.groupby(level=list(range(r.index.nlevels))).sum()
    idx = d.index.union(r.index)
    return (d.reindex(idx, fill_value=0).to_numpy(np.float64),
            r.reindex(idx, fill_value=0).to_numpy(np.float64))


def normalised_l1(defended: pd.Series, reference: pd.Series) -> float:
    """``sum |D - R| / sum |R|`` over the union of keys (0 if both empty, inf if only R is)."""
    d, r = _align(defended, reference)
    num = float(np.abs(d - r).sum())
    den = float(np.abs(r).sum())
    if den == 0.0:
        return 0.0 if num == 0.0 else float("inf")
    return num / den


def total_variation(defended: pd.Series, reference: pd.Series) -> float:
    """``0.5 * sum |D/sum D - R/sum R|`` on shares (negatives clipped at 0); in [0, 1].

    0 if both are empty, 1 if exactly one is.
    """
    d, r = _align(defended, reference)
    d, r = np.clip(d, 0, None), np.clip(r, 0, None)
    sd, sr = d.sum(), r.sum()
    if sd == 0 or sr == 0:
        return 0.0 if sd == sr else 1.0
    return float(0.5 * np.abs(d / sd - r / sr).sum())


# =============================================================================
# Tables an analyst computes
# =============================================================================
def _check(traces, world, level):
    if not isinstance(traces, Traces):
        raise InputError(f"expected a sim.core.traces.Traces, got {type(traces).__name__}.")
    if world is None:
        raise ConfigError("this metric needs a world (with locate(x_m, y_m, level)).")
    if level not in LEVELS:
        raise ConfigError(f"level={level!r} is not a zone level; expected one of {LEVELS}.")


def od_matrix(traces: Traces, world, level: str = "tract", max_gap_s: int = 3600) -> pd.Series:
    """Trips between zones from consecutive pings (see module doc).

    Returns a Series ``count`` indexed by (origin_id, destination_id), int64, non-zero
    pairs only.  ``max_gap_s`` is inclusive.
    """
    _check(traces, world, level)
    if not (np.isscalar(max_gap_s) and max_gap_s >= 0):
        raise ConfigError(f"max_gap_s must be a number of seconds >= 0, got {max_gap_s!r}.")
    z = ping_zones(traces, world, level)
    tr = traces.trace_index()
    n = traces.n_pings
    if n < 2:
        return _od_series(np.zeros(0, np.int64), np.zeros(0, np.int64))
    dt = np.diff(traces.t_s)
    ok = ((tr[1:] == tr[:-1]) & (dt >= 0) & (dt <= max_gap_s) & (z[:-1] >= 0) & (z[1:] >= 0)
          & (z[1:] != z[:-1]))
    return _od_series(z[:-1][ok], z[1:][ok])


def _od_series(o, d):
    zmax = int(max(o.max(), d.max())) + 1 if len(o) else 1
    u, c = np.unique(o * np.int64(zmax) + d, return_counts=True)
    idx = pd.MultiIndex.from_arrays([u // zmax, u % zmax], names=["origin_id", "destination_id"])
    return pd.Series(c.astype(np.int64), index=idx, name="count")


def visit_counts(traces: Traces, world, level: str = "tract", bin_h: float = 1.0) -> pd.Series:
    """Distinct traces per (zone_id, bin): Series ``count`` with that MultiIndex."""
    _check(traces, world, level)
    t = zone_time_counts(traces, world, level, bin_h)
    return t.set_index(["zone_id", "bin"])["count"]


def _night_bounds(night_start_h, night_end_h):
    for v, nm in ((night_start_h, "night_start_h"), (night_end_h, "night_end_h")):
        if not (np.isscalar(v) and 0 <= v < 24):
            raise ConfigError(f"{nm} must be an hour in [0, 24), got {v!r}.")
    return (night_end_h - night_start_h) % 24.0


def resident_estimate(traces: Traces, world, level: str = "tract", night_start_h: float = 22.0,
                      night_end_h: float = 6.0) -> pd.Series:
    """Traces per modal night zone (see module doc): Series ``residents`` by zone_id.

    The night window is [night_start_h, night_end_h) local time (start inclusive, end
    exclusive, may wrap midnight).  Traces with no night ping inside the area count
    nowhere.
    """
    _check(traces, world, level)
    dur = _night_bounds(night_start_h, night_end_h)
    night = night_mask(traces, dur, night_end_h)
    z = ping_zones(traces, world, level)
    sel = night & (z >= 0)
    tr = traces.trace_index()[sel]
    zz = z[sel]
    modal = _modal(tr, zz)
    s = pd.Series(modal, dtype=np.int64).value_counts().sort_index()
    s.index = s.index.astype(np.int64)
    s.index.name = "zone_id"
    s.name = "residents"
    return s.astype(np.float64)


def _modal(tr, zz):
    """Most frequent zone of each trace (ties to the lowest zone), one value per trace."""
    if len(tr) == 0:
        return np.zeros(0, np.int64)
    zmax = int(zz.max()) + 1
    u, cnt = np.unique(tr * zmax + zz, return_counts=True)
    utr, uz = u // zmax, u % zmax
    order = np.lexsort((uz, -cnt, utr))
    utr, uz = utr[order], uz[order]
    first = np.ones(len(utr), dtype=bool)
    first[1:] = utr[1:] != utr[:-1]
    return uz[first]


def resident_estimate_from_table(table: pd.DataFrame, night_start_h: float = 22.0,
                                 night_end_h: float = 6.0) -> pd.Series:
    """Residents from an aggregate release: mean count per zone over the night bins.

    A bin is a night bin if its start (local time) is in [night_start_h, night_end_h);
    suppressed (missing) cells count 0.  Needs the attrs set by the aggregate defenses.
    """
    need = ("bin_h", "n_bins")
    if any(k not in table.attrs for k in need):
        raise InputError(f"table lacks attrs {need}; pass the table returned by aggregate_k "
                         "or aggregate_dp.")
    dur = _night_bounds(night_start_h, night_end_h)
    bin_s = bin_seconds(table.attrs["bin_h"], "bin_h")
    bins = np.arange(int(table.attrs["n_bins"]), dtype=np.int64)
    sod = (bins * bin_s) % DAY_S
    start, end = night_start_h * 3600.0, night_end_h * 3600.0
    is_night = ((sod >= start) & (sod < end)) if start < end else ((sod >= start) | (sod < end))
    if dur == 0:
        is_night[:] = False
    n_night = int(is_night.sum())
    if n_night == 0:
        raise ConfigError("no time bin of the table starts inside the night window; use a "
                          "smaller bin_h or a longer night.")
    night_bins = bins[is_night]
    t = table[np.isin(table["bin"].to_numpy(), night_bins)]
    s = t.groupby("zone_id")["count"].sum().astype(np.float64) / n_night
    s.index = s.index.astype(np.int64)
    s.name = "residents"
    return s


def true_residents(persons: pd.DataFrame, level: str = "tract") -> pd.Series:
    """Persons per home zone at ``level`` (column ``home_<level>_id``; -1 ignored)."""
    col = f"home_{level}_id"
    if col not in persons.columns:
        raise InputError(f"persons table has no column {col!r}; expected the truth persons "
                         "table of docs/CONTRACTS.md.")
    z = persons[col].to_numpy(np.int64)
    s = pd.Series(z[z >= 0]).value_counts().sort_index().astype(np.float64)
    s.index = s.index.astype(np.int64)
    s.index.name = "zone_id"
    s.name = "residents"
    return s


def resident_error(estimate: pd.Series, truth: pd.Series) -> float:
    """Normalised L1 of the estimate scaled to the true total (negatives clipped at 0).

    An estimate with no positive mass is scaled to 0 everywhere (error 1).
    """
    e = estimate.clip(lower=0)
    tot = float(e.sum())
    scaled = e * (float(truth.sum()) / tot) if tot > 0 else e * 0.0
    return normalised_l1(scaled, truth)


def share_kept(defended: Traces, original: Traces, mapping: pd.DataFrame | None = None) -> dict:
    """Share of pings and of devices (original traces) still present in ``defended``.

    A device is kept if at least one of its pings is published; ``mapping`` (returned by
    pseudonym defenses) links new pseudonyms to the original ones.
    """
    pings = defended.n_pings / original.n_pings if original.n_pings else float("nan")
    present = defended.lengths > 0
    names = pd.Index(np.asarray(defended.pseudonym, dtype=object)[present], dtype=object)
    if mapping is not None:
        m = mapping.set_index("pseudonym")["source_pseudonym"]
        src = m.reindex(names)
        if src.isna().any():
            raise InputError("a defended pseudonym is missing from the mapping; pass the mapping "
                             "returned with this release.")
        names = pd.Index(src.to_numpy(dtype=object), dtype=object)
    orig = pd.Index(np.asarray(original.pseudonym, dtype=object)[original.lengths > 0], dtype=object)
    found = orig.isin(names)
    if len(names) and not names.isin(orig).all():
        raise InputError("defended pseudonyms are not those of the original release; pass the "
                         "mapping returned by the pseudonym defense.")
    devices = float(found.sum()) / len(orig) if len(orig) else float("nan")
    return {"pings": float(pings), "devices": devices}


# =============================================================================
# The tidy table
# =============================================================================
_DESC = {
    "share_pings_kept": "pings published / pings before the defense",
    "share_devices_kept": "original traces with >= 1 published ping / original traces",
    "od_l1": "origin-destination trips (consecutive pings changing zone within max_gap_s): "
             "sum|D-R| / sum R vs undefended",
    "od_tvd": "OD trips: total variation distance of shares vs undefended (0..1)",
    "visits_l1": "distinct traces per zone and time bin: sum|D-R| / sum R vs undefended",
    "visits_tvd": "distinct traces per zone and time bin: total variation of shares vs "
                  "undefended (0..1)",
    "residents_l1_vs_undefended": "residents per zone from modal night zones, scaled: "
                                  "sum|D-R| / sum R vs the undefended estimate",
    "residents_l1_vs_truth": "residents per zone from modal night zones, scaled to the true "
                             "total: sum|est-true| / sum true",
    "residents_l1_vs_truth_undefended": "same estimate from the undefended release (the "
                                        "analyst's error without any defense)",
    "residents_l1_increase": "residents_l1_vs_truth minus its undefended value",
}


def utility_table(defended, original: Traces, world, *, level: str = "tract",
                  mapping: pd.DataFrame | None = None, truth: pd.Series | None = None,
                  max_gap_s: int = 3600, bin_h: float = 1.0, night_start_h: float = 22.0,
                  night_end_h: float = 6.0) -> pd.DataFrame:
    """Every utility metric of a defended release vs the undefended ``original``.

    ``defended`` is the Traces (or aggregate table) a defense returned; ``truth`` the true
    residents per zone at ``level`` (e.g. :func:`true_residents`), optional.

    For an aggregate table the level and bin come from its attrs; the visit reference is
    the uncapped exact count (so the one-zone-per-bin cap of DP shows as a cost); the
    residents come from :func:`resident_estimate_from_table`, compared with the same
    estimator on the exact table (``residents_l1_vs_undefended``) while
    ``residents_l1_vs_truth_undefended`` stays the trace-based estimate of the undefended
    release (what the analyst could do without the defense, so aggregation itself may
    cost something even at k = 1); the metrics that need traces (shares, OD) are NaN.
    Every metric is 0 (shares 1) for the identity release.  Returns columns metric,
    value, description, level.
    """
    _check(original, world, level)
    rows = {}
    is_table = isinstance(defended, pd.DataFrame)
    if is_table:
        level = defended.attrs.get("level", level)
        bin_h = defended.attrs.get("bin_h", bin_h)
        _check(original, world, level)
        for k in ("share_pings_kept", "share_devices_kept", "od_l1", "od_tvd"):
            rows[k] = np.nan
        d_vis = defended.set_index(["zone_id", "bin"])["count"]
        d_res = resident_estimate_from_table(defended, night_start_h, night_end_h)
    else:
        _check(defended, world, level)
        sk = share_kept(defended, original, mapping)
        rows["share_pings_kept"] = sk["pings"]
        rows["share_devices_kept"] = sk["devices"]
        od_d = od_matrix(defended, world, level, max_gap_s)
        od_r = od_matrix(original, world, level, max_gap_s)
        rows["od_l1"] = normalised_l1(od_d, od_r)
        rows["od_tvd"] = total_variation(od_d, od_r)
        d_vis = visit_counts(defended, world, level, bin_h)
        d_res = resident_estimate(defended, world, level, night_start_h, night_end_h)
    exact = zone_time_counts(original, world, level, bin_h)
    r_vis = exact.set_index(["zone_id", "bin"])["count"]
    rows["visits_l1"] = normalised_l1(d_vis, r_vis)
    rows["visits_tvd"] = total_variation(d_vis, r_vis)
    r_res = resident_estimate(original, world, level, night_start_h, night_end_h)
    if is_table:  # same estimator on the exact, unthresholded table of the original
        exact.attrs.update(bin_h=float(bin_h), n_bins=int(defended.attrs["n_bins"]))
        r_same = resident_estimate_from_table(exact, night_start_h, night_end_h)
    else:
        r_same = r_res
    rows["residents_l1_vs_undefended"] = resident_error(d_res, r_same)
    if truth is not None:
        e_d = resident_error(d_res, truth)
        e_r = resident_error(r_res, truth)
        rows["residents_l1_vs_truth"] = e_d
        rows["residents_l1_vs_truth_undefended"] = e_r
        rows["residents_l1_increase"] = e_d - e_r
    out = pd.DataFrame({"metric": list(rows), "value": [float(v) for v in rows.values()],
                        "description": [_DESC[k] for k in rows]})
    out["level"] = level
    return out
