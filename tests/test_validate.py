"""sim.metrics.calibration: calibration statistics (checked against independent computations), the
sane ranges, and broken scenarios being flagged."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sim.core.constants import DAY_S
from sim.metrics import calibration as C
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
    assert math.isclose(stats["commute_minutes_model"], float(commute_min.mean()))
    # the measured commute is not the model: it comes from the pings, with its interval
    assert stats["commute_minutes_mean"] != stats["commute_minutes_model"]
    assert stats["commute_minutes_mean_ci_low"] <= stats["commute_minutes_mean"] <= stats["commute_minutes_mean_ci_high"]
    assert stats["commute_minutes_lower_mean"] <= stats["commute_minutes_upper_mean"]
    assert stats["commute_n"] > 50 and stats["commute_transit_pings"] > 0


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


# ------------------------------------------------------------------------ visits
def _ref_visits(device, t_s, place):
    """Slow reference: per device, pings in (time, input) order, runs of one place."""
    out = []
    for d in sorted(set(device.tolist())):
        rows = sorted((t, i) for i, (dd, t) in enumerate(zip(device, t_s)) if dd == d)
        prev = None
        for _, i in rows:
            if place[i] != prev:
                out.append((d, int(place[i])))
                prev = place[i]
    return out


def _ref_rank_shares(device, place, max_rank=10):
    per_rank = [[] for _ in range(max_rank)]
    for d in set(device.tolist()):
        c = pd.Series(place[device == d]).value_counts().to_numpy()
        c = np.sort(c)[::-1] / c.sum()
        for k in range(min(max_rank, len(c))):
            per_rank[k].append(c[k])
    return np.array([np.mean(v) if v else np.nan for v in per_rank])


def test_distinct_places_by_day_match_an_independent_computation(small_sim, stats):
    """Mean over devices (silent ones count as 0) of the 250 m cells a device has been
    in by day k, fixes with accuracy <= 100 m."""
    tr = small_sim.release
    dev = small_sim.pseudonyms.set_index("pseudonym")["device_idx"].loc[np.repeat(tr.pseudonym, tr.lengths)]
    rows = {d: i for i, d in enumerate(np.sort(small_sim.devices["device_idx"].to_numpy()))}
    f = pd.DataFrame({"device": dev.map(rows).to_numpy(), "day": tr.day(), "cx": np.floor(tr.x_m / 250),
                      "cy": np.floor(tr.y_m / 250), "acc": tr.accuracy_m})
    f = f[~(f.acc > 100)]
    first = f.groupby(["device", "cx", "cy"])["day"].min().reset_index()
    n_dev, days = len(small_sim.devices), tr.n_days
    want = [first[first.day <= k].shape[0] / n_dev for k in range(days)]
    np.testing.assert_allclose(stats["distinct_places_by_day"], want)
    assert stats["distinct_places_by_day"][-1] > stats["distinct_places_by_day"][0] > 0


def test_visit_runs_hand_built():
    # device 0: A A B A (ties: two pings at t=5 keep input order) -> A, B, A; device 1: C C -> C
    device = np.array([0, 1, 0, 0, 0, 1, 0])
    t_s = np.array([1, 3, 2, 5, 5, 9, 9])
    place = np.array([7, 8, 7, 9, 7, 8, 7])
    d, c = C.visit_runs(device, t_s, place)
    assert list(zip(d.tolist(), c.tolist())) == [(0, 7), (0, 9), (0, 7), (1, 8)]
    assert list(zip(d.tolist(), c.tolist())) == _ref_visits(device, t_s, place)
    d, c = C.visit_runs(np.zeros(0, int), np.zeros(0, int), np.zeros(0, int))
    assert len(d) == len(c) == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_visit_runs_and_rank_shares_match_reference(seed):
    rng = np.random.default_rng(seed)
    m = 600
    device = rng.integers(0, 12, m)
    t_s = rng.integers(0, 200, m)  # many ties
    place = rng.choice(rng.integers(0, 50, 8), m)
    d, c = C.visit_runs(device, t_s, place)
    assert list(zip(d.tolist(), c.tolist())) == _ref_visits(device, t_s, place)
    np.testing.assert_allclose(C.rank_shares(d, c), _ref_rank_shares(d, c), equal_nan=True)
    np.testing.assert_allclose(C.rank_shares(device, place), _ref_rank_shares(device, place), equal_nan=True)


def test_rank_exponent():
    k = np.arange(1, 11)
    assert C.rank_exponent(0.4 * k ** -1.2) == pytest.approx(1.2)
    assert C.rank_exponent([0.4, 0.2, np.nan, 0.0, 0.1, 0.05]) == pytest.approx(
        -np.polyfit(np.log([1, 2, 5, 6]), np.log([0.4, 0.2, 0.1, 0.05]), 1)[0])
    assert np.isnan(C.rank_exponent([0.5, 0.2]))


def test_rank_laws_match_an_independent_computation(small_sim, stats):
    tr = small_sim.release
    dev = small_sim.pseudonyms.set_index("pseudonym")["device_idx"].loc[np.repeat(tr.pseudonym, tr.lengths)]
    f = pd.DataFrame({"device": dev.to_numpy(), "t": tr.t_s, "cx": np.floor(tr.x_m / 250), "cy": np.floor(tr.y_m / 250),
                      "acc": tr.accuracy_m})
    f = f[f.acc <= 100].reset_index(drop=True)
    f["cell"] = f.cx.astype(np.int64) * 100_000 + f.cy.astype(np.int64)
    f = f.sort_values(["device", "t"], kind="stable")
    new = (f.device != f.device.shift()) | (f.cell != f.cell.shift())
    v = f[new]
    assert stats["visits"] == len(v)
    fk = _ref_rank_shares(v.device.to_numpy(), v.cell.to_numpy())
    np.testing.assert_allclose(stats["visit_share_by_rank"], fk)
    assert stats["visit_rank_exponent"] == pytest.approx(C.rank_exponent(fk))
    ft = _ref_rank_shares(f.device.to_numpy(), f.cell.to_numpy())
    np.testing.assert_allclose(stats["time_share_by_rank"], ft)
    # staying counts for pings, not for visits: the ping law is the steeper one
    assert stats["time_rank_exponent"] > stats["visit_rank_exponent"]


# ---------------------------------------------------------------------- commutes
HOME, WORK, R = (0.0, 0.0), (5000.0, 0.0), 150.0


def _commutes(rows):
    """rows: (device, t_s, x_m, y_m); every device lives at HOME and works at WORK."""
    a = np.array(rows, dtype=float)
    dev = a[:, 0].astype(np.int64)
    n = dev.max() + 1
    t = a[:, 1].astype(np.int64)
    return C.observed_commutes(dev, t, a[:, 2], a[:, 3], t // DAY_S, np.full(n, HOME[0]), np.full(n, HOME[1]),
                               np.full(n, WORK[0]), np.full(n, WORK[1]), radius_m=R)


def _hm(h, m=0, day=0):
    return day * DAY_S + h * 3600 + m * 60


def test_commute_hand_built_known_departure_and_arrival():
    # leaves home at 07:45, reaches work at 08:15 (30 min); pings at 07:00 and 07:40 at
    # home, 07:50 and 08:05 on the way, 08:20 and 12:30 at work, 12:00 at lunch
    rows = [(0, _hm(7), 3, 4), (0, _hm(7, 40), -20, 10), (0, _hm(7, 50), 833, 0), (0, _hm(8, 5), 3333, 0),
            (0, _hm(8, 20), 5010, -5), (0, _hm(12), 5600, 300), (0, _hm(12, 30), 5000, 0)]
    # day 1: at work first, home only later -> no commute; day 2: exactly R from home, no transit
    rows += [(0, _hm(9, day=1), 5000, 0), (0, _hm(19, day=1), 0, 0)]
    rows += [(0, _hm(8, day=2), R, 0), (0, _hm(8, 50, day=2), WORK[0] - R, 0)]
    # device 1: home, home, work at exactly R + 0.01 (not at work) -> no commute
    rows += [(1, _hm(7), 0, 0), (1, _hm(8), WORK[0] - R - 0.01, 0)]
    c = _commutes(rows)
    assert list(c.columns) == C.COMMUTE_COLUMNS
    assert len(c) == 2
    r = c.iloc[0]
    assert (r.device, r.day) == (0, 0)
    assert r.t_home_s == _hm(7, 40) and r.t_work_s == _hm(8, 20)
    assert r.n_transit == 2 and r.t_first_transit_s == _hm(7, 50) and r.t_last_transit_s == _hm(8, 5)
    assert r.upper_s == 40 * 60 and r.lower_s == 15 * 60
    assert r.lower_s <= 30 * 60 <= r.upper_s  # the true 30 minutes lies inside the bounds
    assert r.n_day_pings == 7
    r = c.iloc[1]
    assert (r.day, r.n_transit, r.upper_s, r.lower_s, r.t_first_transit_s) == (2, 0, 50 * 60, 0, -1)


def _ref_commutes(device, t_s, x, y, day, radius):
    out = []
    for d in sorted(set(device.tolist())):
        for dy in sorted(set(day[device == d].tolist())):
            sel = np.flatnonzero((device == d) & (day == dy))
            sel = sel[np.argsort(t_s[sel], kind="stable")]
            home = [np.hypot(x[i] - HOME[0], y[i] - HOME[1]) <= radius for i in sel]
            work = [np.hypot(x[i] - WORK[0], y[i] - WORK[1]) <= radius for i in sel]
            if True not in work:
                continue
            w = work.index(True)
            hs = [j for j in range(w) if home[j]]
            if not hs:
                continue
            h = hs[-1]
            tr = [int(t_s[sel[j]]) for j in range(h + 1, w)]
            out.append((d, dy, len(sel), int(t_s[sel[h]]), int(t_s[sel[w]]), len(tr),
                        tr[0] if tr else -1, tr[-1] if tr else -1, int(t_s[sel[w]] - t_s[sel[h]]),
                        tr[-1] - tr[0] if len(tr) >= 2 else 0))
    return pd.DataFrame(out, columns=C.COMMUTE_COLUMNS)


@pytest.mark.parametrize("seed", [0, 1])
def test_observed_commutes_match_reference(seed):
    rng = np.random.default_rng(seed)
    m = 3000
    dev = rng.integers(0, 30, m)
    day = rng.integers(0, 5, m)
    t = day * DAY_S + rng.integers(0, 86400, m)
    t[:200] = t[200:400]  # ties in time
    dev[:200] = dev[200:400]
    day[:200] = day[200:400]
    where = rng.integers(0, 3, m)
    x = np.where(where == 0, HOME[0], np.where(where == 1, WORK[0], 2500.0)) + rng.normal(0, 100, m)
    y = rng.normal(0, 100, m)
    got = _commutes(np.column_stack([dev, t, x, y]))
    ref = _ref_commutes(dev, t, x, y, day, R)
    assert len(ref) > 20
    pd.testing.assert_frame_equal(got.reset_index(drop=True), ref, check_dtype=False)


def test_ping_time_density_and_mean_density():
    sod = np.array([0, 599, 600, 1200, 86399])
    f = C.ping_time_density(sod, 600)
    assert len(f) == 144 and f.sum() * 600 == pytest.approx(1.0)
    assert f[0] == pytest.approx(2 / 5 / 600) and f[-1] == pytest.approx(1 / 5 / 600)
    # mean over [300, 900] = half a bin at f[0] and half at f[1]
    assert C.mean_density(f, [300], [900], 600)[0] == pytest.approx((f[0] + f[1]) / 2)
    assert C.mean_density(f, [700], [700], 600)[0] == pytest.approx(f[1])
    flat = np.full(144, 1 / 86400)
    np.testing.assert_allclose(C.mean_density(flat, [0, 5000, 86000], [86399, 9000, 86399], 600), 1 / 86400)


def test_commute_ratio_estimator_is_consistent_on_a_known_process():
    """Pings at uniform random times (independent of movement), a 30-minute straight
    trip at constant speed: the estimator recovers 30 min less the time inside the two
    R-disks (2R/d of the trip), within its interval."""
    rng = np.random.default_rng(5)
    n_dev, n_days, D = 400, 10, 1800.0
    rows = []
    for d in range(n_dev):
        for day in range(n_days):
            n = rng.poisson(40)
            tod = np.sort(rng.uniform(0, 86400, n)).astype(np.int64)
            dep = 8 * 3600 + rng.uniform(-3600, 3600)
            frac = np.clip((tod - dep) / D, 0, 1)
            at_work_after = 17 * 3600
            x = np.where(tod < at_work_after, frac * WORK[0], 0.0)
            rows.append(np.column_stack([np.full(n, d), day * DAY_S + tod, x, rng.normal(0, 5, n)]))
    a = np.vstack(rows)
    c = _commutes(a)
    est = C.commute_duration_estimate(c, a[:, 1].astype(np.int64) % DAY_S, n_boot=300, seed=1)
    expected = D * (1 - 2 * R / WORK[0]) / 60
    assert est["n"] == len(c) > 2000 and est["transit_pings"] == c["n_transit"].sum()
    assert est["ci_low"] <= expected <= est["ci_high"]
    assert est["value"] == pytest.approx(expected, rel=0.08)
    # the bounds hold commute by commute
    assert (c["lower_s"] <= D).all() and (c["upper_s"] >= D * (1 - 2 * R / WORK[0]) - 1).all()


def test_ratio_ci():
    num = np.array([1.0, 2, 3, 4])
    den = np.array([2.0, 2, 2, 2])
    est, lo, hi = C.ratio_ci(num, den, [0, 0, 1, 1], n_boot=200, seed=0)
    assert est == pytest.approx(10 / 8) and lo <= est <= hi
    assert (lo, hi) == C.ratio_ci(num, den, [0, 0, 1, 1], n_boot=200, seed=0)[1:]
    assert all(np.isnan(C.ratio_ci([], [], [])))
