"""The honest headline end to end: the main job writes the ladder, waterfall, panel
curves, sensitivity and ledger; the headline quotes the strongest candidate-set rung; the
report shows each of them."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from _runfixture import tiny_run

from sim.core.ledger import LEDGER
from sim.pipeline.main import HEADLINE_K, headline_sentence, ladder_headline, strongest_set_rung
from sim.report import plots
from sim.report.document import FIGURES, write_report


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return tiny_run(tmp_path_factory)


@pytest.fixture(scope="module")
def report(run_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("honest") / "run"
    shutil.copytree(run_dir, d)
    write_report(d)
    return d, (d / "report.md").read_text(encoding="utf-8")


def test_main_job_writes_the_context_tables(run_dir):
    for t in ("ladder", "ladder_per_device", "waterfall", "sensitivity", "unicity_panel", "topn_panel"):
        assert (run_dir / "attacks" / f"{t}.parquet").exists(), t
    run = json.loads((run_dir / "run.json").read_text())
    head = run["headline_figures"]
    assert head["rung"] == strongest_set_rung(pd.read_parquet(run_dir / "attacks" / "ladder.parquet"))
    assert head["k"] == HEADLINE_K and head["register_profile"] == run["scenario"]["register"]["profile"]
    assert {"ceiling_home", "ceiling_exact"} <= set(head["ceilings"])
    assert [r["path"] for r in run["ledger"]] == [a.path for a in LEDGER]
    # the headline curve is the ladder table's own numbers
    lad = pd.read_parquet(run_dir / "attacks" / "ladder.parquet")
    h = ladder_headline(lad, head["rung"])
    last = head["curve"][-1]
    r = h[(h["days"] == last["days"]) & (h["metric"] == "named")].iloc[0]
    assert last["named_value"] == pytest.approx(r["value"])


def test_headline_is_bounded_by_the_ceiling_and_narrowing_never_below_naming(run_dir):
    run = json.loads((run_dir / "run.json").read_text())
    head = run["headline_figures"]
    ceiling = head["ceilings"]["ceiling_home"]["value"]
    for rec in head["curve"]:
        assert rec["named_value"] <= rec[f"narrowed_{HEADLINE_K}_value"] + 1e-12
        assert rec[f"narrowed_{HEADLINE_K}_value"] <= ceiling + 1e-12


def _ladder(named, narrowed, rungs=("exact", "hierarchical", "ranked")):
    rows = []
    for rung, v, w in zip(rungs, named, narrowed):
        for d in (1, 7):
            rows.append(dict(rung=rung, level="building", days=d, k=np.nan, metric="named", value=v * d / 7,
                             ci_low=0.0, ci_high=1.0, n=100, unit="device"))
            rows.append(dict(rung=rung, level="building", days=d, k=float(HEADLINE_K), metric="narrowed_k",
                             value=w * d / 7, ci_low=0.0, ci_high=1.0, n=100, unit="device"))
    return pd.DataFrame(rows)


def test_headline_quotes_the_strongest_set_rung_not_the_ranked_guess():
    lad = _ladder(named=(0.1, 0.3, 0.5), narrowed=(0.1, 0.4, 0.6))
    assert strongest_set_rung(lad) == "hierarchical"
    sent, fig = headline_sentence({"ladder": lad}, "voter_file")
    assert "after 7 days, 30.0%" in sent and "40.0%" in sent and "50.0%" not in sent
    assert "register: voter_file" in sent and fig["rung"] == "hierarchical"
    assert headline_sentence({})[1] == {}


def test_report_shows_ladder_waterfall_ledger_sensitivity_and_panel_curve(report):
    d, md = report
    for title in ("Who can be named: the attacker ladder", "Where identification is lost",
                  "Assumptions behind the headline"):
        assert f"## {title}" in md
    for name in ("ladder", "waterfall", "sensitivity", "unicity_panel"):
        assert f"figures/{name}.png" in md and (d / "figures" / f"{name}.png").stat().st_size > 1000
        assert FIGURES[name] in md
    # every ledger row is in the table, unsourced ones say so
    for a in LEDGER:
        assert f"| {a.path} |" in md
    assert md.count("| assumption") >= sum(not a.sourced for a in LEDGER)
    # the ladder table has a row per rung with the narrowed-k columns
    assert "| Rung | Named | ≤ 1 | ≤ 2 | ≤ 3 | ≤ 5 | ≤ 10 | Wrong | No candidate |" in md
    assert "extrapolated with a fitted model" in md


def test_new_plots_refuse_tables_without_their_columns():
    from sim.core.errors import InputError

    for fn in (plots.plot_ladder, plots.plot_waterfall, plots.plot_panel_curve):
        with pytest.raises(InputError, match="missing column"):
            fn(pd.DataFrame({"x": [1]}))
    with pytest.raises(InputError, match="missing column"):
        plots.plot_sensitivity(pd.DataFrame({"x": [1]}), "named")


def test_ladder_plot_draws_one_line_per_rung_on_each_panel():
    fig = plots.plot_ladder(_ladder(named=(0.1, 0.3, 0.5), narrowed=(0.1, 0.4, 0.6)))
    left, right = fig.axes[:2]
    assert len([ln for ln in right.get_lines() if ln.get_label() in ("exact", "hierarchical", "ranked")]) == 3
    assert len(left.get_lines()) >= 3
