"""Citable figures: key findings, `reidsim cite`, and what moved between two runs."""
import json

import pytest

from sim.cli import main
from sim.core.errors import InputError
from sim.report.findings import STORIES, cite, figure_label, key_finding, moved_figures


def result(name="broker_sdk", value=0.43, lo=0.42, hi=0.44, n=19890, extra=None):
    figs = {"named_after_7_days": {"value": 0.25, "ci_low": 0.24, "ci_high": 0.26, "n": n},
            "narrowed_to_5_after_7_days": {"value": value, "ci_low": lo, "ci_high": hi, "n": n},
            "narrowed_to_5_after_14_days": {"value": 0.48, "ci_low": 0.47, "ci_high": 0.49, "n": n},
            "known_points_m2_sigma100m": {"value": 0.97, "ci_low": 0.95, "ci_high": 0.98, "n": 500},
            "relink_n_links": {"value": 13655.0, "ci_low": float("nan"), "ci_high": float("nan"), "n": 100}}
    figs.update(extra or {})
    return {"scenario": name, "file": f"benchmarks/scenarios/{name}.toml", "seed": 7, "config_hash": "abc",
            "devices": 20000, "days": 14, "figures": figs, "reidsim_version": "0.1.0",
            "machine": {"when_utc": "2026-12-03T08:00:00Z"},
            "scenario_config": {"n_devices": None, "world": {"residents": 200000},
                                "register": {"profile": "people_search", "coverage": 0.9, "employer_coverage": 0.6},
                                "pings": {"median_pings_per_day": 12.0, "days": 14}, "ids": {"rotation_days": 0},
                                "population": {"min_device_age": 13}}}


def test_key_finding_is_a_plain_sentence_with_interval_and_id():
    kf = key_finding(result())
    assert kf["figure_id"] == "broker_sdk.narrowed_to_5_after_7_days"
    assert kf["sentence"] == ("After one week of pings, 43.0% of devices (95 % CI 42.0–44.0%; n = 19,890) could "
                              "be narrowed to five or fewer named people, the owner among them.")
    assert "people_search" in kf["assumptions"] and "assumptions" in kf["assumptions"]
    # a story whose preferred window is missing uses the longest one available
    kf = key_finding(dict(result("newspaper_investigation"),
                          figures={"named_after_14_days": {"value": 0.3, "ci_low": 0.29, "ci_high": 0.31, "n": 9}}))
    assert kf["figure_id"] == "newspaper_investigation.named_after_14_days" and "two weeks" in kf["sentence"]
    assert key_finding(result("no_such_story")) is None


def test_every_story_names_its_calibration_and_a_sentence_template():
    assert len(STORIES) == 5
    for s in STORIES.values():
        assert s.calibrated_to and s.description and "{value}" in s.template and "{ci}" in s.template


@pytest.fixture
def results_dir(tmp_path):
    d = tmp_path / "results"
    d.mkdir()
    (d / "scenario_broker_sdk.json").write_text(json.dumps(result()))
    return d


def test_cite_prints_sentence_interval_command_and_citations(results_dir):
    text = cite("broker_sdk.narrowed_to_5_after_7_days", results_dir)
    assert text.startswith("After one week of pings, 43.0%")
    assert "python benchmarks/run_all.py --only scenarios --scenario broker_sdk" in text
    assert "@software{reidsim_0_1_0" in text and "broker_sdk.narrowed_to_5_after_7_days" in text
    assert '"type": "software"' in text
    # a figure that is not the key finding gets its plain label; a count has no interval
    assert cite("broker_sdk.named_after_7_days", results_dir).startswith(
        "Devices named uniquely and correctly after 7 days: 25.0%")
    assert "13,655" in cite("broker_sdk.relink_n_links", results_dir)


@pytest.mark.parametrize("fid, msg", [("broker_sdk", "must be <scenario>.<metric>"),
                                      ("nope.named_after_7_days", "no scenario 'nope'"),
                                      ("broker_sdk.named_after_99_days", "has no figure")])
def test_cite_errors_name_the_fix(results_dir, fid, msg, capsys):
    with pytest.raises(InputError, match=msg):
        cite(fid, results_dir)
    assert main(["cite", fid, "--results", str(results_dir)]) == 2
    assert msg.split("'")[0] in capsys.readouterr().err


def test_cite_without_results_folder(tmp_path, capsys):
    assert main(["cite", "broker_sdk.named_after_7_days", "--results", str(tmp_path / "none")]) == 2
    assert "run `python benchmarks/run_all.py`" in capsys.readouterr().err


def test_moved_figures_lists_only_what_left_its_interval():
    old = {"broker_sdk": result()}
    same = {"broker_sdk": result(value=0.435, lo=0.425, hi=0.445)}
    assert moved_figures(old, same) == []
    moved = moved_figures(old, {"broker_sdk": result(value=0.40, lo=0.39, hi=0.41)})
    assert [m["figure_id"] for m in moved] == ["broker_sdk.narrowed_to_5_after_7_days"]
    assert moved[0]["old"] == 0.43 and moved[0]["new"] == 0.40
    added = moved_figures(old, {"broker_sdk": result(extra={"ceiling_home": {"value": 0.8, "ci_low": 0.79,
                                                                             "ci_high": 0.81, "n": 1}})})
    assert [(m["figure_id"], m["why"]) for m in added] == [("broker_sdk.ceiling_home", "new figure")]


def test_figure_labels_are_plain_words():
    assert figure_label("unicity_p4_500m_1h") == "unique from 4 random points at 500 m and 1 h"
    assert figure_label("linkage_identified_home_work_building") == "identified by the home_work join at building level"
    assert figure_label("something_new") == "something new"


def test_a_new_scenario_is_one_line_not_every_figure():
    moved = moved_figures({}, {"social_media_fusion": result("social_media_fusion")})
    assert moved == [{"figure_id": "social_media_fusion", "old": None, "new": None, "why": "new scenario"}]
