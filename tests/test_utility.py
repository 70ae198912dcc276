"""Tests of sim.metrics.utility: zero loss for the identity release, hand-built cases, references."""
import math

import numpy as np
import pandas as pd
import pytest

from sim.release.defenses import BrokerContext, apply_defense
from sim.core.errors import ConfigError, InputError
from sim.core.constants import DAY_S
from sim.core.traces import Traces
from sim.metrics.utility import normalised_l1, od_matrix, resident_error, resident_estimate, resident_estimate_from_table, share_kept, total_variation, true_residents, utility_table, visit_counts

from _defense_world import GridWorld, make_release

START = 1_699_920_000


@pytest.fixture(scope="module")
def world():
    return GridWorld()


@pytest.fixture(scope="module")
def rel(world):
    tr, hx, hy, maid = make_release(seed=11, n_traces=40, n_days=3, world=world)
    ctx = BrokerContext(maid, hx, hy, seed=5, world=world)
    truth = pd.Series(world.locate(hx, hy, "tract")).value_counts().astype(float)
    return tr, ctx, truth


def _traces(pseud, t_s, x_m, y_m, n_days=2, start_s=START):
    df = pd.DataFrame({"pseudonym": pseud, "t_s": np.asarray(t_s, np.int64),
                       "x_m": np.asarray(x_m, float), "y_m": np.asarray(y_m, float)})
    return Traces.from_frame(df, crs="EPSG:32631", start_s=start_s, n_days=n_days)


# building-level zone ids in GridWorld: 32 per row, 100 m squares
def _bx(zone):
    return (zone % 32) * 100.0 + 50.0


# ----------------------------------------------------------------------------- errors
def test_l1_and_tvd_hand_built():
    d = pd.Series({"a": 1.0, "b": 3.0})
    r = pd.Series({"a": 2.0, "c": 2.0})
    assert normalised_l1(d, r) == pytest.approx((1 + 3 + 2) / 4)
    assert total_variation(d, r) == pytest.approx(0.5 * (0.25 + 0.75 + 0.5))
    assert normalised_l1(r, r) == 0.0 and total_variation(r, r) == 0.0
    assert total_variation(2 * r, r) == 0.0 and normalised_l1(2 * r, r) == pytest.approx(1.0)
    e = pd.Series(dtype=float)
    assert normalised_l1(e, e) == 0.0 and total_variation(e, e) == 0.0
    assert normalised_l1(d, e) == math.inf and total_variation(d, e) == 1.0
    assert normalised_l1(e, r) == 1.0
    # negative noisy counts: raw in L1, clipped for shares
    assert normalised_l1(pd.Series({"a": -1.0}), pd.Series({"a": 1.0})) == 2.0
    assert total_variation(pd.Series({"a": -1.0, "b": 1.0}), pd.Series({"b": 5.0})) == 0.0


# ----------------------------------------------------------------------------- OD
def test_od_matrix_hand_built(world):
    # trace a: zones 0,0,1 (gaps 60, 3600 = inclusive) then 2 after 3601 s (too long),
    #          then outside the area, then zone 3
    # trace b starts in zone 5: no trip from a's last ping to b's first
    t = START + np.array([0, 60, 3660, 7261, 7300, 7400, 8000, 8100])
    x = [_bx(0), _bx(0), _bx(1), _bx(2), -100.0, _bx(3), _bx(5), _bx(4)]
    tr = _traces(["a"] * 6 + ["b"] * 2, t, x, [50.0] * 8)
    od = od_matrix(tr, world, "building", max_gap_s=3600)
    assert od.to_dict() == {(0, 1): 1, (5, 4): 1}
    od = od_matrix(tr, world, "building", max_gap_s=3601)
    assert od.to_dict() == {(0, 1): 1, (1, 2): 1, (5, 4): 1}
    assert len(od_matrix(tr, world, "block")) == 0  # all in one block
    empty = tr.select_pings(np.zeros(tr.n_pings, dtype=bool))
    assert len(od_matrix(empty, world, "building")) == 0


def test_od_matrix_matches_reference(rel, world):
    tr, _, _ = rel
    od = od_matrix(tr, world, "block", max_gap_s=1800)
    z = world.locate(tr.x_m, tr.y_m, "block")
    ref = {}
    for i in range(tr.n_traces):
        for r in range(tr.offsets[i], tr.offsets[i + 1] - 1):
            if (z[r] >= 0 and z[r + 1] >= 0 and z[r] != z[r + 1]
                    and tr.t_s[r + 1] - tr.t_s[r] <= 1800):
                ref[(z[r], z[r + 1])] = ref.get((z[r], z[r + 1]), 0) + 1
    assert od.to_dict() == ref and len(ref) > 0


# ----------------------------------------------------------------------------- visits
def test_visit_counts_count_distinct_traces(world):
    t = START + np.array([0, 100, 3599, 3600, 50])
    tr = _traces(["a", "a", "a", "a", "b"], t, [_bx(0)] * 5, [50.0] * 5)
    v = visit_counts(tr, world, "building", 1.0)
    assert v.to_dict() == {(0, 0): 2, (0, 1): 1}


# ----------------------------------------------------------------------------- residents
def test_resident_estimate_modal_night_zone_with_ties(world):
    h = lambda d, hh: START + d * DAY_S + int(hh * 3600)  # noqa: E731
    # a: night pings 2 in zone 3, 1 in zone 1 -> 3; day pings in zone 7 ignored
    # b: tie 1-1 between zones 2 and 1 -> 1 (lowest)
    # c: pings at 06:00 (end, exclusive) and 21:59 only -> no night ping
    # d: ping at 22:00 (start, inclusive) in zone 4
    rows = [("a", h(0, 23), 3), ("a", h(1, 1), 3), ("a", h(1, 2), 1), ("a", h(1, 12), 7),
            ("a", h(1, 13), 7), ("a", h(1, 14), 7),
            ("b", h(0, 23), 2), ("b", h(1, 3), 1),
            ("c", h(0, 6), 5), ("c", h(0, 21.99), 5),
            ("d", h(0, 22), 4)]
    tr = _traces([r[0] for r in rows], [r[1] for r in rows], [_bx(r[2]) for r in rows], [50.0] * len(rows))
    est = resident_estimate(tr, world, "building")
    assert est.to_dict() == {1: 1.0, 3: 1.0, 4: 1.0}


def test_resident_estimate_matches_reference(rel, world):
    tr, _, _ = rel
    est = resident_estimate(tr, world, "block", night_start_h=21, night_end_h=7)
    z = world.locate(tr.x_m, tr.y_m, "block")
    hour = tr.hour()
    ref = {}
    for i in range(tr.n_traces):
        rows = np.arange(tr.offsets[i], tr.offsets[i + 1])
        rows = rows[((hour[rows] >= 21) | (hour[rows] < 7)) & (z[rows] >= 0)]
        if len(rows):
            vals, cnt = np.unique(z[rows], return_counts=True)
            m = vals[np.argmax(cnt)]  # argmax takes the first (lowest) on ties
            ref[m] = ref.get(m, 0) + 1
    assert est.to_dict() == {k: float(v) for k, v in ref.items()}


def test_resident_error_scales_then_compares():
    truth = pd.Series({1: 10.0, 2: 30.0})
    assert resident_error(pd.Series({1: 1.0, 2: 3.0}), truth) == 0.0
    assert resident_error(pd.Series({1: 2.0, 2: 2.0}), truth) == pytest.approx((10 + 10) / 40)
    assert resident_error(pd.Series({3: 5.0}), truth) == pytest.approx(2.0)
    assert resident_error(pd.Series(dtype=float), truth) == 1.0


def test_true_residents_from_persons():
    persons = pd.DataFrame({"person_id": range(5), "home_tract_id": [3, 3, 1, -1, 1]})
    assert true_residents(persons, "tract").to_dict() == {1: 2.0, 3: 2.0}
    with pytest.raises(InputError, match="home_block_id"):
        true_residents(persons, "block")


def test_resident_estimate_from_table_hand_built():
    table = pd.DataFrame({"zone_id": [1, 1, 2, 2], "bin": [0, 12, 1, 23], "count": [4, 9, 2, 6]})
    table.attrs.update(bin_h=1.0, n_bins=24)
    # night [22, 6): bins 22, 23, 0..5 = 8 bins; zone 1: 4/8, zone 2: (2 + 6)/8
    est = resident_estimate_from_table(table)
    assert est.to_dict() == {1: 0.5, 2: 1.0}
    with pytest.raises(InputError, match="attrs"):
        resident_estimate_from_table(pd.DataFrame(table))
    with pytest.raises(ConfigError, match="night_start_h"):
        resident_estimate_from_table(table, night_start_h=25)


# ----------------------------------------------------------------------------- shares
def test_share_kept_with_and_without_mapping(rel):
    tr, ctx, _ = rel
    out, _ = apply_defense("subsample", tr, ctx, fraction=0.5)
    s = share_kept(out, tr)
    assert s["pings"] == out.n_pings / tr.n_pings
    assert s["devices"] == out.n_traces / tr.n_traces
    one, _ = apply_defense("drop_sparse", tr, ctx, min_pings=int(np.sort(tr.lengths)[-3]))
    assert share_kept(one, tr)["devices"] == pytest.approx(one.n_traces / tr.n_traces)
    rot, m = apply_defense("rotate", tr, ctx, period_days=1)
    assert share_kept(rot, tr, m) == {"pings": 1.0, "devices": 1.0}
    with pytest.raises(InputError, match="mapping"):
        share_kept(rot, tr)


# ----------------------------------------------------------------------------- table
def _metrics(t):
    return dict(zip(t["metric"], t["value"]))


def test_utility_is_zero_for_the_identity_release(rel, world):
    tr, ctx, truth = rel
    for name, p in [("subsample", dict(fraction=1.0)), ("gaussian", dict(sigma_m=0.0)),
                    ("planar_laplace", dict(eps_per_m=math.inf))]:
        out, m = apply_defense(name, tr, ctx, **p)
        u = _metrics(utility_table(out, tr, world, mapping=m, truth=truth))
        assert u["share_pings_kept"] == 1.0 and u["share_devices_kept"] == 1.0
        for k in ("od_l1", "od_tvd", "visits_l1", "visits_tvd", "residents_l1_vs_undefended",
                  "residents_l1_increase"):
            assert u[k] == 0.0, k
    k1, _ = apply_defense("aggregate_k", tr, ctx, k=1)
    u = _metrics(utility_table(k1, tr, world, truth=truth))
    assert u["visits_l1"] == 0.0 and u["residents_l1_vs_undefended"] == 0.0
    assert math.isnan(u["od_l1"])


def test_utility_degrades_with_strength(rel, world):
    tr, ctx, truth = rel
    prev = None
    for sigma in (10.0, 100.0, 1000.0):
        out, _ = apply_defense("gaussian", tr, ctx, sigma_m=sigma)
        u = _metrics(utility_table(out, tr, world, level="block", truth=truth))
        if prev is not None:
            assert u["visits_l1"] >= prev["visits_l1"]
        assert u["share_pings_kept"] == 1.0
        prev = u
    assert prev["visits_l1"] > 0.5
    t = utility_table(out, tr, world, level="block")
    assert list(t.columns) == ["metric", "value", "description", "level"]
    assert t["description"].str.len().min() > 10
    assert "residents_l1_vs_truth" not in set(t["metric"])


def test_empty_release(world):
    tr = _traces([], [], [], [])
    u = _metrics(utility_table(tr, tr, world))
    assert math.isnan(u["share_pings_kept"]) and math.isnan(u["share_devices_kept"])
    assert u["od_l1"] == 0.0 and u["visits_l1"] == 0.0 and u["residents_l1_vs_undefended"] == 0.0
    assert len(resident_estimate(tr, world)) == 0
