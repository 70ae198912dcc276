"""Calibration report of the generator: the statistics DESIGN.md §9 anchors, per scenario.

    python benchmarks/bench_calibration.py            # default scenario, 5,000 devices x 14 days
    python benchmarks/bench_calibration.py --devices 20000 --config benchmarks/scenarios/heavy_sdk.toml

Prints and saves (benchmarks/results/calibration.json) pings per device-day, silent
device-days, radius of gyration, home-work distance, the commute time measured from the
pings (with its interval and the commutes it rests on, beside the generator's own travel
model), distinct places over time, the rank law by visits and by pings (time) and the
night-time share of pings at home, each next to its sane range and, where one exists,
its published anchor.
"""
from __future__ import annotations

import argparse
import time

from _common import machine, save

#: published anchors (DESIGN.md §9) the statistics can be read against
ANCHORS = {
    "commute_minutes_mean": "US mean one-way commute 27.6 min (Census 2019); measured from pings",
    "commute_minutes_model": "the generator's travel model (straight-line home-work distance at travel_speed_kmh plus trip_overhead_min), not a measurement",
    "commute_minutes_upper_mean": "per-commute upper bounds (last home ping to first work ping)",
    "distinct_places_growth_exponent": "S(t) ~ t^0.6 (Song et al. 2010)",
    "visit_rank_exponent": "f_k ~ k^-1.2 +/- 0.1 by visits (Song et al. 2010)",
    "time_rank_exponent": "same law on ping shares (time spent): no published anchor",
    "pings_per_device_day_mean": "Gravy/Venntel ~17 per device-day; Kochava > 90 claimed",
}


def main():
    from sim.api import simulate
    from sim.core.config import Scenario
    from sim.metrics.calibration import SANE_RANGES, calibration_stats, check_calibration

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=5000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--config", default=None)
    a = ap.parse_args()
    scn = Scenario.from_toml(a.config) if a.config else Scenario()
    t = time.perf_counter()
    s = simulate(n_devices=a.devices, days=a.days, seed=a.seed, config=scn)
    st = calibration_stats(s, seed=a.seed)
    bad = check_calibration(st)
    rows = []
    for k, v in st.items():
        if isinstance(v, list):
            continue
        lo_hi = SANE_RANGES.get(k)
        rows.append({"statistic": k, "value": v, "sane_range": lo_hi, "anchor": ANCHORS.get(k)})
        print(f"{k:38s} {v:12.4g}  {'' if lo_hi is None else lo_hi}  {ANCHORS.get(k, '')}")
    print(f"measured commute {st['commute_minutes_mean']:.1f} min (95% CI {st['commute_minutes_mean_ci_low']:.1f}-"
          f"{st['commute_minutes_mean_ci_high']:.1f}) from {st['commute_n']} commutes, "
          f"{st['commute_transit_pings']} transit pings; model {st['commute_minutes_model']:.1f} min")
    print("all within sane ranges" if not bad else "OUTSIDE: " + "; ".join(bad))
    out = {"benchmark": "calibration", "machine": machine(), "config_hash": s.scenario.config_hash(),
           "scenario": s.scenario.to_dict(), "seconds": round(time.perf_counter() - t, 2), "rows": rows,
           "curves": {k: v for k, v in st.items() if isinstance(v, list)}, "violations": bad}
    print(f"saved {save('calibration', out)}")
    return 0 if not bad else 1


if __name__ == "__main__":
    raise SystemExit(main())
