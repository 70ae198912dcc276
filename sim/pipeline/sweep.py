"""Scenario sweeps: a base scenario × defenses × parameter grids × replicate seeds.

A sweep file (TOML)::

    name = "panel-defenses"            # optional label of the sweep

    [scenario]                         # the base scenario: any sim.core.config.Scenario field
    n_devices = 2000
    [scenario.world]
    residents = 20000
    [scenario.pings]
    days = 14

    [sweep]
    replicates = [1, 2]                # replicate seeds (each one: its own world and pings)
    attacks = ["linkage", "time_to_identification", "unicity"]
    max_cells = 500                    # refuse larger grids before any work starts
    baseline = true                    # also evaluate the undefended release ("none")

    [[sweep.defenses]]
    name = "subsample"
    grid = { fraction = [0.5, 0.2, 0.1] }   # every combination of the listed values
    fixed = {}                             # other options held fixed (optional)

:func:`run_sweep` validates everything first (unknown defense or attack names,
out-of-range strengths, grid size), then evaluates one *cell* (replicate × defense ×
parameters) at a time.  Each replicate's world and pings are generated once and shared
by all of its cells (defenses never change the trajectories).  Every finished cell is
written atomically to ``OUT/cells/<key>.parquet``; re-running the same file skips the
cells already there, so an interrupted sweep resumes (a cell file that is empty or
unreadable, e.g. after a full disk, is not done: it is computed again).  The tidy table
``OUT/results.parquet`` (and .csv) has one row per scenario × defense × parameter ×
replicate × metric, with every parameter and the config hash; ``OUT/results_pooled``
has one row per figure pooled over replicate seeds (mean and Student-t interval).  One privacy-utility
figure per attack goes to ``OUT/figures/``.

Backends: ``"local"`` (cells in this process) or ``"dask"`` (one task per cell,
:func:`evaluate_cell`, on a LocalCluster or the scheduler at ``scheduler``; results are
returned to this process, which writes the cell files).  Both write identical cells.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
from pathlib import Path

import pandas as pd
import pyarrow as pa

from sim import __version__
from sim.core.config import Scenario, check_keys, load_toml
from sim.core.errors import ConfigError
from sim.core.files import atomic_path, check_output_path
from sim.core.stats import combine_replicates
from sim.metrics.utility import true_residents
from sim.pipeline.api import simulate
from sim.pipeline.evaluate import evaluate_defense
from sim.release.defenses import REGISTRY, validate_defense

log = logging.getLogger(__name__)

SWEEP_ATTACKS = ("linkage", "time_to_identification", "unicity")
DEFAULT_MAX_CELLS = 500


def load_sweep(path, max_cells: int | None = None) -> dict:
    """Read and validate a sweep file; returns the normalised plan (no work done).

    ``max_cells`` overrides the file's ``sweep.max_cells``."""
    d = load_toml(path, "sweep file")
    return plan_sweep(d, source=str(Path(path)), max_cells=max_cells)


def plan_sweep(d: dict, source: str = "<dict>", max_cells: int | None = None) -> dict:
    """Validate a sweep description (the parsed TOML) and expand its grid into cells."""

    check_keys(d, ("name", "scenario", "sweep"), f"the top level of {source}")
    if not isinstance(d.get("name", ""), str):
        raise ConfigError(f"the sweep name must be a string, got {d['name']!r}.")
    base = Scenario.from_dict(d.get("scenario", {}), where="scenario")
    sw = d.get("sweep")
    if not isinstance(sw, dict):
        raise ConfigError(f"{source} has no [sweep] table; add one with replicates and [[sweep.defenses]].")
    check_keys(sw, ("replicates", "attacks", "max_cells", "baseline", "defenses"), "[sweep]")
    reps = sw.get("replicates", [base.seed])
    if not isinstance(reps, list) or not reps or not all(isinstance(r, int) and not isinstance(r, bool) and r >= 0 for r in reps):
        raise ConfigError(f"sweep.replicates must be a non-empty list of non-negative integer seeds, got {reps!r}.")
    if len(set(reps)) != len(reps):
        raise ConfigError(f"sweep.replicates has repeated seeds: {reps}.")
    attacks = sw.get("attacks", SWEEP_ATTACKS)
    if not isinstance(attacks, (list, tuple)) or not attacks or not all(isinstance(a, str) for a in attacks):
        raise ConfigError(f"sweep.attacks must be a non-empty list of attack names from {list(SWEEP_ATTACKS)}, "
                          f"got {attacks!r}.")
    attacks = tuple(attacks)
    badatt = [a for a in attacks if a not in SWEEP_ATTACKS]
    if badatt:
        raise ConfigError(f"unknown sweep attack(s) {badatt}; allowed: {list(SWEEP_ATTACKS)}.")
    limit = max_cells if max_cells is not None else sw.get("max_cells", DEFAULT_MAX_CELLS)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"sweep.max_cells must be a positive integer, got {limit!r}.")
    defs = sw.get("defenses", [])
    if not isinstance(defs, list):
        raise ConfigError("sweep.defenses must be an array of tables ([[sweep.defenses]]).")
    baseline = sw.get("baseline", True)
    if not isinstance(baseline, bool):
        raise ConfigError(f"sweep.baseline must be true or false, got {baseline!r}.")
    settings = [("none", {})] if baseline else []
    for i, dd in enumerate(defs):
        if not isinstance(dd, dict) or "name" not in dd:
            raise ConfigError(f"sweep.defenses[{i}] needs a name, got {dd!r}.")
        check_keys(dd, ("name", "grid", "fixed"), f"sweep.defenses[{i}]")
        name = dd["name"]
        if name not in REGISTRY:
            raise ConfigError(f"unknown defense {name!r} in sweep.defenses[{i}]; known: {sorted(REGISTRY)}.")
        grid = dd.get("grid", {})
        fixed = dd.get("fixed", {})
        if not isinstance(grid, dict) or not isinstance(fixed, dict):
            raise ConfigError(f"sweep.defenses[{i}].grid and .fixed must be tables.")
        for k, v in grid.items():
            if not isinstance(v, list) or not v:
                raise ConfigError(f"sweep.defenses[{i}].grid.{k} must be a non-empty list, got {v!r}.")
        keys = sorted(grid)
        for combo in itertools.product(*(grid[k] for k in keys)):
            params = dict(fixed)
            params.update(dict(zip(keys, (_num(v) for v in combo))))
            try:
                validate_defense(name, params)
            except ConfigError as e:
                raise ConfigError(f"sweep.defenses[{i}] ({name}) with {params}: {e}") from None
            settings.append((name, params))
    n_cells = len(settings) * len(reps)
    if n_cells > limit:
        raise ConfigError(
            f"the sweep has {n_cells} cells ({len(settings)} settings x {len(reps)} replicates), more than "
            f"max_cells={limit}; shrink the grid or raise sweep.max_cells / --max-cells."
        )
    if not settings:
        raise ConfigError("the sweep has no settings: add [[sweep.defenses]] or set baseline = true.")
    return {"name": d.get("name", Path(source).stem), "base": base, "replicates": list(reps),
            "attacks": attacks, "settings": settings, "n_cells": n_cells, "source": source}


def _num(v):
    if isinstance(v, str) and v.lower() in ("inf", "+inf", "infinity"):
        return math.inf
    return v


def cell_key(scn: Scenario, name: str, params: dict, attacks) -> str:
    """Identity of one cell: scenario (incl. replicate seed), defense, params, attacks."""
    blob = json.dumps({"scenario": scn.config_hash(), "defense": name, "params": params,
                       "attacks": list(attacks), "version": __version__}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


#: per-process cache of the last replicate's Simulation (a Dask worker evaluates many
#: cells of one replicate; each replicate is simulated at most once per process)
_SIMULATION_CACHE: dict = {}


def _replicate(scn: Scenario):
    """(Simulation, true residents per tract) of one replicate scenario, cached per process."""
    key = scn.config_hash()
    if key not in _SIMULATION_CACHE:
        _SIMULATION_CACHE.clear()
        simulation = simulate(config=scn)
        _SIMULATION_CACHE[key] = (simulation, true_residents(simulation.persons, "tract"))
    return _SIMULATION_CACHE[key]


def evaluate_cell(scenario: dict, name: str, params: dict, attacks, plan_meta: dict) -> pd.DataFrame:
    """The tidy rows of one sweep cell (the unit of work of both backends; a Dask worker
    runs exactly this).  ``scenario`` is the replicate's ``Scenario.to_dict()``;
    ``plan_meta`` holds the plan's ``name`` and ``replicates``."""
    scn = Scenario.from_dict(scenario)
    simulation, truth_res = _replicate(scn)
    priv, util, _ = evaluate_defense(simulation, name, params, attack_config={"attacks": tuple(attacks)},
                                     truth_residents=truth_res)
    return _tidy(priv, util, plan_meta, scn, scn.seed, name, params)


def _write_cell(cells_dir: Path, key: str, rows: pd.DataFrame) -> None:
    with atomic_path(cells_dir / f"{key}.parquet") as tmp:
        rows.to_parquet(tmp, index=False)


def run_sweep(path_or_plan, out_dir, *, progress: bool = True, max_cells: int | None = None,
              backend: str = "local", scheduler: str | None = None, n_workers: int = 2) -> dict:
    """Run (or resume) a sweep; returns counts and the path of the tidy table.

    ``backend="local"`` evaluates the cells one after another in this process;
    ``"dask"`` submits one task per cell (:func:`evaluate_cell`) to a LocalCluster of
    ``n_workers`` loopback-only workers or to the scheduler at ``scheduler``, cells of
    one replicate in a row so each worker simulates a replicate at most once.  Workers
    return the rows and this process writes every cell file, so workers need no shared
    disk.  Both backends give identical cell files (each cell is a pure function of its
    scenario, defense, parameters and attacks).
    """
    from tqdm.auto import tqdm

    if backend not in ("local", "dask"):
        raise ConfigError(f"backend must be 'local' or 'dask', got {backend!r}.")
    if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
        raise ConfigError(f"n_workers must be an integer >= 1, got {n_workers!r}; use e.g. 2 (one per core).")
    plan = path_or_plan if isinstance(path_or_plan, dict) else load_sweep(path_or_plan, max_cells=max_cells)
    out = check_output_path(out_dir, "sweep output")
    check_output_path(out / "cells", "sweep output")
    cells_dir = out / "cells"
    cells_dir.mkdir(parents=True, exist_ok=True)
    meta = {"name": plan["name"], "replicates": list(plan["replicates"])}
    skipped = 0
    bar = tqdm(total=plan["n_cells"], desc="sweep", unit="cell", disable=not progress)
    todo = []  # (key, scenario dict, name, params), replicate by replicate
    for rep in plan["replicates"]:
        scn = plan["base"].replace(seed=rep)
        for name, params in plan["settings"]:
            key = cell_key(scn, name, params, plan["attacks"])
            if read_cell(cells_dir / f"{key}.parquet") is not None:
                skipped += 1
                bar.update(1)
            else:
                todo.append((key, scn.to_dict(), name, params))
    if backend == "local":
        try:
            for key, sd, name, params in todo:
                _write_cell(cells_dir, key, evaluate_cell(sd, name, params, plan["attacks"], meta))
                bar.update(1)
        finally:
            _SIMULATION_CACHE.clear()
    elif todo:
        from dask.distributed import as_completed

        from sim.generate.engine import dask_client

        with dask_client(scheduler, n_workers) as client:
            futs = {client.submit(evaluate_cell, sd, name, params, list(plan["attacks"]), meta, pure=False): key
                    for key, sd, name, params in todo}
            for f in as_completed(futs):
                _write_cell(cells_dir, futs[f], f.result())
                bar.update(1)
    bar.close()
    table = collect(plan, out)
    figs = sweep_figures(table, out / "figures")
    return {"cells_done": len(todo), "cells_skipped": skipped, "table": str(out / "results.parquet"),
            "figures": [str(f) for f in figs], "rows": len(table), "backend": backend}


def _tidy(priv, util, plan, scn, rep, name, params) -> pd.DataFrame:

    strength = REGISTRY[name].strength.name if name in REGISTRY else None
    p = priv.copy()
    p.insert(0, "kind", "privacy")
    u = util.rename(columns={}).copy()
    u.insert(0, "kind", "utility")
    u = u.drop(columns=[c for c in ("description",) if c in u.columns])
    rows = pd.concat([p, u], ignore_index=True)
    val = params.get(strength) if strength else None
    rows.insert(0, "param_value", float(val) if isinstance(val, (int, float)) else (None if val is None else str(val)))
    rows.insert(0, "param_name", strength)
    rows.insert(0, "params", json.dumps(params, sort_keys=True, default=str))
    rows.insert(0, "defense", name)
    rows.insert(0, "seed", int(scn.seed))
    rows.insert(0, "replicate", int(plan["replicates"].index(rep)))
    rows.insert(0, "config_hash", scn.config_hash())
    rows.insert(0, "scenario", plan["name"])
    rows["param_value"] = rows["param_value"].astype(str)
    return rows


def read_cell(path: Path) -> pd.DataFrame | None:
    """A finished cell's rows, or None when the cell is not done: the file is missing,
    empty, unreadable (zero bytes, truncated, not Parquet) or has no ``value`` rows.
    Damaged files are logged; :func:`run_sweep` computes those cells again."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        df = pd.read_parquet(path)
    except (OSError, ValueError, pa.ArrowException) as e:
        log.warning("sweep cell %s is unreadable (%s); it will be computed again", path, e)
        return None
    if df.empty or "value" not in df.columns:
        log.warning("sweep cell %s has no result rows; it will be computed again", path)
        return None
    return df


def collect(plan: dict, out: Path) -> pd.DataFrame:
    """Concatenate the plan's finished cells into ``results.parquet`` / ``.csv``."""
    out = Path(out)
    frames = []
    for rep in plan["replicates"]:
        scn = plan["base"].replace(seed=rep)
        for name, params in plan["settings"]:
            df = read_cell(out / "cells" / f"{cell_key(scn, name, params, plan['attacks'])}.parquet")
            if df is not None:
                frames.append(df)
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    with atomic_path(out / "results.parquet") as tmp:
        table.to_parquet(tmp, index=False)
    with atomic_path(out / "results.csv") as tmp:
        table.to_csv(tmp, index=False)
    pooled = pool_replicates(table)
    with atomic_path(out / "results_pooled.parquet") as tmp:
        pooled.to_parquet(tmp, index=False)
    with atomic_path(out / "results_pooled.csv") as tmp:
        pooled.to_csv(tmp, index=False)
    return table


#: columns that identify one figure across replicate seeds
FIGURE_KEYS = ["scenario", "defense", "params", "param_name", "param_value", "kind", "metric", "level",
               "key", "days", "p", "v_m", "h_h"]


def pool_replicates(table: pd.DataFrame) -> pd.DataFrame:
    """One row per figure: mean over replicate seeds with a Student-t interval
    (:func:`sim.core.stats.combine_replicates`); NaN interval with one replicate."""

    if table.empty:
        return table
    t = table.copy()
    keys = [k for k in FIGURE_KEYS if k in t.columns]
    for k in keys:  # NaN keys (e.g. no level for unicity) must still group
        if t[k].dtype == object or str(t[k].dtype).startswith("str"):
            t[k] = t[k].fillna("")
        else:
            t[k] = t[k].fillna(-1)
    t = t[t["value"].notna()]
    return combine_replicates(t, keys, value_col="value", replicate_col="seed")


#: attack -> (privacy metric row selector, label) for the sweep figures
FIGURE_METRICS = {
    "linkage": (dict(metric="linkage_identified", level="building", key="home_work"),
                "re-identified (home+work, building)"),
    "time_to_identification": (dict(metric="identified_after_days", level="building", key="home_work"),
                               "re-identified after the full window"),
    "unicity": (dict(metric="unicity", p=4.0), "unique from 4 points"),
}


def sweep_figures(table: pd.DataFrame, fig_dir: Path, utility_metric: str = "od_l1") -> list:
    """One privacy-utility figure per attack: mean over replicates, a line per defense."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if table.empty:
        return []
    fig_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    util = table[(table["kind"] == "utility") & (table["metric"] == utility_metric)]
    u = util.groupby(["defense", "params"])["value"].mean()
    for attack, (sel, label) in FIGURE_METRICS.items():
        pr = table[table["kind"] == "privacy"]
        for k, v in sel.items():
            pr = pr[pr[k] == v]
        if attack == "time_to_identification" and len(pr):
            last = pr.groupby(["defense", "params", "seed"])["days"].transform("max")
            pr = pr[pr["days"] == last]
        if pr.empty:
            continue
        g = pr.groupby(["defense", "params"])["value"].agg(["mean", "min", "max"])
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        for dname, sub in g.groupby(level=0):
            xs = [u.get((dname, prm), float("nan")) for prm in sub.index.get_level_values(1)]
            order = sorted(range(len(xs)), key=lambda i: (xs[i] if xs[i] == xs[i] else -1))
            x = [xs[i] for i in order]
            y = [100 * sub["mean"].iloc[i] for i in order]
            lo = [100 * (sub["mean"].iloc[i] - sub["min"].iloc[i]) for i in order]
            hi = [100 * (sub["max"].iloc[i] - sub["mean"].iloc[i]) for i in order]
            ax.errorbar(x, y, yerr=[lo, hi], marker="o", capsize=3, label=dname)
        ax.set_xlabel(f"utility loss: {utility_metric} (0 = no loss)")
        ax.set_ylabel(f"% {label}")
        ax.set_title(f"Privacy vs utility — {attack}\n(mean over replicates; bars: min–max)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = fig_dir / f"privacy_utility_{attack}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
        paths.append(path)
    return paths
