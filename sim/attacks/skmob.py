"""Privacy-risk measures compatible with scikit-mobility's ``skmob.privacy.attacks``.

Input is a scikit-mobility-style DataFrame with columns ``uid``, ``datetime``, ``lat``,
``lng`` (one row per record; degrees, as in skmob).  Locations are compared by exact
(lat, lng) equality, as skmob does, so coarsen coordinates before calling if needed.

Risk of a user (Pellungrini et al. 2017; skmob's ``Attack._risk``)::

    risk(u) = max over background-knowledge instances I of u of 1 / #{users matching I}

The matching count includes u itself, so 0 < risk <= 1.  Instances of size k are all
k-combinations of u's records (all records if u has fewer than k), in time order.

Attacks (``ATTACKS``) and their match rules:

* ``"location"`` — instance = k records; a user matches if, for every location of
  the instance, they visited it at least as many times as it occurs in the instance.
* ``"location_sequence"`` — instance = k records in time order (an ordered
  subsequence); a user matches if the instance's locations occur in the user's
  time-ordered sequence as a subsequence (not necessarily contiguous).
* ``"location_time"`` — as ``"location"`` on (location, time truncated to
  ``time_precision``) pairs; precisions ``PRECISIONS``.
* ``"unique_location"`` — instance = k distinct locations of u; a user matches if
  they visited all of them.
* ``"frequency"`` — instance = k (location, visit count) pairs of u; a user with
  count f at each location matches if ``f - f*tolerance <= f_inst <= f + f*tolerance``
  (both bounds inclusive; the interval is around the *candidate's* count, as in skmob).
* ``"home_work"`` — instance = u's two most frequently visited locations (one
  instance, no combinations); a user matches if both are among the user's own two
  most frequent locations.  Ties in visit count are broken by (lat, lng) ascending.

Known defects of scikit-mobility 1.3.1 (``compat="docs"``, the default, follows the
documentation; ``compat="skmob-1.3.1"`` reproduces the code, for cross-checks):

1. ``HomeWorkAttack`` sorts the frequency vector *ascending* and takes its first two
   rows, so it uses the two LEAST frequent places (of the target and of candidates),
   contrary to its documentation ("the two locations most frequently visited").
2. ``LocationTimeAttack`` with ``time_precision="Hour"`` builds the key
   ``str(year)+str(month)+str(day)+str(month)`` — the hour is never included, so
   "Hour" behaves like "Day"; "Minute" and "Second" likewise omit the hour.  Keys are
   also not zero-padded (e.g. 2011-1-11 and 2011-11-1 give the same "Day" key).
   In ``compat="docs"`` times are truncated properly (``Timestamp.floor``-style).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from sim.core.jit import jit, pjit, prange
from sim.core.errors import ConfigError, InputError

ATTACKS = ("location", "location_sequence", "location_time", "unique_location", "frequency", "home_work")
PRECISIONS = ("Year", "Month", "Day", "Hour", "Minute", "Second")
COMPAT = ("docs", "skmob-1.3.1")
COLUMNS = ("uid", "datetime", "lat", "lng")

_M_LOCATION, _M_SEQUENCE, _M_UNIQUE, _M_FREQUENCY, _M_HOMEWORK = 0, 1, 2, 3, 4


# ----------------------------------------------------------------------------- kernels
@jit
def _bag_count(bag_off, bag_item, bag_cnt, user, item):
    """Count of ``item`` in ``user``'s bag (0 if absent); binary search."""
    lo, hi = bag_off[user], bag_off[user + 1]
    b = hi
    while lo < hi:
        mid = (lo + hi) >> 1
        if bag_item[mid] < item:
            lo = mid + 1
        else:
            hi = mid
    if lo < b and bag_item[lo] == item:
        return bag_cnt[lo]
    return 0


@jit
def _match(mode, c, inst_item, inst_val, k, tol, seq_off, seq_item, bag_off, bag_item, bag_cnt, top2):
    if mode == _M_SEQUENCE:
        j = 0
        for q in range(seq_off[c], seq_off[c + 1]):
            if seq_item[q] == inst_item[j]:
                j += 1
                if j == k:
                    return True
        return j == k
    if mode == _M_HOMEWORK:
        for j in range(k):
            if top2[c, 0] != inst_item[j] and top2[c, 1] != inst_item[j]:
                return False
        return True
    for j in range(k):
        f = _bag_count(bag_off, bag_item, bag_cnt, c, inst_item[j])
        if f == 0:
            return False
        if mode == _M_LOCATION:
            need = 0  # occurrences of this item in the instance
            for q in range(k):
                if inst_item[q] == inst_item[j]:
                    need += 1
            if f < need:
                return False
        elif mode == _M_FREQUENCY:
            ff = float(f)
            v = float(inst_val[j])
            if not (v >= ff - ff * tol and v <= ff + ff * tol):
                return False
    return True


@jit
def _count_matches(mode, inst_item, inst_val, k, tol, seq_off, seq_item, bag_off, bag_item, bag_cnt, top2,
                   post_off, post_user):
    # candidates: the users of the rarest item of the instance
    best = inst_item[0]
    best_len = post_off[best + 1] - post_off[best]
    for j in range(1, k):
        ln = post_off[inst_item[j] + 1] - post_off[inst_item[j]]
        if ln < best_len:
            best, best_len = inst_item[j], ln
    cnt = 0
    for q in range(post_off[best], post_off[best + 1]):
        if _match(mode, post_user[q], inst_item, inst_val, k, tol, seq_off, seq_item, bag_off, bag_item, bag_cnt, top2):
            cnt += 1
    return cnt


@jit
def _risk_one(u, mode, klen, tol, rec_off, rec_item, rec_val, seq_off, seq_item, bag_off, bag_item, bag_cnt,
              top2, post_off, post_user):
    if mode == _M_HOMEWORK:
        inst_item = np.empty(2, dtype=np.int64)
        inst_val = np.zeros(2, dtype=np.int64)
        k = 0
        for j in range(2):
            if top2[u, j] >= 0:
                inst_item[k] = top2[u, j]
                k += 1
        if k == 0:
            return 0.0
        return 1.0 / _count_matches(mode, inst_item, inst_val, k, tol, seq_off, seq_item, bag_off, bag_item,
                                    bag_cnt, top2, post_off, post_user)
    a = rec_off[u]
    n = rec_off[u + 1] - a
    if n == 0:
        return 0.0
    k = min(klen, n)
    idx = np.arange(k)
    inst_item = np.empty(k, dtype=np.int64)
    inst_val = np.empty(k, dtype=np.int64)
    risk = 0.0
    while True:
        for j in range(k):
            inst_item[j] = rec_item[a + idx[j]]
            inst_val[j] = rec_val[a + idx[j]]
        c = _count_matches(mode, inst_item, inst_val, k, tol, seq_off, seq_item, bag_off, bag_item, bag_cnt,
                           top2, post_off, post_user)
        r = 1.0 / c
        if r > risk:
            risk = r
            if risk >= 1.0:
                break
        # next combination in lexicographic order
        j = k - 1
        while j >= 0 and idx[j] == n - k + j:
            j -= 1
        if j < 0:
            break
        idx[j] += 1
        for q in range(j + 1, k):
            idx[q] = idx[q - 1] + 1
    return risk


@pjit
def _risk_kernel(targets, mode, klen, tol, rec_off, rec_item, rec_val, seq_off, seq_item, bag_off, bag_item,
                 bag_cnt, top2, post_off, post_user, out):
    for s in prange(len(targets)):
        out[s] = _risk_one(targets[s], mode, klen, tol, rec_off, rec_item, rec_val, seq_off, seq_item, bag_off,
                           bag_item, bag_cnt, top2, post_off, post_user)


@jit
def _risk_serial(targets, mode, klen, tol, rec_off, rec_item, rec_val, seq_off, seq_item, bag_off, bag_item,
                 bag_cnt, top2, post_off, post_user, out):
    """Same as _risk_kernel without threads: a parallel launch costs milliseconds on a
    busy machine, more than the whole computation for a few dozen users."""
    for s in range(len(targets)):
        out[s] = _risk_one(targets[s], mode, klen, tol, rec_off, rec_item, rec_val, seq_off, seq_item, bag_off,
                           bag_item, bag_cnt, top2, post_off, post_user)


_SERIAL_BELOW = 256  # targets


# ------------------------------------------------------------------- preparation
def _time_keys(dt: pd.Series, precision: str, compat: str) -> np.ndarray:
    if compat == "skmob-1.3.1":
        y, m, d = dt.dt.year.astype(str), dt.dt.month.astype(str), dt.dt.day.astype(str)
        mi, s = dt.dt.minute.astype(str), dt.dt.second.astype(str)
        key = {
            "Year": y, "Month": y + m, "Day": y + m + d, "Hour": y + m + d + m,
            "Minute": y + m + d + m + mi, "Second": y + m + d + m + mi + s,
        }[precision]
        return pd.factorize(key)[0]
    if precision == "Year":
        key = dt.dt.year.to_numpy()
    elif precision == "Month":
        key = dt.dt.year.to_numpy() * 12 + dt.dt.month.to_numpy()
    else:
        unit = {"Day": "D", "Hour": "h", "Minute": "min", "Second": "s"}[precision]
        key = dt.dt.floor(unit).to_numpy()
    return pd.factorize(key)[0]


def _pair_codes(a, b) -> np.ndarray:
    """Dense int64 ids of the (a, b) pairs, numbered in (a, b) ascending order."""
    n = len(a)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    o = np.lexsort((b, a))
    sa, sb = a[o], b[o]
    new = np.ones(n, dtype=bool)
    new[1:] = (sa[1:] != sa[:-1]) | (sb[1:] != sb[:-1])
    codes = np.empty(n, dtype=np.int64)
    codes[o] = np.cumsum(new) - 1
    return codes


def _csr(owner, n_owner):
    off = np.zeros(n_owner + 1, dtype=np.int64)
    np.cumsum(np.bincount(owner, minlength=n_owner), out=off[1:])
    return off


def _prepare(df, attack, time_precision, compat):
    miss = [c for c in COLUMNS if c not in df.columns]
    if miss:
        raise InputError(
            f"skmob-style table is missing column(s) {miss}; expected {list(COLUMNS)} "
            "(rename e.g. user_id -> uid, lon -> lng)."
        )
    if any(df[c].isna().any() for c in COLUMNS):
        raise InputError("uid/datetime/lat/lng contain missing values; drop those records first.")
    dt = df["datetime"]
    if not pd.api.types.is_datetime64_any_dtype(dt):
        dt = pd.to_datetime(dt)
    uid_codes, uids = pd.factorize(df["uid"], sort=True)
    order = np.lexsort((dt.to_numpy(), uid_codes))  # stable: ties keep input order
    uid_codes = uid_codes[order]
    dt = dt.iloc[order].reset_index(drop=True)
    lat = df["lat"].to_numpy(dtype=np.float64)[order]
    lng = df["lng"].to_numpy(dtype=np.float64)[order]
    loc_codes = _pair_codes(lat, lng)  # location ids ordered by (lat, lng) ascending
    n_users = len(uids)
    if attack == "location_time":
        tk = _time_keys(dt, time_precision, compat)
        item = _pair_codes(loc_codes, tk)
    else:
        item = loc_codes
    item = item.astype(np.int64)
    n_items = int(item.max()) + 1 if len(item) else 0
    # bag: per user sorted distinct items with counts
    pair = uid_codes.astype(np.int64) * max(n_items, 1) + item
    upair, cnt = np.unique(pair, return_counts=True)
    bag_user = upair // max(n_items, 1)
    bag_item = (upair % max(n_items, 1)).astype(np.int64)
    bag_cnt = cnt.astype(np.int64)
    bag_off = _csr(bag_user, n_users)
    # postings: users per item, ascending
    po = np.lexsort((bag_user, bag_item))
    post_user = bag_user[po].astype(np.int64)
    post_off = _csr(bag_item[po], n_items)
    seq_off = _csr(uid_codes, n_users)
    seq_item = item
    top2 = np.full((n_users, 2), -1, dtype=np.int64)
    if attack in ("location", "location_sequence", "location_time"):
        rec_off, rec_item, rec_val = seq_off, seq_item, np.zeros(len(item), dtype=np.int64)
    else:
        # frequency vector: skmob order is (frequency ascending, then lat, lng)
        fo = np.lexsort((bag_item, bag_cnt, bag_user))
        rec_off, rec_item, rec_val = bag_off, bag_item[fo], bag_cnt[fo]
        if attack == "home_work":
            if compat == "docs":
                fo = np.lexsort((bag_item, -bag_cnt, bag_user))  # most frequent first
            fu = bag_user[fo]
            rank = np.arange(len(fo)) - bag_off[fu]
            keep = rank < 2
            top2[fu[keep], rank[keep]] = bag_item[fo][keep]
    return dict(uids=uids, n_users=n_users, rec_off=rec_off, rec_item=np.ascontiguousarray(rec_item),
                rec_val=np.ascontiguousarray(rec_val), seq_off=seq_off, seq_item=np.ascontiguousarray(seq_item),
                bag_off=bag_off, bag_item=bag_item, bag_cnt=bag_cnt, top2=top2, post_off=post_off,
                post_user=post_user)


def privacy_risk(
    df: pd.DataFrame,
    attack: str,
    *,
    knowledge_length: int = 2,
    time_precision: str = "Hour",
    tolerance: float = 0.0,
    targets=None,
    compat: str = "docs",
) -> pd.DataFrame:
    """Per-user re-identification risk under one skmob-style attack.

    Parameters
    ----------
    df : DataFrame with uid, datetime, lat, lng (skmob TrajDataFrame layout).
    attack : one of ``ATTACKS`` (see module docstring for the match rules).
    knowledge_length : k >= 1, size of the background knowledge (ignored by home_work).
    time_precision : one of ``PRECISIONS`` (location_time only).
    tolerance : in [0, 1], relative frequency tolerance (frequency only).
    targets : optional list of uids to assess (risk is still against all users).
    compat : "docs" (documented behaviour) or "skmob-1.3.1" (reproduce its code's
        home_work and time-precision defects).

    Returns
    -------
    DataFrame uid, risk — one row per (target) user, sorted by uid.
    """
    if attack not in ATTACKS:
        raise ConfigError(f"attack must be one of {ATTACKS}, got {attack!r}.")
    if compat not in COMPAT:
        raise ConfigError(f"compat must be one of {COMPAT}, got {compat!r}.")
    if isinstance(knowledge_length, bool) or not isinstance(knowledge_length, (int, np.integer)) or knowledge_length < 1:
        raise ConfigError(f"knowledge_length must be an integer >= 1, got {knowledge_length!r}.")
    if time_precision not in PRECISIONS:
        raise ConfigError(f"time_precision must be one of {PRECISIONS}, got {time_precision!r}.")
    if not (isinstance(tolerance, (int, float)) and 0.0 <= float(tolerance) <= 1.0):
        raise ConfigError(f"tolerance must be in [0, 1], got {tolerance!r}.")
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"df must be a pandas DataFrame, got {type(df).__name__}.")
    d = _prepare(df, attack, time_precision, compat)
    uids = d["uids"]
    if targets is None:
        tg = np.arange(d["n_users"], dtype=np.int64)
    else:
        pos = pd.Index(uids).get_indexer(pd.Index(list(targets)))
        if np.any(pos < 0):
            raise InputError(f"targets {list(np.asarray(list(targets))[pos < 0][:3])} are not uids of the table.")
        tg = np.sort(pos).astype(np.int64)
    mode = {"location": _M_LOCATION, "location_time": _M_LOCATION, "location_sequence": _M_SEQUENCE,
            "unique_location": _M_UNIQUE, "frequency": _M_FREQUENCY, "home_work": _M_HOMEWORK}[attack]
    out = np.zeros(len(tg), dtype=np.float64)
    if len(tg):
        kernel = _risk_serial if len(tg) < _SERIAL_BELOW else _risk_kernel
        kernel(tg, np.int64(mode), np.int64(knowledge_length), float(tolerance), d["rec_off"], d["rec_item"],
                     d["rec_val"], d["seq_off"], d["seq_item"], d["bag_off"], d["bag_item"], d["bag_cnt"], d["top2"],
                     d["post_off"], d["post_user"], out)
    return pd.DataFrame({"uid": np.asarray(uids)[tg], "risk": out})


def location_risk(df, knowledge_length=2, **kw):
    """skmob ``LocationAttack(knowledge_length).assess_risk`` equivalent."""
    return privacy_risk(df, "location", knowledge_length=knowledge_length, **kw)


def location_sequence_risk(df, knowledge_length=2, **kw):
    """skmob ``LocationSequenceAttack`` equivalent."""
    return privacy_risk(df, "location_sequence", knowledge_length=knowledge_length, **kw)


def location_time_risk(df, knowledge_length=2, time_precision="Hour", **kw):
    """skmob ``LocationTimeAttack`` equivalent (documented "Hour"; see module notes)."""
    return privacy_risk(df, "location_time", knowledge_length=knowledge_length, time_precision=time_precision, **kw)


def unique_location_risk(df, knowledge_length=2, **kw):
    """skmob ``UniqueLocationAttack`` equivalent."""
    return privacy_risk(df, "unique_location", knowledge_length=knowledge_length, **kw)


def frequency_risk(df, knowledge_length=2, tolerance=0.0, **kw):
    """skmob ``LocationFrequencyAttack`` equivalent."""
    return privacy_risk(df, "frequency", knowledge_length=knowledge_length, tolerance=tolerance, **kw)


def home_work_risk(df, **kw):
    """skmob ``HomeWorkAttack`` equivalent (two MOST frequent places unless compat)."""
    return privacy_risk(df, "home_work", **kw)


def traces_to_skmob_frame(traces, world=None, *, cell_m: float | None = None) -> pd.DataFrame:
    """A skmob-style table (uid, datetime, lat, lng) from a Traces release.

    Positions are snapped to the centre of ``cell_m``-metre cells first when given (exact
    equality of locations is what these measures compare), and converted to degrees with
    ``world.to_latlon`` when a world is given (else lat/lng hold y_m/x_m).
    """
    x = np.asarray(traces.x_m, dtype=np.float64)
    y = np.asarray(traces.y_m, dtype=np.float64)
    if cell_m is not None:
        if not cell_m > 0:
            raise ConfigError(f"cell_m must be > 0, got {cell_m!r}.")
        x = (np.floor(x / cell_m) + 0.5) * cell_m
        y = (np.floor(y / cell_m) + 0.5) * cell_m
    if world is not None:
        lat, lng = world.to_latlon(x, y)
    else:
        lat, lng = y, x
    return pd.DataFrame({
        "uid": np.repeat(np.asarray(traces.pseudonym, dtype=object), traces.lengths),
        "datetime": pd.to_datetime(np.asarray(traces.t_s) + int(traces.utc_offset_s), unit="s"),
        "lat": lat, "lng": lng,
    })
