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
* ``"location_probability"`` (skmob ``LocationProbabilityAttack``) — records are u's
  *probability vector*: one per distinct location, ``p_u(l) = f_u(l) / n_u`` with
  ``f_u(l)`` u's records at l and ``n_u`` all of u's records; instance = k of them.  A
  user c matches if it visited every location of the instance and, for each,
  ``p_c - p_c*tolerance <= p_inst <= p_c + p_c*tolerance`` (both inclusive, the interval
  around the *candidate's* probability; ``tolerance = 0`` means equal probabilities).
* ``"location_proportion"`` (skmob ``LocationProportionAttack``) — records are u's
  frequency vector (one per distinct location, with its visit count); instance = k of
  them.  A user c matches if it visited every location of the instance and, with
  proportions taken relative to the most visited location *of the instance* —
  ``q_inst(l) = f_u(l) / max_{l' in I} f_u(l')`` and ``q_c(l) = f_c(l) / max_{l' in I}
  f_c(l')`` — ``q_c - q_c*tolerance <= q_inst <= q_c + q_c*tolerance`` for every l.
  Both follow skmob's ``_match`` code and documentation (they agree; the toy values of
  its docstrings are reproduced in the tests).

Cost and limits: a user with n records has C(n, min(k, n)) instances of size k (one
for ``home_work``), and each instance is checked against the users sharing its rarest
location.  ``privacy_risk`` counts the instances of the target users before computing
and refuses (``ConfigError``) above ``max_instances`` (default ``MAX_INSTANCES`` =
10,000,000, roughly a minute when ~20 users share every location, often far less: the
count is an upper bound, as a user's enumeration stops once their risk reaches 1).
``knowledge_length`` above ``MAX_KNOWLEDGE_LENGTH`` is refused outright.  The kernels are
called on chunks of users (from ``_CHUNK_INSTANCES`` instances, growing while a call
takes under ``_CHUNK_SECONDS``; a user with more instances is enumerated in resumable
slices), so Ctrl-C (KeyboardInterrupt) takes effect within about a second; results do
not depend on the chunking.

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

import math
import numbers
import time

import numpy as np
import pandas as pd

from sim.core.jit import jit, pjit, prange
from sim.core.errors import ConfigError, CRSError, InputError
from sim.core.traces import Traces

ATTACKS = ("location", "location_sequence", "location_time", "unique_location", "frequency", "home_work",
           "location_probability", "location_proportion")
PRECISIONS = ("Year", "Month", "Day", "Hour", "Minute", "Second")
COMPAT = ("docs", "skmob-1.3.1")
COLUMNS = ("uid", "datetime", "lat", "lng")

_M_LOCATION, _M_SEQUENCE, _M_UNIQUE, _M_FREQUENCY, _M_HOMEWORK = 0, 1, 2, 3, 4
_M_PROBABILITY, _M_PROPORTION = 5, 6
#: attacks whose records are a user's distinct locations (frequency/probability vector)
VECTOR_ATTACKS = ("unique_location", "frequency", "home_work", "location_probability", "location_proportion")

MAX_INSTANCES = 10_000_000  # default refusal threshold (background-knowledge instances)
MAX_KNOWLEDGE_LENGTH = 1_000_000  # larger k is refused as a config error
_CHUNK_INSTANCES = 100_000  # smallest kernel call (instances); Ctrl-C is honoured between calls
_CHUNK_SECONDS = 0.25  # kernel calls grow until they take about this long


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
    if mode == _M_PROPORTION:
        # proportions relative to the most visited location of the instance, on both sides
        max_i = 0.0
        max_c = 0
        for j in range(k):
            f = _bag_count(bag_off, bag_item, bag_cnt, c, inst_item[j])
            if f == 0:
                return False
            if f > max_c:
                max_c = f
            if inst_val[j] > max_i:
                max_i = inst_val[j]
        for j in range(k):
            qc = float(_bag_count(bag_off, bag_item, bag_cnt, c, inst_item[j])) / float(max_c)
            v = inst_val[j] / max_i
            if not (v >= qc - qc * tol and v <= qc + qc * tol):
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
        elif mode == _M_PROBABILITY:
            pc = float(f) / float(seq_off[c + 1] - seq_off[c])  # f_c(l) / n_c, as skmob's division
            v = inst_val[j]
            if not (v >= pc - pc * tol and v <= pc + pc * tol):
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
        inst_val = np.zeros(2, dtype=np.float64)
        k = 0
        for j in range(2):
            if top2[u, j] >= 0:
                inst_item[k] = top2[u, j]
                k += 1
        if k == 0:
            return 0.0
        return 1.0 / _count_matches(mode, inst_item, inst_val, k, tol, seq_off, seq_item, bag_off, bag_item,
                                    bag_cnt, top2, post_off, post_user)
    n = rec_off[u + 1] - rec_off[u]
    if n == 0:
        return 0.0
    k = min(klen, n)
    idx = np.arange(k)
    return _risk_part(u, mode, k, tol, rec_off, rec_item, rec_val, seq_off, seq_item, bag_off, bag_item, bag_cnt,
                      top2, post_off, post_user, idx, -1)[0]


@jit
def _risk_part(u, mode, k, tol, rec_off, rec_item, rec_val, seq_off, seq_item, bag_off, bag_item, bag_cnt,
               top2, post_off, post_user, idx, budget):
    """Max of 1/#matches over u's k-combinations (lexicographic order) from the one in
    ``idx`` on, for at most ``budget`` instances (< 0: no limit); ``idx`` is left at the
    next combination.  Returns (risk, finished)."""
    a = rec_off[u]
    n = rec_off[u + 1] - a
    inst_item = np.empty(k, dtype=np.int64)
    inst_val = np.empty(k, dtype=np.float64)
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
                return risk, True
        # next combination in lexicographic order
        j = k - 1
        while j >= 0 and idx[j] == n - k + j:
            j -= 1
        if j < 0:
            return risk, True
        idx[j] += 1
        for q in range(j + 1, k):
            idx[q] = idx[q - 1] + 1
        budget -= 1
        if budget == 0:
            return risk, False


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


@pjit
def _resume_kernel(pos, targets, mode, k, tol, rec_off, rec_item, rec_val, seq_off, seq_item, bag_off, bag_item,
                   bag_cnt, top2, post_off, post_user, idx, risk, done, budget):
    """Advance the enumeration of targets[pos] by up to ``budget`` instances each (state:
    ``idx`` rows, running ``risk``, ``done`` flags) — for users too big for one call."""
    for i in prange(len(pos)):
        s = pos[i]
        r, fin = _risk_part(targets[s], mode, k, tol, rec_off, rec_item, rec_val, seq_off, seq_item, bag_off,
                            bag_item, bag_cnt, top2, post_off, post_user, idx[s], budget)
        if r > risk[s]:
            risk[s] = r
        done[s] = fin


@jit
def _resume_serial(pos, targets, mode, k, tol, rec_off, rec_item, rec_val, seq_off, seq_item, bag_off, bag_item,
                   bag_cnt, top2, post_off, post_user, idx, risk, done, budget):
    """Same as _resume_kernel without threads."""
    for i in range(len(pos)):
        s = pos[i]
        r, fin = _risk_part(targets[s], mode, k, tol, rec_off, rec_item, rec_val, seq_off, seq_item, bag_off,
                            bag_item, bag_cnt, top2, post_off, post_user, idx[s], budget)
        if r > risk[s]:
            risk[s] = r
        done[s] = fin


_SERIAL_BELOW = 256  # targets


def _instance_counts(n_rec: np.ndarray, k: int) -> np.ndarray:
    """Instances ``_risk_one`` enumerates at most per user with ``n_rec`` records:
    C(n, min(k, n)), 0 for n == 0; float64, inf beyond ~1e300 (exact below 2**53)."""
    n_rec = np.asarray(n_rec, dtype=np.int64)
    uniq, inv = np.unique(n_rec, return_inverse=True)
    vals = np.zeros(len(uniq), dtype=np.float64)
    for i, n in enumerate(uniq.tolist()):
        if n <= 0:
            continue
        kk = min(k, n)
        log_c = math.lgamma(n + 1) - math.lgamma(kk + 1) - math.lgamma(n - kk + 1)
        vals[i] = float(math.comb(n, kk)) if log_c < 690 else math.inf
    return vals[inv.reshape(-1)]


def _fmt_count(v: float) -> str:
    return f"{int(v):,}" if v < 1e15 else f"{v:.3g}"


def _next_budget(budget: float, elapsed_s: float) -> float:
    """Instances for the next kernel call: scaled towards ``_CHUNK_SECONDS`` per call
    (at most x8, at least /4 per step), never below ``_CHUNK_INSTANCES``."""
    factor = 8.0 if elapsed_s <= 0 else min(8.0, max(0.25, _CHUNK_SECONDS / elapsed_s))
    return max(float(_CHUNK_INSTANCES), budget * factor)


def _run(tg, counts, mode, k, tol, d) -> np.ndarray:
    """Risk of every target, computed in kernel calls of bounded size so a KeyboardInterrupt
    (Ctrl-C) takes effect between calls.  A call starts at ``_CHUNK_INSTANCES`` instances
    and grows while calls take less than ``_CHUNK_SECONDS``; users with more instances than
    ``_CHUNK_INSTANCES`` are enumerated in resumable slices.  The result does not depend on
    the chunking: each user's risk is a max over the same instances."""
    arrays = (d["rec_off"], d["rec_item"], d["rec_val"], d["seq_off"], d["seq_item"], d["bag_off"],
              d["bag_item"], d["bag_cnt"], d["top2"], d["post_off"], d["post_user"])
    out = np.zeros(len(tg), dtype=np.float64)
    big = counts > _CHUNK_INSTANCES
    small = np.flatnonzero(~big)
    tg_s, out_s = tg[small], np.zeros(len(small), dtype=np.float64)
    cum = np.cumsum(counts[small])
    a, done_before, budget = 0, 0.0, float(_CHUNK_INSTANCES)
    while a < len(small):
        b = max(a + 1, int(np.searchsorted(cum, done_before + budget, side="right")))
        kernel = _risk_serial if b - a < _SERIAL_BELOW else _risk_kernel
        t0 = time.perf_counter()
        kernel(tg_s[a:b], np.int64(mode), np.int64(k), tol, *arrays, out_s[a:b])
        budget = _next_budget(budget, time.perf_counter() - t0)
        a, done_before = b, float(cum[b - 1])
    out[small] = out_s
    if big.any():
        # users with more instances than one call should hold (never home_work, so each has
        # more than k records and instances of exactly k): resumable enumeration
        tg_b = np.ascontiguousarray(tg[big])
        idx = np.tile(np.arange(k, dtype=np.int64), (len(tg_b), 1))
        risk = np.zeros(len(tg_b), dtype=np.float64)
        done = np.zeros(len(tg_b), dtype=np.bool_)
        active = np.arange(len(tg_b), dtype=np.int64)
        budget = float(_CHUNK_INSTANCES)
        while len(active):
            per_user = max(1, int(budget // len(active)))
            kernel = _resume_serial if len(active) == 1 else _resume_kernel
            t0 = time.perf_counter()
            kernel(active, tg_b, np.int64(mode), np.int64(k), tol, *arrays, idx, risk, done, np.int64(per_user))
            budget = _next_budget(budget, time.perf_counter() - t0)
            active = active[~done[active]]
        out[big] = risk
    return out


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
        bad = [c for c in COLUMNS if df[c].isna().any()]
        raise InputError(f"column(s) {bad} contain missing values; drop those records first "
                         "(e.g. df.dropna(subset=['uid', 'datetime', 'lat', 'lng'])).")
    for c in ("lat", "lng"):
        col = df[c]
        if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            raise InputError(
                f"column {c} must hold numbers (degrees), got dtype {col.dtype} (first value "
                f"{col.iloc[0]!r:.60}); convert it, e.g. df[{c!r}] = pd.to_numeric(df[{c!r}]), and fix "
                "the values that fail."
            )
    dt = df["datetime"]
    if not pd.api.types.is_datetime64_any_dtype(dt):
        try:
            dt = pd.to_datetime(dt)
        except (ValueError, TypeError, OverflowError) as exc:
            coerced = pd.to_datetime(dt, errors="coerce", format="mixed")
            bad = dt[coerced.isna().to_numpy()]
            example = f" (e.g. {bad.iloc[0]!r:.60})" if len(bad) else ""
            reason = str(exc).splitlines()[0].split(". You might")[0] if str(exc) else type(exc).__name__
            raise InputError(
                f"column datetime has values pandas cannot parse as dates{example}: {reason}; "
                "convert it yourself with pd.to_datetime(df['datetime'], format=...) and drop or fix the "
                "values that fail (errors='coerce' marks them NaT)."
            ) from None
    try:
        uid_codes, uids = pd.factorize(df["uid"], sort=True)
    except TypeError as exc:
        raise InputError(f"column uid must hold hashable, sortable ids (e.g. int or str): {exc}.") from None
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
        rec_off, rec_item, rec_val = seq_off, seq_item, np.zeros(len(item), dtype=np.float64)
    else:
        # frequency vector: skmob order is (frequency ascending, then lat, lng)
        fo = np.lexsort((bag_item, bag_cnt, bag_user))
        rec_off, rec_item, rec_val = bag_off, bag_item[fo], bag_cnt[fo].astype(np.float64)
        if attack == "location_probability":  # p_u(l) = f_u(l) / n_u (records), as skmob
            n_u = np.diff(seq_off).astype(np.float64)
            rec_val = bag_cnt[fo].astype(np.float64) / n_u[bag_user[fo]]
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
    max_instances: int | None = MAX_INSTANCES,
) -> pd.DataFrame:
    """Per-user re-identification risk under one skmob-style attack.

    Parameters
    ----------
    df : DataFrame with uid, datetime, lat, lng (skmob TrajDataFrame layout).
    attack : one of ``ATTACKS`` (see module docstring for the match rules).
    knowledge_length : k >= 1, size of the background knowledge (ignored by home_work).
    time_precision : one of ``PRECISIONS`` (location_time only).
    tolerance : in [0, 1], relative tolerance (frequency, location_probability, location_proportion).
    targets : optional list of uids to assess (risk is still against all users).
    compat : "docs" (documented behaviour) or "skmob-1.3.1" (reproduce its code's
        home_work and time-precision defects).
    max_instances : refuse (ConfigError) when the target users have more background-
        knowledge instances than this in total, sum over targets of C(n, min(k, n)) with n
        a user's records (distinct locations for the VECTOR_ATTACKS); None = no
        limit.  The count is an upper bound of the work (a user's enumeration stops once
        their risk reaches 1); the computation can be interrupted with Ctrl-C.

    Returns
    -------
    DataFrame uid, risk — one row per (target) user, sorted by uid.
    """
    if not (isinstance(attack, str) and attack in ATTACKS):
        raise ConfigError(f"attack must be one of {ATTACKS}, got {attack!r:.80}.")
    if not (isinstance(compat, str) and compat in COMPAT):
        raise ConfigError(f"compat must be one of {COMPAT}, got {compat!r:.80}.")
    if (isinstance(knowledge_length, (bool, np.bool_)) or not isinstance(knowledge_length, numbers.Integral)
            or not 1 <= knowledge_length <= MAX_KNOWLEDGE_LENGTH):
        raise ConfigError(
            f"knowledge_length must be an integer in [1, {MAX_KNOWLEDGE_LENGTH:,}], got {knowledge_length!r:.80}; "
            "it is the number of records the attacker knows (skmob uses 1-5; a value at least a user's "
            "record count means all of that user's records)."
        )
    if not (isinstance(time_precision, str) and time_precision in PRECISIONS):
        raise ConfigError(f"time_precision must be one of {PRECISIONS}, got {time_precision!r:.80}.")
    if (isinstance(tolerance, (bool, np.bool_)) or not isinstance(tolerance, numbers.Real)
            or not 0.0 <= float(tolerance) <= 1.0):
        raise ConfigError(f"tolerance must be a number in [0, 1], got {tolerance!r:.80}.")
    if max_instances is not None and (isinstance(max_instances, (bool, np.bool_))
                                      or not isinstance(max_instances, numbers.Integral) or max_instances < 1):
        raise ConfigError(f"max_instances must be an integer >= 1 or None (no limit), got {max_instances!r:.80}.")
    if not isinstance(df, pd.DataFrame):
        raise InputError(
            f"df must be a pandas DataFrame (or skmob TrajDataFrame) with columns {list(COLUMNS)}, got "
            f"{type(df).__name__}; wrap it, e.g. pd.DataFrame(data)."
        )
    if targets is not None and (isinstance(targets, (str, bytes)) or not np.iterable(targets)):
        raise ConfigError(f"targets must be a list of uids or None, got {targets!r:.80}; e.g. targets=[{targets!r:.40}].")
    d = _prepare(df, attack, time_precision, compat)
    uids = d["uids"]
    if targets is None:
        tg = np.arange(d["n_users"], dtype=np.int64)
    else:
        pos = pd.Index(uids).get_indexer(pd.Index(list(targets)))
        if np.any(pos < 0):
            raise InputError(f"targets {list(np.asarray(list(targets))[pos < 0][:3])} are not uids of the table.")
        tg = np.sort(pos).astype(np.int64)
    k = int(knowledge_length)
    n_rec = d["rec_off"][tg + 1] - d["rec_off"][tg]
    counts = (n_rec > 0).astype(np.float64) if attack == "home_work" else _instance_counts(n_rec, k)
    total = float(counts.sum()) if len(counts) else 0.0
    if max_instances is not None and total > max_instances:
        big = int(np.argmax(counts))
        big_uid = uids[tg[big]]
        big_uid = big_uid.item() if isinstance(big_uid, np.generic) else big_uid
        what = "distinct locations" if attack in VECTOR_ATTACKS else "records"
        raise ConfigError(
            f"privacy_risk({attack!r}, knowledge_length={k}) would enumerate {_fmt_count(total)} "
            f"background-knowledge instances (sum over {len(tg):,} target users of C(n, min(k, n)), n = a user's "
            f"{what}; the largest is uid {big_uid!r:.40} with n={int(n_rec[big]):,}: "
            f"{_fmt_count(counts[big])}), above max_instances={max_instances:,}. Reduce it with a smaller "
            f"knowledge_length (skmob uses 1-5), fewer {what} per user (e.g. one record per stay or per hour, "
            "or coarser coordinates), fewer users via targets=[...], or raise max_instances (None = no limit; "
            "the count is an upper bound and Ctrl-C interrupts the computation)."
        )
    mode = {"location": _M_LOCATION, "location_time": _M_LOCATION, "location_sequence": _M_SEQUENCE,
            "unique_location": _M_UNIQUE, "frequency": _M_FREQUENCY, "home_work": _M_HOMEWORK,
            "location_probability": _M_PROBABILITY, "location_proportion": _M_PROPORTION}[attack]
    out = _run(tg, counts, mode, k, float(tolerance), d)
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


def location_probability_risk(df, knowledge_length=2, tolerance=0.0, **kw):
    """skmob ``LocationProbabilityAttack(knowledge_length, tolerance)`` equivalent."""
    return privacy_risk(df, "location_probability", knowledge_length=knowledge_length, tolerance=tolerance, **kw)


def location_proportion_risk(df, knowledge_length=2, tolerance=0.0, **kw):
    """skmob ``LocationProportionAttack(knowledge_length, tolerance)`` equivalent."""
    return privacy_risk(df, "location_proportion", knowledge_length=knowledge_length, tolerance=tolerance, **kw)


def home_work_risk(df, **kw):
    """skmob ``HomeWorkAttack`` equivalent (two MOST frequent places unless compat)."""
    return privacy_risk(df, "home_work", **kw)


def traces_to_skmob_frame(traces, world=None, *, cell_m: float | None = None) -> pd.DataFrame:
    """A skmob-style table (uid, datetime, lat, lng) from a Traces release.

    Positions are snapped to the centre of ``cell_m``-metre cells first when given (exact
    equality of locations is what these measures compare), then converted to degrees:
    with ``world.to_latlon`` when a world is given, else from ``traces.crs`` with pyproj.
    ``lat``/``lng`` are always WGS84 degrees; a Traces whose CRS has no link to the Earth
    (e.g. ``LOCAL_CS[...]``) raises CRSError unless a world is given.
    ``datetime`` is local time (UTC + ``traces.utc_offset_s``), naive.
    """
    from sim.world.crs import project_to_latlon

    if not isinstance(traces, Traces):
        raise InputError(
            f"traces must be a sim.core.traces.Traces, got {type(traces).__name__}; build one with "
            "Traces.from_frame(df, crs=...), or pass a skmob-style DataFrame straight to privacy_risk."
        )
    x = np.asarray(traces.x_m, dtype=np.float64)
    y = np.asarray(traces.y_m, dtype=np.float64)
    if cell_m is not None:
        if (isinstance(cell_m, (bool, np.bool_)) or not isinstance(cell_m, numbers.Real)
                or not (np.isfinite(cell_m) and cell_m > 0)):
            raise ConfigError(f"cell_m must be a finite number of metres > 0 or None, got {cell_m!r:.80}.")
        x = (np.floor(x / cell_m) + 0.5) * cell_m
        y = (np.floor(y / cell_m) + 0.5) * cell_m
    if world is not None:
        lat, lng = world.to_latlon(x, y)
    else:
        try:
            lat, lng = project_to_latlon(x, y, traces.crs)
        except Exception as exc:  # pyproj raises several types
            raise CRSError(
                f"cannot convert positions from traces.crs={traces.crs!r:.200} to lat/lng degrees ({exc}); "
                "pass world= (its to_latlon is used), or give Traces a projected CRS pyproj can convert, "
                "e.g. 'EPSG:32633'."
            ) from None
    lat = np.asarray(lat, dtype=np.float64)
    lng = np.asarray(lng, dtype=np.float64)
    if not (np.all(np.isfinite(lat)) and np.all(np.isfinite(lng))):
        how = "world.to_latlon" if world is not None else f"traces.crs={traces.crs!r:.200}"
        raise CRSError(
            f"converting positions to lat/lng with {how} gave non-finite values (positions outside the "
            "CRS's area of use?); check that x_m/y_m really are metres in that CRS."
        )
    return pd.DataFrame({
        "uid": np.repeat(np.asarray(traces.pseudonym, dtype=object), traces.lengths),
        "datetime": pd.to_datetime(np.asarray(traces.t_s) + int(traces.utc_offset_s), unit="s"),
        "lat": lat, "lng": lng,
    })
