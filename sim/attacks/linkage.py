"""Home/work linkage to the register (Golle & Partridge 2009) and time to identification.

Definitions (DESIGN.md §6)
--------------------------
For each device (pseudonym) and zone level, the inferred home and work points are
mapped to zones with ``world.locate``.  The *anonymity set* is the set of register
persons whose home zone (key ``"home"``) or whose (home zone, work zone) pair (key
``"home_work"``) equals the device's.  A device is

* ``identified`` — set size exactly 1 *and* that person is the device's true owner;
* ``wrong_unique`` — set size 1 but the person is someone else (a false "match",
  e.g. the owner is not in the register or the inferred home is wrong);
* ``top1_correct`` — a single guess drawn from the set (see ``guess``) is the owner.

Devices whose home (or, for ``"home_work"``, work) is unknown (NaN in the inferred
table) or lies outside the study area are *not dropped*: they stay in every
denominator as not identified, and are counted in the ``n_unknown_home``,
``n_unknown_work`` and ``n_outside`` rows.  ``set_size`` is ``-1`` for them.

Anonymity sets (DESIGN §6a): an empty set means "no candidate" — reported as its own
share (``no_candidate``) and never counted in a median (``median_set_size`` is over
non-empty sets).  Sets are reported in the register (``set_size``: what the attacker
sees) and, given the truth persons, in the population (``set_size_population``: the
people of the whole population with that home zone / (home zone, work zone) pair —
what Golle & Partridge measured).

Time to identification counts, in window d, only the pseudonyms that exist in it
(a ping in the first d days), per pseudonym and per device (a device is identified
when any of its pseudonyms is); see :func:`time_to_identification`.

Guessing (``guess``)
--------------------
* ``"random"`` (default): the persons of the set are ordered by ``person_id`` and one
  is picked uniformly with the counter-based stream ``stream_key(seed, TAG_ATTACK,
  hash(pseudonym))``, draw number ``level_index * 2 + key_index`` — reproducible and
  independent of row order.
* ``"nearest"``: the person of the set whose register home address is nearest (in
  metres) to the inferred home; ties go to the smallest ``person_id``.  Large sets
  (more than ``_TREE_MIN`` members) are searched with a k-d tree over their distinct
  addresses, where equidistant *different* addresses may break ties arbitrarily.

The register must carry ``home_<level>_id`` for every level used (and
``work_<level>_id`` for the key ``"home_work"``); ``home_building_id`` is the
building level.  Truth (``pseudonyms``) is read only by the scoring functions.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from sim.core import stats
from sim.core.jit import jit, pjit, prange
from sim.core.errors import ConfigError, InputError
from sim.core.lookup import key_counts, pair_key
from sim.core.memory import release_free_memory
from sim.core.rng import TAG_ATTACK, stable_uid64
from sim.attacks._common import (
    groups_by_key,
    METRIC_COLUMNS,
    check_levels,
    count_row,
    device_zone,
    existing_pseudonyms,
    first_days,
    object_index,
    rate_row,
    register_column,
    require_columns,
    truth_device,
    truth_index,
    truth_person,
    uniforms,
)
from sim.core.constants import LEVELS

log = logging.getLogger(__name__)

KEYS = ("home", "home_work")
GUESSES = ("random", "nearest")
STATUS = ("ok", "unknown_home", "unknown_work", "outside")
SET_SIZE_BINS = ((0, 0), (1, 1), (2, 5), (6, 20), (21, 100), (101, np.inf))
INFERRED_COLUMNS = ["pseudonym", "home_x_m", "home_y_m", "work_x_m", "work_y_m"]
_TREE_MIN = 256


# ----------------------------------------------------------------------------- kernels
@jit
def _nearest_one(px, py, start, size, mx, my):
    best = -1
    best_d = np.inf
    for j in range(start, start + size):
        dx = mx[j] - px
        dy = my[j] - py
        d = dx * dx + dy * dy
        if d < best_d:  # strict: the first (smallest person_id) wins ties
            best_d = d
            best = j
    return best


@pjit
def _nearest_kernel(px, py, start, size, mx, my, max_size, out):
    for i in prange(len(px)):
        if size[i] > 0 and size[i] <= max_size:
            out[i] = _nearest_one(px[i], py[i], start[i], size[i], mx, my)


# ----------------------------------------------------------------------------- helpers
def _check_inputs(inferred, register, levels, keys, world):
    require_columns(inferred, INFERRED_COLUMNS, "inferred table", "Pass the output of sim.infer.infer_home_work.")
    if inferred["pseudonym"].duplicated().any():
        d = inferred.loc[inferred["pseudonym"].duplicated(), "pseudonym"].iloc[0]
        raise InputError(f"inferred table has duplicate pseudonym {d!r}; expected one row per pseudonym.")
    need = ["person_id"]
    for lv in levels:
        need.append(register_column("home", lv))
        if "home_work" in keys:
            need.append(register_column("work", lv))
    fix = (
        "The register needs home_<level>_id (and work_<level>_id for key 'home_work') for each "
        f"level in {levels}; use keys=('home',) for a register without employers, or restrict levels."
    )
    require_columns(register, need, "register", fix)


def _lookup(dev_key, uk, start, size):
    pos = np.searchsorted(uk, dev_key)
    pos_c = np.minimum(pos, max(len(uk) - 1, 0))
    hit = (len(uk) > 0) & (pos < len(uk))
    hit = hit & (uk[pos_c] == dev_key) if len(uk) else np.zeros(len(dev_key), dtype=bool)
    g_start = np.where(hit, start[pos_c] if len(uk) else 0, 0)
    g_size = np.where(hit, size[pos_c] if len(uk) else 0, 0)
    return g_start.astype(np.int64), g_size.astype(np.int64), np.where(hit, pos_c, -1)


def _nearest_guess(px, py, g_start, g_size, gid, mx, my, mpid, tree_min):
    out = np.full(len(px), -1, dtype=np.int64)
    has = g_size > 0
    if not has.any():
        return out
    _nearest_kernel(
        np.ascontiguousarray(px, dtype=np.float64), np.ascontiguousarray(py, dtype=np.float64),
        g_start, g_size, mx, my, np.int64(tree_min), out,
    )
    big = np.flatnonzero(has & (g_size > tree_min))
    if len(big):
        # one k-d tree per large group, over its distinct addresses (first = smallest pid)
        order = big[np.argsort(gid[big], kind="stable")]
        gids, cuts = np.unique(gid[order], return_index=True)
        cuts = np.append(cuts, len(order))
        for k in range(len(gids)):
            devs = order[cuts[k]:cuts[k + 1]]
            s, n = int(g_start[devs[0]]), int(g_size[devs[0]])
            xy = np.column_stack([mx[s:s + n], my[s:s + n]])
            _, first = np.unique(xy, axis=0, return_index=True)
            first = np.sort(first)
            tree = cKDTree(xy[first])
            _, j = tree.query(np.column_stack([px[devs], py[devs]]), k=1)
            out[devs] = s + first[j]
    return out


def _check_link_args(inferred, register, world, levels, keys, guess):
    """Validate :func:`link_devices` arguments; returns the normalised ``(levels, keys)``."""
    levels = check_levels(levels, world)
    keys = tuple([keys] if isinstance(keys, str) else keys)
    bad = [k for k in keys if k not in KEYS]
    if bad or not keys:
        raise ConfigError(f"keys must be a non-empty subset of {KEYS}, got {keys!r}.")
    if guess not in GUESSES:
        raise ConfigError(f"guess must be one of {GUESSES}, got {guess!r}.")
    _check_inputs(inferred, register, levels, keys, world)
    if guess == "nearest":
        require_columns(register, ["home_x_m", "home_y_m"], "register", "guess='nearest' needs register home addresses.")
    return levels, keys


def _zone_keys(key, dh, dw, rh, register, level):
    """Status (index into ``STATUS``) per device, the devices' set keys, and the register
    rows their sets can hold with those rows' keys.

    Returns ``(status, dkey, members, rkey)``: ``dkey`` is the device key (the int64
    minimum where the status is not "ok"); ``members`` the register rows
    (:func:`wanted_home_rows`: listed at home inside the area, in a home zone some "ok"
    device has) and ``rkey[i]`` the key of row ``members[i]``.  Only those rows are keyed
    and sorted, not the whole 7 M-row register.
    """
    n = len(dh)
    status = np.zeros(n, dtype=np.int8)  # index into STATUS
    status[dh == -2] = 1
    if key == "home_work":
        status[(status == 0) & (dw == -2)] = 2
        status[(status == 0) & ((dh == -1) | (dw == -1))] = 3
    else:
        status[(status == 0) & (dh == -1)] = 3
    ok = status == 0
    members = wanted_home_rows(rh, dh, ok)
    if key == "home_work":
        rw = register[register_column("work", level)].to_numpy()[members].astype(np.int64)
        w_max = max(int(rw.max(initial=0)), int(dw.max(initial=0)))
        rkey, _ = pair_key(rh[members], rw, w_max, overwrite_h=True)
        dkey, _ = pair_key(dh, np.maximum(dw, -1), w_max)  # non-ok rows are masked below
    else:
        rkey = rh[members]
        dkey = dh.copy()
    dkey = np.where(ok, dkey, np.iinfo(np.int64).min)
    return status, dkey, members, rkey


def wanted_home_rows(home_zone, device_home, ok=None) -> np.ndarray:
    """Rows (ascending) of a register or population whose home zone ``home_zone`` (int,
    -1 outside the area) is the home zone of some device (``device_home``; only those
    with ``ok`` status when given): every row an anonymity set of those devices can hold,
    since a set's key starts with the home zone.  Sorting only these rows, not the whole
    7-10 M, gives the same sets."""
    hz = np.asarray(home_zone)
    dz = np.asarray(device_home) if ok is None else np.asarray(device_home)[ok]
    top = max(int(hz.max(initial=-1)), int(dz.max(initial=-1))) + 2
    wanted = np.zeros(top, dtype=bool)
    wanted[dz[dz >= 0] + 1] = True
    return np.flatnonzero(wanted[np.maximum(hz, -1) + 1])


def _anonymity_sets(dkey, rkey, members, reg_pid):
    """Each device's anonymity set as a slice of the register rows ``members``
    (ascending, keys ``rkey``; :func:`_zone_keys`) sorted by (key, person_id).

    Returns ``(order, g_start, g_size, gid)``: ``order`` holds register rows in that
    sorted order, a device's set is ``order[g_start:g_start + g_size]`` (size 0 where no
    row has its key: its status is not "ok", or nobody listed matches), ``gid`` numbers
    the sets (-1 none).  A set is a run of equal keys, so any ``members`` holding all of
    a set's rows gives it the same members in the same order.
    """
    order, uk, start, size = groups_by_key(rkey, reg_pid[members])
    order = members[order]
    g_start, g_size, gid = _lookup(dkey, uk, start, size)
    return order, g_start, g_size, gid


def _random_guess(seed, sidx, draw, g_start, g_size):
    """Row (in sorted-register order) of a uniform pick from each set, -1 for empty sets."""
    u = uniforms(seed, TAG_ATTACK, sidx, draw)
    pick = np.minimum((u * g_size).astype(np.int64), np.maximum(g_size - 1, 0))
    return np.where(g_size > 0, g_start + pick, -1)


def _guess_persons(guess, seed, sidx, draw, hx, hy, reg_x, reg_y, order, members_pid, g_start, g_size, gid):
    """person_id of the top-1 guess per device (-1 where the set is empty)."""
    if guess == "random":
        guess_row = _random_guess(seed, sidx, draw, g_start, g_size)
    else:
        mx = np.ascontiguousarray(reg_x[order])
        my = np.ascontiguousarray(reg_y[order])
        guess_row = _nearest_guess(hx, hy, g_start, g_size, gid, mx, my, members_pid, _TREE_MIN)
    return np.where(guess_row >= 0, members_pid[np.maximum(guess_row, 0)] if len(members_pid) else -1, -1)


# ------------------------------------------------------------------------ public API
def link_devices(
    inferred: pd.DataFrame,
    register: pd.DataFrame,
    world,
    *,
    levels=None,
    keys=KEYS,
    guess: str = "random",
    seed: int = 0,
    pseudonym_uid=None,
) -> pd.DataFrame:
    """Anonymity sets and a top-1 guess for every device, level and key (no truth used).

    Parameters
    ----------
    inferred : DataFrame
        One row per pseudonym: pseudonym, home_x_m, home_y_m, work_x_m, work_y_m
        (metres; NaN where unknown), as from ``sim.infer.infer_home_work``.
    register : DataFrame
        The attacker's register (CONTRACTS.md): person_id, home_<level>_id
        (home_building_id for buildings), home_x_m, home_y_m (for ``guess="nearest"``),
        work_<level>_id for key ``"home_work"``.
    world : World
        Provides ``locate(x_m, y_m, level)`` and ``LEVELS``.
    levels : iterable of str, optional
        Zone levels to use (default: all of ``world.LEVELS``).
    keys : iterable of {"home", "home_work"}
        Which anonymity sets to compute.
    guess : {"random", "nearest"}
        How the top-1 guess is picked from a set (module docstring).
    seed : int
        Root seed of the guess stream.
    pseudonym_uid : uint64 array, optional
        ``sim.core.rng.stable_uid64`` of ``inferred["pseudonym"]`` when the caller has it
        already (hashing a million pseudonyms takes seconds); computed here otherwise.

    Returns
    -------
    DataFrame, one row per (pseudonym, level, key): pseudonym, level, key, home_zone,
    work_zone (-2 unknown, -1 outside), status (``STATUS``), set_size (int; -1 where the
    status is not "ok"), guess_person_id (-1 where no guess is possible).
    """
    levels, keys = _check_link_args(inferred, register, world, levels, keys, guess)
    all_levels = LEVELS

    pseud = inferred["pseudonym"].to_numpy(dtype=object)
    hx = inferred["home_x_m"].to_numpy(dtype=np.float64)
    hy = inferred["home_y_m"].to_numpy(dtype=np.float64)
    wx = inferred["work_x_m"].to_numpy(dtype=np.float64)
    wy = inferred["work_y_m"].to_numpy(dtype=np.float64)
    if guess != "random":
        sidx = None
    elif pseudonym_uid is None:
        sidx = stable_uid64(pseud)
    else:
        sidx = np.asarray(pseudonym_uid, dtype=np.uint64)
        if sidx.shape != pseud.shape:
            raise InputError(f"pseudonym_uid has {sidx.size} values for {len(pseud)} pseudonyms; pass "
                             "stable_uid64(inferred['pseudonym']).")
    reg_pid = register["person_id"].to_numpy()
    reg_x = register["home_x_m"].to_numpy(dtype=np.float64) if guess == "nearest" else None
    reg_y = register["home_y_m"].to_numpy(dtype=np.float64) if guess == "nearest" else None

    cats = pd.Index(pseud)  # one category per pseudonym (unique): no string copies per level/key
    combos = [(lv, key) for lv in levels for key in keys]
    if not combos:
        return pd.DataFrame(columns=["pseudonym", "level", "key", "home_zone", "work_zone", "status", "set_size", "guess_person_id"])
    n, total = len(pseud), len(pseud) * len(combos)
    # the (level, key) blocks are written into whole-table columns: concatenating per-block
    # frames would hold every row twice (8 M rows, ~0.7 GB, at a million devices)
    home_zone, work_zone = np.empty(total, dtype=np.int64), np.empty(total, dtype=np.int64)
    status_all, set_size, guess_pid = np.empty(total, dtype=np.int8), np.empty(total, dtype=np.int64), None
    b = 0
    for lv in levels:
        dh = device_zone(world, hx, hy, lv)
        dw = device_zone(world, wx, wy, lv)
        rh = register[register_column("home", lv)].to_numpy(dtype=np.int64)
        for key in keys:
            rows = slice(b * n, (b + 1) * n)
            b += 1
            status, dkey, members, rkey = _zone_keys(key, dh, dw, rh, register, lv)
            ok = status == 0
            order, g_start, g_size, gid = _anonymity_sets(dkey, rkey, members, reg_pid)
            draw = all_levels.index(lv) * 2 + KEYS.index(key)
            gp = _guess_persons(guess, seed, sidx, draw, hx, hy, reg_x, reg_y, order, reg_pid[order],
                                g_start, g_size, gid)
            if guess_pid is None:
                guess_pid = np.empty(total, dtype=gp.dtype)
            home_zone[rows], work_zone[rows] = dh, (dw if key == "home_work" else -2)
            status_all[rows], set_size[rows], guess_pid[rows] = status, np.where(ok, g_size, -1), gp
            del status, dkey, members, rkey, ok, order, g_start, g_size, gid, gp
    return pd.DataFrame(
        {
            "pseudonym": pd.Categorical.from_codes(np.tile(np.arange(n, dtype=np.int32 if n < 2**31 else np.int64),
                                                           len(combos)), categories=cats),
            "level": np.repeat(np.array([lv for lv, _ in combos], dtype=object), n),
            "key": np.repeat(np.array([key for _, key in combos], dtype=object), n),
            "home_zone": home_zone,
            "work_zone": work_zone,
            "status": pd.Categorical.from_codes(status_all, categories=list(STATUS)),
            "set_size": set_size,
            "guess_person_id": guess_pid,
        },
        copy=False,  # the columns as built, not consolidated into one more copy
    )


def _codes(col: pd.Series) -> tuple[np.ndarray, list]:
    """``(codes, labels)`` of a column (categorical or not): ``labels[codes[i]]`` is row i's
    value as str, labels in order of first appearance."""
    codes, uniques = pd.factorize(col, sort=False)
    codes = np.asarray(codes)
    if len(uniques) < 127:  # a few levels, keys or statuses: 1 byte a row, not 8 (8 M rows at 1 M devices)
        codes = codes.astype(np.int8)
    return codes, [str(u) for u in uniques]


def _population_sizes(links: pd.DataFrame, persons: pd.DataFrame) -> np.ndarray:
    """Number of truth persons sharing each row's (home zone[, work zone]) — the
    population anonymity set of Golle & Partridge; -1 where the status is not "ok" or
    ``persons`` lacks the zone columns of the row's level and key."""
    out = np.full(len(links), -1, dtype=np.int64)
    # codes, not strings: millions of rows would otherwise become millions of str objects
    lv_code, lv_names = _codes(links["level"])
    key_code, key_names = _codes(links["key"])
    st_code, st_names = _codes(links["status"])
    ok = st_code == (st_names.index("ok") if "ok" in st_names else -2)
    dh_all = links["home_zone"].to_numpy(dtype=np.int64)
    dw_all = links["work_zone"].to_numpy(dtype=np.int64)
    for li, lv in enumerate(lv_names):
        for ki, key in enumerate(key_names):
            rows = np.flatnonzero((lv_code == li) & (key_code == ki) & ok)
            hc, wc = register_column("home", lv), register_column("work", lv)
            if not len(rows) or hc not in persons.columns or (key == "home_work" and wc not in persons.columns):
                continue
            # the persons' keys built in place, living persons only (those outside the area
            # match nobody): one int64 array, not several 10 M-row temporaries
            ph = _int_column(persons, hc)
            dh = dh_all[rows]
            live = wanted_home_rows(ph, dh)  # the persons any key can match
            pk = ph[live].astype(np.int64)
            if key == "home_work":
                pw = _int_column(persons, wc)
                dw = dw_all[rows]
                w_max = max(int(pw.max(initial=0)), int(dw.max(initial=0)))
                dk, _ = pair_key(dh, dw, w_max)
                pk, _ = pair_key(pk, pw[live], w_max, overwrite_h=True)
                del pw
            else:
                dk = dh
            del ph, live
            out[rows] = key_counts(pk, dk)
            del pk
    return out


def _int_column(df: pd.DataFrame, col: str) -> np.ndarray:
    """``df[col]`` as an integer array, without a copy when it is stored as one."""
    a = df[col].to_numpy()
    return a if a.dtype.kind in "iu" else df[col].to_numpy(dtype=np.int64)


def score_links(links: pd.DataFrame, pseudonyms, persons: pd.DataFrame | None = None) -> pd.DataFrame:
    """Add truth columns to :func:`link_devices` output (scoring only); ``pseudonyms``:
    the truth table or its :class:`~sim.attacks._common.TruthIndex`.

    Adds true_person_id, unique (set_size == 1), identified (unique and right),
    wrong_unique (unique and wrong), top1_correct (the guess is the owner).  With the
    truth ``persons`` table (CONTRACTS: home_<level>_id, work_<level>_id) it also adds
    set_size_population: how many people of the whole population share the device's
    inferred (home zone[, work zone]) — Golle & Partridge's anonymity set, beside the
    register's ``set_size`` (what the attacker sees); -1 where the status is not "ok".
    Raises InputError if a pseudonym is unknown to the truth table.
    """
    out = links.copy(deep=False)  # copy-on-write: the new columns never reach links, no 8 M-row copy
    ps = out["pseudonym"]
    if isinstance(ps.dtype, pd.CategoricalDtype):  # look each pseudonym up once
        codes = ps.cat.codes.to_numpy()
        truth = truth_person(pseudonyms, ps.cat.categories.to_numpy(), "inferred table")[codes]
    else:
        truth = truth_person(pseudonyms, ps.to_numpy(), "inferred table")
    out["true_person_id"] = truth
    out["unique"] = out["set_size"].to_numpy() == 1
    right = out["guess_person_id"].to_numpy() == truth
    out["identified"] = out["unique"].to_numpy() & right
    out["wrong_unique"] = out["unique"].to_numpy() & ~right
    out["top1_correct"] = (out["guess_person_id"].to_numpy() >= 0) & right
    if persons is not None:
        require_columns(persons, ["person_id"], "truth persons table")
        out["set_size_population"] = _population_sizes(out, persons)
    return out


def linkage_metrics(scored: pd.DataFrame, *, ci: str = "wilson", seed: int = 0, n_boot: int = 1000) -> pd.DataFrame:
    """Tidy per-(level, key) metrics from :func:`score_links` output.

    Rows (column ``metric``): n_devices, n_unknown_home, n_unknown_work, n_outside
    (counts); identified, unique, wrong_unique, top1_correct (shares of *all* devices,
    with intervals); identified_known (share of devices with status "ok");
    no_candidate (share of status-"ok" devices whose register set is empty: the
    attacker has nobody to name); median_set_size (median register set size over the
    status-"ok" devices with a *non-empty* set — an empty set is "no candidate", never
    a set of size 0 in a median; bootstrap CI; n = those devices);
    set_size_<lo>_<hi> (share of status-"ok" devices whose set size is in [lo, hi]).
    When ``scored`` has set_size_population (truth persons given to
    :func:`score_links`): no_candidate_population, median_set_size_population (the
    same over the population's sets) and unique_population (share of status-"ok"
    devices whose population set has exactly one person).
    """
    rows = []
    for (lv, key), g in scored.groupby(["level", "key"], sort=False, observed=True):
        n = len(g)
        p = dict(level=lv, key=key)
        st = g["status"].astype(str).to_numpy()
        ok = st == "ok"
        rows.append(count_row("n_devices", n, n, **p))
        rows.append(count_row("n_unknown_home", int((st == "unknown_home").sum()), n, **p))
        rows.append(count_row("n_unknown_work", int((st == "unknown_work").sum()), n, **p))
        rows.append(count_row("n_outside", int((st == "outside").sum()), n, **p))
        tg = (_level_index(lv), KEYS.index(key))
        for m in ("identified", "unique", "wrong_unique", "top1_correct"):
            rows.append(rate_row(m, g[m].to_numpy(), ci, seed, tg, **p))
        rows.append(rate_row("identified_known", g["identified"].to_numpy()[ok], ci, seed, tg, **p))
        sizes = g["set_size"].to_numpy()[ok]
        rows.append(rate_row("no_candidate", sizes == 0, ci, seed, tg + (2,), **p))
        med = stats.summary_ci(sizes[sizes > 0], statistic="median", seed=seed, tags=tg + (1,), n_boot=n_boot)
        rows.append({**p, "metric": "median_set_size", **med})
        for lo, hi in SET_SIZE_BINS:
            name = f"set_size_{lo}_{'inf' if np.isinf(hi) else int(hi)}"
            rows.append(rate_row(name, (sizes >= lo) & (sizes <= hi), "wilson", **p))
        if "set_size_population" in g.columns:
            pop = g["set_size_population"].to_numpy()[ok]
            if len(pop) and (pop >= 0).all():
                rows.append(rate_row("no_candidate_population", pop == 0, ci, seed, tg + (3,), **p))
                medp = stats.summary_ci(pop[pop > 0], statistic="median", seed=seed, tags=tg + (4,), n_boot=n_boot)
                rows.append({**p, "metric": "median_set_size_population", **medp})
                rows.append(rate_row("unique_population", pop == 1, ci, seed, tg + (5,), **p))
    cols = ["level", "key"] + METRIC_COLUMNS
    return pd.DataFrame(rows, columns=cols)


def _level_index(level: str) -> int:
    return LEVELS.index(level) if level in LEVELS else len(LEVELS)


def linkage_attack(
    inferred: pd.DataFrame,
    register: pd.DataFrame,
    world,
    pseudonyms: pd.DataFrame,
    *,
    levels=None,
    keys=KEYS,
    guess: str = "random",
    seed: int = 0,
    ci: str = "wilson",
    persons: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Golle & Partridge linkage end to end: ``(per_device, metrics)``.

    ``per_device`` is :func:`score_links` of :func:`link_devices`; ``metrics`` is
    :func:`linkage_metrics` of it.  ``pseudonyms`` and ``persons`` (truth) are used
    only to score (``persons`` gives the population anonymity sets).
    """
    links = link_devices(inferred, register, world, levels=levels, keys=keys, guess=guess, seed=seed)
    scored = score_links(links, pseudonyms, persons)
    return scored, linkage_metrics(scored, ci=ci, seed=seed)


# ------------------------------------------------------------- time to identification
def split_prefixes(inferred_by_day) -> dict:
    """``{days: inferred table}`` from a dict, or from the long table of
    ``sim.infer.infer_prefixes`` (one block of rows per ``window_days``)."""
    if isinstance(inferred_by_day, pd.DataFrame):
        require_columns(inferred_by_day, ["window_days"], "inferred prefixes table",
                        "Pass sim.infer.infer_prefixes output or a dict {days: inferred table}.")
        return {
            (int(d) if float(d).is_integer() else float(d)): g.reset_index(drop=True)
            for d, g in inferred_by_day.groupby("window_days", sort=True)
        }
    if not isinstance(inferred_by_day, dict) or not inferred_by_day:
        raise InputError(
            "inferred_by_day must be a non-empty dict {days: inferred table} or the table of "
            f"sim.infer.infer_prefixes, got {type(inferred_by_day).__name__}."
        )
    return inferred_by_day


def _device_any(device: np.ndarray, flag: np.ndarray):
    """Per distinct device (sorted): whether any of its rows has ``flag``."""
    dev, inv = np.unique(device, return_inverse=True)
    return dev, np.bincount(inv, weights=flag.astype(np.float64), minlength=len(dev)) > 0


def _same_pseudonyms(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two object arrays hold the same pseudonyms in the same order."""
    return len(a) == len(b) and bool(np.array_equal(a, b))


def time_to_identification(
    inferred_by_day: dict,
    register: pd.DataFrame,
    world,
    pseudonyms: pd.DataFrame,
    *,
    level: str = "block",
    key: str = "home_work",
    guess: str = "random",
    seed: int = 0,
    ci: str = "wilson",
    release=None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Share of pseudonyms, and of devices, correctly and uniquely identified after d days.

    Parameters
    ----------
    inferred_by_day : dict {d: inferred DataFrame} or DataFrame
        Home/work inferred from the first ``d`` days: a dict, or the long table of
        ``sim.infer.infer_prefixes`` (split on its ``window_days`` column).
    level, key : the zone level and anonymity-set key of the linkage.
    release : Traces or DataFrame, optional
        The release the tables were inferred from, or its observed-span table
        (``sim.attacks._common.observed_span``, e.g. built part by part); it says which
        pseudonyms *exist* in window d (a ping in the first d days: ``first_day < d``).  Without it the truth
        table's ``first_day`` column is used, and without that every pseudonym of any
        table is taken to exist in every window.
    Other parameters as in :func:`link_devices`.

    Returns
    -------
    (curve, per_pseudonym)
        curve: one row per (d, unit) — days, level, key, metric="identified", value,
        ci_low, ci_high, n, unit.  ``unit="pseudonym"``: the share of the pseudonyms
        that exist in window d that are identified (n = those pseudonyms; one absent
        from day d's table counts as not identified).  ``unit="device"`` (DESIGN
        §6a): the share of devices with a pseudonym in window d of which *any*
        existing pseudonym is identified (n = those devices).
        per_pseudonym: pseudonym, device_idx, first_day (smallest d at which it is
        identified; NaN if never), identified_last (at the largest d).
    """
    inferred_by_day = split_prefixes(inferred_by_day)
    days = sorted(inferred_by_day)
    for d in days:
        if isinstance(d, bool) or not isinstance(d, (int, float, np.integer, np.floating)) or not d > 0:
            raise InputError(f"inferred_by_day keys must be positive day counts, got {d!r}.")
    # the distinct pseudonyms of the tables in order of first appearance, one table at a
    # time (the tables may be read from disk when asked for: never all of them at once)
    in_tables = np.zeros(0, dtype=object)
    for d in days:
        ps = inferred_by_day[d]["pseudonym"].to_numpy(dtype=object)
        if not _same_pseudonyms(ps, in_tables):  # (every window of a prefix table has the same rows)
            in_tables = pd.unique(np.concatenate([in_tables, ps]))
        del ps
    first = first_days(release, pseudonyms)  # once: each window's pseudonyms are slices of it
    exists = {d: existing_pseudonyms(d, fallback=in_tables, first=first) for d in days}
    universe = object_index(pd.unique(np.concatenate([in_tables, *exists.values()])))
    universe_ps = universe.to_numpy()
    # where each pseudonym with a first day sits in the universe, looked up once: window
    # d's existing pseudonyms are those with first_day < d
    first_pos = None if first is None else universe.get_indexer(object_index(first[0]))
    first_day = None if first is None else first[1]
    truth = truth_index(pseudonyms)  # indexed once for every window
    device = truth_device(truth, universe.to_numpy(), "inferred tables")
    first = np.full(len(universe), np.nan)
    rows = []
    ident_last = np.zeros(len(universe), dtype=bool)
    uid = stable_uid64(universe.to_numpy()) if guess == "random" else None  # once, not once per window
    for d in days:
        table = inferred_by_day[d]
        ps = table["pseudonym"].to_numpy(dtype=object)
        # the links' rows: one per table row, in order
        pos = (np.arange(len(ps)) if _same_pseudonyms(ps, universe_ps[:len(ps)])
               else universe.get_indexer(object_index(ps)))
        del ps
        links = link_devices(table, register, world, levels=(level,), keys=(key,), guess=guess, seed=seed,
                             pseudonym_uid=None if uid is None else uid[pos])
        del table
        scored = score_links(links, truth)
        ident = np.zeros(len(universe), dtype=bool)
        ident[pos] = scored["identified"].to_numpy()
        ex = np.zeros(len(universe), dtype=bool)
        ex[universe.get_indexer(object_index(exists[d])) if first_pos is None else first_pos[first_day < float(d)]] = True
        ident &= ex  # a pseudonym with no ping in the window cannot be identified in it
        newly = ident & np.isnan(first)
        first[newly] = d
        p = dict(days=d, level=level, key=key)
        rows.append({**rate_row("identified", ident[ex], ci, seed, (int(d),), **p), "unit": "pseudonym"})
        _, dev_ident = _device_any(device[ex], ident[ex])
        rows.append({**rate_row("identified", dev_ident, ci, seed, (int(d), 1), **p), "unit": "device"})
        ident_last = ident
        del links, scored, pos, ex
        release_free_memory(collect=False)  # this window's working memory, before the next window's
    curve = pd.DataFrame(rows, columns=["days", "level", "key"] + METRIC_COLUMNS + ["unit"])
    per = pd.DataFrame({"pseudonym": universe.to_numpy(), "device_idx": device, "first_day": first,
                        "identified_last": ident_last})
    return curve, per
