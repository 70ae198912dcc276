"""The main job: world → population → pings → inference → attacks → defenses → report.

``reidsim run`` calls :func:`run_main`.  Output layout of ``DIR``::

    pings/ truth/ world/ register.parquet manifest.json   the generated dataset
    calibration.json                                      generator calibration figures
    inferred.parquet                                      home/work from the whole window
    inferred_by_day.parquet                               home/work per observation window
    attacks/*.parquet|csv, attacks/summary.json           attack tables and headline
    attacks/geofence_meta.json                            the geofence polygon and window
    defenses/privacy.parquet|csv, defenses/utility.parquet|csv
    run.json                                              headline, every setting used, timings
    report.html (self-contained), report.md, figures/*.png

(a ``.csv`` beside a ``.parquet`` only for tables of at most ``sim.core.files.CSV_MAX_ROWS`` rows)

Large releases (more than :data:`sim.release.dataset.DEFAULT_SAMPLE_DEVICES` devices)
never hold the whole release in memory: inference and every attack run part by part
over the whole release (:func:`sim.pipeline.stream_attacks.attack_streaming`, the same
tables as in memory), and the figures that need pings in memory — calibration, the
waterfall and ceilings, unicity and top-N against panel size, the sensitivity tornado,
the defenses and the report's maps — are measured on a seeded sample of that many
devices (:func:`sim.release.dataset.load_sample`; ``run.json["sample"]`` records it and
the report says so).  Smaller runs measure everything on every device.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import shapely
from tqdm.auto import tqdm

from sim import __version__
from sim.attacks import run_attacks, summary, write_attack_outputs
from sim.attacks.ladder import RUNG_NAMES, RUNGS
from sim.attacks.panel import topn_vs_panel_size, unicity_vs_panel_size
from sim.attacks.run import AttackConfig
from sim.attacks.gathering import pick_gathering
from sim.core.config import Scenario
from sim.core.fmt import pct_ci
from sim.core.ledger import ledger_rows
from sim.core.memory import peak_rss_mb, release_free_memory, reset_peak_rss, rss_mb
from sim.core.files import (
    DATASET_ENTRIES,
    DERIVED_ENTRIES,
    claim_output_dir,
    commit_staged,
    new_staging_dir,
    write_json,
    write_table,
)
from sim.generate.engine import generate
from sim.metrics.calibration import calibration_stats
from sim.metrics.waterfall import identification_waterfall
from sim.infer import InferenceParams
from sim.pipeline.evaluate import DEFAULT_DEFENSES, DEFENSE_ATTACK_CONFIG, evaluate_defenses, infer_by_day
from sim.pipeline.sensitivity import sensitivity
from sim.release.dataset import (DEFAULT_SAMPLE_DEVICES, SAMPLE_PINGS_RECORD, device_sample, load_sample,
                                 released_devices, sample_pings_record)
from sim.report.document import write_report

log = logging.getLogger(__name__)

#: attack settings of the main job (fast enough for ~1 minute on the default scenario)
#: folder (inside a run's output while it runs) the streamed stage writes the device
#: sample's pings to, for the sample to be loaded without reading every part again
SAMPLE_PINGS_DIR = ".sample-pings"

MAIN_ATTACK_CONFIG = dict(
    ttid_level="building", ttid_key="home_work",
    unicity_p=(1, 2, 3, 4, 5), unicity_v_m=(100.0, 250.0, 500.0, 1000.0, 2000.0),
    unicity_h_h=(1.0, 4.0, 24.0), unicity_n_sample=3000,
    known_m=(1, 2, 3, 4), known_sigma_m=(0.0, 100.0), known_n_targets=500,
)


def infer_step(simulation, out: Path, infer_params=None) -> tuple[dict, dict]:
    """Infer home/work for every observation window; write ``inferred`` (the whole
    window) and ``inferred_by_day``.  Returns ``({days: table}, settings used)``."""
    params = InferenceParams(**(infer_params or {}))
    ibd = infer_by_day(simulation.release, **dataclasses.asdict(params))
    did = simulation.meta.get("dataset_id")
    write_table(ibd[max(ibd)], out / "inferred", dataset_id=did)
    write_table(pd.concat(list(ibd.values()), ignore_index=True), out / "inferred_by_day", dataset_id=did)
    return ibd, dataclasses.asdict(params)


def main_attack_config(simulation, attack_config=None) -> dict:
    """The attack configuration of the main job for ``simulation``: the fixed settings
    of :data:`MAIN_ATTACK_CONFIG`, the scenario's seed, a geofence around the busiest
    weekend spot, re-linking at the rotation period, then ``attack_config`` on top."""
    cfg = dict(MAIN_ATTACK_CONFIG)
    cfg["seed"] = simulation.scenario.seed
    poly, t0, t1 = pick_gathering(simulation.release, simulation.world)
    cfg.update(geofence_polygon=poly, geofence_window_s=(t0, t1))
    rot = simulation.scenario.ids.rotation_days
    if rot:
        cfg["relink_period_days"] = float(rot)
    cfg.update(attack_config or {})
    return cfg


def settings_record(cfg: dict) -> dict:
    """``cfg`` as plain JSON values (a polygon as WKT, tuples as lists)."""
    out = {}
    for k, v in cfg.items():
        if k == "geofence_polygon" and v is not None:
            out["geofence_polygon_wkt"] = shapely.to_wkt(v)
        elif isinstance(v, tuple):
            out[k] = list(v)
        else:
            out[k] = v
    return out


def attack_step(simulation, out: Path, ibd: dict, attack_config=None) -> tuple[dict, dict]:
    """Run the attacks; write ``attacks/``.  Returns ``(tables, settings used)``."""
    cfg = main_attack_config(simulation, attack_config)
    tables = run_attacks(simulation.release, ibd, simulation.register, simulation.world,
                         simulation.pseudonyms, simulation.persons, config=cfg)
    write_attack_outputs(out, tables, summary(tables), dataset_id=simulation.meta.get("dataset_id"))
    t0, t1 = cfg["geofence_window_s"]
    write_json({"polygon_wkt": shapely.to_wkt(cfg["geofence_polygon"]), "t_start_s": t0, "t_end_s": t1,
                "crs": simulation.world.crs}, out / "attacks" / "geofence_meta.json")
    return tables, settings_record(dataclasses.asdict(AttackConfig.from_any(cfg)))


#: k of the headline's "narrowed to k or fewer people"
HEADLINE_K = 5
#: panel-size curves of the main job: unicity of 4 points at 500 m and 1 h; top-2 at building level
PANEL_UNICITY = dict(p=4, v_m=500.0, h_h=1.0)
PANEL_TOPN = dict(levels=("building",), n_values=(2,))


def strongest_set_rung(ladder: pd.DataFrame) -> str | None:
    """The last (strongest) candidate-set rung of the ladder present in ``ladder``; the
    headline's "named uniquely" needs a set (the ranked rung always names somebody)."""
    present = set(ladder["rung"]) if ladder is not None and len(ladder) else set()
    sets = [r for r, spec in RUNGS.items() if spec.kind == "set" and r in present]
    return sets[-1] if sets else None


def ladder_headline(ladder: pd.DataFrame, rung: str, k: int = HEADLINE_K) -> pd.DataFrame:
    """Per window: share of devices named (uniquely and correctly) and narrowed to ``k``
    or fewer people with the owner among them, by ``rung`` (columns days, metric,
    value, ci_low, ci_high, n)."""
    t = ladder[(ladder["rung"] == rung) & (ladder["unit"] == "device")]
    t = t[(t["metric"] == "named") | ((t["metric"] == "narrowed_k") & (t["k"] == k))]
    t = t.assign(metric=np.where(t["metric"] == "named", "named", f"narrowed_{k}"))
    return t[["days", "metric", "value", "ci_low", "ci_high", "n"]].sort_values(["days", "metric"]).reset_index(drop=True)


def headline_measure(simulation, rung_settings: dict):
    """``measure(release, inferred_by_day, register, pseudonyms)`` for the sensitivity
    sweep: the ladder on the last window; rows named and narrowed_<k> of the strongest
    set rung.  Only the set rungs run: the ranked rung (last, so the set rungs' figures
    do not depend on it) is not in the headline, and its address index of every listed
    home is the largest thing the ladder builds (~0.5 GB at 7 M register rows)."""
    rungs = tuple(rung_settings.get("ladder_rungs", RUNG_NAMES))
    sets = tuple(r for r in rungs if RUNGS[r].kind == "set")

    def measure(release, ibd, register, pseudonyms):
        d = max(ibd)
        cfg = {**rung_settings, "attacks": ("ladder",), "ladder_ks": (HEADLINE_K,), "ladder_rungs": sets or rungs}
        tab = run_attacks(release, {d: ibd[d]}, register, simulation.world, pseudonyms, simulation.persons,
                          config=cfg)["ladder"]
        rung = strongest_set_rung(tab)
        h = ladder_headline(tab, rung)
        return h[h["days"] == d].drop(columns="days")
    return measure


def honest_step(simulation, out: Path, ibd: dict, attack_settings: dict, *, progress: bool = False) -> dict:
    """The figures that put the headline in context: the loss waterfall and ceilings,
    unicity and top-N against panel size (extrapolated to every resident), and the
    headline across each assumption's range.  Writes attacks/waterfall, attacks/
    sensitivity, attacks/unicity_panel and attacks/topn_panel; returns the ceilings."""
    did = simulation.meta.get("dataset_id")
    seed = simulation.scenario.seed
    wf, ceilings = identification_waterfall(ibd[max(ibd)], simulation.pseudonyms, simulation.persons,
                                            simulation.register, simulation.world)
    write_table(wf, out / "attacks" / "waterfall", dataset_id=did)
    release_free_memory()  # each figure's working memory, before the next figure's
    target = [int(simulation.scenario.residents)]
    uni = unicity_vs_panel_size(simulation.release, seed=seed, target_sizes=target, **PANEL_UNICITY)
    write_table(uni, out / "attacks" / "unicity_panel", dataset_id=did)
    release_free_memory()
    top = topn_vs_panel_size(simulation.release, simulation.world, seed=seed, target_sizes=target, **PANEL_TOPN)
    write_table(top, out / "attacks" / "topn_panel", dataset_id=did)
    keep = {k: attack_settings[k] for k in ("seed", "ladder_rungs", "ladder_level", "ladder_relink_max_dist_m")
            if k in attack_settings}
    sens = sensitivity(simulation, ibd, headline_measure(simulation, keep), progress=progress)
    write_table(sens, out / "attacks" / "sensitivity", dataset_id=did)
    return ceilings


#: the main job evaluates defenses on a seeded sample of pseudonyms, for 7 and all days
DEFENSE_SAMPLE_TRACES = 5000


def defense_step(simulation, out: Path, defenses=None, progress=True,
                 sample_traces=DEFENSE_SAMPLE_TRACES) -> tuple:
    """Evaluate the defenses; write ``defenses/``.  Returns ``(privacy, utility, settings)``."""
    n = simulation.scenario.pings.days
    days = tuple(sorted({min(7, n), n}))
    defenses = list(DEFAULT_DEFENSES if defenses is None else defenses)
    attack_config = {"ttid_level": "building", "seed": simulation.scenario.seed}
    priv, util = evaluate_defenses(simulation, defenses, attack_config=attack_config,
                                   days=days, progress=progress, sample_traces=sample_traces)
    did = simulation.meta.get("dataset_id")
    write_table(priv, out / "defenses" / "privacy", dataset_id=did)
    write_table(util, out / "defenses" / "utility", dataset_id=did)
    settings = {"defenses": [{"name": nm, "params": dict(pr)} for nm, pr in defenses],
                "defense_attack_config": settings_record({**DEFENSE_ATTACK_CONFIG, **attack_config}),
                "defense_sample_traces": sample_traces, "defense_days": list(days)}
    return priv, util, settings


def headline_sentence(tables: dict, register_profile: str | None = None) -> tuple[str, dict]:
    """The plain-words headline: per observation window, the share of devices the
    strongest candidate-set rung of the attacker ladder names uniquely and correctly,
    and narrows to :data:`HEADLINE_K` or fewer people with the owner among them.
    Returns ``(sentence, figures)``."""
    ladder = tables.get("ladder")
    rung = strongest_set_rung(ladder)
    if rung is None:
        return "No identification result (the attacker ladder did not run).", {}
    h = ladder_headline(ladder, rung)
    level = str(ladder["level"].iloc[0])
    days = sorted(h["days"].unique())
    shown = [d for d in (days[0], 7, days[-1]) if d in days]
    shown = list(dict.fromkeys(shown))

    def fig(d, metric):
        r = h[(h["days"] == d) & (h["metric"] == metric)].iloc[0]
        return pct_ci(r["value"], r["ci_low"], r["ci_high"], label="95% CI", small=0.1)

    parts = []
    for i, d in enumerate(shown):
        lead = f"After {int(d)} day{'s' if d != 1 else ''}" if i == 0 else f"after {int(d)} days"
        parts.append(f"{lead}, {fig(d, 'named')} of devices were named correctly and uniquely and "
                     f"{fig(d, f'narrowed_{HEADLINE_K}')} narrowed to {HEADLINE_K} or fewer people")
    n = int(h[h["days"] == days[-1]]["n"].iloc[0])
    reg = f"; register: {register_profile}" if register_profile else ""
    sent = "; ".join(parts) + (f" (n = {n:,} devices; attacker ladder up to its {rung.replace('_', ' ')!r} rung: "
                               f"the inferred home, and work where found, matched to the register at {level} "
                               f"level{reg}).")
    curve = h.pivot_table(index="days", columns="metric", values=["value", "ci_low", "ci_high", "n"])
    records = [{"days": int(d), **{f"{m}_{c}": float(curve.loc[d, (c, m)]) for c in ("value", "ci_low", "ci_high", "n")
                                   for m in ("named", f"narrowed_{HEADLINE_K}")}} for d in curve.index]
    return sent, {"rung": rung, "level": level, "k": HEADLINE_K, "register_profile": register_profile,
                  "curve": records}


def _load_and_validate(out: Path, sample_devices: int | None = DEFAULT_SAMPLE_DEVICES, sampled_pings=None):
    """The Simulation of ``out`` (a seeded device sample above ``sample_devices``; its
    pings from ``sampled_pings`` when the streamed stage wrote them there, see
    :func:`stream_step`) and its calibration figures (``calibration.json``, recording
    the sample)."""
    simulation = load_sample(out, sample_devices, sampled_pings=sampled_pings)
    cal = calibration_stats(simulation)
    if "sample" in simulation.meta:
        cal["sample"] = simulation.meta["sample"]
    write_json(cal, out / "calibration.json")
    return simulation


def stream_step(out: Path, infer_params=None, attack_config=None, *, backend: str = "local",
                scheduler: str | None = None, n_workers: int = 2,
                sample_devices: int | None = None) -> tuple:
    """Inference and attacks of a large release, part by part over the whole release
    (:func:`sim.pipeline.stream_attacks.attack_streaming`: the tables of
    :func:`attack_step`, ``inferred`` and ``inferred_by_day`` written).  Needs nothing in
    memory: it runs before the device sample is loaded, so the sample, the register and
    the truth tables of :func:`_load_and_validate` do not add to its peak.
    ``backend``, ``scheduler``, ``n_workers``: as :func:`attack_streaming` (the passes
    over the parts on Dask workers; the reduce stays in this process).  With
    ``sample_devices``, the map pass also writes the rows of :func:`load_sample`'s
    device sample of every part to ``out/.sample-pings`` (:data:`SAMPLE_PINGS_DIR`), so
    :func:`_load_and_validate` reads them instead of every part again.  Returns
    ``(inference settings, tables, attack settings, stream record, sampled pings folder
    or None)``; the record has the passes' seconds and, on Dask, the workers' peak
    memory."""
    from sim.pipeline.stream_attacks import attack_streaming, dataset_attack_config

    params = dataclasses.asdict(InferenceParams(**(infer_params or {})))
    cfg = dataset_attack_config(out, MAIN_ATTACK_CONFIG, attack_config)
    sample, folder = device_sample(out, sample_devices), None
    if sample is not None:
        folder = out / SAMPLE_PINGS_DIR
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir()
        did = json.loads((out / "manifest.json").read_text())["dataset_id"]
        write_json(sample_pings_record(did, sample), folder / SAMPLE_PINGS_RECORD)
    res = attack_streaming(out, config=cfg, infer_params=params, concat_max_rows=10**9, backend=backend,
                           scheduler=scheduler, n_workers=n_workers, hold_per_device=False,
                           sample_pings=None if sample is None else (sample["names"], folder))
    rec = {k: res.get(k) for k in ("backend", "n_workers", "passes", "driver_peak_rss_mb", "worker_peak_rss_mb")
           if res.get(k) is not None}
    return params, res["tables"], settings_record(dataclasses.asdict(res["config"])), rec, folder


def run_main(scn: Scenario | None = None, out_dir="reidsim-out", *, progress: bool = True,
             defenses=None, report: bool = True, overwrite: bool = False,
             infer_params=None, attack_config=None, sample_devices: int | None = DEFAULT_SAMPLE_DEVICES,
             backend: str = "local", scheduler: str | None = None, n_workers: int = 2) -> dict:
    """Run the whole pipeline on a scenario (default: the built-in one) into ``out_dir``.

    Above ``sample_devices`` devices the release is attacked part by part and the
    context figures are measured on a seeded sample of that many devices (module
    docstring); ``None`` holds everything in memory whatever the size.  ``backend``
    ``"dask"`` runs that part-by-part stage's passes on a LocalCluster of ``n_workers``
    worker processes (or on ``scheduler``); the tables are the same as the local
    backend's.  run.json's ``stream`` block then records the workers' peak memory.

    ``out_dir`` must be new, empty, or a reidsim folder (replaced only with
    ``overwrite=True``; see :func:`sim.core.files.claim_output_dir`).  Everything is
    written to a staging folder inside it and moved into place at the end, so a run that
    is interrupted leaves the previous contents untouched (its staging folder is removed
    by the next run).  ``run.json`` records every setting the run used (scenario,
    inference, attacks, defenses) and the dataset's ``dataset_id``; the report reads only
    run.json and the tables.  Returns the run.json content.
    """
    scn = (scn or Scenario()).validate()
    out = claim_output_dir(out_dir, overwrite=overwrite)
    staging = new_staging_dir(out)
    try:
        info = _run_into(scn, staging, progress, defenses, report, infer_params, attack_config, sample_devices,
                         dict(backend=backend, scheduler=scheduler, n_workers=n_workers))
        commit_staged(staging, out, marker="run.json", remove=DATASET_ENTRIES + DERIVED_ENTRIES)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return info


def _generate_job(scn: Scenario, out: Path) -> tuple:
    """Generation in a child process (:func:`_generate_stage`): the manifest and the
    child's peak resident memory (MiB)."""
    return generate(scn, out, progress=False), peak_rss_mb()


def _generate_stage(scn: Scenario, out: Path, child: bool) -> tuple:
    """``(manifest, child's peak MiB or None)``: :func:`generate` into ``out``, in this
    process or (``child``) in a fresh one started for it, so that what generation leaves
    in a process's heap (about 0.5 GB at a million devices) does not stay under the
    stages after it."""
    if not child:
        return generate(scn, out, progress=False), None
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as ex:
        return ex.submit(_generate_job, scn, out).result()


def _headline_tables(tables: dict) -> dict:
    """The attack tables the rest of the run reads (the headline's ladder).  The others
    are written already; at scale their per-device tables run to millions of rows and
    would only add to every later stage's memory."""
    return {"ladder": tables.get("ladder")}


def _run_into(scn, out: Path, progress, defenses, report, infer_params, attack_config,
              sample_devices=DEFAULT_SAMPLE_DEVICES, dask=None) -> dict:
    bar = tqdm(total=7 if report else 6, desc="reidsim run", unit="stage", disable=not progress,
               bar_format="{desc}: {n}/{total} stages |{bar}| {elapsed} {postfix}")
    timings, peaks, starts = {}, {}, {}

    def stage(name, fn):
        bar.set_postfix_str(name)
        release_free_memory()  # what earlier stages freed does not count in this one's peak
        reset_peak_rss()
        starts[name] = rss_mb()  # what the stage's peak includes from before it
        t = time.perf_counter()
        res = fn()
        timings[f"{name}_s"] = time.perf_counter() - t
        peaks[name] = peak_rss_mb()
        bar.update(1)
        return res

    # a run that will be streamed generates in a child process; the stage's figure is then
    # this process's peak during the stage plus the child's
    child = sample_devices is not None and scn.devices > sample_devices
    manifest, child_peak = stage("generate", lambda: _generate_stage(scn, out, child))
    processes = {}
    if child_peak is not None:
        processes["generate"] = {"this_process_mb": peaks["generate"], "child_mb": child_peak}
        if peaks["generate"] is not None:
            peaks["generate"] = round(peaks["generate"] + child_peak, 1)
    stream_rec = None
    if sample_devices is None or released_devices(out) <= sample_devices:  # everything in memory
        simulation = stage("load_validate", lambda: _load_and_validate(out, sample_devices))
        ibd, infer_settings = stage("infer", lambda: infer_step(simulation, out, infer_params))
        tables, attack_settings = stage("attacks", lambda: attack_step(simulation, out, ibd, attack_config))
        tables = _headline_tables(tables)
    else:  # the whole release part by part, first; then the context figures on the device sample
        infer_settings, tables, attack_settings, stream_rec, sampled = stage(
            "infer_attacks_streaming", lambda: stream_step(out, infer_params, attack_config, **(dask or {}),
                                                           sample_devices=sample_devices))
        tables = _headline_tables(tables)
        simulation = stage("load_validate", lambda: _load_and_validate(out, sample_devices, sampled))
        if sampled is not None:
            shutil.rmtree(sampled)  # read; not part of the run's output
        # the sampled devices' windows: the very rows the whole release gives them (inference is per pseudonym)
        ibd = stage("infer_sample", lambda: infer_by_day(simulation.release, **infer_settings))
    sample = simulation.meta.get("sample")
    ceilings = stage("context", lambda: honest_step(simulation, out, ibd, attack_settings))
    _, _, defense_settings = stage("defenses", lambda: defense_step(simulation, out, defenses, progress=False))
    sentence, head = headline_sentence(tables, scn.register.profile)
    head["ceilings"] = ceilings
    info = {"headline": sentence, "headline_figures": head, "ledger": ledger_rows(scn), "scenario": scn.to_dict(),
            "config_hash": scn.config_hash(), "seed": scn.seed, "reidsim_version": __version__,
            "dataset_id": manifest["dataset_id"], "sample": sample, "stream": stream_rec,
            "settings": {"inference": infer_settings, "attacks": attack_settings, **defense_settings},
            "timings_s": {k: round(v, 2) for k, v in timings.items()}, "peak_rss_mb": dict(peaks),
            "start_rss_mb": dict(starts), "stage_processes": processes}
    write_json(info, out / "run.json")
    if report:
        stage("report", lambda: write_report(out, simulation=simulation))
    bar.close()
    info["timings_s"] = {k: round(v, 2) for k, v in timings.items()}
    info["peak_rss_mb"] = dict(peaks)
    info["start_rss_mb"] = dict(starts)
    write_json(info, out / "run.json")
    return info
