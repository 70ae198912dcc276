"""Audit a real location release: re-identification risk without a register, aggregate only.

:func:`audit` takes a :class:`~sim.core.traces.Traces` read from real data
(:func:`sim.release.readers.read_pings`) and returns tables of *shares and counts*;
:func:`run_audit` reads a file or frame, audits it and writes the report
(:func:`sim.report.audit.write_audit`).  Nothing returned or written holds an
individual's coordinates, identifier or inferred home: per-user values are computed in
memory and only their shares, counts and k-thresholded density grids leave this module.

What is measured (each a share of users, with a 95 % Wilson interval and its ``n``)
--------------------------------------------------------------------------------
* ``unicity`` — de Montjoye et al. 2013 (:func:`sim.attacks.unicity.unicity_attack`):
  p random (cell of v metres, time bin of h hours) points of a user's trace; unique if
  no other user's trace holds all p.
* ``top_n_cells`` — Zang & Bolot 2011 on a square grid instead of zones
  (:func:`grid_top_cells`): the set of a user's N most visited cells of ``cell_m``
  metres, ranked by distinct local days with a fix there (ties: more fixes, then the
  smaller cell number); unique if no other user has the same set.  Users with fewer than
  N cells are left out (``n_short``).
* ``known_points`` — :func:`sim.attacks.known_points.known_points_attack`: m noisy
  sightings (Gaussian noise of sigma metres per axis, +-10 min) drawn from the user's own
  fixes single the user out (exactly one matching trace, and it is theirs).
* ``home_cell`` / ``home_work_pair`` — home and work inferred per user
  (:func:`sim.infer.staypoints.infer_auto`: stay points for dense logs, DBSCAN on pings
  otherwise), snapped to cells of ``cell_m`` metres; unique if no other user of the
  dataset has the same home cell / (home cell, work cell) pair.  ``n`` counts users with
  a known home (and work).
* ``skmob_<attack>`` — every scikit-mobility privacy attack
  (:data:`sim.attacks.skmob.ATTACKS`, documented semantics) with ``knowledge_length =
  skmob_k``, on *visit records*: one record per stay point (dense data) or per run of
  consecutive pings in one cell (sparse data), located by its ``skmob_cell_m`` grid cell
  and timed at its start (local time).  Reported: the share of users with risk 1
  (``risk_1``) and the mean risk (``mean_risk``, bootstrap interval).  When the users'
  background-knowledge instances exceed ``skmob_max_instances``, a seeded random subset
  of users is assessed (still against everyone: the longest prefix of a seeded random
  order that fits; a user whose instances alone exceed it is skipped); ``n`` says how
  many were assessed and ``n_short`` how many were not.

Risk against days observed (``risk_by_days``): the same measures on the first d local
days of *each user's own* trace (from the local midnight before their first fix), for
d in ``days``.  Defenses (``defenses``): applied with
:func:`sim.release.defenses.apply_defenses` before auditing; the headline measures are
reported before and after, with the share of fixes and users kept.

Density grid (``density``): distinct users per cell of ``density_cell_m`` metres; cells
with fewer than ``k`` users are suppressed (not returned); cell numbers are relative to
an arbitrary origin, never coordinates.

Linking to a register (``register=``, :mod:`sim.attacks.register_ladder`)
-------------------------------------------------------------------------
With the data holder's own register of people (:func:`sim.release.register_file.read_register`:
listed home, optionally employer address, age and the ping-file user id of a person),
the attacker ladder (exact, hierarchical, home_adults when ages are given, ranked) links
each user's inferred home and work to the register on square grid cells of every size in
``register_cells_m`` (:class:`sim.world.grid.GridZones`).  Rows ``register_<rung>`` of
the ``uniqueness`` table, setting ``"<cell> cells"``: ``single_candidate``,
``at_most_5`` and ``no_candidate`` (what the attacker sees; single/at_most_5 for the set
rungs), and, when the register has a ``user`` column, ``named``, ``wrong`` and
``narrowed_5`` scored against it.  ``n`` counts every user of the traces (a user with
no inferred home has no candidate; one whose id no register row names can never be
named).  The hierarchical rung at 250 m joins the headline measures (``risk_by_days``,
``defenses``): ``named`` with truth, ``single_candidate`` without.  After a defense that
changes the identifiers each new pseudonym is scored against the owner of the input
user it came from (``apply_defenses``' mapping), per pseudonym.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, fields

import numpy as np
import pandas as pd

from sim.core.constants import DAY_S
from sim.core.errors import ConfigError, InputError
from sim.core import stats
from sim.core.rng import stable_uid64
from sim.core.traces import Traces
from sim.attacks import skmob as S
from sim.attacks.known_points import known_points_attack
from sim.attacks._common import aligned_rows
from sim.attacks.ladder import RUNG_NAMES
from sim.attacks.register_ladder import owners_from_register, register_ladder, register_rungs
from sim.attacks.topn import signature_set_sizes
from sim.attacks.unicity import unicity_attack
from sim.infer.staypoints import METHODS, StayParams, choose_method, infer_auto, staypoint_table
from sim.release.defenses import REGISTRY, BrokerContext, apply_defenses, parse_defense_spec
from sim.release.register_file import REGISTER_ROLES, check_register_frame, peek_register, read_register

log = logging.getLogger(__name__)

__all__ = ["AuditConfig", "audit", "run_audit", "parse_defense", "grid_top_cells", "UNIQUENESS_COLUMNS",
           "HEADLINE", "NO_TRUTH_DEFENSES", "REGISTER_HEADLINE"]

#: columns of the ``uniqueness`` and ``risk_by_days`` tables (the latter adds ``days``)
UNIQUENESS_COLUMNS = ["attack", "setting", "p", "cell_m", "h_h", "noise_m", "metric", "value", "ci_low",
                      "ci_high", "n", "n_short"]
#: defenses that need what an auditor of real data lacks (true homes)
NO_TRUTH_DEFENSES = {"home_suppression": "each device's true home"}


@dataclass(frozen=True)
class AuditConfig:
    """Settings of :func:`audit` (defaults in brackets in the module docstring)."""

    k: int = 5
    seed: int = 0
    method: str = "auto"
    unicity_p: tuple = (1, 2, 3, 4)
    unicity_v_m: tuple = (100.0, 500.0, 2000.0)
    unicity_h_h: tuple = (1.0, 24.0)
    topn_n: tuple = (1, 2, 3)
    topn_cells_m: tuple = (500.0, 2000.0)
    known_m: tuple = (1, 2, 3)
    known_sigma_m: tuple = (0.0, 100.0)
    known_jitter_s: float = 600.0
    homework_cells_m: tuple = (100.0, 500.0, 2000.0)
    register_cells_m: tuple = (100.0, 250.0, 500.0)
    skmob_k: int = 2
    skmob_cell_m: float = 500.0
    skmob_max_instances: int = 2_000_000
    days: tuple | None = None
    density_cell_m: float = 1000.0
    n_sample: int | None = 2000
    inference: dict = field(default_factory=dict)

    def validated(self) -> "AuditConfig":
        if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)) or self.k < 1:
            raise ConfigError(f"k must be an integer >= 1 (cells with fewer than k users are suppressed), "
                              f"got {self.k!r}; the default is 5.")
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {METHODS}, got {self.method!r}.")
        StayParams.split(**dict(self.inference))  # validates names and values
        for name in ("unicity_v_m", "topn_cells_m", "homework_cells_m", "register_cells_m"):
            v = getattr(self, name)
            if not v or any(not (isinstance(x, (int, float)) and math.isfinite(x) and x > 0) for x in v):
                raise ConfigError(f"{name} must be a non-empty list of cell sizes in metres > 0, got {v!r}.")
        if self.days is not None and (not self.days or any(int(d) < 1 for d in self.days)):
            raise ConfigError(f"days must be whole numbers of days >= 1, got {self.days!r}.")
        return self

    def as_dict(self) -> dict:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}


#: the measures shown before/after defenses and against days observed
HEADLINE = (
    ("unicity", "p=4, 500 m, 1 h"),
    ("top_n_cells", "N=2, 500 m cells"),
    ("known_points", "m=2, noise 100 m"),
    ("home_cell", "500 m cells"),
    ("home_work_pair", "500 m cells"),
    ("skmob_location", "k=2, 500 m cells"),
)
#: the register measure added to the headline when a register is given: (rung, cell_m)
REGISTER_HEADLINE = ("hierarchical", 250.0)


# ============================================================================ defenses
def parse_defense(spec: str) -> tuple[str, dict]:
    """``"grid:cell_m=500"`` -> ``("grid", {"cell_m": 500})``
    (:func:`sim.release.defenses.parse_defense_spec`), refusing the defenses an audit of
    real data cannot apply (:func:`check_audit_defense`)."""
    if isinstance(spec, str) and spec.strip():
        check_audit_defense(spec.strip().partition(":")[0].strip())
    return parse_defense_spec(spec)


def check_audit_defense(name: str) -> None:
    """Refuse a defense an audit of real data cannot apply (ConfigError saying why)."""
    if name not in REGISTRY:
        raise ConfigError(f"unknown defense {name!r}; defenses an audit can apply: "
                          f"{sorted(n for n in REGISTRY if _audit_ok(n))}.")
    if name in NO_TRUTH_DEFENSES:
        raise ConfigError(
            f"defense {name!r} needs {NO_TRUTH_DEFENSES[name]}, which an audit of real data does not have "
            "(an inferred home would test the attacker's guess, not the broker's safeguard); use "
            "night_suppression:duration_h=8 (drops night-time fixes) or grid:cell_m=500 instead.")
    spec = REGISTRY[name]
    if spec.needs_world or spec.output != "traces":
        raise ConfigError(
            f"defense {name!r} needs a zone geography (a reidsim World) or publishes a table instead of "
            f"traces; an audit has neither. Use one of {sorted(n for n in REGISTRY if _audit_ok(n))} "
            "(e.g. grid:cell_m=500 in place of zone_centroid).")


def _audit_ok(name) -> bool:
    s = REGISTRY[name]
    return name not in NO_TRUTH_DEFENSES and not s.needs_world and s.output == "traces"


def _apply_defenses(traces: Traces, defenses, seed: int):
    steps = []
    for d in defenses:
        name, params = parse_defense(d) if isinstance(d, str) else (d[0], dict(d[1]))
        check_audit_defense(name)
        steps.append((name, params))
    if not steps:
        return traces, [], None
    ctx = BrokerContext(maid=np.asarray(traces.pseudonym, dtype=object).astype(str),
                        home_x_m=np.full(traces.n_traces, np.nan), home_y_m=np.full(traces.n_traces, np.nan),
                        seed=seed, world=None)
    out, mapping, _ = apply_defenses(traces, ctx, steps)
    return out, steps, mapping


# ============================================================================ helpers
def _row(attack, setting, metric, r, *, p=np.nan, cell_m=np.nan, h_h=np.nan, noise_m=np.nan, n_short=0):
    return dict(attack=attack, setting=setting, p=float(p), cell_m=float(cell_m), h_h=float(h_h),
                noise_m=float(noise_m), metric=metric, value=float(r["value"]), ci_low=float(r["ci_low"]),
                ci_high=float(r["ci_high"]), n=int(r["n"]), n_short=int(n_short))


def _cells(x, y, cell_m):
    return np.floor(np.asarray(x) / cell_m).astype(np.int64), np.floor(np.asarray(y) / cell_m).astype(np.int64)


def _cell_codes(x, y, cell_m) -> np.ndarray:
    ix, iy = _cells(x, y, cell_m)
    if len(ix) == 0:
        return np.zeros(0, dtype=np.int64)
    return pd.factorize(pd.MultiIndex.from_arrays([ix, iy]))[0].astype(np.int64)


def _m(v) -> str:
    return f"{v / 1000:g} km" if v >= 1000 else f"{v:g} m"


def grid_top_cells(traces: Traces, cell_m: float, n_max: int = 3):
    """Top-``n_max`` grid cells of every trace: ``(top, n_places)`` as
    :func:`sim.attacks.topn.top_locations` returns for zones (cell numbers, -1 padding).
    Cells are ranked by distinct local days with a fix (ties: more fixes, then the
    smaller cell number)."""
    nt = traces.n_traces
    top = np.full((nt, n_max), -1, dtype=np.int64)
    n_places = np.zeros(nt, dtype=np.int64)
    if traces.n_pings == 0:
        return top, n_places
    cell = _cell_codes(traces.x_m, traces.y_m, cell_m)
    tr = traces.trace_index()
    day = traces.day()
    n_cells = int(cell.max()) + 1
    pair = tr * np.int64(n_cells) + cell
    o = np.lexsort((day, pair))
    sp, sd = pair[o], day[o]
    new_pair = np.ones(len(sp), dtype=bool)
    new_pair[1:] = sp[1:] != sp[:-1]
    new_day = new_pair.copy()
    new_day[1:] |= sd[1:] != sd[:-1]
    pid = np.cumsum(new_pair) - 1
    upair = sp[new_pair]
    fixes = np.bincount(pid, minlength=len(upair))
    days = np.bincount(pid[new_day], minlength=len(upair))
    ptr, pcell = upair // n_cells, upair % n_cells
    order = np.lexsort((pcell, -fixes, -days, ptr))
    ptr, pcell = ptr[order], pcell[order]
    first = np.searchsorted(ptr, np.arange(nt), side="left")
    rank = np.arange(len(ptr)) - first[ptr]
    keep = rank < n_max
    top[ptr[keep], rank[keep]] = pcell[keep]
    n_places[:] = np.bincount(ptr, minlength=nt)
    return top, n_places


def _user_prefix(traces: Traces, days: int) -> Traces:
    """The first ``days`` local days of each user's own trace (empty traces kept)."""
    has = traces.lengths > 0
    first = np.zeros(traces.n_traces, dtype=np.int64)
    first[has] = traces.t_s[traces.offsets[:-1][has]]
    off = int(traces.utc_offset_s)
    local = first + off
    start_u = local - np.mod(local, DAY_S) - off
    end = np.repeat(start_u + int(days) * DAY_S, traces.lengths)
    return traces.select_pings(traces.t_s < end, drop_empty=False)


def default_days(traces: Traces) -> tuple:
    """Days observed to report: 1, 2, 3, 5, 7, 14, 21, 28, then every 28, up to the
    longest per-user span (at most 20 values)."""
    has = traces.lengths > 0
    if not has.any():
        return (1,)
    off = int(traces.utc_offset_s)
    first = traces.t_s[traces.offsets[:-1][has]] + off
    last = traces.t_s[traces.offsets[1:][has] - 1] + off
    span = int(np.max(last // DAY_S - first // DAY_S)) + 1
    cand = [1, 2, 3, 5, 7, 14, 21, 28] + list(range(56, 10**6, 28))
    out = [d for d in cand if d < span][:19] + [span]
    return tuple(sorted(set(out)))


# ============================================================================ measures
def _unicity_rows(traces, cfg, p_values=None, v_values=None, h_values=None):
    t = unicity_attack(traces, p_values=p_values or cfg.unicity_p, v_values_m=v_values or cfg.unicity_v_m,
                       h_values_h=h_values or cfg.unicity_h_h, n_sample=cfg.n_sample, seed=cfg.seed)
    return [_row("unicity", f"p={int(r.p)}, {_m(r.v_m)}, {r.h_h:g} h", "unique", r._asdict(), p=r.p,
                 cell_m=r.v_m, h_h=r.h_h, n_short=r.n_short) for r in t.itertuples(index=False)]


def _topn_rows(traces, cfg, n_values=None, cells=None):
    rows = []
    ns = list(n_values or cfg.topn_n)
    for c in cells or cfg.topn_cells_m:
        top, n_places = grid_top_cells(traces, c, max(ns))
        for n in ns:
            size = signature_set_sizes(top, n_places, n)
            has = size > 0
            r = stats.rate(size[has] == 1)
            rows.append(_row("top_n_cells", f"N={n}, {_m(c)} cells", "unique", r, p=n, cell_m=c,
                             n_short=int((~has).sum())))
    return rows


def _known_rows(traces, cfg, m_values=None, sigmas=None):
    if traces.n_pings == 0:
        return []
    t = known_points_attack(traces, m_values=m_values or cfg.known_m, sigma_values_m=sigmas or cfg.known_sigma_m,
                            jitter_s=cfg.known_jitter_s, n_targets=cfg.n_sample, seed=cfg.seed)
    t = t[t["metric"] == "success"]
    return [_row("known_points", f"m={int(r.m)}, noise {r.sigma_m:g} m", "success", r._asdict(), p=r.m,
                 noise_m=r.sigma_m, n_short=r.n_short) for r in t.itertuples(index=False)]


def _home_rows(inferred, cells):
    rows = []
    hx, hy = inferred["home_x_m"].to_numpy(float), inferred["home_y_m"].to_numpy(float)
    wx, wy = inferred["work_x_m"].to_numpy(float), inferred["work_y_m"].to_numpy(float)
    has_h = np.isfinite(hx) & np.isfinite(hy)
    has_hw = has_h & np.isfinite(wx) & np.isfinite(wy)
    for c in cells:
        for attack, mask, cols in (("home_cell", has_h, (hx, hy)), ("home_work_pair", has_hw, (hx, hy, wx, wy))):
            if mask.any():
                keys = pd.MultiIndex.from_arrays([np.floor(a[mask] / c).astype(np.int64) for a in cols])
                codes = pd.factorize(keys)[0]
                size = np.bincount(codes)[codes]
                r = stats.rate(size == 1)
            else:
                r = stats.rate(np.zeros(0, dtype=bool))
            rows.append(_row(attack, f"{_m(c)} cells", "unique", r, cell_m=c, n_short=int((~mask).sum())))
    return rows


def _visit_records(traces: Traces, method: str, cell_m: float, inference: dict) -> pd.DataFrame:
    """skmob-style records (uid = trace number, datetime local, lat/lng = cell numbers)."""
    if method == "staypoints":
        st = staypoint_table(traces, **{k: v for k, v in inference.items()
                                        if k in StayParams.names() or k == "max_accuracy_m"})
        uid = st["trace"].to_numpy()
        x, y, t = st["x_m"].to_numpy(), st["y_m"].to_numpy(), st["t_start_s"].to_numpy()
    else:
        ix, iy = _cells(traces.x_m, traces.y_m, cell_m)
        tr = traces.trace_index()
        start = np.ones(traces.n_pings, dtype=bool)
        if traces.n_pings > 1:
            start[1:] = (tr[1:] != tr[:-1]) | (ix[1:] != ix[:-1]) | (iy[1:] != iy[:-1])
        uid, x, y, t = tr[start], traces.x_m[start], traces.y_m[start], traces.t_s[start]
    ix, iy = _cells(x, y, cell_m)
    return pd.DataFrame({"uid": uid.astype(np.int64),
                         "datetime": pd.to_datetime(np.asarray(t, dtype=np.int64) + int(traces.utc_offset_s),
                                                    unit="s"),
                         "lat": iy.astype(np.float64), "lng": ix.astype(np.float64)})


def _skmob_targets(rec: pd.DataFrame, attack: str, k: int, budget: int, seed: int):
    """All users, or a seeded random subset whose instances fit ``budget`` (None = all)."""
    if attack == "home_work":
        return None
    if attack in S.VECTOR_ATTACKS:
        n = rec.drop_duplicates(["uid", "lat", "lng"]).groupby("uid").size()
    else:
        n = rec.groupby("uid").size()
    cnt = np.array([float(math.comb(int(v), min(k, int(v)))) for v in n.to_numpy()])
    if cnt.sum() <= budget:
        return None
    # the longest prefix of a seeded random order that fits (an unbiased random subset);
    # a user whose instances alone exceed the budget is skipped
    order = np.argsort(stable_uid64(np.array([f"{seed}:{u}" for u in n.index], dtype=object)), kind="stable")
    chosen, total = [], 0.0
    for i in order:
        if cnt[i] > budget:
            continue
        if total + cnt[i] > budget:
            break
        chosen.append(n.index[i])
        total += cnt[i]
    return sorted(chosen)


def _skmob_rows(traces, cfg, method, attacks=None):
    rows = []
    if traces.n_pings == 0:
        return rows
    rec = _visit_records(traces, method, cfg.skmob_cell_m, cfg.inference)
    if rec.empty:
        return rows
    for attack in attacks or S.ATTACKS:
        targets = _skmob_targets(rec, attack, cfg.skmob_k, cfg.skmob_max_instances, cfg.seed)
        if targets is not None and not targets:
            log.warning("skmob %s: no user fits max_instances=%d; skipped", attack, cfg.skmob_max_instances)
            continue
        r = S.privacy_risk(rec, attack, knowledge_length=cfg.skmob_k, time_precision="Hour", targets=targets,
                           max_instances=None)
        risk = r["risk"].to_numpy(float)
        setting = f"k={cfg.skmob_k}, {_m(cfg.skmob_cell_m)} cells" if attack != "home_work" else \
            f"{_m(cfg.skmob_cell_m)} cells"
        left_out = int(rec["uid"].nunique() - len(risk))  # not assessed (instance budget)
        rows.append(_row(f"skmob_{attack}", setting, "risk_1", stats.rate(risk >= 1.0), p=cfg.skmob_k,
                         cell_m=cfg.skmob_cell_m, n_short=left_out))
        rows.append(_row(f"skmob_{attack}", setting, "mean_risk",
                         stats.summary_ci(risk, statistic="mean", seed=cfg.seed, tags=(len(rows),)),
                         p=cfg.skmob_k, cell_m=cfg.skmob_cell_m, n_short=left_out))
    return rows


# ============================================================================ register
@dataclass(frozen=True)
class _RegisterLink:
    """The register an audit links to: the checked frame (person_id, home/work metres,
    age, user), whether it carries truth (a ``user`` column) and, after a defense that
    changed the identifiers, each new pseudonym's input user id (``source``)."""

    frame: pd.DataFrame
    truth: bool
    source: pd.Series | None = None

    def owners(self, pseud, defended: bool):
        """person_id of the owner of each pseudonym (-1 not listed), or None without truth."""
        if not self.truth:
            return None
        ids = np.asarray(pseud, dtype=object)
        if defended and self.source is not None:
            ids = self.source.reindex(pd.Index(ids)).to_numpy(dtype=object)
        return owners_from_register(self.frame, ids)


def _users_table(traces: Traces, inferred: pd.DataFrame) -> pd.DataFrame:
    """The inferred table with one row per user with a fix (NaN places where none)."""
    pseud = np.asarray(traces.pseudonym, dtype=object)[traces.lengths > 0]
    cols = ["home_x_m", "home_y_m", "work_x_m", "work_y_m"]
    return aligned_rows(inferred[["pseudonym", *cols]], pseud).astype({c: np.float64 for c in cols})


def _register_rows(traces, inferred, link: _RegisterLink, cells, *, defended: bool, rungs=None, keep=None):
    """``register_<rung>`` rows of the uniqueness table (module docstring)."""
    users = _users_table(traces, inferred)
    owner = link.owners(users["pseudonym"].to_numpy(dtype=object), defended)
    tab = register_ladder(users, link.frame, cells, owner=owner, rungs=rungs)
    rows = []
    for r in tab.itertuples(index=False):
        if keep is not None and (r.rung, r.metric) not in keep:
            continue
        rows.append(_row(f"register_{r.rung}", f"{_m(r.cell_m)} cells", r.metric, r._asdict(), cell_m=r.cell_m))
    return rows


def _register_headline_rows(traces, inferred, link, defended):
    rung, cell = REGISTER_HEADLINE
    upto = RUNG_NAMES[:RUNG_NAMES.index(rung) + 1]  # the cumulative ladder: earlier rungs shape the set
    metric = "named" if link.truth else "single_candidate"
    return _register_rows(traces, inferred, link, (cell,), defended=defended, rungs=upto, keep={(rung, metric)})


def _register_info(link: _RegisterLink, traces: Traces, cells, register_counts, dropped_no_home) -> dict:
    """info["register"]: counts and shares only (no name, id or position)."""
    users = np.asarray(traces.pseudonym, dtype=object)[traces.lengths > 0]
    n_users = len(users)
    f = link.frame
    out = {"persons": int(len(f)), "with_work": int(np.isfinite(f["work_x_m"].to_numpy(float)).sum()),
           "with_age": int(f["age"].notna().sum()) if "age" in f.columns else 0,
           "rows_without_home_dropped": int(dropped_no_home), "truth": bool(link.truth),
           "rungs": list(register_rungs(f)), "cells_m": [float(c) for c in cells], "users": int(n_users)}
    out["with_work_share"] = out["with_work"] / out["persons"] if out["persons"] else None
    if link.truth:
        owner = link.owners(users, True)
        listed = int((owner >= 0).sum())
        out.update(listed=listed, not_listed=int(n_users - listed),
                   listed_share=listed / n_users if n_users else None,
                   users_given=int(f["user"].notna().sum()))
        out["scoring"] = ("per pseudonym: a defense changed the identifiers, and each new pseudonym is scored "
                          "against the owner of the input user it came from" if link.source is not None else
                          "per user")
    else:
        out["scoring"] = ("none: the register has no user column, so only what the attacker sees is reported "
                          "(single_candidate, at_most_5, no_candidate), not whether the candidate is right")
    if register_counts:
        out["reader"] = {k: register_counts.get(k) for k in (
            "rows_read", "rows_kept", "rows_dropped", "dropped", "bad_work", "with_work", "bad_age", "with_age",
            "users_given", "duplicate_user", "columns", "format")}
    return out


def _resolved_inference(overrides: dict) -> dict:
    """Every home/work and stay-point parameter in force (defaults + ``overrides``)."""
    sp, ip = StayParams.split(**dict(overrides))
    out = {**ip.as_dict(), **sp.as_dict()}
    out["work_weekdays"] = list(out["work_weekdays"])
    return out


def _inference_rows(inferred) -> list:
    n = len(inferred)
    has_h = inferred["home_x_m"].notna().to_numpy()
    has_w = inferred["work_x_m"].notna().to_numpy()
    rows = [dict(metric="home_known", **stats.rate(has_h)), dict(metric="work_known", **stats.rate(has_w)),
            dict(metric="home_and_work_known", **stats.rate(has_h & has_w))]
    nights = inferred.loc[has_h, "home_nights"].to_numpy(float)
    rows.append(dict(metric="median_home_nights", **stats.summary_ci(nights, statistic="median")))
    days = inferred.loc[has_w, "work_days"].to_numpy(float)
    rows.append(dict(metric="median_work_days", **stats.summary_ci(days, statistic="median")))
    rows.append(dict(metric="users", value=float(n), ci_low=np.nan, ci_high=np.nan, n=n))
    return rows


def _density(traces: Traces, cell_m: float, k: int):
    if traces.n_pings == 0:
        return pd.DataFrame(columns=["cell_m", "ix", "iy", "n_users"]), 0, 0
    ix, iy = _cells(traces.x_m, traces.y_m, cell_m)
    ox, oy = int(np.median(ix)), int(np.median(iy))
    tr = traces.trace_index()
    df = pd.DataFrame({"ix": ix - ox, "iy": iy - oy, "tr": tr}).drop_duplicates()
    g = df.groupby(["ix", "iy"]).size().rename("n_users").reset_index()
    shown = g[g["n_users"] >= k].copy()
    shown.insert(0, "cell_m", float(cell_m))
    return shown.reset_index(drop=True), int(len(g)), int(len(g) - len(shown))


# ============================================================================ the audit
def _measure(traces: Traces, cfg: AuditConfig, method: str, link: _RegisterLink | None = None,
             defended: bool = False):
    inferred, _ = infer_auto(traces, method, **cfg.inference)
    rows = []
    rows += _unicity_rows(traces, cfg)
    rows += _topn_rows(traces, cfg)
    rows += _known_rows(traces, cfg)
    rows += _home_rows(inferred, cfg.homework_cells_m)
    if link is not None:
        rows += _register_rows(traces, inferred, link, cfg.register_cells_m, defended=defended)
    rows += _skmob_rows(traces, cfg, method)
    return pd.DataFrame(rows, columns=UNIQUENESS_COLUMNS), inferred


def _headline_rows(traces, cfg, method, link: _RegisterLink | None = None, defended: bool = False) -> list:
    """The HEADLINE measures only (for days observed and defenses), and the register's
    :data:`REGISTER_HEADLINE` measure when ``link`` is given."""
    inferred, _ = infer_auto(traces, method, **cfg.inference)
    rows = _unicity_rows(traces, cfg, (4,), (500.0,), (1.0,))
    rows += _topn_rows(traces, cfg, (2,), (500.0,))
    rows += _known_rows(traces, cfg, (2,), (100.0,))
    rows += [r for r in _home_rows(inferred, (500.0,))]
    rows += [r for r in _skmob_rows(traces, cfg, method, ("location",)) if r["metric"] == "risk_1"]
    if link is not None:
        rows += _register_headline_rows(traces, inferred, link, defended)
    rows += [dict(attack="inference", setting="home known", p=np.nan, cell_m=np.nan, h_h=np.nan, noise_m=np.nan,
                  metric="home_known", **stats.rate(inferred["home_x_m"].notna().to_numpy()), n_short=0)]
    return rows


def audit(traces: Traces, *, defenses=(), counts: dict | None = None, register: pd.DataFrame | None = None,
          register_counts: dict | None = None, progress=None, **config) -> dict:
    """Audit ``traces`` (real data): a dict of aggregate tables.

    Parameters
    ----------
    traces : Traces
        From :func:`sim.release.readers.read_pings` (metres, local offset set).
    defenses : list of "name:param=value" strings or (name, params) pairs
        Applied in order before auditing (:func:`parse_defense`); defenses needing truth
        or a World are refused.
    counts : dict, optional
        The reader's counts, copied into the ``data`` table.
    register : DataFrame, optional
        The data holder's register, projected to ``traces.crs``
        (:func:`sim.release.register_file.read_register`: person_id, home_x_m, home_y_m,
        optionally work_x_m, work_y_m, age and user — the ping-file user id, ground
        truth); links users to it (module docstring, "Linking to a register").
    register_counts : dict, optional
        :func:`~sim.release.register_file.read_register`'s counts, copied into ``data``
        and ``info["register"]`` (counts only, no names).
    progress : callable(str), optional
        Called with a short message before each step.
    **config
        Fields of :class:`AuditConfig` (``k``, ``seed``, ``method``, ``days``, ``inference``, ...).

    Returns
    -------
    dict with DataFrames ``data`` (item, value), ``uniqueness`` and ``risk_by_days``
    (:data:`UNIQUENESS_COLUMNS`, the latter with ``days``), ``inference`` (metric,
    value, ci_low, ci_high, n), ``density`` (cell_m, ix, iy, n_users; cells with at
    least k users), ``defenses`` (attack, setting, metric, stage, value, ci_low,
    ci_high, n) and ``info`` (a JSON-able dict: settings, method, sampling statistics,
    timings; with a register ``info["register"]``: persons, with_work(_share), truth,
    rungs, users, listed / not_listed / listed_share with truth, scoring, reader counts).
    """
    unknown = sorted(set(config) - {f.name for f in fields(AuditConfig)})
    if unknown:
        raise ConfigError(f"unknown audit setting(s) {unknown}; allowed: {[f.name for f in fields(AuditConfig)]}.")
    cfg = AuditConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in config.items()}).validated()
    if not isinstance(traces, Traces):
        raise InputError(f"traces must be a sim.core.traces.Traces (from sim.release.readers.read_pings), got "
                         f"{type(traces).__name__}.")
    traces = traces.validate()
    if traces.n_pings == 0:
        raise InputError("the traces hold no fix; nothing to audit.")
    link, no_home = None, 0
    if register is not None:
        frame, no_home = check_register_frame(register)
        link = _RegisterLink(frame=frame, truth="user" in frame.columns)
    say = progress or (lambda msg: None)
    timings = {}
    t0 = time.perf_counter()
    original = traces
    defended, steps, mapping = _apply_defenses(traces, defenses, cfg.seed)
    if link is not None and mapping is not None:
        link = _RegisterLink(frame=link.frame, truth=link.truth,
                             source=mapping.set_index("pseudonym")["source_pseudonym"])
    method, samp = (cfg.method, {}) if cfg.method != "auto" else (None, None)
    m_auto, samp_auto = choose_method(original)
    if method is None:
        method, samp = m_auto, samp_auto
    else:
        samp = samp_auto
    timings["prepare"] = time.perf_counter() - t0

    say(f"measuring uniqueness ({method})")
    t = time.perf_counter()
    uniq, inferred = _measure(defended, cfg, method, link, defended=True)
    timings["uniqueness"] = time.perf_counter() - t

    say("risk against days observed")
    t = time.perf_counter()
    days = tuple(int(d) for d in (cfg.days or default_days(defended)))
    by_days = []
    for d in days:
        sub = _user_prefix(defended, d)
        for r in _headline_rows(sub, cfg, method, link, defended=True):
            by_days.append({"days": d, **r})
    risk_by_days = pd.DataFrame(by_days, columns=["days"] + UNIQUENESS_COLUMNS)
    timings["risk_by_days"] = time.perf_counter() - t

    defense_tab = pd.DataFrame(columns=["stage", "attack", "setting", "metric", "value", "ci_low", "ci_high", "n"])
    if steps:
        say("measuring the undefended data for comparison")
        t = time.perf_counter()
        rows = []
        for stage, tr_ in (("before", original), ("after", defended)):
            for r in _headline_rows(tr_, cfg, method, link, defended=stage == "after"):
                rows.append({"stage": stage, **{k: r[k] for k in ("attack", "setting", "metric", "value", "ci_low",
                                                                    "ci_high", "n")}})
            kept = dict(attack="data", ci_low=np.nan, ci_high=np.nan)
            rows.append({"stage": stage, **kept, "setting": "fixes", "metric": "count",
                         "value": float(tr_.n_pings), "n": tr_.n_pings})
            rows.append({"stage": stage, **kept, "setting": "users", "metric": "count",
                         "value": float(int(np.count_nonzero(tr_.lengths))), "n": int(np.count_nonzero(tr_.lengths))})
        defense_tab = pd.DataFrame(rows, columns=defense_tab.columns)
        timings["defenses"] = time.perf_counter() - t

    density, n_cells, n_suppressed = _density(defended, cfg.density_cell_m, cfg.k)
    inf_tab = pd.DataFrame(_inference_rows(inferred), columns=["metric", "value", "ci_low", "ci_high", "n"])

    has = defended.lengths > 0
    off = int(defended.utc_offset_s)
    first = defended.t_s[defended.offsets[:-1][has]] + off
    last = defended.t_s[defended.offsets[1:][has] - 1] + off
    span = last // DAY_S - first // DAY_S + 1
    tr = defended.trace_index()
    dkey = np.unique(tr * np.int64(4 * 10**7) + (defended.day() - defended.day().min()))
    active = np.bincount(dkey // np.int64(4 * 10**7), minlength=defended.n_traces)[has]
    data_items = []
    if counts:
        data_items += [("rows_read", counts.get("rows_read")), ("rows_kept", counts.get("rows_kept"))]
        data_items += [(f"dropped_{k}", v) for k, v in (counts.get("dropped") or {}).items()]
        data_items += [("accuracy_unknown", counts.get("accuracy_unknown"))]
    data_items += [
        ("users", int(has.sum())), ("fixes", int(defended.n_pings)),
        ("median_fixes_per_user", float(np.median(defended.lengths[has]))),
        ("median_active_days_per_user", float(np.median(active))),
        ("median_span_days_per_user", float(np.median(span))),
        ("median_interval_s", samp.get("median_interval_s")),
        ("median_fixes_per_active_day", samp.get("median_fixes_per_day")),
        ("density_cells_total", n_cells), ("density_cells_suppressed", n_suppressed),
    ]
    reg_info = None
    if link is not None:
        reg_info = _register_info(link, defended, cfg.register_cells_m, register_counts, no_home)
        rc = register_counts or {}
        if rc:
            data_items += [("register_rows_read", rc.get("rows_read")), ("register_rows_kept", rc.get("rows_kept"))]
            data_items += [(f"register_dropped_{k}", v) for k, v in (rc.get("dropped") or {}).items()]
            data_items += [("register_bad_work", rc.get("bad_work")), ("register_bad_age", rc.get("bad_age")),
                           ("register_duplicate_user", rc.get("duplicate_user"))]
        data_items += [("register_persons", reg_info["persons"]), ("register_with_work", reg_info["with_work"]),
                       ("register_with_work_share", reg_info["with_work_share"])]
        if link.truth:
            data_items += [("register_users_listed", reg_info["listed"]),
                           ("register_users_not_listed", reg_info["not_listed"]),
                           ("register_users_listed_share", reg_info["listed_share"])]
    data = pd.DataFrame(data_items, columns=["item", "value"])
    data["value"] = pd.to_numeric(data["value"], errors="coerce").astype(float)
    timings["total"] = time.perf_counter() - t0
    info = {
        "method": method, "method_rule": samp.get("rule"), "method_auto": m_auto,
        "sampling": {k: v for k, v in samp.items() if k != "rule"},
        "defenses": [{"name": n, "params": p} for n, p in steps],
        "settings": cfg.as_dict(), "days": list(days), "crs": defended.crs,
        "inference": _resolved_inference(cfg.inference),
        "utc_offset_s": int(defended.utc_offset_s),
        "unit": "pseudonym" if any(REGISTRY[n].changes_pseudonyms for n, _ in steps) else "user",
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }
    if counts:
        info["reader"] = {k: counts.get(k) for k in ("format", "files", "columns", "crs_source", "tz", "tz_source",
                                                      "tz_offset_varies", "time_unit", "has_accuracy")}
    if reg_info is not None:
        info["register"] = reg_info
    return {"data": data, "uniqueness": uniq, "risk_by_days": risk_by_days, "inference": inf_tab,
            "density": density, "defenses": defense_tab, "info": info}


def run_audit(source, out, *, format: str = "auto", id=None, time=None, lat=None, lon=None, accuracy=None,
              tz=None, crs=None, defenses=(), register=None, register_columns: dict | None = None,
              overwrite: bool = False, progress=None, **config) -> dict:
    """Read ``source`` (:func:`sim.release.readers.read_pings`), :func:`audit` it and write
    the report folder ``out`` (:func:`sim.report.audit.write_audit`).  Returns the audit
    dict plus ``paths``, ``counts`` (the reader's, no identifiers) and, with a register,
    ``register_counts``.

    ``register`` — a register file (CSV or Parquet) or DataFrame of people with lat/lon
    degrees, read with :func:`sim.release.register_file.read_register` in the traces' CRS;
    ``register_columns`` — its column names by role (``name``, ``home_lat``, ``home_lon``,
    ``work_lat``, ``work_lon``, ``age``, ``user``; default: detected).
    """
    from sim.core.files import check_output_path
    from sim.release.readers import read_pings
    from sim.report.audit import claim_audit_dir, write_audit

    reg_cols = dict(register_columns or {})
    bad = sorted(set(reg_cols) - set(REGISTER_ROLES))
    if bad:
        raise ConfigError(f"unknown register column role(s) {bad}; expected some of {list(REGISTER_ROLES)}.")
    if register is None and any(v is not None for v in reg_cols.values()):
        raise ConfigError("register columns were named (--register-name, --register-home-lat, ...) but no register "
                          "was given; pass --register FILE too, or drop them.")
    if register is not None:
        peek_register(register, **reg_cols)  # the file and its columns, before the (long) work
    check_output_path(out)
    claim_audit_dir(out, overwrite=overwrite, create=False)  # refuse before the (long) work
    for d in defenses:
        if isinstance(d, str):
            parse_defense(d)
    say = progress or (lambda msg: None)
    say("reading pings")
    traces, counts = read_pings(source, format=format, id=id, time=time, lat=lat, lon=lon, accuracy=accuracy,
                                tz=tz, crs=crs)
    reg, reg_counts = None, None
    if register is not None:
        say("reading the register")
        reg, reg_counts = read_register(register, crs=traces.crs, **reg_cols)
    res = audit(traces, defenses=defenses, counts=counts, register=reg, register_counts=reg_counts,
                progress=progress, **config)
    del reg
    say("writing the report")
    res["paths"] = write_audit(out, res, counts=counts, overwrite=overwrite)
    res["counts"] = counts
    if reg_counts is not None:
        res["register_counts"] = reg_counts
    return res
