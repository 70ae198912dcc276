"""Orchestration helpers: observation windows, defended truth, sampling, defense
evaluation rows (incl. re-linking for rotation and membership for aggregates)."""
import numpy as np
import pandas as pd
import pytest

from sim.api import simulate
from sim.core.errors import ConfigError, InputError
from sim.pipeline.evaluate import evaluate_defense, observation_days, sample_release, truth_for
from sim.attacks.gathering import pick_gathering
from sim.core.traces import weekday_of_day


@pytest.fixture(scope="module")
def s():
    return simulate(n_devices=200, days=7, seed=4, residents=2000)


def test_observation_days():
    assert observation_days(14) == (1, 2, 3, 5, 7, 10, 14)
    assert observation_days(1) == (1,)
    assert observation_days(6) == (1, 2, 3, 5, 6)
    with pytest.raises(InputError):
        observation_days(0)


def test_truth_for_maps_new_pseudonyms_to_devices(s):
    m = pd.DataFrame({"pseudonym": ["n1", "n2"], "source_pseudonym": s.pseudonyms["pseudonym"].iloc[[0, 0]].tolist(),
                      "epoch": [0, 1]})
    t = truth_for(s.pseudonyms, m)
    assert (t["device_idx"] == s.pseudonyms["device_idx"].iloc[0]).all()
    assert truth_for(s.pseudonyms, None) is s.pseudonyms
    with pytest.raises(InputError):
        truth_for(s.pseudonyms, m.assign(source_pseudonym="nope"))


def test_sample_release_is_seeded_and_a_subset(s):
    a = sample_release(s, 50, seed=1).release
    b = sample_release(s, 50, seed=1).release
    c = sample_release(s, 50, seed=2).release
    assert a.n_traces == 50 and list(a.pseudonym) == list(b.pseudonym)
    assert set(a.pseudonym) <= set(s.release.pseudonym) and list(a.pseudonym) != list(c.pseudonym)
    assert sample_release(s, 10_000, seed=1) is s


def test_rotation_is_evaluated_with_relinking(s):
    p, u, tables = evaluate_defense(s, "rotate", {"period_days": 2})
    assert "relink" in tables
    prec = p[p["metric"] == "relink_precision"].iloc[0]
    rec = p[p["metric"] == "relink_recall"].iloc[0]
    assert 0 <= prec["value"] <= 1 and 0 <= rec["value"] <= 1 and rec["n"] > 0
    assert prec["ci_low"] <= prec["value"] <= prec["ci_high"]
    # per-pseudonym identification is computed on the rotated pseudonyms (more traces)
    ident = p[(p["metric"] == "linkage_identified") & (p["level"] == "building")]
    assert (ident["n"] > s.release.n_traces).all()


def test_aggregates_report_membership_with_intervals(s):
    p, u, tables = evaluate_defense(s, "aggregate_k", {"k": 5, "level": "block"}, membership_targets=6)
    assert set(tables) == {"membership"}
    adv = p[p["metric"] == "membership_advantage"].iloc[0]
    assert adv["n"] == 6 and adv["ci_low"] <= adv["value"] <= adv["ci_high"]
    assert np.isnan(u.set_index("metric").loc["od_l1", "value"])  # no traces, no OD


def test_unknown_defense_is_refused(s):
    with pytest.raises(ConfigError, match="unknown defense"):
        evaluate_defense(s, "teleport", {})


def test_pick_gathering_is_a_saturday_afternoon_crowd(s):
    poly, t0, t1 = pick_gathering(s.release, s.world)
    rel = s.release
    day = (t0 - rel.start_s) // 86400
    assert weekday_of_day(rel.start_s, rel.utc_offset_s, np.array([day]))[0] == 5
    assert t1 - t0 == 6 * 3600
    import shapely

    inside = shapely.contains_xy(poly, rel.x_m, rel.y_m) & (rel.t_s >= t0) & (rel.t_s < t1)
    assert len(np.unique(rel.trace_index()[inside])) >= 3
