"""How the headline moves across each assumption's plausible range.

For every ledger row (:data:`sim.core.ledger.LEDGER`) whose ``method`` this module knows,
the headline is re-measured at the range's low and high end, everything else fixed:

* ``register`` — the register is rebuilt with the value from the same persons and seed
  (:func:`sim.population.make_register`); inference is reused; only the linkage re-runs.
* ``prefix`` — the headline at the first ``low`` days and at the longest window the
  release holds (a window longer than the release cannot be measured; the row says which
  window was used).
* ``thinning`` — pings are thinned to ``low / value`` of the rate with the seeded
  ``subsample`` defense and inference re-runs; the higher end cannot be reached by
  thinning and is reported as not computed.

``measure(release, inferred_by_day, register, pseudonyms) -> DataFrame`` gives the
headline rows (metric, value, ci_low, ci_high, n) for the last window of
``inferred_by_day``; the main job passes the strongest attacker rung's figures.
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pandas as pd

from sim.core.ledger import LEDGER, scenario_value
from sim.core.memory import release_free_memory
from sim.population import make_register
from sim.release.defenses import apply_defense
from sim.pipeline.evaluate import broker_context, infer_by_day

log = logging.getLogger(__name__)

COLUMNS = ["path", "setting", "param_value", "window_days", "metric", "value", "ci_low", "ci_high", "n",
           "method", "note"]


def _with_field(scenario, path: str, value):
    section, field = path.split(".", 1)
    return dataclasses.replace(getattr(scenario, section), **{field: value})


def sensitivity(simulation, inferred_by_day: dict, measure, *, ledger=LEDGER, progress: bool = False,
                infer_params=None) -> pd.DataFrame:
    """The headline at the value and at each end of every sweepable ledger range.

    Returns a tidy table (:data:`COLUMNS`): one row per (parameter, setting in "low",
    "value", "high", metric); ``note`` says why a setting was not computed.
    """
    from tqdm.auto import tqdm

    scn = simulation.scenario
    days = max(inferred_by_day)
    base = measure(simulation.release, inferred_by_day, simulation.register, simulation.pseudonyms)
    rows = []

    def add(a, setting, value, window, res, note=""):
        if res is None:
            rows.append({"path": a.path, "setting": setting, "param_value": value, "window_days": window,
                         "metric": None, "value": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n": 0,
                         "method": a.method, "note": note})
            return
        for _, r in res.iterrows():
            rows.append({"path": a.path, "setting": setting, "param_value": value, "window_days": window,
                         "metric": r["metric"], "value": r["value"], "ci_low": r["ci_low"],
                         "ci_high": r["ci_high"], "n": r["n"], "method": a.method, "note": note})

    todo = [a for a in ledger if a.method in ("register", "prefix", "thinning")]
    for a in tqdm(todo, desc="sensitivity", disable=not progress):
        value = scenario_value(scn, a.path)
        add(a, "value", value, days, base)
        for setting, v in (("low", a.low), ("high", a.high)):
            # what the previous setting freed (a rebuilt register, the ladder's register
            # index: 1-2 GB at 10 M residents) goes back before the next one is built
            release_free_memory()
            add(a, setting, v, *_at_setting(a, v, value, simulation, inferred_by_day, measure, infer_params))
    return pd.DataFrame(rows, columns=COLUMNS)


def _at_setting(a, v, value, simulation, inferred_by_day: dict, measure, infer_params=None) -> tuple:
    """``(window days, headline rows or None, note)`` of assumption ``a`` at value ``v``
    (its scenario value: ``value``).  A function of its own, so that what a setting
    builds (a register of every listed resident, a thinned release) is freed when it
    returns, not kept while the next setting builds its own."""
    scn = simulation.scenario
    days = max(inferred_by_day)
    if a.method == "register":
        cfg = _with_field(scn, a.path, type(value)(v) if value is not None else v)
        reg = make_register(simulation.persons, simulation.world, cfg, scn.seed, names=False)
        return days, measure(simulation.release, inferred_by_day, reg, simulation.pseudonyms), ""
    if a.method == "prefix":
        want = int(v)
        have = sorted(d for d in inferred_by_day if d <= want) or [min(inferred_by_day)]
        d = have[-1]
        sub = {k: t for k, t in inferred_by_day.items() if k <= d}
        note = "" if d == want else f"the release holds {max(inferred_by_day)} days; measured at {d}"
        return d, measure(simulation.release.prefix(d), sub, simulation.register, simulation.pseudonyms), note
    # thinning
    if value is None or not v < value:
        return days, None, "thinning can only lower the ping rate"
    ctx = broker_context(simulation)
    rel, _ = apply_defense("subsample", simulation.release, ctx, fraction=float(v) / float(value))
    ibd = infer_by_day(rel, days=(days,), **(infer_params or {}))
    return days, measure(rel, ibd, simulation.register, simulation.pseudonyms), \
        f"pings thinned to {float(v) / float(value):.3g} of the rate"
