"""Defense evaluation shared by the main job, notebooks and sweeps.

Plain functions over the stage APIs: infer for several observation windows, run the
attacks, apply a defense and evaluate it (privacy with the attacks, utility with
:mod:`sim.metrics.utility`), and flatten the results into headline rows.  No stage logic lives
here.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sim.attacks import run_attacks, summary
from sim.attacks.membership import membership_risk_over_targets
from sim.core.errors import ConfigError, InputError
from sim.core.memory import release_free_memory
from sim.core.rng import SUB_SAMPLE_RELEASE, TAG_ATTACK, seed_sequence
from sim.core.traces import Traces
from sim.infer import infer_prefixes
from sim.metrics.utility import true_residents, utility_table
from sim.release.defenses import BrokerContext, REGISTRY, apply_defense

log = logging.getLogger(__name__)

#: observation windows (days) used for time-to-identification when they fit the data
DAYS_GRID = (1, 2, 3, 5, 7, 10, 14, 21, 28, 42, 56, 90)

#: attacks (and their cheaper settings) used when evaluating each defense
DEFENSE_ATTACK_CONFIG = dict(
    attacks=("linkage", "time_to_identification", "unicity"),
    unicity_p=(2, 4), unicity_v_m=(500.0,), unicity_h_h=(1.0,), unicity_n_sample=3000,
)

#: the small set of defenses the main job (``reidsim run``) evaluates
DEFAULT_DEFENSES = (
    ("none", {}),
    ("salt", {"salt": "secret-salt"}),
    ("rotate", {"period_days": 1}),
    ("grid", {"cell_m": 1000.0}),
    ("planar_laplace", {"eps_per_m": 2.0 / 500.0}),
    ("subsample", {"fraction": 0.1}),
    ("home_suppression", {"radius_m": 500.0}),
    ("time_round", {"bin_h": 6.0}),
    ("aggregate_k", {"k": 10, "level": "tract", "bin_h": 1.0}),
)


def observation_days(n_days: int) -> tuple:
    """Windows (days) for time-to-identification: the grid up to ``n_days``, plus it."""
    if n_days < 1:
        raise InputError(f"n_days must be >= 1, got {n_days}")
    return tuple(sorted({d for d in DAYS_GRID if d < n_days} | {int(n_days)}))


def infer_by_day(release: Traces, days=None, **params) -> dict:
    """``{d: inferred table}`` from the first ``d`` days, for every window in ``days``."""

    days = observation_days(release.n_days) if days is None else tuple(days)
    long = infer_prefixes(release, days=days, **params)
    return {int(d): g.reset_index(drop=True) for d, g in long.groupby("window_days", sort=True)}


def truth_for(pseudonyms: pd.DataFrame, mapping: pd.DataFrame | None) -> pd.DataFrame:
    """The truth pseudonym table of a defended release (new pseudonym → device, person)."""
    if mapping is None:
        return pseudonyms
    src = pseudonyms.drop_duplicates("pseudonym").rename(columns={"pseudonym": "source_pseudonym"})
    keep = [c for c in ("source_pseudonym", "device_idx", "person_id", "maid") if c in src.columns]
    m = mapping.merge(src[keep], on="source_pseudonym", how="left")
    if m["device_idx"].isna().any():
        raise InputError("mapping names source pseudonyms missing from the truth table.")
    return m


@dataclass
class Evaluation:
    """Attack results on one release."""

    release: object
    inferred_by_day: dict
    tables: dict
    summary: dict = field(default_factory=dict)


def evaluate_release(release: Traces, simulation, *, pseudonyms=None, attack_config=None,
                     infer_params=None, days=None) -> Evaluation:
    """Infer home/work for every window and run the attacks on ``release``."""

    ibd = infer_by_day(release, days, **(infer_params or {}))
    tables = run_attacks(release, ibd, simulation.register, simulation.world,
                         simulation.pseudonyms if pseudonyms is None else pseudonyms, simulation.persons,
                         config=attack_config)
    return Evaluation(release, ibd, tables, summary(tables))


def headline_rows(tables: dict) -> pd.DataFrame:
    """The privacy figures of attack tables as tidy rows: metric, level, key, days, p,
    v_m, h_h, value, ci_low, ci_high, n."""
    rows = []
    fig = ["value", "ci_low", "ci_high", "n"]
    if "linkage" in tables:
        t = tables["linkage"]
        for _, r in t[t["metric"].isin(["identified", "wrong_unique", "median_set_size", "top1_correct"])].iterrows():
            rows.append({"metric": f"linkage_{r['metric']}", "level": r["level"], "key": r["key"],
                         **{k: r.get(k) for k in fig}})
    if "time_to_identification" in tables:
        for _, r in tables["time_to_identification"].iterrows():
            rows.append({"metric": "identified_after_days", "level": r["level"], "key": r["key"],
                         "days": r["days"], **{k: r.get(k) for k in fig}})
    if "unicity" in tables:
        for _, r in tables["unicity"].iterrows():
            rows.append({"metric": "unicity", "p": r["p"], "v_m": r["v_m"], "h_h": r["h_h"],
                         **{k: r.get(k) for k in fig}})
    if "relink" in tables:
        for _, r in tables["relink"].iterrows():
            rows.append({"metric": f"relink_{r['metric']}", "days": r.get("period_days"),
                         **{k: r.get(k) for k in fig}})
    if "membership" in tables:
        for _, r in tables["membership"].iterrows():
            rows.append({"metric": f"membership_{r['metric']}", **{k: r.get(k) for k in fig}})
    cols = ["metric", "level", "key", "days", "p", "v_m", "h_h"] + fig
    return pd.DataFrame(rows, columns=cols)


def broker_context(simulation, release: Traces | None = None):

    rel = simulation.release if release is None else release
    return BrokerContext.from_truth(rel, simulation.pseudonyms, simulation.persons, seed=simulation.scenario.seed, world=simulation.world)


def evaluate_defense(simulation, name: str, params: dict, *, attack_config=None, infer_params=None,
                     days=None, membership_targets: int = 20, truth_residents=None):
    """Apply one defense to ``simulation.release`` and measure privacy and utility.

    Returns ``(privacy, utility, tables)``: tidy headline rows of the attacks that still
    apply (for aggregate releases: membership inference against ``membership_targets``
    random devices; for ID rotation also the re-linking of consecutive pseudonyms by
    inferred home/work), the :func:`simulation.utility.utility_table`, and the raw attack tables.
    The membership figures are means over the target devices with a percentile
    bootstrap interval over targets.  ``name='none'`` evaluates the undefended release.
    """

    cfg = dict(DEFENSE_ATTACK_CONFIG)
    cfg.update(attack_config or {})
    cfg.setdefault("seed", simulation.scenario.seed)
    rel = simulation.release
    truth_res = true_residents(simulation.persons, "tract") if truth_residents is None else truth_residents
    if name == "none":
        ev = evaluate_release(rel, simulation, attack_config=cfg, infer_params=infer_params, days=days)
        util = utility_table(rel, rel, simulation.world, truth=truth_res)
        return headline_rows(ev.tables), util, ev.tables
    if name not in REGISTRY:
        raise ConfigError(f"unknown defense {name!r}; known: {['none'] + sorted(REGISTRY)}")
    ctx = broker_context(simulation)
    out, mapping = apply_defense(name, rel, ctx, **params)
    if isinstance(out, pd.DataFrame):  # aggregate release: per-trace attacks do not apply
        util = utility_table(out, rel, simulation.world, truth=truth_res)
        tables = {"membership": membership_risk_over_targets(rel, ctx, name, params, membership_targets,
                                                             seed=simulation.scenario.seed)}
        return headline_rows(tables), util, tables
    truth = truth_for(simulation.pseudonyms, mapping)
    if name == "rotate" and math.isfinite(float(params["period_days"])):
        # the attacker stitches a device's pseudonyms back together by home and work
        cfg["attacks"] = tuple(cfg["attacks"]) + ("relink",)
        cfg["relink_period_days"] = float(params["period_days"])
    ev = evaluate_release(out, simulation, pseudonyms=truth, attack_config=cfg, infer_params=infer_params,
                          days=days)
    util = utility_table(out, rel, simulation.world, mapping=mapping, truth=truth_res)
    return headline_rows(ev.tables), util, ev.tables


def sample_release(simulation, n_traces: int | None, seed: int):
    """The Simulation with its release cut to a seeded random sample of ``n_traces``
    pseudonyms (all of them when None or larger).  The register, world and truth stay
    whole, so anonymity sets are still computed against the full register."""
    import dataclasses

    rel = simulation.release
    if n_traces is None or n_traces >= rel.n_traces:
        return simulation

    rng = seed_sequence(seed, TAG_ATTACK, SUB_SAMPLE_RELEASE)
    idx = np.sort(rng.choice(rel.n_traces, size=int(n_traces), replace=False))
    return dataclasses.replace(simulation, release=rel.take(idx))


def evaluate_defenses(simulation, defenses=DEFAULT_DEFENSES, *, attack_config=None, infer_params=None,
                      days=None, progress: bool = True, sample_traces: int | None = None) -> tuple:
    """Evaluate several (name, params) defenses; returns tidy (privacy, utility) tables
    with a ``defense`` and ``params`` column on every row.

    ``sample_traces`` evaluates every defense on the same seeded random sample of that
    many pseudonyms (faster; wider intervals; ``n`` on each row says how many)."""
    import json

    from tqdm.auto import tqdm

    simulation = sample_release(simulation, sample_traces, simulation.scenario.seed)
    priv, util = [], []
    for name, params in tqdm(list(defenses), desc="defenses", disable=not progress):
        release_free_memory()  # the previous defense's working memory, before this one's
        p, u, _ = evaluate_defense(simulation, name, params, attack_config=attack_config,
                                   infer_params=infer_params, days=days)
        label = json.dumps(params, sort_keys=True)
        for df, acc in ((p, priv), (u, util)):
            df = df.copy()
            df.insert(0, "params", label)
            df.insert(0, "defense", name)
            acc.append(df)
    return pd.concat(priv, ignore_index=True), pd.concat(util, ignore_index=True)


