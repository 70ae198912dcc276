"""sim.metrics.calibration: calibration statistics (checked against independent computations), the
sane ranges, and broken scenarios being flagged."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sim.metrics.calibration import SANE_RANGES, calibration_figure, calibration_stats, check_calibration


@pytest.fixture(scope="module")
def stats(small_sim):
    return calibration_stats(small_sim)


def _device_day_counts(sim):
    """(n_devices, n_days) ping counts computed with pandas from the release and truth."""
    tr = sim.release
    dev = sim.pseudonyms.set_index("pseudonym")["device_idx"]
    df = pd.DataFrame({"device": dev.loc[np.repeat(tr.pseudonym, np.diff(tr.offsets))].to_numpy(),
                       "day": (tr.t_s - tr.start_s) // 86400})
    grid = df.groupby(["device", "day"]).size().unstack(fill_value=0)
    return grid.reindex(index=range(len(sim.devices)), columns=range(tr.n_days), fill_value=0).to_numpy()


def test_small_simulation_is_within_every_sane_range(stats):
    assert set(SANE_RANGES) <= set(stats)
    assert check_calibration(stats) == []


def test_count_statistics_match_an_independent_computation(small_sim, stats):
    dd = _device_day_counts(small_sim)
    assert stats["pings"] == small_sim.release.n_pings == dd.sum()
    assert stats["devices"] == len(small_sim.devices) and stats["days"] == small_sim.scenario.pings.days
    assert math.isclose(stats["pings_per_device_day_mean"], dd.mean())
    assert stats["pings_per_device_day_median"] == np.median(dd)
    assert math.isclose(stats["silent_device_day_share"], (dd == 0).mean())
    assert math.isclose(stats["share_active_days_under_5_pings"], (dd[dd > 0] < 5).mean())


def test_truth_statistics_match_an_independent_computation(small_sim, stats):
    p = small_sim.persons.set_index("person_id").loc[small_sim.devices["person_id"]]
    d = np.hypot(p["home_x_m"] - p["work_x_m"], p["home_y_m"] - p["work_y_m"]).dropna()
    assert math.isclose(stats["home_work_distance_median_m"], float(d.median()))
    g = small_sim.scenario.pings
    commute_min = g.trip_overhead_min + d / 1000 / g.travel_speed_kmh * 60
    assert math.isclose(stats["commute_minutes_mean"], float(commute_min.mean()))


def test_night_at_home_share_matches_an_independent_computation(small_sim, stats):
    tr = small_sim.release
    dev = small_sim.pseudonyms.set_index("pseudonym")["device_idx"].loc[np.repeat(tr.pseudonym, np.diff(tr.offsets))]
    person = small_sim.devices.set_index("device_idx")["person_id"].loc[dev.to_numpy()].to_numpy()
    home = small_sim.persons.set_index("person_id").loc[person, ["home_x_m", "home_y_m"]].to_numpy()
    local_hour = ((tr.t_s - tr.start_s) % 86400) / 3600
    night = (local_hour < 6) & (tr.accuracy_m <= 100)
    dist = np.hypot(tr.x_m - home[:, 0], tr.y_m - home[:, 1])[night]
    assert math.isclose(stats["night_pings_at_home_share"], float((dist <= 100).mean()))


@pytest.mark.parametrize("override,flagged", [
    ({"pings__median_pings_per_day": 1000.0}, "pings_per_device_day_mean"),
    ({"pings__travel_speed_kmh": 300.0, "pings__trip_overhead_min": 0.0}, "commute_minutes_mean"),
    ({"pings__silent_day_prob": 0.99}, "silent_device_day_share"),
])
def test_broken_scenarios_are_flagged(override, flagged):
    from sim.api import simulate

    s = simulate(n_devices=80, days=4, seed=3, **override)
    bad = check_calibration(calibration_stats(s))
    assert any(b.startswith(flagged + "=") for b in bad), bad


def test_check_calibration_bounds_are_inclusive_and_nan_is_flagged():
    ranges = {"a": (1.0, 2.0), "b": (0.0, 1.0)}
    assert check_calibration({"a": 1.0, "b": 1.0}, ranges) == []
    assert check_calibration({"a": 2.0, "b": 0.0}, ranges) == []
    bad = check_calibration({"a": 2.0000001, "b": -1e-9}, ranges)
    assert len(bad) == 2 and bad[0].startswith("a=") and bad[1].startswith("b=")
    assert check_calibration({"a": float("nan"), "b": 0.5}, ranges) == ["a=nan not in [1.0, 2.0]"]
    assert len(check_calibration({"b": 0.5}, ranges)) == 1  # missing statistic


def test_calibration_figure(stats):
    import matplotlib.pyplot as plt

    fig = calibration_figure(stats)
    try:
        assert len(fig.axes) == 2
        line = fig.axes[0].lines[0]
        assert np.allclose(line.get_ydata(), stats["distinct_places_by_day"])
    finally:
        plt.close(fig)
