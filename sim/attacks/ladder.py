"""The attacker ladder: named strategies from inferred places to people (DESIGN.md §6a).

Every rung works on the same inferred places (one row per pseudonym: home_x_m,
home_y_m, work_x_m, work_y_m, as from ``sim.infer``) and the same register, at one zone
``level`` (``"building"`` by default).  The inferred home and work points are mapped to
zones with ``world.locate``; the register's ``home_<level>_id`` and
``work_<level>_id`` are the listed home and the listed employer (-1: none listed).
"Residents" of a zone are the register persons listed there (persons listed outside the
area are nobody's candidates).  The rungs, weakest first (:data:`RUNGS`):

``exact``
    Today's (home zone, work zone) join, the linkage key ``home_work``: the register
    persons whose listed home *and* listed employer zones equal the inferred ones.  A
    device with no inferred work (or a work place outside the area) gets no candidate.
``hierarchical``
    The residents of the inferred home zone; if a work place is inferred (inside the
    area), those of them whose listed employer is that zone, if any; otherwise (no
    such resident, or no work inferred) the residents with no employer listed, if
    any; otherwise all the residents.
``home_adults``
    Home only: the register's adults listed in the inferred home zone (``age >= 18``
    when the register has an ``age`` column, a missing age counting as adult; everyone
    listed otherwise).
``ranked``
    A ranked list of register persons, of which the attacker names the first and
    reports the first k: the residents of the inferred home zone first — those in the
    candidate sets of the earlier rungs before the others (deepest set first), then by
    employer (listed employer = the inferred work zone, then no employer listed, then
    another employer), then by distance from their listed home to the inferred home
    point, then by ``person_id`` — followed by the other persons by that distance (then
    ``person_id``).  Only the first ``k_max`` are kept.  It needs a known inferred home
    point (which may lie outside the area: then the list is the nearest persons).

The ladder is monotone by construction
--------------------------------------
The set rungs are *cumulative*: with ``T_r`` the rung's own set (above) and ``S_{r-1}``
the previous rung's candidate set (rungs taken in :data:`RUNGS` order, among those
asked for),

    S_r = S_{r-1} ∩ T_r   if that is non-empty,
          S_{r-1}         else, if that is non-empty,
          T_r             otherwise;

the first rung's set is its own.  The non-empty sets of a device are therefore nested
(each a subset of the previous one).  A device named correctly at rung r-1 has
``S_{r-1} = {owner}``, which rung r keeps; and the ranked list puts the members of the
deepest earlier set first, so its first k contain every earlier set of size <= k.
Hence (all tested):

* ``named`` never decreases from one rung to the next (per pseudonym, hence per device);
* ``no_candidate`` never increases;
* ``narrowed_k`` never decreases from ``exact`` to ``hierarchical`` (a non-empty exact
  set is the hierarchical set) and ``ranked`` is >= every earlier rung; but
  ``home_adults`` *can* lose it: dropping the listed minors can drop the owner (a
  child's phone) and leave a set without them — not monotone there;
* ``wrong`` is not monotone: ``ranked`` always names its first candidate, and a filter
  can leave one wrong person;
* every share is monotone in k (``narrowed_k`` is "owner's position <= k").

Not monotone in the days observed: a longer window can move the inferred home, or
add a work place that filters the owner out (a neighbour listed at that employer while
the owner's employer is unlisted).  What holds is narrower: when the home stays and the
place added is the owner's listed employer, no rung names or narrows fewer (tested).
With ``cumulative=False`` each set rung is its own ``T_r`` (and ``ranked`` ignores the
earlier rungs) — for analysis; none of the monotonicities above then hold.

Scoring (truth read only here), per pseudonym and rung
------------------------------------------------------
* ``named`` — the set is exactly the owner (``ranked``: the first candidate is the owner);
* ``narrowed_k`` — the set has <= k persons and the owner is among them (``ranked``: the
  owner is among the first k);
* ``wrong`` — the set is one person, not the owner (``ranked``: a first candidate exists
  and is not the owner);
* ``no_candidate`` — the set (list) is empty.

Per device (DESIGN §6a): a device is named / narrowed_k in window d when *any* of its
pseudonyms that exist in the window is; wrong when any of them is wrongly named; no
candidate when none of them has a candidate.  A pseudonym exists in window d when it
has a ping in the first d days (``first_day < d`` in the release); denominators count
only those pseudonyms, and the devices with at least one.  "Any" credits the attacker
with picking the right one of its answers: the device-only metric ``named_and_wrong``
is the share of devices named by one pseudonym and wrongly named by another.  When
every device has the same number of pseudonyms in the window (e.g. fixed-period
rotation) the per-device named, narrowed_k and wrong shares are >= the per-pseudonym
ones (and no_candidate <=); with unequal numbers (random resets) either can be larger.

Relink, then identify
---------------------
:func:`relink_groups` merges the pseudonyms that ``sim.attacks.relink.propose_links``
links across consecutive rotation epochs (same inferred home/work) into one trace
identity (connected components of the links).  A group's home is the home of its member
with the most home nights (``home_nights``; ties: earliest epoch, then table order)
among those with a known home; its work is the work of its member with the most work
days (``work_days``) among those with a known work.  The ladder then runs on the
groups, and every pseudonym of a group gets the group's candidates (scored against its
own owner, so a wrong link can also hurt).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from sim.core.constants import LEVELS
from sim.core.errors import ConfigError, InputError
from sim.core.lookup import id_positions, strictly_increasing
from sim.core.memory import release_free_memory
from sim.core.jit import pjit, prange
from sim.world._kernels import RING_MARGIN, GridIndex, cell_gap, ring_columns, ring_origin, ring_reach
from sim.attacks._common import (
    groups_by_key,
    check_int,
    check_positive,
    device_zone,
    existing_pseudonyms,
    first_days,
    aligned_rows,
    object_index,
    rate_row,
    register_column,
    require_columns,
    span_table,
    truth_device,
    truth_index,
    truth_person,
)
from sim.attacks.linkage import INFERRED_COLUMNS, split_prefixes
from sim.attacks.relink import METHODS, propose_links

log = logging.getLogger(__name__)

ADULT_AGE = 18
KS = (1, 2, 3, 5, 10)
METRICS = ("named", "narrowed_k", "wrong", "no_candidate")
DEVICE_METRICS = METRICS + ("named_and_wrong",)  # unit "device" only
UNITS = ("device", "pseudonym")
LADDER_COLUMNS = ["rung", "level", "days", "k", "metric", "value", "ci_low", "ci_high", "n", "unit"]
PER_DEVICE_COLUMNS = ["device_idx", "rung", "level", "days", "n_pseudonyms", "named", "wrong", "no_candidate",
                      "best_k", "first_day_named"]
CANDIDATE_COLUMNS = ["pseudonym", "rung", "rank", "person_id"]


@dataclass(frozen=True)
class Rung:
    """One rung of the ladder: what it does and what it needs."""

    name: str
    kind: str  # "set" (a candidate set) | "ranked" (an ordered list)
    description: str
    needs: tuple


RUNGS: dict[str, Rung] = {r.name: r for r in (
    Rung("exact", "set",
         "(home zone, work zone) join: register persons whose listed home and listed employer zones "
         "equal the inferred ones (linkage key home_work); no inferred work -> no candidate",
         ("inferred home", "inferred work", "register employers (work_<level>_id)")),
    Rung("hierarchical", "set",
         "residents of the inferred home zone; if a work place is inferred, those listed at that "
         "employer if any; else the residents with no employer listed if any; else all residents",
         ("inferred home", "register employers (optional)")),
    Rung("home_adults", "set",
         "home only: the register's adults listed in the inferred home zone (age >= 18 if the "
         "register has an age column, else everyone listed)",
         ("inferred home", "register age (optional)")),
    Rung("ranked", "ranked",
         "ranked list: residents of the inferred home zone (earlier rungs' sets first, then by "
         "employer match, listed-home distance, person_id), then other persons by distance; "
         "named = first, narrowed_k = owner in the first k",
         ("inferred home point", "register home addresses (home_x_m, home_y_m)")),
)}
RUNG_NAMES = tuple(RUNGS)
#: rows of a window's inferred table per candidate-set block in :func:`ladder_attack`
BLOCK_ROWS = 50_000


def rung_table() -> pd.DataFrame:
    """The ladder as a table: name, kind, description, needs (weakest rung first)."""
    return pd.DataFrame([dict(name=r.name, kind=r.kind, description=r.description, needs=", ".join(r.needs))
                         for r in RUNGS.values()])


def check_rungs(rungs) -> tuple:
    """Rung names as a tuple in ladder order (:data:`RUNGS`); ConfigError if unknown or empty."""
    rungs = (rungs,) if isinstance(rungs, str) else tuple(rungs)
    bad = [r for r in rungs if r not in RUNGS]
    if bad or not rungs:
        raise ConfigError(f"unknown or no ladder rung(s) {bad or rungs!r}; expected a subset of {RUNG_NAMES}.")
    return tuple(r for r in RUNG_NAMES if r in rungs)


def check_ks(ks) -> tuple:
    """The k values (sorted, distinct integers >= 1); ConfigError otherwise."""
    ks = (ks,) if isinstance(ks, (int, np.integer)) else tuple(ks)
    if not ks:
        raise ConfigError("ladder ks must hold at least one k >= 1, e.g. (1, 2, 3, 5, 10).")
    return tuple(sorted({check_int("ladder k", k, 1) for k in ks}))


def check_level(level) -> str:
    if level not in LEVELS:
        raise ConfigError(f"ladder level must be one of {LEVELS}, got {level!r}.")
    return level


# ----------------------------------------------------------------------------- sets
@dataclass(frozen=True, eq=False)
class LadderSets:
    """Candidate sets of every device (row of the inferred table) on every rung.

    ``pair_dev``/``pair_reg`` list every (device row, register row) where the register
    person is a resident of the device's inferred home zone, sorted by (device row,
    person_id); ``member[r]`` flags the pairs in set rung r's candidate set; ``size[r]``
    is the set size (the list length for ``ranked``) per device; ``ranked`` holds the
    ranked lists as register rows (``-1`` padded), shape ``(n devices, k_max)``.
    """

    pseudonym: np.ndarray
    level: str
    rungs: tuple
    k_max: int
    cumulative: bool
    person_id: np.ndarray
    pair_dev: np.ndarray
    pair_reg: np.ndarray
    member: dict
    size: dict
    ranked: np.ndarray | None


def _segments(counts: np.ndarray) -> np.ndarray:
    """0, 1, ..., c-1 for every count c, concatenated."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    starts = np.cumsum(counts) - counts
    return np.arange(total, dtype=np.int64) - np.repeat(starts, counts)


def _check_inferred(inferred):
    require_columns(inferred, INFERRED_COLUMNS, "inferred table", "Pass the output of sim.infer.infer_home_work.")
    if inferred["pseudonym"].duplicated().any():
        d = inferred.loc[inferred["pseudonym"].duplicated(), "pseudonym"].iloc[0]
        raise InputError(f"inferred table has duplicate pseudonym {d!r}; expected one row per pseudonym.")


def _check_register(register, rungs, level):
    need = ["person_id", register_column("home", level)]
    if "ranked" in rungs:
        need += ["home_x_m", "home_y_m"]
    require_columns(register, need, "register",
                    f"The ladder at level {level!r} needs person_id and home_{level}_id (and, for the "
                    "ranked rung, the listed home address home_x_m, home_y_m).")
    if strictly_increasing(register["person_id"].to_numpy()):
        return  # strictly increasing (the generated registers): no repeats, without hashing 7 M ids
    if register["person_id"].duplicated().any():
        d = register.loc[register["person_id"].duplicated(), "person_id"].iloc[0]
        raise InputError(f"register lists person_id {d!r} twice; expected one row per person.")


@dataclass(frozen=True)
class RegisterIndex:
    """The register side of :func:`ladder_sets` at one zone level — the same for every
    observation window, so :func:`ladder_attack` builds it once (:func:`register_index`).

    ``residents``: register rows with a listed home, ordered by (home zone, person_id),
    and per distinct zone its start and count there.  ``addresses`` (only for the ranked
    rung; None when no listed home has a position): a bucket grid over the distinct listed
    home points, and the register rows at each point ordered by person_id."""

    level: str
    pid: np.ndarray
    rh: np.ndarray
    rw: np.ndarray
    adult: np.ndarray
    rx: np.ndarray | None
    ry: np.ndarray | None
    residents: tuple
    addresses: tuple | None


def register_index(register: pd.DataFrame, level: str, rungs=RUNG_NAMES) -> RegisterIndex:
    """Everything :func:`ladder_sets` needs of ``register`` at ``level`` (checked here;
    InputError naming a missing column or a repeated person); with the ranked rung among
    ``rungs`` also the listed home points."""
    rungs = check_rungs(rungs)
    level = check_level(level)
    _check_register(register, rungs, level)
    ranked = "ranked" in rungs
    pid = register["person_id"].to_numpy()
    n_reg = len(pid)
    rh = register[register_column("home", level)].to_numpy(dtype=np.int64)
    wc = register_column("work", level)
    if wc in register.columns:
        rw = register[wc].to_numpy(dtype=np.int64)
    else:
        log.debug("register has no %s: nobody's employer is listed", wc)
        rw = np.full(n_reg, -1, dtype=np.int64)
    if "age" in register.columns:
        age = pd.to_numeric(register["age"], errors="coerce").to_numpy(dtype=np.float64)
        adult = ~(age < ADULT_AGE)  # a missing age counts as adult
    else:
        adult = np.ones(n_reg, dtype=bool)
    order, uz, zstart, zcnt = groups_by_key(rh, pid)
    k0 = int(np.searchsorted(uz, 0))  # residents with a listed home zone: the groups of keys >= 0
    skip = int(zstart[k0]) if k0 < len(uz) else len(order)
    order, uz, zstart, zcnt = order[skip:], uz[k0:], zstart[k0:] - skip, zcnt[k0:]
    rx = ry = addresses = None
    if ranked:
        rx = register["home_x_m"].to_numpy(dtype=np.float64)
        ry = register["home_y_m"].to_numpy(dtype=np.float64)
        addresses = _address_index(rh, rx, ry, pid)
    return RegisterIndex(level=level, pid=pid, rh=rh, rw=rw, adult=adult, rx=rx, ry=ry,
                         residents=(order, uz, zstart, zcnt), addresses=addresses)


def _residents(h, residents):
    """(device row, register row) pairs of every device with the residents of its zone."""
    order, uz, zstart, zcnt = residents
    pos = np.searchsorted(uz, h)
    pos_c = np.minimum(pos, max(len(uz) - 1, 0))
    hit = (h >= 0) & (pos < len(uz))
    if len(uz):
        hit &= uz[pos_c] == h
    cnt = np.where(hit, zcnt[pos_c] if len(uz) else 0, 0).astype(np.int64)
    start = np.where(hit, zstart[pos_c] if len(uz) else 0, 0).astype(np.int64)
    pair_dev = np.repeat(np.arange(len(h), dtype=np.int64), cnt)
    pair_reg = order[np.repeat(start, cnt) + _segments(cnt)] if len(order) else np.zeros(0, dtype=np.int64)
    return pair_dev, pair_reg.astype(np.int64), cnt


def unique_points(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (x, y) points in (x, y) order and each input point's index among them:
    ``np.unique(np.column_stack([x, y]), axis=0, return_inverse=True)`` for finite
    coordinates, by one lexsort instead of a sort of row records (many times faster on
    millions of points)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    order = np.lexsort((y, x))
    xs, ys = x[order], y[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (xs[1:] != xs[:-1]) | (ys[1:] != ys[:-1])
    inv = np.empty(len(order), dtype=np.int64)
    inv[order] = np.cumsum(new) - 1
    return np.column_stack([xs[new], ys[new]]), inv


def _address_index(rh, rx, ry, pid):
    """A bucket grid over the distinct listed home points of the persons with a listed
    home zone (the points are ``grid.xy``), and per point its register rows (ordered by
    person_id): (grid, addr_rows, acnt, astart), or None when there is none."""
    pool = np.flatnonzero((rh >= 0) & np.isfinite(rx) & np.isfinite(ry))
    if not len(pool):
        return None
    addr, inv = unique_points(rx[pool], ry[pool])
    porder = np.lexsort((pid[pool], inv))
    acnt = np.bincount(inv, minlength=len(addr)).astype(np.int64)
    # half an address per cell on average: the dense core still has few per cell (the 1 M
    # reduce's ladder took 91 s at 0.5, 116 s at 4, 177 s at 16; the tables do not depend on it)
    return GridIndex(addr, per_cell=0.5), pool[porder], acnt, np.cumsum(acnt) - acnt


def _neighbours(todo, need, h, hx, hy, rh, rx, ry, pid, ranked, fill_from, addresses):
    """Fill ``ranked[i, fill_from[i]:fill_from[i] + need[i]]`` for the devices ``todo`` with
    the register persons not resident in zone ``h[i]``, nearest listed home first (ties:
    person_id; fewer when fewer such persons are listed).  One parallel pass over the
    devices, each searching the bucket grid of the distinct addresses
    (:func:`_address_index`) ring by ring until no unsearched cell can hold a nearer
    person (:func:`_nearest_persons`)."""
    if not len(todo) or addresses is None:
        return
    grid, addr_rows, acnt, astart = addresses
    _nearest_persons(np.asarray(todo, dtype=np.int64), np.asarray(need, dtype=np.int64),
                     np.asarray(h, dtype=np.int64), np.asarray(hx, dtype=np.float64),
                     np.asarray(hy, dtype=np.float64), np.asarray(rh, dtype=np.int64),
                     np.asarray(rx, dtype=np.float64), np.asarray(ry, dtype=np.float64), np.asarray(pid),
                     grid.order, grid.start, grid.params, np.int64(grid.nx), np.int64(grid.ny),
                     np.asarray(addr_rows, dtype=np.int64), acnt, np.asarray(astart, dtype=np.int64),
                     ranked, np.asarray(fill_from, dtype=np.int64))


@pjit
def _nearest_persons(todo, need, h, hx, hy, rh, rx, ry, pid, order, start, params, nx, ny, addr_rows, acnt,
                     astart, ranked, fill_from):  # pragma: no cover - numba
    """Per device ``todo[q]``: its ``need`` nearest eligible persons by (distance, pid),
    written to ``ranked``.  The bucket grid (``order``, ``start``, ``params``, ``nx``,
    ``ny`` of :class:`sim.world._kernels.GridIndex`) holds the addresses; rings of cells
    are scanned outward as :meth:`~sim.world._kernels.GridIndex.query` scans them, a cell
    skipped when its nearest edge is beyond the current need-th distance, and the search
    stops once every unscanned cell is."""
    cell = params[2]
    for q in prange(len(todo)):
        i = todo[q]
        k = need[i]
        if k <= 0:
            continue
        bd = np.empty(k, dtype=np.float64)  # the best k so far, ordered by (distance, pid)
        bp = np.empty(k, dtype=pid.dtype)
        br = np.empty(k, dtype=np.int64)
        m = 0
        px, py, hz = hx[i], hy[i], h[i]
        cx, cy, fx, fy, r, maxr = ring_origin(px, py, params, nx, ny)
        while r <= maxr:
            for j in range(max(cy - r, 0), min(cy + r, ny - 1) + 1):
                gy = cell_gap(j, cy, fy) * cell
                if m == k and gy * gy > bd[k - 1] * bd[k - 1] * RING_MARGIN:
                    continue
                ci, c1, step = ring_columns(j, r, cx, cy, nx)
                while ci <= c1:
                    if 0 <= ci < nx:
                        gx = cell_gap(ci, cx, fx) * cell
                        if m < k or gx * gx + gy * gy <= bd[k - 1] * bd[k - 1] * RING_MARGIN:
                            c = j * nx + ci
                            for e in range(start[c], start[c + 1]):
                                ad = order[e]
                                for f in range(astart[ad], astart[ad] + acnt[ad]):
                                    row = addr_rows[f]
                                    if rh[row] == hz:
                                        continue
                                    d = np.hypot(rx[row] - px, ry[row] - py)
                                    p = pid[row]
                                    if m == k and (d > bd[k - 1] or (d == bd[k - 1] and p > bp[k - 1])):
                                        continue
                                    # insert (d, p) in order, dropping the k-th when full
                                    pos = m if m < k else k - 1
                                    while pos > 0 and (bd[pos - 1] > d or (bd[pos - 1] == d and bp[pos - 1] > p)):
                                        if pos < k:
                                            bd[pos] = bd[pos - 1]
                                            bp[pos] = bp[pos - 1]
                                            br[pos] = br[pos - 1]
                                        pos -= 1
                                    bd[pos] = d
                                    bp[pos] = p
                                    br[pos] = row
                                    if m < k:
                                        m += 1
                    ci += step
            if m == k:
                reach = ring_reach(r, fx, fy, cell)
                if reach > 0 and reach * reach > bd[k - 1] * bd[k - 1] * RING_MARGIN:
                    break
            r += 1
        for e in range(m):
            ranked[i, fill_from[i] + e] = br[e]


def ladder_sets(
    inferred: pd.DataFrame,
    register: pd.DataFrame,
    world,
    *,
    rungs=RUNG_NAMES,
    level: str = "building",
    k_max: int = max(KS),
    cumulative: bool = True,
    index: RegisterIndex | None = None,
) -> LadderSets:
    """Candidate sets (and the ranked lists) of every pseudonym on every rung — no truth used.

    Parameters
    ----------
    inferred : DataFrame, one row per pseudonym: pseudonym, home_x_m, home_y_m,
        work_x_m, work_y_m (NaN where unknown).
    register : the attacker's register (CONTRACTS.md): person_id, home_<level>_id,
        optionally work_<level>_id (employers; absent = none listed) and age; home_x_m,
        home_y_m for the ranked rung.
    world : provides ``locate``.
    rungs : rung names (taken in ladder order, :data:`RUNG_NAMES`).
    level : the zone level of homes and employers.
    k_max : length of the ranked lists.
    cumulative : the monotone ladder (module docstring) or each rung on its own.
    index : :func:`register_index` of ``register`` at ``level`` (built here if not
        given): pass it to reuse the register's sorting and address grid across calls.
    """
    rungs = check_rungs(rungs)
    level = check_level(level)
    k_max = check_int("k_max", k_max, 1)
    _check_inferred(inferred)
    if index is None:
        index = register_index(register, level, rungs)
    elif index.level != level or ("ranked" in rungs and index.rx is None) or len(index.pid) != len(register):
        raise InputError("index was not built from this register for these rungs and level; pass "
                         "register_index(register, level, rungs).")
    return _ladder_sets(inferred, world, index, rungs, level, k_max, cumulative)


def _ladder_sets(inferred, world, index: RegisterIndex, rungs, level, k_max, cumulative) -> LadderSets:
    """:func:`ladder_sets` of checked arguments (``inferred`` one row per pseudonym)."""
    pid, rh, rw, adult = index.pid, index.rh, index.rw, index.adult
    hx = inferred["home_x_m"].to_numpy(dtype=np.float64)
    hy = inferred["home_y_m"].to_numpy(dtype=np.float64)
    h = device_zone(world, hx, hy, level)
    w = device_zone(world, inferred["work_x_m"].to_numpy(dtype=np.float64),
                    inferred["work_y_m"].to_numpy(dtype=np.float64), level)
    n = len(h)

    pair_dev, pair_reg, n_res = _residents(h, index.residents)

    def dev_any(flag):
        return np.bincount(pair_dev, weights=flag, minlength=n) > 0

    pw = w[pair_dev]
    prw = rw[pair_reg]
    emp_match = (pw >= 0) & (prw == pw)
    unlisted = prw < 0
    own = {}
    if "exact" in rungs:
        own["exact"] = emp_match
    if "hierarchical" in rungs:
        any_e, any_u = dev_any(emp_match)[pair_dev], dev_any(unlisted)[pair_dev]
        own["hierarchical"] = np.where(any_e, emp_match, np.where(any_u, unlisted, True))
    if "home_adults" in rungs:
        own["home_adults"] = adult[pair_reg]

    member, size = {}, {}
    depth = np.zeros(len(pair_dev), dtype=np.int64)
    prev = None
    for r in rungs:
        if RUNGS[r].kind != "set":
            continue
        s = own[r]
        if cumulative and prev is not None:
            inter = prev & s
            s = np.where(dev_any(inter)[pair_dev], inter, np.where(dev_any(prev)[pair_dev], prev, s))
        member[r] = s
        size[r] = np.bincount(pair_dev, weights=s, minlength=n).astype(np.int64)
        if cumulative:
            depth += s
            prev = s

    ranked = None
    if "ranked" in rungs:
        rx, ry = index.rx, index.ry
        tier = np.where(emp_match, 0, np.where(unlisted, 1, 2))
        dist = np.hypot(rx[pair_reg] - hx[pair_dev], ry[pair_reg] - hy[pair_dev])
        dist = np.where(np.isnan(dist), np.inf, dist)
        o = np.lexsort((pid[pair_reg], dist, tier, -depth, pair_dev))
        dev_start = np.cumsum(n_res) - n_res
        rank = np.arange(len(o), dtype=np.int64) - dev_start[pair_dev[o]]
        keep = rank < k_max
        ranked = np.full((n, k_max), -1, dtype=np.int64)
        ranked[pair_dev[o][keep], rank[keep]] = pair_reg[o][keep]
        taken = np.minimum(n_res, k_max)
        need = k_max - taken
        todo = np.flatnonzero((need > 0) & np.isfinite(hx) & np.isfinite(hy))
        _neighbours(todo, need, h, hx, hy, rh, rx, ry, pid, ranked, taken, index.addresses)
        size["ranked"] = (ranked >= 0).sum(axis=1).astype(np.int64)

    return LadderSets(pseudonym=inferred["pseudonym"].to_numpy(), level=level, rungs=rungs, k_max=k_max,
                      cumulative=bool(cumulative), person_id=pid, pair_dev=pair_dev, pair_reg=pair_reg,
                      member=member, size=size, ranked=ranked)


def ladder_candidates(sets: LadderSets) -> pd.DataFrame:
    """The candidate sets as a long table: pseudonym, rung, rank, person_id.

    ``rank`` (from 1) is the position in the ranked list, or in the set ordered by
    person_id; a pseudonym with no candidate on a rung has no row for it.
    """
    parts = []
    for r in sets.rungs:
        if RUNGS[r].kind == "set":
            m = sets.member[r]
            dev, reg = sets.pair_dev[m], sets.pair_reg[m]
            o = np.lexsort((sets.person_id[reg], dev))
            dev, reg = dev[o], reg[o]
            rank = _segments(np.bincount(dev, minlength=len(sets.pseudonym))) + 1
        else:
            dev, pos = np.nonzero(sets.ranked >= 0)
            reg = sets.ranked[dev, pos]
            rank = pos + 1
        parts.append(pd.DataFrame({"pseudonym": sets.pseudonym[dev], "rung": r, "rank": rank.astype(np.int64),
                                   "person_id": sets.person_id[reg]}))
    if not parts:
        return pd.DataFrame(columns=CANDIDATE_COLUMNS)
    return pd.concat(parts, ignore_index=True)[CANDIDATE_COLUMNS]


# -------------------------------------------------------------------------- scoring
def owner_positions(sets: LadderSets, owner, rows=None, owner_rows=None) -> dict:
    """Per query and rung: ``(size, owner_k)`` — the set size (list length) and the
    smallest k at which the query is ``narrowed_k`` (the set size if the owner is in the
    set, the owner's position in a ranked list; inf if never).  ``owner`` is the true
    person_id of each query, ``rows`` the row of ``sets`` it is scored on (default: one
    query per row); ``owner_rows``, if given, the register rows of ``owner``
    (``id_positions(sets.person_id, owner)``, -1 for an unlisted owner).  Scoring only."""
    owner = np.asarray(owner)
    rows = np.arange(len(sets.pseudonym), dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    # a search of the (sorted) register ids, no hash table of them
    oreg = id_positions(sets.person_id, owner) if owner_rows is None else np.asarray(owner_rows, dtype=np.int64)
    n_reg = max(len(sets.person_id), 1)
    key = sets.pair_dev * n_reg + sets.pair_reg
    ko = np.argsort(key, kind="stable")
    ks = key[ko]
    q = rows * n_reg + np.maximum(oreg, 0)
    pos = np.minimum(np.searchsorted(ks, q), max(len(ks) - 1, 0))
    found = (oreg >= 0) & (len(ks) > 0)
    if len(ks):
        found &= ks[pos] == q
    out = {}
    for r in sets.rungs:
        size = sets.size[r][rows]
        if RUNGS[r].kind == "set":
            inside = found & (sets.member[r][ko[pos]] if len(ks) else False)
            ok = np.where(inside, size, np.inf)
        else:
            hit = (sets.ranked[rows] == oreg[:, None]) & (oreg[:, None] >= 0)
            ok = np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, np.inf)
        out[r] = (size, ok.astype(np.float64))
    return out


def outcomes(kind: str, size, owner_k):
    """``(named, wrong, no_candidate)`` boolean arrays from :func:`owner_positions`
    output of a rung of kind ``kind`` ("set" or "ranked"), as the module docstring
    defines them (``narrowed_k`` is ``owner_k <= k``)."""
    size = np.asarray(size)
    owner_k = np.asarray(owner_k)
    named = owner_k == 1
    wrong = ((size == 1) if kind == "set" else (size >= 1)) & ~named
    return named, wrong, size == 0


def _metric_rows(rung, level, days, unit, named, wrong, none, owner_k, ks, ci, seed, tags):
    p = dict(rung=rung, level=level, days=days)
    rows = []
    for j, (m, v) in enumerate((("named", named), ("wrong", wrong), ("no_candidate", none))):
        rows.append({**rate_row(m, v, ci, seed, tags + (j, 0), **p, k=np.nan), "unit": unit})
    for k in ks:
        rows.append({**rate_row("narrowed_k", owner_k <= k, ci, seed, tags + (3, k), **p, k=float(k)),
                     "unit": unit})
    return rows


# ------------------------------------------------------------------ relink groups
def relink_groups(inferred: pd.DataFrame, epochs: pd.DataFrame, *, method: str = "nearest",
                  max_dist_m: float = np.inf, world=None, level: str = "block") -> tuple[pd.DataFrame, np.ndarray]:
    """Merge the pseudonyms linked by :func:`sim.attacks.relink.propose_links` into trace
    identities (no truth used).

    Returns ``(groups, group_of)``: ``groups`` has one row per identity — pseudonym (the
    group number, int), home_x_m, home_y_m, work_x_m, work_y_m (the rule in the module
    docstring), n_members; ``group_of[i]`` is the group row of ``inferred`` row i.
    Pseudonyms missing from ``epochs`` stay alone.
    """
    require_columns(inferred, INFERRED_COLUMNS, "inferred table")
    require_columns(epochs, ["pseudonym", "epoch"], "epochs table", "Build it with pseudonym_epochs(release, R).")
    n = len(inferred)
    idx = object_index(inferred["pseudonym"])
    links = propose_links(inferred, epochs, method=method, max_dist_m=max_dist_m, world=world, level=level)
    a = idx.get_indexer(object_index(links["pseudonym_from"]))
    b = idx.get_indexer(object_index(links["pseudonym_to"]))
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    n_groups, label = connected_components(graph, directed=False)
    ep = object_index(epochs["pseudonym"]).get_indexer(idx)
    epoch = np.where(ep >= 0, epochs["epoch"].to_numpy()[np.maximum(ep, 0)] if len(epochs) else 0, 0)
    row = np.arange(n)

    def pick(xcol, ycol, support_col):
        x = inferred[xcol].to_numpy(dtype=np.float64)
        y = inferred[ycol].to_numpy(dtype=np.float64)
        sup = (inferred[support_col].to_numpy(dtype=np.float64) if support_col in inferred.columns
               else np.zeros(n))
        sup = np.where(np.isfinite(sup), sup, 0.0)
        known = np.flatnonzero(np.isfinite(x) & np.isfinite(y))
        o = known[np.lexsort((row[known], epoch[known], -sup[known], label[known]))]
        first = o[np.r_[True, label[o][1:] != label[o][:-1]]] if len(o) else o
        gx = np.full(n_groups, np.nan)
        gy = np.full(n_groups, np.nan)
        gx[label[first]] = x[first]
        gy[label[first]] = y[first]
        return gx, gy

    hx, hy = pick("home_x_m", "home_y_m", "home_nights")
    wx, wy = pick("work_x_m", "work_y_m", "work_days")
    groups = pd.DataFrame({"pseudonym": np.arange(n_groups, dtype=np.int64), "home_x_m": hx, "home_y_m": hy,
                           "work_x_m": wx, "work_y_m": wy,
                           "n_members": np.bincount(label, minlength=n_groups).astype(np.int64)})
    return groups, label.astype(np.int64)


# -------------------------------------------------------------------- the attack
def ladder_attack(
    inferred_by_day,
    register: pd.DataFrame,
    world,
    pseudonyms: pd.DataFrame,
    *,
    release=None,
    rungs=RUNG_NAMES,
    ks=KS,
    level: str = "building",
    cumulative: bool = True,
    relink_period_days: float | None = None,
    relink_method: str = "nearest",
    relink_max_dist_m: float = np.inf,
    relink_level: str = "block",
    ci: str = "wilson",
    seed: int = 0,
    block_rows: int = BLOCK_ROWS,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ladder on every observation window, scored per device and per pseudonym.

    Parameters
    ----------
    inferred_by_day : ``{d: inferred table}`` or the long table of ``sim.infer.infer_prefixes``.
    register, world : the attacker's register and the world.
    pseudonyms : truth (pseudonym, person_id, device_idx[, first_day]); scoring only.
    release : Traces or its observed-span table (``sim.attacks._common.observed_span``,
        e.g. built part by part), optional — which pseudonyms exist in window d (a ping
        in the first d days) and their rotation epochs; without it the truth
        ``first_day``, without that every tabled pseudonym.
    rungs, ks, level, cumulative : the rungs, the k of ``narrowed_k``, the zone level,
        the monotone (cumulative) ladder or each rung on its own.
    relink_period_days : when given, relink-then-identify: pseudonyms of consecutive
        rotation epochs (``first_day // R``) linked by ``propose_links(method=relink_method,
        max_dist_m=relink_max_dist_m, level=relink_level)`` are merged first
        (:func:`relink_groups`).
    block_rows : candidate sets are built for this many rows of a window's table at a
        time (a memory bound; the results do not depend on it).

    Returns
    -------
    (table, per_device)
        table: :data:`LADDER_COLUMNS` — rung, level, days, k (NaN for the metrics that do
        not depend on it), metric (:data:`METRICS`; unit "device" also
        ``named_and_wrong``), value, ci_low, ci_high, n, unit ("device" | "pseudonym").
        per_device: :data:`PER_DEVICE_COLUMNS`, one row per (device, rung) at the
        largest window: n_pseudonyms in it, named, wrong, no_candidate, best_k (the
        smallest k at which it is narrowed_k, NaN if none <= k_max), first_day_named
        (the first window in which it is named; NaN if never).
    """
    rungs = check_rungs(rungs)
    ks = check_ks(ks)
    level = check_level(level)
    block_rows = check_int("block_rows", block_rows, 1)
    if relink_period_days is not None:
        relink_period_days = check_positive("relink_period_days", relink_period_days)
        if relink_method not in METHODS:
            raise ConfigError(f"relink_method must be one of {METHODS}, got {relink_method!r}.")
    inferred_by_day = split_prefixes(inferred_by_day)
    days = sorted(inferred_by_day)
    for d in days:
        if isinstance(d, bool) or not isinstance(d, (int, float, np.integer, np.floating)) or not d > 0:
            raise InputError(f"inferred_by_day keys must be positive day counts, got {d!r}.")
    span = span_table(release) if release is not None else None
    if relink_period_days is not None:
        if span is None:
            require_columns(pseudonyms, ["pseudonym", "first_day"], "truth pseudonyms table",
                            "Relink-then-identify needs the release (or the truth first_day) for the epochs.")
            span = pseudonyms.drop_duplicates("pseudonym")[["pseudonym", "first_day"]]
        span = span.assign(epoch=np.floor(span["first_day"].to_numpy(dtype=np.float64)
                                          / relink_period_days).astype(np.int64))
    k_max = max(ks)
    index = register_index(register, level, rungs) if days else None  # the same for every window
    truth = truth_index(pseudonyms) if days else None  # indexed once for every window
    first = first_days(span, pseudonyms)  # once: each window's pseudonyms are slices of it
    rows = []
    first_named = {}
    last = None
    for d in days:
        table = inferred_by_day[d]
        require_columns(table, INFERRED_COLUMNS, f"inferred table of day {d}")
        ex = existing_pseudonyms(d, fallback=table["pseudonym"] if first is None else None, first=first)
        inf_d = aligned_rows(table, ex)
        if relink_period_days is not None:
            queried, q_rows = relink_groups(inf_d, span[span["pseudonym"].isin(ex)], method=relink_method,
                                            max_dist_m=relink_max_dist_m, world=world, level=relink_level)
        else:
            queried, q_rows = inf_d, None
        owner = truth_person(truth, ex, "release")
        device = truth_device(truth, ex, "release")
        pos = _blocked_positions(queried, owner, q_rows, register, world, index, block_rows, rungs=rungs,
                                 level=level, k_max=k_max, cumulative=cumulative)
        dev_u, inv = np.unique(device, return_inverse=True)
        n_ps = np.bincount(inv, minlength=len(dev_u))
        per_rung = {}
        for i, r in enumerate(rungs):
            size, owner_k = pos[r]
            named, wrong, none = outcomes(RUNGS[r].kind, size, owner_k)
            tg = (i, int(d), 1 if relink_period_days is not None else 0)
            rows += _metric_rows(r, level, d, "pseudonym", named, wrong, none, owner_k, ks, ci, seed, tg + (1,))
            best = np.full(len(dev_u), np.inf)
            np.minimum.at(best, inv, owner_k)
            d_wrong = np.bincount(inv, weights=wrong, minlength=len(dev_u)) > 0
            d_none = np.bincount(inv, weights=~none, minlength=len(dev_u)) == 0
            d_named = best == 1
            rows += _metric_rows(r, level, d, "device", d_named, d_wrong, d_none, best, ks, ci, seed, tg + (0,))
            rows.append({**rate_row("named_and_wrong", d_named & d_wrong, ci, seed, tg + (0, 4), rung=r, level=level,
                                    days=d, k=np.nan), "unit": "device"})
            first_named.setdefault(r, []).append((dev_u[d_named], float(d)))
            per_rung[r] = (d_named, d_wrong, d_none, best)
        last = (d, dev_u, n_ps, per_rung)
        del table, inf_d, queried, q_rows, owner, device, pos
        release_free_memory(collect=False)  # this window's working memory, before the next window's
    table = pd.DataFrame(rows, columns=LADDER_COLUMNS)
    per_device = _per_device(last, rungs, level, first_named, k_max)
    return table, per_device


def _blocked_positions(table, owner, q_rows, register, world, index, block_rows, **kw) -> dict:
    """:func:`owner_positions` of every query, the candidate sets built ``block_rows``
    rows of ``table`` at a time (sets are per row, so this equals one call on the whole
    table).  ``q_rows``: the row each query is scored on (None: query i on row i)."""
    _check_inferred(table)  # once: a block of a table without repeats has none
    n = len(table)
    rows = np.arange(len(owner), dtype=np.int64) if q_rows is None else np.asarray(q_rows, dtype=np.int64)
    owner = np.asarray(owner)
    oreg = id_positions(index.pid, owner)  # the owners' register rows, once for every block
    out = None
    for b0 in range(0, max(n, 1), block_rows):
        b1 = min(b0 + block_rows, n)
        sets = _ladder_sets(table.iloc[b0:b1].reset_index(drop=True), world, index, kw["rungs"], kw["level"],
                            kw["k_max"], kw["cumulative"])
        sel = np.flatnonzero((rows >= b0) & (rows < b1)) if (b0, b1) != (0, n) else np.arange(len(rows))
        pos = owner_positions(sets, owner[sel], rows[sel] - b0, owner_rows=oreg[sel])
        if out is None:
            out = {r: (np.zeros(len(rows), dtype=size.dtype), np.full(len(rows), np.inf))
                   for r, (size, _) in pos.items()}
        for r, (size, owner_k) in pos.items():
            out[r][0][sel], out[r][1][sel] = size, owner_k
        del sets
    return out


def _per_device(last, rungs, level, first_named, k_max) -> pd.DataFrame:
    if last is None:
        return pd.DataFrame(columns=PER_DEVICE_COLUMNS)
    d, dev_u, n_ps, per_rung = last
    parts = []
    for r in rungs:
        named, wrong, none, best = per_rung[r]
        fd = np.full(len(dev_u), np.inf)
        log_r = first_named.get(r, [])
        if log_r:
            devs = np.concatenate([a for a, _ in log_r])
            when = np.concatenate([np.full(len(a), dd) for a, dd in log_r])
            at = np.minimum(np.searchsorted(dev_u, devs), max(len(dev_u) - 1, 0))
            hit = dev_u[at] == devs if len(dev_u) else np.zeros(len(devs), dtype=bool)
            np.minimum.at(fd, at[hit], when[hit])
        fd = np.where(np.isfinite(fd), fd, np.nan)
        parts.append(pd.DataFrame({
            "device_idx": dev_u, "rung": r, "level": level, "days": d, "n_pseudonyms": n_ps.astype(np.int64),
            "named": named, "wrong": wrong, "no_candidate": none,
            "best_k": np.where(best <= k_max, best, np.nan), "first_day_named": fd,
        }))
    return pd.concat(parts, ignore_index=True)[PER_DEVICE_COLUMNS]
