"""The main job: world → population → pings → inference → attacks → defenses → report.

``reidsim run`` calls :func:`run_main`.  Output layout of ``DIR``::

    pings/ truth/ world/ register.parquet manifest.json   the generated dataset
    calibration.json                                      generator calibration figures
    inferred.parquet                                      home/work from the whole window
    inferred_by_day.parquet                               home/work per observation window
    attacks/*.parquet|csv, attacks/summary.json           attack tables and headline
    attacks/geofence_meta.json                            the geofence polygon and window
    defenses/privacy.parquet|csv, defenses/utility.parquet|csv
    run.json                                              headline, timings, scenario
    report.html (self-contained), report.md, figures/*.png
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pandas as pd
import shapely

from sim import __version__
from sim.attacks import run_attacks, summary, write_attack_outputs
from sim.attacks.gathering import pick_gathering
from sim.core.config import Scenario
from sim.core.files import write_json, write_table
from sim.generate.engine import generate
from sim.metrics.calibration import calibration_stats
from sim.pipeline.evaluate import DEFAULT_DEFENSES, evaluate_defenses, infer_by_day
from sim.release.dataset import load
from sim.report.document import write_report

log = logging.getLogger(__name__)

#: attack settings of the main job (fast enough for ~1 minute on the default scenario)
MAIN_ATTACK_CONFIG = dict(
    ttid_level="building", ttid_key="home_work",
    unicity_p=(1, 2, 3, 4, 5), unicity_v_m=(100.0, 250.0, 500.0, 1000.0, 2000.0),
    unicity_h_h=(1.0, 4.0, 24.0), unicity_n_sample=3000,
    known_m=(1, 2, 3, 4), known_sigma_m=(0.0, 100.0), known_n_targets=500,
)


def infer_step(sim, out: Path, infer_params=None) -> dict:

    ibd = infer_by_day(sim.release, **(infer_params or {}))
    full = ibd[max(ibd)]
    write_table(full, out / "inferred")
    write_table(pd.concat(list(ibd.values()), ignore_index=True), out / "inferred_by_day")
    return ibd


def attack_step(sim, out: Path, ibd: dict, attack_config=None) -> dict:

    cfg = dict(MAIN_ATTACK_CONFIG)
    cfg["seed"] = sim.scenario.seed
    poly, t0, t1 = pick_gathering(sim.release, sim.world)
    cfg.update(geofence_polygon=poly, geofence_window_s=(t0, t1))
    rot = sim.scenario.ids.rotation_days
    if rot:
        cfg["relink_period_days"] = float(rot)
    cfg.update(attack_config or {})
    tables = run_attacks(sim.release, ibd, sim.register, sim.world, sim.pseudonyms, sim.persons, config=cfg)
    summ = summary(tables)
    write_attack_outputs(out, tables, summ)
    write_json({"polygon_wkt": shapely.to_wkt(poly), "t_start_s": t0, "t_end_s": t1,
                "crs": sim.world.crs}, out / "attacks" / "geofence_meta.json")
    return tables


#: the main job evaluates defenses on a seeded sample of pseudonyms, for 7 and all days
DEFENSE_SAMPLE_TRACES = 5000


def defense_step(sim, out: Path, defenses=None, progress=True, sample_traces=DEFENSE_SAMPLE_TRACES):

    n = sim.scenario.pings.days
    days = tuple(sorted({min(7, n), n}))
    priv, util = evaluate_defenses(sim, DEFAULT_DEFENSES if defenses is None else defenses,
                                   attack_config={"ttid_level": "building", "seed": sim.scenario.seed},
                                   days=days, progress=progress, sample_traces=sample_traces)
    write_table(priv, out / "defenses" / "privacy")
    write_table(util, out / "defenses" / "utility")
    return priv, util


def headline_sentence(tables: dict) -> tuple[str, dict]:
    """The plain-words headline from the time-to-identification curve."""
    t = tables.get("time_to_identification")
    if t is None or not len(t):
        return "No time-to-identification result.", {}
    t = t.sort_values("days")
    level = t["level"].iloc[0]

    def p(v):
        v = 100 * float(v)
        return f"{v:.1f}" if v == 0 or v >= 0.1 else f"{v:.2g}"

    def pct(r):
        return f"{p(r['value'])}% (95% CI {p(r['ci_low'])}–{p(r['ci_high'])}%)"

    first = t.iloc[0]
    parts = [f"After {int(first['days'])} day{'s' if first['days'] != 1 else ''}, {pct(first)} of devices "
             f"were tied to a named person"]
    later = t[t["days"] == 7]
    if len(later) and int(first["days"]) != 7:
        parts.append(f"after 7 days, {pct(later.iloc[0])}")
    last = t.iloc[-1]
    if int(last["days"]) not in (7, int(first["days"])):
        parts.append(f"after {int(last['days'])} days, {pct(last)}")
    n = int(first["n"])
    sent = "; ".join(parts) + f" (n = {n:,} pseudonyms; unique, correct match of inferred home and work to the " \
                              f"register at {level} level)."
    return sent, {"level": level, "curve": t[["days", "value", "ci_low", "ci_high", "n"]].to_dict("records")}


def _load_and_validate(out: Path):

    sim = load(out)
    write_json(calibration_stats(sim), out / "calibration.json")
    return sim


def run_main(scn: Scenario | None = None, out_dir="reidsim-out", *, progress: bool = True,
             defenses=None, report: bool = True) -> dict:
    """Run the whole pipeline on a scenario (default: the built-in one) into ``out_dir``."""

    scn = (scn or Scenario()).validate()
    out = Path(out_dir)
    from tqdm.auto import tqdm

    bar = tqdm(total=6 if report else 5, desc="reidsim run", unit="stage", disable=not progress,
               bar_format="{desc}: {n}/{total} stages |{bar}| {elapsed} {postfix}")
    timings = {}

    def stage(name, fn):
        bar.set_postfix_str(name)
        t = time.perf_counter()
        res = fn()
        timings[f"{name}_s"] = time.perf_counter() - t
        bar.update(1)
        return res

    stage("generate", lambda: generate(scn, out, progress=False))
    sim = stage("load_validate", lambda: _load_and_validate(out))
    ibd = stage("infer", lambda: infer_step(sim, out))
    tables = stage("attacks", lambda: attack_step(sim, out, ibd))
    stage("defenses", lambda: defense_step(sim, out, defenses, progress=False))
    sentence, head = headline_sentence(tables)

    info = {"headline": sentence, "headline_figures": head, "scenario": scn.to_dict(),
            "config_hash": scn.config_hash(), "seed": scn.seed, "reidsim_version": __version__,
            "timings_s": {k: round(v, 2) for k, v in timings.items()}}
    write_json(info, out / "run.json")
    if report:

        stage("report", lambda: write_report(out, sim=sim))
    bar.close()
    info["timings_s"] = {k: round(v, 2) for k, v in timings.items()}
    write_json(info, out / "run.json")
    return info
