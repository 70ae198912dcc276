"""The attacker ladder against a data holder's own register, on square grid cells
(``reidsim audit --register``; DESIGN.md §6a, §8a).

Real data have no census zones, so the zones are the cells of a square grid of
``cell_m`` metres (:class:`sim.world.grid.GridZones`): :func:`grid_register` gives every
register person the cell of their listed home and of their listed employer
(``home_building_id``, ``work_building_id``; -1 = no employer listed), and the ladder of
:mod:`sim.attacks.ladder` runs *unchanged* at level ``"building"`` with
``world=GridZones(cell_m)``: the rungs ``exact``, ``hierarchical``, ``home_adults``
(only when the register has ages) and ``ranked`` (cumulative, as there).

Per user (one row of the inferred table; a user without an inferred home has no
candidate), :func:`register_outcomes` gives

* what the attacker sees, needing no truth — set rungs: ``single_candidate`` (the
  candidate set is exactly one person), ``at_most_5`` (1 <= set size <= 5); every rung:
  ``no_candidate`` (empty set or list);
* with the owner of each user known (the register's ``user`` column, ground truth):
  ``named`` (the set is the owner alone; ranked: the first candidate is the owner),
  ``wrong`` (one person who is not the owner; ranked: a first candidate who is not), and
  ``narrowed_5`` (at most 5 persons, owner among them; ranked: owner in the first 5),
  from :func:`sim.attacks.ladder.owner_positions` and :func:`~sim.attacks.ladder.outcomes`.
  A user whose owner is not in the register ("not listed") can never be named.

Limits of the grid: a home near a cell edge falls in the neighbour cell, whose residents
are not its owner's neighbours; the ``ranked`` rung falls back on distances to the
listed homes, so it is the rung least hurt by edges.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from sim.core import stats
from sim.core.errors import InputError
from sim.attacks._common import register_column, require_columns
from sim.attacks.ladder import RUNG_NAMES, RUNGS, check_rungs, ladder_sets, outcomes, owner_positions
from sim.attacks.linkage import INFERRED_COLUMNS
from sim.world.grid import GridZones

__all__ = ["grid_register", "register_rungs", "register_outcomes", "register_ladder", "owners_from_register",
           "ATTACKER_METRICS", "TRUTH_METRICS", "REGISTER_LADDER_COLUMNS", "NARROW_K", "GRID_LEVEL"]

#: the ladder level the grid cells stand for (any level would do: the grid has one)
GRID_LEVEL = "building"
#: the k of ``at_most_5`` and ``narrowed_5``
NARROW_K = 5
#: metrics needing no truth (``single_candidate`` and ``at_most_5`` for set rungs only)
ATTACKER_METRICS = ("single_candidate", "at_most_5", "no_candidate")
#: metrics scored against the register's ``user`` column
TRUTH_METRICS = ("named", "wrong", "narrowed_5")
REGISTER_LADDER_COLUMNS = ["rung", "cell_m", "metric", "value", "ci_low", "ci_high", "n"]


def grid_register(register: pd.DataFrame, cell_m: float) -> pd.DataFrame:
    """A copy of ``register`` with ``home_building_id`` and ``work_building_id`` set to the
    :class:`~sim.world.grid.GridZones` cell codes of ``home_x_m, home_y_m`` and
    ``work_x_m, work_y_m`` (-1 where no employer is listed: NaN work, or no work columns)."""
    require_columns(register, ["person_id", "home_x_m", "home_y_m"], "register",
                    "Read it with sim.release.register_file.read_register.")
    g = GridZones(cell_m)
    out = register.copy()
    out[register_column("home", GRID_LEVEL)] = g.locate(register["home_x_m"], register["home_y_m"], GRID_LEVEL)
    if {"work_x_m", "work_y_m"} <= set(register.columns):
        out[register_column("work", GRID_LEVEL)] = g.locate(register["work_x_m"], register["work_y_m"], GRID_LEVEL)
    else:
        out[register_column("work", GRID_LEVEL)] = np.full(len(register), -1, dtype=np.int64)
    return out


def register_rungs(register: pd.DataFrame, rungs=None) -> tuple:
    """The rungs to run (ladder order): all of :data:`~sim.attacks.ladder.RUNG_NAMES`
    (or ``rungs``), without ``home_adults`` when the register has no ``age`` column."""
    rungs = check_rungs(RUNG_NAMES if rungs is None else rungs)
    if "age" not in register.columns:
        rungs = tuple(r for r in rungs if r != "home_adults")
    return rungs


def owners_from_register(register: pd.DataFrame, users) -> np.ndarray:
    """person_id of the owner of each user id in ``users`` by the register's ``user``
    column (compared as stripped strings), -1 when no register row names that user."""
    require_columns(register, ["person_id", "user"], "register", "Name the user-id column (--register-user).")
    u = register["user"].astype("string")
    has = u.notna().to_numpy()
    truth = pd.Series(register["person_id"].to_numpy(dtype=np.int64)[has],
                      index=pd.Index(u[has].to_numpy(dtype=object)))
    if truth.index.duplicated().any():
        raise InputError("the register's user column names a user on more than one row; a phone has one owner.")
    q = pd.Index(pd.Series(np.asarray(users, dtype=object)).astype("string").str.strip().to_numpy(dtype=object))
    pos = truth.index.get_indexer(q) if len(truth) else np.full(len(q), -1)
    return np.where(pos >= 0, truth.to_numpy()[np.maximum(pos, 0)] if len(truth) else -1, -1).astype(np.int64)


def register_outcomes(inferred: pd.DataFrame, register: pd.DataFrame, cell_m: float, *, owner=None,
                      rungs=None) -> dict:
    """Per rung, per metric: a boolean array over the rows of ``inferred`` (see the module
    docstring); the truth metrics only when ``owner`` (person_id per row, -1 = not listed)
    is given.

    ``inferred`` has one row per user (pseudonym, home_x_m, home_y_m, work_x_m, work_y_m;
    NaN unknown); ``register`` is a checked register frame
    (:func:`sim.release.register_file.check_register_frame`).
    """
    require_columns(inferred, INFERRED_COLUMNS, "inferred table", "Pass the output of sim.infer.staypoints.infer_auto.")
    rungs = register_rungs(register, rungs)
    reg = grid_register(register, cell_m)
    sets = ladder_sets(inferred, reg, GridZones(cell_m), rungs=rungs, level=GRID_LEVEL, k_max=NARROW_K)
    pos = None
    if owner is not None:
        owner = np.asarray(owner, dtype=np.int64)
        if len(owner) != len(inferred):
            raise InputError(f"owner has {len(owner)} entries but the inferred table {len(inferred)} rows.")
        pos = owner_positions(sets, owner)
    out = {}
    for r in rungs:
        size = sets.size[r]
        m = {}
        if RUNGS[r].kind == "set":
            m["single_candidate"] = size == 1
            m["at_most_5"] = (size >= 1) & (size <= NARROW_K)
        m["no_candidate"] = size == 0
        if pos is not None:
            s, owner_k = pos[r]
            named, wrong, _ = outcomes(RUNGS[r].kind, s, owner_k)
            m.update(named=named, wrong=wrong, narrowed_5=owner_k <= NARROW_K)
        out[r] = m
    return out


def register_ladder(inferred: pd.DataFrame, register: pd.DataFrame, cells_m, *, owner=None, rungs=None,
                    ci: str = "wilson") -> pd.DataFrame:
    """:func:`register_outcomes` at every cell size of ``cells_m`` as shares of the users
    (rows of ``inferred``): :data:`REGISTER_LADDER_COLUMNS`, with a 95 % interval
    (:func:`sim.core.stats.rate`) and ``n`` = the number of users."""
    rows = []
    for c in cells_m:
        for r, metrics in register_outcomes(inferred, register, c, owner=owner, rungs=rungs).items():
            for metric, v in metrics.items():
                rows.append(dict(rung=r, cell_m=float(c), metric=metric, **stats.rate(v, method=ci)))
    return pd.DataFrame(rows, columns=REGISTER_LADDER_COLUMNS)
