"""Tests of sim.metrics.score: hand-built truth and inferred tables with known errors."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from sim.core.errors import ConfigError, InputError
from sim.infer import INFERRED_COLUMNS, infer_prefixes
from sim.metrics.score import SUMMARY_COLUMNS, median_ci, plot_accuracy_vs_days, score_inference
from sim.core.stats import wilson_ci
from sim.core.traces import Traces

MONDAY = 1704067200


class NestedGrid:
    """Stand-in World: square cells of 100 m (block), 500 m (tract), 2 km (district)."""

    CELL = {"block": 100.0, "tract": 500.0, "district": 2000.0}

    def locate(self, x_m, y_m, level):
        s = self.CELL[level]
        x, y = np.asarray(x_m, float), np.asarray(y_m, float)
        inside = (x >= 0) & (y >= 0) & (x < 10000) & (y < 10000)
        ids = np.floor(y / s) * 1000 + np.floor(x / s)
        return np.where(inside, ids, -1).astype(np.int64)


def truth_tables(world=NestedGrid()):
    # persons 0..4; 3 and 4 have no workplace
    hx = np.array([1050.0, 3050.0, 5050.0, 7050.0, 9050.0])
    hy = np.full(5, 1050.0)
    wx = np.array([1050.0, 3050.0, 5050.0, np.nan, np.nan])
    wy = np.array([6050.0, 6050.0, 6050.0, np.nan, np.nan])
    persons = pd.DataFrame({"person_id": [10, 11, 12, 13, 14], "home_x_m": hx, "home_y_m": hy,
                            "work_x_m": wx, "work_y_m": wy,
                            "schedule": ["day", "day", "night", "none", "none"]})
    for lv in NestedGrid.CELL:
        persons[f"home_{lv}_id"] = world.locate(hx, hy, lv)
        w = world.locate(np.nan_to_num(wx, nan=-1), np.nan_to_num(wy, nan=-1), lv)
        persons[f"work_{lv}_id"] = np.where(np.isnan(wx), -1, w)
    # person 10's device rotated its ID: two pseudonyms
    pseudonyms = pd.DataFrame({"pseudonym": ["a", "a2", "b", "c", "d", "e"],
                               "device_idx": [0, 0, 1, 2, 3, 4],
                               "person_id": [10, 10, 11, 12, 13, 14]})
    return persons, pseudonyms


def inferred_rows(persons):
    """Two windows (1 and 7 days) with chosen errors."""
    t = persons.set_index("person_id")
    rows = []
    # (pseudonym, person, home dx, work dx, n_pings at 1 day, at 7 days)
    spec = [("a", 10, 0.0, 100.0, 3, 70),          # home exact, work exactly 100 m off
            ("a2", 10, 100.0 + 1e-9, 30.0, 0, 7),  # home just beyond 100 m
            ("b", 11, 240.0, np.nan, 20, 140),     # work unknown
            ("c", 12, np.nan, 5000.0, 1, 14),      # home unknown, work far off
            ("d", 13, 20.0, 0.0, 50, 700),         # no workplace but a work: false work
            ("e", 14, 999.0, np.nan, 2, 14)]
    for w in (1, 7):
        for pse, pid, hd, wd, n1, n7 in spec:
            tr = t.loc[pid]
            wxm = (tr.work_x_m if not np.isnan(tr.work_x_m) else tr.home_x_m + 3000.0) + wd
            rows.append(dict(pseudonym=pse, home_x_m=tr.home_x_m + hd, home_y_m=tr.home_y_m,
                             home_lat_deg=np.nan, home_lon_deg=np.nan, home_nights=1, home_pings=1,
                             work_x_m=wxm, work_y_m=(tr.work_y_m if not np.isnan(tr.work_y_m) else 0.0),
                             work_lat_deg=np.nan, work_lon_deg=np.nan, work_days=1, work_pings=1,
                             n_pings=n1 if w == 1 else n7, n_days_observed=w, window_days=w))
    df = pd.DataFrame(rows, columns=list(INFERRED_COLUMNS))
    return df


@pytest.fixture
def tables():
    persons, pseudonyms = truth_tables()
    return inferred_rows(persons), pseudonyms, persons


def test_detail_errors_and_inclusive_radii(tables):
    inferred, pseudonyms, persons = tables
    sc = score_inference(inferred, pseudonyms, persons, NestedGrid())
    d = sc.detail[sc.detail.window_days == 7].set_index("pseudonym")
    assert d.loc["a", "home_error_m"] == 0.0 and d.loc["a", "work_error_m"] == 100.0
    assert d.loc["a", "work_within_100m"] and not d.loc["a2", "home_within_100m"]
    assert d.loc["a2", "home_within_250m"]
    assert d.loc["b", "home_within_250m"] and not d.loc["b", "work_known"]
    assert not d.loc["c", "home_known"] and not d.loc["c", "home_within_1000m"]
    assert not d.loc["c", "work_within_1000m"]
    assert not d.loc["d", "has_work"] and d.loc["d", "work_known"] and np.isnan(d.loc["d", "work_error_m"])
    assert not d.loc["d", "work_within_100m"]  # no truth: never "within"
    assert d.loc["e", "home_within_1000m"]
    # zones: 240 m east of (3050, 1050) leaves the 100 m block but stays in the tract
    assert not d.loc["b", "home_block_correct"] and d.loc["b", "home_tract_correct"]
    assert d.loc["a", "home_block_correct"] and d.loc["a2", "work_block_correct"]
    # work 100 m east of x=1050: next 100 m block, same 500 m tract
    assert not d.loc["a", "work_block_correct"] and d.loc["a", "work_tract_correct"]
    assert not d.loc["c", "home_district_correct"]  # unknown is a miss
    assert (d.device_idx.loc[["a", "a2"]] == 0).all()


def test_summary_shares_counts_and_intervals(tables):
    inferred, pseudonyms, persons = tables
    sc = score_inference(inferred, pseudonyms, persons, NestedGrid(), alpha=0.05)
    assert list(sc.summary.columns) == list(SUMMARY_COLUMNS)
    s = sc.summary[(sc.summary.window_days == 7) & (sc.summary.rate_bin == "all")].set_index("metric")
    # home within 100 m: a, d out of 6 pseudonyms (unknown counts as a miss)
    assert s.loc["home_within_100m", "n"] == 6 and s.loc["home_within_100m", "value"] == 2 / 6
    assert s.loc["home_known", "value"] == 5 / 6
    # work scored on pseudonyms of persons with a workplace: a, a2, b, c
    assert s.loc["work_within_100m", "n"] == 4 and s.loc["work_within_100m", "value"] == 2 / 4
    assert s.loc["work_known", "value"] == 3 / 4
    # false work: d has one, e has none
    assert s.loc["false_work", "n"] == 2 and s.loc["false_work", "value"] == 0.5
    lo, hi = wilson_ci(1, 2, 0.05)
    assert s.loc["false_work", "ci_low"] == lo and s.loc["false_work", "ci_high"] == hi
    assert (s.ci_low <= s.value).all() and (s.value <= s.ci_high).all()
    # median home error over known homes: 0, 1e-9+100, 240, 20, 999
    m, lo, hi = median_ci([0.0, 100.0 + 1e-9, 240.0, 20.0, 999.0])
    assert s.loc["home_error_median_m", "value"] == pytest.approx(100.0) == m
    assert s.loc["home_error_median_m", "n"] == 5
    for lv in ("block", "tract", "district"):
        assert f"home_{lv}_correct" in s.index and f"work_{lv}_correct" in s.index


def test_rate_bins_use_the_longest_window(tables):
    inferred, pseudonyms, persons = tables
    sc = score_inference(inferred, pseudonyms, persons)
    d = sc.detail
    # n_pings / 7 at the 7-day window: a 10, a2 1, b 20, c 2, d 100, e 2
    got = d[d.window_days == 1].set_index("pseudonym").rate_bin.astype(str).to_dict()
    assert got == {"a": "[10,20)", "a2": "[0,2)", "b": "[20,50)", "c": "[2,5)", "d": "[50,inf)",
                   "e": "[2,5)"}
    s = sc.summary[(sc.summary.window_days == 7) & (sc.summary.metric == "home_known")]
    per_bin = s[s.rate_bin != "all"].set_index("rate_bin").n
    assert per_bin.sum() == 6 and per_bin["[2,5)"] == 2 and per_bin["[5,10)"] == 0
    assert np.isnan(s.set_index("rate_bin").loc["[5,10)", "value"])
    # no world: no zone metrics
    assert not sc.summary.metric.str.contains("_correct").any()


def test_table_and_plot(tables):
    inferred, pseudonyms, persons = tables
    sc = score_inference(inferred, pseudonyms, persons)
    t = sc.table("home_within_250m")
    assert list(t.index) == [1, 7] and t.loc[7, "n"] == 6
    assert set(sc.table("home_known", by_rate=True).columns) >= {"[0,2)", "[50,inf)"}
    fig = plot_accuracy_vs_days(sc)
    ax = fig.axes[0]
    assert len(ax.lines) == 3 and ax.get_xlabel() == "days observed"
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [1, 7])
    with pytest.raises(ConfigError, match="unknown metric"):
        plot_accuracy_vs_days(sc, metrics=["nope"])
    with pytest.raises(ConfigError, match="unknown metric"):
        sc.table("nope")
    text = str(sc)
    assert "home_within_250m" in text and "7 days" in text and "95 % Wilson" in text
    assert "90 % Wilson" in str(score_inference(inferred, pseudonyms, persons, alpha=0.1))


@pytest.mark.parametrize("n", [1, 2, 5, 6, 9, 17, 40, 101])
def test_median_ci_matches_order_statistic_definition(n):
    v = np.random.default_rng(n).normal(size=n)
    m, lo, hi = median_ci(v, 0.05)
    s = np.sort(v)
    # reference: largest k with coverage 1 - 2 P(B <= k-1) >= 0.95, else the whole range
    k = max([k for k in range(1, n // 2 + 2) if 1 - 2 * sps.binom.cdf(k - 1, n, 0.5) >= 0.95] or [1])
    assert m == np.median(v)
    assert lo == s[k - 1] and hi == s[n - k]
    assert lo <= m <= hi
    assert all(math.isnan(x) for x in median_ci([]))


def test_score_errors(tables):
    inferred, pseudonyms, persons = tables
    with pytest.raises(InputError, match="missing column"):
        score_inference(inferred.drop(columns="home_x_m"), pseudonyms, persons)
    with pytest.raises(InputError, match="must be a pandas DataFrame"):
        score_inference(inferred, pseudonyms.to_dict(), persons)
    with pytest.raises(InputError, match="missing from pseudonyms"):
        score_inference(inferred, pseudonyms[pseudonyms.pseudonym != "b"], persons)
    with pytest.raises(InputError, match="appears twice"):
        score_inference(inferred, pd.concat([pseudonyms, pseudonyms.iloc[:1]]), persons)
    with pytest.raises(InputError, match="missing from persons"):
        score_inference(inferred, pseudonyms, persons[persons.person_id != 11])
    with pytest.raises(ConfigError, match="radii_m"):
        score_inference(inferred, pseudonyms, persons, radii_m=(0.0,))
    with pytest.raises(ConfigError, match="rate_bins"):
        score_inference(inferred, pseudonyms, persons, rate_bins=(5, 2))
    with pytest.raises(ConfigError, match="alpha"):
        score_inference(inferred, pseudonyms, persons, alpha=float("nan"))
    with pytest.raises(InputError, match="locate"):
        score_inference(inferred, pseudonyms, persons, world=object())
    with pytest.raises(InputError, match="home_block_id"):
        score_inference(inferred, pseudonyms, persons.drop(columns="home_block_id"), NestedGrid())


def test_end_to_end_with_inference():
    # two devices, 7 days: home at night, work on weekday daytime
    rows = []
    homes = {"x": (1020.0, 1020.0), "y": (5020.0, 3020.0)}
    works = {"x": (3020.0, 3020.0), "y": (7020.0, 7020.0)}
    for p in ("x", "y"):
        for d in range(7):
            for h in (1, 2, 23):
                rows.append((p, MONDAY + d * 86400 + h * 3600, *homes[p], 5.0))
            if d < 5:
                for h in (10, 11, 14):
                    rows.append((p, MONDAY + d * 86400 + h * 3600, *works[p], 5.0))
    tr = Traces.from_frame(pd.DataFrame(rows, columns=["pseudonym", "t_s", "x_m", "y_m", "accuracy_m"]),
                           crs="EPSG:32633", start_s=MONDAY, n_days=7)
    px = infer_prefixes(tr, [1, 2, 7])
    persons = pd.DataFrame({"person_id": [1, 2], "home_x_m": [1020.0, 5020.0],
                            "home_y_m": [1020.0, 3020.0], "work_x_m": [3020.0, np.nan],
                            "work_y_m": [3020.0, np.nan]})
    pseudonyms = pd.DataFrame({"pseudonym": ["x", "y"], "device_idx": [0, 1], "person_id": [1, 2]})
    sc = score_inference(px, pseudonyms, persons)
    t = sc.table("home_within_100m")
    assert t.loc[7, "value"] == 1.0 and t.loc[7, "n"] == 2
    assert sc.table("work_within_100m").loc[7, "value"] == 1.0
    assert sc.table("work_within_100m").loc[1, "value"] == 0.0  # one day < min_work_days
    assert sc.table("false_work").loc[7, "value"] == 1.0  # "y" has a work but no workplace
