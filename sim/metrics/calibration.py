"""Calibration statistics of a generated dataset, with sane ranges to check against.

:func:`calibration_stats` computes, from a :class:`~sim.release.dataset.Simulation`, the figures that
DESIGN.md §9 anchors: pings per device-day, silent device-days, radius of gyration,
home–work distance and commute time, distinct places over time (Song et al. 2010:
S(t) ~ t^0.6), the visit-frequency rank law (Zipf-like, f_k ~ k^-1.2) and the share of
night-time pings at home.  :data:`SANE_RANGES` gives the range each must fall in;
:func:`check_calibration` lists violations.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


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
    "visit_rank_exponent": (0.6, 2.5),
    "night_pings_at_home_share": (0.5, 0.98),
}


def calibration_stats(simulation, cell_m: float = 250.0) -> dict:
    """Calibration figures of a Simulation (see module docstring).  Units in names."""
    tr = simulation.release
    scn = simulation.scenario
    days = tr.n_days
    h = simulation.pseudonyms
    dev_of_trace = h.set_index("pseudonym").loc[tr.pseudonym, "device_idx"].to_numpy()
    dev_of_ping = np.repeat(dev_of_trace, tr.lengths)
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
    # home-work distance and commute time (truth)
    p = simulation.persons.set_index("person_id").loc[simulation.devices["person_id"]]
    hw = np.hypot(p.home_x_m - p.work_x_m, p.home_y_m - p.work_y_m).to_numpy()
    hw = hw[np.isfinite(hw)]
    out["home_work_distance_median_m"] = float(np.median(hw)) if len(hw) else float("nan")
    out["home_work_distance_mean_m"] = float(np.mean(hw)) if len(hw) else float("nan")
    g = scn.pings
    out["commute_minutes_mean"] = float(np.mean(g.trip_overhead_min + hw / 1000.0 / g.travel_speed_kmh * 60.0)) if len(hw) else float("nan")
    # distinct cells over time (cumulative), and rank-frequency of visits
    cx = np.floor(tr.x_m[good] / cell_m).astype(np.int64)
    cy = np.floor(tr.y_m[good] / cell_m).astype(np.int64)
    cell = (cx + (1 << 20)) * (1 << 21) + (cy + (1 << 20))
    dv = dev_of_ping[good]
    dy = day[good]
    key = dv.astype(np.int64) * (1 << 42) + cell
    first = pd.DataFrame({"key": key, "day": dy}).groupby("key", sort=False)["day"].min()
    first_dev = (first.index.to_numpy() >> 42).astype(np.int64)
    grid = np.zeros((n_dev, days))
    np.add.at(grid, (first_dev, first.to_numpy()), 1)
    S = grid.cumsum(axis=1).mean(axis=0)
    t = np.arange(1, days + 1)
    ok = S > 0
    out["distinct_places_by_day"] = [float(v) for v in S]
    out["distinct_places_growth_exponent"] = float(np.polyfit(np.log(t[ok]), np.log(S[ok]), 1)[0]) if ok.sum() > 1 else float("nan")
    cnt = pd.Series(key).value_counts()
    dev_c = (cnt.index.to_numpy() >> 42)
    rank = pd.Series(cnt.to_numpy()).groupby(dev_c).rank(method="first", ascending=False).to_numpy()
    tot = pd.Series(cnt.to_numpy()).groupby(dev_c).transform("sum").to_numpy()
    frac = cnt.to_numpy() / tot
    ranks = np.arange(1, 11)
    fk = np.array([frac[rank == k].mean() if (rank == k).any() else np.nan for k in ranks])
    out["visit_share_by_rank"] = [float(v) for v in fk]
    okr = np.isfinite(fk) & (fk > 0)
    out["visit_rank_exponent"] = float(-np.polyfit(np.log(ranks[okr]), np.log(fk[okr]), 1)[0]) if okr.sum() > 2 else float("nan")
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
    """A 2x2 matplotlib figure of the calibration curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    S = stats["distinct_places_by_day"]
    ax[0].plot(range(1, len(S) + 1), S, "o-")
    ax[0].set(xlabel="days observed", ylabel="distinct 250 m cells", title="Places discovered over time")
    f = stats["visit_share_by_rank"]
    ax[1].loglog(range(1, len(f) + 1), f, "o-")
    ax[1].set(xlabel="rank of place", ylabel="share of pings", title="Visit frequency by rank")
    fig.tight_layout()
    return fig
