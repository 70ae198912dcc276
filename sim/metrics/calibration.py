"""Calibration statistics of a generated dataset, with sane ranges to check against.

:func:`calibration_stats` computes, from a :class:`~sim.release.dataset.Simulation`, the figures that
DESIGN.md §9 anchors: pings per device-day, silent device-days, radius of gyration,
home–work distance, the one-way commute time *measured from the pings*, distinct places
over time (Song et al. 2010: S(t) ~ t^0.6), the visit-frequency rank law (Song et al.
2010: f_k ~ k^-ζ, ζ ≈ 1.2 ± 0.1) and the share of night-time pings at home.
:data:`SANE_RANGES` gives the range each must fall in; :func:`check_calibration` lists
violations.

Visits (the rank law)
---------------------
Song et al. count how often a person *visits* each place, not how long they stay.  Here
a device's fixes with ``accuracy_m <= 100`` (all its pseudonyms merged, in time order,
ties in release order) are placed in square cells of ``cell_m`` metres, and a **visit**
is a maximal run of consecutive fixes in the same cell (:func:`visit_runs`).  No time
gap splits a run: a night at home seen at 22:00 and 07:00 is one visit.  With sparse
pings this undercounts visits (a trip out and back between two pings is missed) and
GPS jitter across a cell edge overcounts them (A B A is three visits).  ``f_k`` is a
device's share of visits at its k-th most visited cell, averaged over the devices that
have a k-th cell, and ζ is minus the slope of log f_k on log k for k = 1..10
(:func:`rank_shares`, :func:`rank_exponent`).  ``visit_rank_exponent`` is that ζ;
``time_rank_exponent`` is the same fit on ping shares (time spent, since pings are
emitted independently of movement), which weights long stays and gives a steeper law.

Commute time (measured)
-----------------------
For persons on the day schedule with a workplace more than ``2 R`` from home
(``R = commute_radius_m``), on weekdays (Mon-Fri, local), using fixes with
``accuracy_m <= commute_max_accuracy_m``, an **observed commute** is a device-day with a
ping within R of work (truth coordinates) preceded the same day by a ping within R of
home: ``t_work`` is the first such work ping, ``t_home`` the last home ping before it,
and the pings strictly between are *transit* pings (:func:`observed_commutes`).  The
trip from leaving home to reaching work (both R-disks) lies inside [t_home, t_work], so

* ``upper = t_work - t_home`` is an **upper bound** of that commute's duration and
  ``lower`` (last minus first transit ping, 0 with fewer than two) a **lower bound**;
  their means bound the mean duration of the observed commutes.  Pings are sparse, so
  the bounds are far apart (the upper one is hours: the gap to the previous session).
* ``commute_minutes_mean`` is a **ratio estimator** of the mean duration: a device that
  emits n pings in a day, each at a time with density f(t) (estimated from all the
  pings used, 10-minute bins), emits on average n * f * D pings during a trip of length
  D, so mean D = sum(transit pings) / sum(n * f̄), with f̄ the mean density over each
  commute's bracket [t_home, t_work] (where the trip lies).  It is consistent when ping
  times do not depend on movement (true of this generator; real SDKs that ping more
  while moving bias it upward).  Other biases: time inside the R-disks is not counted
  (downward, about 2R/d of a trip of length d on a straight path at constant speed);
  f̄ averages the density over the bracket rather than over the unknown trip.  The 95 %
  interval is a bootstrap over devices; ``commute_n`` commutes and
  ``commute_transit_pings`` transit pings carry it.
* ``commute_minutes_model`` is the generator's own travel model (overhead + straight-line
  distance / speed) averaged over the panel's workers: it matches the census figure by
  construction and is kept only for comparison.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from sim.core.constants import DAY_S
from sim.core.errors import InputError
from sim.core.lookup import rows_by_id, run_starts
from sim.core.rng import TAG_BOOT, seed_sequence

#: statistic -> (low, high) inclusive bounds a realistic broker-like panel should meet
SANE_RANGES = {
    "pings_per_device_day_mean": (5.0, 120.0),
    "pings_per_device_day_median": (2.0, 60.0),
    "pings_per_device_day_p99": (40.0, 1500.0),
    "share_active_days_under_5_pings": (0.02, 0.6),
    "silent_device_day_share": (0.03, 0.5),
    "radius_of_gyration_median_m": (300.0, 20_000.0),
    "home_work_distance_median_m": (1_000.0, 25_000.0),
    "commute_minutes_mean": (15.0, 45.0),
    "distinct_places_growth_exponent": (0.2, 1.0),
    # Song et al. 2010 (Nature Physics 6:818), visits by rank: ζ ≈ 1.2 ± 0.1; the range
    # is that value ± 2 of its stated uncertainty.  Only the visit-based ζ is checked.
    "visit_rank_exponent": (1.0, 1.4),
    "night_pings_at_home_share": (0.5, 0.98),
}

#: R: a ping within this distance of the true home / work counts as "at" it (commutes)
COMMUTE_RADIUS_M = 150.0
#: fixes less accurate than this are not used to measure commutes
COMMUTE_MAX_ACCURACY_M = 50.0
#: bin of the within-day ping-time density used by the commute ratio estimator
PING_DENSITY_BIN_S = 600
_MAX_RANK = 10
_BOOT_TAG_COMMUTE = 0xC0_0001  # seed_sequence(seed, TAG_BOOT, this): commute interval


# ------------------------------------------------------------------------- visits
def order_by_device_time(device, t_s) -> np.ndarray:
    """Stable order of pings by (device, t_s).  A release is sorted by (trace, t_s), so
    one int64 key sorted with numpy's stable sort (timsort, fast on such runs) is used
    when it fits; lexsort otherwise."""
    device = np.asarray(device, dtype=np.int64)
    t = np.asarray(t_s, dtype=np.int64)
    if len(t) == 0:
        return np.zeros(0, dtype=np.int64)
    span = int(t.max()) - int(t.min())
    if device.min() >= 0 and span < 2**40 and int(device.max()) < 2**22:
        return np.argsort((device << 40) + (t - t.min()), kind="stable")
    return np.lexsort((t, device))


def visit_runs(device, t_s, place) -> tuple[np.ndarray, np.ndarray]:
    """Visits as maximal runs of consecutive pings of a device in the same place.

    Pings are ordered by (device, t_s), ties in input order.  Returns
    ``(visit_device, visit_place)``: one entry per visit, in that order.
    """
    device = np.asarray(device, dtype=np.int64)
    place = np.asarray(place, dtype=np.int64)
    if len(device) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = order_by_device_time(device, t_s)
    d, c = device[order], place[order]
    start = np.ones(len(d), dtype=bool)
    start[1:] = (d[1:] != d[:-1]) | (c[1:] != c[:-1])
    return d[start], c[start]


def rank_shares(device, place, max_rank: int = _MAX_RANK) -> np.ndarray:
    """Mean over devices of the share of a device's events at its k-th most frequent
    place, k = 1..max_rank (NaN where no device has k places).  An event is one row of
    (device, place): a ping for time shares, a visit for visit shares."""
    if len(device) == 0:
        return np.full(max_rank, np.nan)
    # events per (device, place) pair: sort by both, count the runs (numpy sorts hold
    # about three per-event arrays at once; pandas' value_counts held about twice that,
    # the calibration figures' peak at a 20,000-device sample)
    d, c = np.asarray(device, np.int64), np.asarray(place, np.int64)
    order = np.lexsort((c, d))
    c, d = c[order], d[order]
    del order
    new = np.ones(len(d), dtype=bool)
    new[1:] = (d[1:] != d[:-1]) | (c[1:] != c[:-1])
    del c
    starts = np.flatnonzero(new)
    del new
    cnt = np.diff(np.append(starts, len(d)))
    dev_c = d[starts]
    del d, starts
    # rank within each device by count, largest first (ties share a count, so which of
    # them takes rank k does not change the shares)
    o = np.lexsort((-cnt, dev_c))
    cnt, dev_c = cnt[o], dev_c[o]
    bounds = run_starts(dev_c)  # each device's pairs, and the end
    size = np.diff(bounds)
    rank = np.arange(len(dev_c)) - np.repeat(bounds[:-1], size) + 1
    frac = cnt / np.repeat(np.add.reduceat(cnt, bounds[:-1]), size)
    keep = rank <= max_rank
    s = np.bincount(rank[keep], weights=frac[keep], minlength=max_rank + 1)[1:]
    m = np.bincount(rank[keep], minlength=max_rank + 1)[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(m > 0, s / np.maximum(m, 1), np.nan)


def rank_exponent(shares) -> float:
    """ζ of f_k ~ k^-ζ: minus the least-squares slope of log f_k on log k over the ranks
    with a positive share (NaN with fewer than 3)."""
    f = np.asarray(shares, dtype=float)
    k = np.arange(1, len(f) + 1)
    ok = np.isfinite(f) & (f > 0)
    if ok.sum() < 3:
        return float("nan")
    return float(-np.polyfit(np.log(k[ok]), np.log(f[ok]), 1)[0])


# ------------------------------------------------------------------------ commutes
COMMUTE_COLUMNS = ["device", "day", "n_day_pings", "t_home_s", "t_work_s", "n_transit",
                   "t_first_transit_s", "t_last_transit_s", "upper_s", "lower_s"]


def observed_commutes(device, t_s, x_m, y_m, day, home_x_m, home_y_m, work_x_m, work_y_m, *,
                      radius_m: float = COMMUTE_RADIUS_M) -> pd.DataFrame:
    """Morning commutes seen in the pings (see the module docstring).

    ``device``, ``t_s``, ``x_m``, ``y_m``, ``day`` describe the pings to use (already
    filtered: weekdays, accurate fixes, commuting devices); ``home_*``/``work_*`` are
    indexed by device number.  A ping is *at home* (*at work*) when within
    ``radius_m`` (inclusive) of the home (work) point.  Per (device, day): the first
    ping at work and the last ping at home before it; device-days lacking either are
    not commutes.  Returns one row per commute with :data:`COMMUTE_COLUMNS`:
    ``n_day_pings`` (the device's pings that day), the two bracketing times, the
    number of pings strictly between them (``n_transit``), the first and last of those
    (-1 when none), ``upper_s = t_work_s - t_home_s`` and ``lower_s`` (last minus
    first transit ping; 0 with fewer than two).
    """
    device = np.asarray(device, dtype=np.int64)
    t_s = np.asarray(t_s, dtype=np.int64)
    day = np.asarray(day, dtype=np.int64)
    n = len(device)
    if n == 0:
        return pd.DataFrame({c: np.zeros(0, np.int64) for c in COMMUTE_COLUMNS})
    order = order_by_device_time(device, t_s)
    d, dy = device[order], day[order]
    if np.any((d[1:] == d[:-1]) & (dy[1:] < dy[:-1])):  # day not monotone in time: sort by it too
        order = np.lexsort((t_s, day, device))
        d, dy = device[order], day[order]
    t = t_s[order]
    x, y = np.asarray(x_m, float)[order], np.asarray(y_m, float)[order]
    at_home = np.hypot(x - np.asarray(home_x_m, float)[d], y - np.asarray(home_y_m, float)[d]) <= radius_m
    at_work = np.hypot(x - np.asarray(work_x_m, float)[d], y - np.asarray(work_y_m, float)[d]) <= radius_m
    del x, y, order  # per-ping temporaries: what this holds at once bounds the calibration stage's peak
    new = np.ones(n, dtype=bool)
    new[1:] = (d[1:] != d[:-1]) | (dy[1:] != dy[:-1])
    gid = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    del new
    size = np.diff(np.append(starts, n))
    G = len(starts)
    first_work = np.full(G, n, dtype=np.int64)
    wi = np.flatnonzero(at_work)
    _, first = np.unique(gid[wi], return_index=True)  # pings are grouped: first index per group
    first_work[gid[wi[first]]] = wi[first]
    hi = np.flatnonzero(at_home)
    hi = hi[hi < first_work[gid[hi]]]  # at home before the day's first ping at work
    last_home = np.full(G, -1, dtype=np.int64)
    if len(hi):
        hg = gid[hi]
        last = np.append(hg[1:] != hg[:-1], True)
        last_home[hg[last]] = hi[last]
    ok = (first_work < n) & (last_home >= 0)
    h, w = last_home[ok], first_work[ok]
    k = w - h - 1
    tf = np.where(k > 0, t[np.minimum(h + 1, n - 1)], -1)
    tl = np.where(k > 0, t[np.maximum(w - 1, 0)], -1)
    return pd.DataFrame({
        "device": d[h], "day": dy[h], "n_day_pings": size[ok].astype(np.int64), "t_home_s": t[h],
        "t_work_s": t[w], "n_transit": k.astype(np.int64), "t_first_transit_s": tf, "t_last_transit_s": tl,
        "upper_s": t[w] - t[h], "lower_s": np.where(k >= 2, tl - tf, 0),
    }, columns=COMMUTE_COLUMNS)


def ping_time_density(seconds_of_day, bin_s: int = PING_DENSITY_BIN_S) -> np.ndarray:
    """Density (per second) of ping times over the local day, in bins of ``bin_s``
    seconds; integrates to 1 over the day (all zero for no pings)."""
    sod = np.asarray(seconds_of_day, dtype=np.int64)
    nb = -(-DAY_S // bin_s)
    h = np.bincount(np.minimum(sod // bin_s, nb - 1), minlength=nb).astype(float)
    return h / max(len(sod), 1) / bin_s


def mean_density(density, a_s, b_s, bin_s: int = PING_DENSITY_BIN_S) -> np.ndarray:
    """Mean of a binned density over [a_s, b_s] (seconds of day, a <= b); the density
    at a where a == b."""
    f = np.asarray(density, float)
    cum = np.concatenate([[0.0], np.cumsum(f * bin_s)])

    def F(s):
        i = np.minimum(s // bin_s, len(f) - 1)
        return cum[i] + f[i] * (s - i * bin_s)

    a = np.asarray(a_s, np.int64)
    b = np.asarray(b_s, np.int64)
    span = (b - a).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(span > 0, (F(b) - F(a)) / np.where(span > 0, span, 1.0), f[np.minimum(a // bin_s, len(f) - 1)])


def ratio_ci(num, den, cluster, *, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0, tags: tuple = ()):
    """sum(num) / sum(den) with a percentile bootstrap interval over clusters (devices
    resampled with replacement).  Returns (estimate, low, high); NaN when sum(den) is 0."""
    num, den = np.asarray(num, float), np.asarray(den, float)
    if len(num) == 0 or den.sum() <= 0:
        return float("nan"), float("nan"), float("nan")
    _, inv = np.unique(np.asarray(cluster), return_inverse=True)
    cn = np.bincount(inv, weights=num)
    cd = np.bincount(inv, weights=den)
    est = float(cn.sum() / cd.sum())
    rng = seed_sequence(seed, TAG_BOOT, *tags)
    m = len(cn)
    reps = np.empty(n_boot)
    step = max(1, 2_000_000 // m)
    for b0 in range(0, n_boot, step):
        b1 = min(n_boot, b0 + step)
        pick = rng.integers(0, m, size=(b1 - b0, m))  # clusters drawn with replacement
        with np.errstate(invalid="ignore", divide="ignore"):
            reps[b0:b1] = cn[pick].sum(axis=1) / cd[pick].sum(axis=1)
    reps = reps[np.isfinite(reps)]
    if not len(reps):
        return est, float("nan"), float("nan")
    lo, hi = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
    return est, float(min(lo, est)), float(max(hi, est))


def commute_duration_estimate(commutes: pd.DataFrame, ping_seconds_of_day, *, start_s: int = 0,
                              bin_s: int = PING_DENSITY_BIN_S, n_boot: int = 1000, seed: int = 0) -> dict:
    """The ratio estimator of the mean commute duration (module docstring), in minutes.

    ``commutes`` is a table of :func:`observed_commutes`; ``ping_seconds_of_day`` are
    the local seconds of day of all the pings it was built from (they give the
    within-day density f); ``start_s`` is the window's local midnight.  Returns
    ``{"value", "ci_low", "ci_high", "n", "transit_pings"}``: sum(n_transit) /
    sum(n_day_pings * f̄) / 60 with a bootstrap interval over devices, n = commutes.
    """
    dens = ping_time_density(ping_seconds_of_day, bin_s)
    a = (commutes["t_home_s"].to_numpy(np.int64) - start_s) % DAY_S
    b = (commutes["t_work_s"].to_numpy(np.int64) - start_s) % DAY_S
    expo = commutes["n_day_pings"].to_numpy(float) * mean_density(dens, a, b, bin_s)
    est, lo, hi = ratio_ci(commutes["n_transit"].to_numpy(float), expo, commutes["device"].to_numpy(), n_boot=n_boot,
                           seed=seed, tags=(_BOOT_TAG_COMMUTE,))
    return {"value": est / 60.0, "ci_low": lo / 60.0, "ci_high": hi / 60.0, "n": int(len(commutes)),
            "transit_pings": int(commutes["n_transit"].sum())}


def device_rows(simulation) -> np.ndarray:
    """Row of each release trace's device in the devices table sorted by ``device_idx``
    (a sampled Simulation, :func:`sim.release.dataset.load_sample`, holds some devices only)."""
    tr = simulation.release
    dev = simulation.pseudonyms.set_index("pseudonym").loc[tr.pseudonym, "device_idx"].to_numpy()
    rows = pd.Index(np.sort(simulation.devices["device_idx"].to_numpy())).get_indexer(dev)
    if (rows < 0).any():
        raise InputError("the release holds pseudonyms of devices missing from the devices table.")
    return rows.astype(np.int64)


def commute_statistics(simulation, *, radius_m: float = COMMUTE_RADIUS_M,
                       max_accuracy_m: float = COMMUTE_MAX_ACCURACY_M, n_boot: int = 1000,
                       seed: int = 0, return_commutes: bool = False):
    """One-way commute time measured from a Simulation's pings (module docstring).

    Returns a dict: commute_minutes_mean (ratio estimator) with _ci_low/_ci_high,
    commute_n (observed commutes), commute_devices, commute_transit_pings,
    commute_minutes_upper_mean, commute_minutes_upper_median, commute_minutes_lower_mean
    (per-commute bounds), commute_radius_m and commute_minutes_model (the generator's
    travel model, not a measurement).  With ``return_commutes`` also the per-commute
    table of :func:`observed_commutes`.
    """
    tr = simulation.release
    devs = simulation.devices.sort_values("device_idx")
    p = rows_by_id(simulation.persons, "person_id", devs["person_id"].to_numpy(),
                   ["home_x_m", "home_y_m", "work_x_m", "work_y_m", "schedule"], what="persons table")
    hx, hy = p["home_x_m"].to_numpy(float), p["home_y_m"].to_numpy(float)
    wx, wy = p["work_x_m"].to_numpy(float), p["work_y_m"].to_numpy(float)
    hw = np.hypot(hx - wx, hy - wy)
    g = simulation.scenario.pings
    has = np.isfinite(hw)
    out = {"commute_minutes_model": float(np.mean(g.trip_overhead_min + hw[has] / 1000.0 / g.travel_speed_kmh * 60.0))
           if has.any() else float("nan"), "commute_radius_m": float(radius_m)}
    commuter = (p["schedule"].to_numpy() == "day") & has & (hw > 2 * radius_m)
    dev = np.repeat(device_rows(simulation), tr.lengths)
    keep = commuter[dev] & (tr.weekday() < 5) & (np.asarray(tr.accuracy_m) <= max_accuracy_m)
    c = observed_commutes(dev[keep], tr.t_s[keep], tr.x_m[keep], tr.y_m[keep], tr.day()[keep], hx, hy, wx, wy,
                          radius_m=radius_m)
    est = commute_duration_estimate(c, (tr.t_s[keep] - tr.start_s) % DAY_S, start_s=tr.start_s, n_boot=n_boot,
                                    seed=seed)
    up = c["upper_s"].to_numpy() / 60.0
    out.update({
        "commute_minutes_mean": est["value"], "commute_minutes_mean_ci_low": est["ci_low"],
        "commute_minutes_mean_ci_high": est["ci_high"], "commute_n": est["n"],
        "commute_devices": int(c["device"].nunique()), "commute_transit_pings": est["transit_pings"],
        "commute_minutes_upper_mean": float(up.mean()) if len(c) else float("nan"),
        "commute_minutes_upper_median": float(np.median(up)) if len(c) else float("nan"),
        "commute_minutes_lower_mean": float(c["lower_s"].mean() / 60.0) if len(c) else float("nan"),
    })
    return (out, c) if return_commutes else out


# ----------------------------------------------------------------------- the stats
def calibration_stats(simulation, cell_m: float = 250.0, *, commute_radius_m: float = COMMUTE_RADIUS_M,
                      commute_max_accuracy_m: float = COMMUTE_MAX_ACCURACY_M, seed: int = 0) -> dict:
    """Calibration figures of a Simulation (see module docstring).  Units in names.

    ``cell_m`` is the cell of the distinct-places and visit statistics; the commute
    arguments go to :func:`commute_statistics` (``seed`` drives its bootstrap).
    """
    tr = simulation.release
    days = tr.n_days
    dev_of_ping = np.repeat(device_rows(simulation), tr.lengths)
    day = tr.day()
    n_dev = len(simulation.devices)
    dd = np.bincount(dev_of_ping * days + day, minlength=n_dev * days).reshape(n_dev, days)
    active = dd[dd > 0]
    out = {
        "devices": int(n_dev), "days": int(days), "pings": int(tr.n_pings),
        "pings_per_device_day_mean": float(dd.mean()),
        "pings_per_device_day_median": float(np.median(dd)),
        "pings_per_device_day_p90": float(np.percentile(dd, 90)),
        "pings_per_device_day_p99": float(np.percentile(dd, 99)),
        "share_active_days_under_5_pings": float((active < 5).mean()) if len(active) else float("nan"),
        "silent_device_day_share": float((dd == 0).mean()),
    }
    # radius of gyration per device (released positions, fixes with accuracy <= 100 m;
    # accuracy_m is optional: a release without it (NaN) keeps every fix)
    good = ~(tr.accuracy_m > 100)
    w = np.bincount(dev_of_ping[good], minlength=n_dev).astype(float)
    mx = np.bincount(dev_of_ping[good], weights=tr.x_m[good], minlength=n_dev) / np.maximum(w, 1)
    my = np.bincount(dev_of_ping[good], weights=tr.y_m[good], minlength=n_dev) / np.maximum(w, 1)
    d2 = (tr.x_m[good] - mx[dev_of_ping[good]]) ** 2 + (tr.y_m[good] - my[dev_of_ping[good]]) ** 2
    rg = np.sqrt(np.bincount(dev_of_ping[good], weights=d2, minlength=n_dev) / np.maximum(w, 1))
    out["radius_of_gyration_median_m"] = float(np.median(rg[w > 1]))
    out["radius_of_gyration_p90_m"] = float(np.percentile(rg[w > 1], 90))
    # home-work distance (truth) and the commute time measured from the pings
    p = rows_by_id(simulation.persons, "person_id", simulation.devices.sort_values("device_idx")["person_id"].to_numpy(),
                   ["home_x_m", "home_y_m", "work_x_m", "work_y_m"], what="persons table")
    hw = np.hypot(p.home_x_m - p.work_x_m, p.home_y_m - p.work_y_m).to_numpy()
    hw = hw[np.isfinite(hw)]
    out["home_work_distance_median_m"] = float(np.median(hw)) if len(hw) else float("nan")
    out["home_work_distance_mean_m"] = float(np.mean(hw)) if len(hw) else float("nan")
    out.update(commute_statistics(simulation, radius_m=commute_radius_m, max_accuracy_m=commute_max_accuracy_m,
                                  seed=seed))
    # distinct cells over time (cumulative)
    cx = np.floor(tr.x_m[good] / cell_m).astype(np.int64)
    cy = np.floor(tr.y_m[good] / cell_m).astype(np.int64)
    cell = (cx + (1 << 20)) * (1 << 21) + (cy + (1 << 20))
    del cx, cy  # one array per ping each: what the sample's figures hold is bounded as they go
    dv = dev_of_ping[good].astype(np.int64)
    dy = day[good]
    key = dv * (1 << 42) + cell
    # the first day of each (device, cell): sorted by key then day, a key's first row
    # (numpy's sorts hold fewer per-ping arrays at once than a pandas groupby)
    order = np.lexsort((dy, key))
    key = key[order]
    head = run_starts(key)[:-1]
    first_dev = key[head] >> 42
    del key
    first_day = dy[order[head]]
    del order, head, dy
    grid = np.zeros((n_dev, days))
    np.add.at(grid, (first_dev, first_day), 1)
    S = grid.cumsum(axis=1).mean(axis=0)
    t = np.arange(1, days + 1)
    ok = S > 0
    out["distinct_places_by_day"] = [float(v) for v in S]
    out["distinct_places_growth_exponent"] = float(np.polyfit(np.log(t[ok]), np.log(S[ok]), 1)[0]) if ok.sum() > 1 else float("nan")
    # rank law: by visits (runs of consecutive fixes in one cell) and by pings (time)
    vd, vc = visit_runs(dv, tr.t_s[good], cell)
    fk = rank_shares(vd, vc)
    out["visits"] = int(len(vd))
    out["visit_share_by_rank"] = [float(v) for v in fk]
    out["visit_rank_exponent"] = rank_exponent(fk)
    ft = rank_shares(dv, cell)
    out["time_share_by_rank"] = [float(v) for v in ft]
    out["time_rank_exponent"] = rank_exponent(ft)
    # night pings (00:00-06:00 local) within 100 m of the true home
    hour = tr.hour()
    night = (hour < 6) & good
    hx = p["home_x_m"].to_numpy()[dev_of_ping[night]]
    hy = p["home_y_m"].to_numpy()[dev_of_ping[night]]
    dist = np.hypot(tr.x_m[night] - hx, tr.y_m[night] - hy)
    out["night_pings_at_home_share"] = float((dist <= 100).mean()) if night.any() else float("nan")
    return out


def check_calibration(stats: dict, ranges: dict | None = None) -> list:
    """Names and values of statistics outside their sane range (empty = all fine)."""
    ranges = ranges or SANE_RANGES
    bad = []
    for k, (lo, hi) in ranges.items():
        v = stats.get(k)
        if v is None or not np.isfinite(v) or not lo <= v <= hi:
            bad.append(f"{k}={v} not in [{lo}, {hi}]")
    return bad


def calibration_figure(stats: dict):
    """A 1x2 matplotlib figure of the calibration curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    S = stats["distinct_places_by_day"]
    ax[0].plot(range(1, len(S) + 1), S, "o-")
    ax[0].set(xlabel="days observed", ylabel="distinct 250 m cells", title="Places discovered over time")
    f = stats["visit_share_by_rank"]
    ax[1].loglog(range(1, len(f) + 1), f, "o-", label="visits")
    ft = stats.get("time_share_by_rank")
    if ft:
        ax[1].loglog(range(1, len(ft) + 1), ft, "s--", alpha=0.6, label="pings (time)")
        ax[1].legend(frameon=False, fontsize="small")
    ax[1].set(xlabel="rank of place", ylabel="share of visits", title="Visit frequency by rank")
    fig.tight_layout()
    return fig
