"""Row lookup and counting by integer id or key, without copying the table.

``frame.set_index("person_id").loc[ids]`` copies every column of ``frame`` into a new
frame before it picks the rows: at 10 M persons that is about 700 MB held for the
length of the call, however few rows or columns are wanted.  :func:`id_positions`
finds the rows' positions from the id column alone, :func:`rows_by_id` takes only the
columns asked for and :func:`values_at` one column's values at those positions.

:func:`pair_key` folds a (home zone, work zone) pair into one int64 key and
:func:`key_counts` counts equal keys: the anonymity-set sizes of the linkage and of the
loss waterfall.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from sim.core.errors import InputError

__all__ = ["strictly_increasing", "id_positions", "rows_by_id", "values_at", "run_starts", "pair_key", "key_counts", "BINCOUNT_MAX"]


def strictly_increasing(a) -> bool:
    """Whether the numeric array ``a`` is strictly increasing (so its values are distinct
    and sorted): the generated tables' id columns, searched in place."""
    a = np.asarray(a)
    return bool(np.issubdtype(a.dtype, np.number) and (len(a) < 2 or np.all(a[1:] > a[:-1])))


def id_positions(keys, ids) -> np.ndarray:
    """Row position (int64) in ``keys`` of each of ``ids``: its first occurrence, -1
    where absent.

    ``keys`` and ``ids`` are integer arrays.  Equal to
    ``pd.Index(keys).drop_duplicates().get_indexer(ids)`` mapped back to rows of
    ``keys`` (``frame.drop_duplicates(key).set_index(key)`` and a lookup), without
    the copy: strictly increasing keys (the population tables' ids) are searched in
    place; any other order is sorted once (a stable argsort, so the first occurrence
    of a repeated id wins).
    """
    k = np.asarray(keys)
    v = np.asarray(ids)
    for name, a in (("keys", k), ("ids", v)):
        if a.ndim != 1 or not (np.issubdtype(a.dtype, np.integer) or (a.size == 0 and a.dtype != object)):
            raise InputError(f"{name} must be a 1-D array of integer ids, got shape {a.shape} and dtype {a.dtype}.")
    if len(k) == 0 or len(v) == 0:
        return np.full(len(v), -1, dtype=np.int64)
    if strictly_increasing(k):
        ks, rows = k, None
    else:
        rows = np.argsort(k, kind="stable")
        ks = k[rows]
        first = np.ones(len(ks), dtype=bool)
        first[1:] = ks[1:] != ks[:-1]
        ks, rows = ks[first], rows[first]
    pos = np.minimum(_search(ks, v), len(ks) - 1)
    hit = ks[pos] == v
    if rows is not None:
        pos = rows[pos]
    return np.where(hit, pos, -1).astype(np.int64, copy=False)


#: queries above which :func:`_search` sorts them first
_SORT_QUERIES = 4096


def _search(sorted_keys: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``np.searchsorted(sorted_keys, v)``; many queries are searched in sorted order
    (neighbouring queries then walk neighbouring memory: 50,000 ids among 7 M keys
    4x faster) and put back in their own order."""
    if len(v) <= _SORT_QUERIES or np.all(v[1:] >= v[:-1]):
        return np.searchsorted(sorted_keys, v)
    o = np.argsort(v, kind="stable")
    out = np.empty(len(v), dtype=np.intp)
    out[o] = np.searchsorted(sorted_keys, v[o])
    return out


def rows_by_id(frame: pd.DataFrame, key: str, ids, columns, *, what: str = "table") -> pd.DataFrame:
    """The rows of ``frame`` whose ``key`` equals each of ``ids`` (first occurrence),
    in ``ids`` order, ``columns`` only, index 0..len(ids)-1.

    Like ``frame.drop_duplicates(key).set_index(key).loc[ids, columns]`` (which
    copies the whole frame first).  An id missing from ``frame`` raises InputError
    naming ``what`` and an example id.
    """
    pos = id_positions(frame[key].to_numpy(), ids)
    if np.any(pos < 0):
        bad = np.asarray(ids)[np.flatnonzero(pos < 0)[0]].item()
        raise InputError(f"{int((pos < 0).sum())} id(s) are missing from the {what}'s {key!r} column "
                         f"(e.g. {bad!r}); use the tables of one run.")
    return pd.DataFrame({c: frame[c].take(pos).reset_index(drop=True) for c in columns})


def values_at(values, pos, fill) -> np.ndarray:
    """``values[pos]`` where ``pos >= 0`` and ``fill`` where it is -1 (an id
    :func:`id_positions` did not find)."""
    values = np.asarray(values)
    pos = np.asarray(pos)
    if not len(values):
        return np.full(len(pos), fill)
    return np.where(pos >= 0, values[np.maximum(pos, 0)], fill)


def run_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """Start of every run of equal values in ``sorted_keys``, and its length at the end."""
    if not len(sorted_keys):
        return np.zeros(1, dtype=np.int64)
    return np.r_[0, np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1, len(sorted_keys)].astype(np.int64)


def pair_key(h, w, w_max, *, overwrite_h: bool = False):
    """Combine zone-id arrays (>= -1, ``w <= w_max``) into one int64 key, injectively:
    ``((h + 1) * m + (w + 1), m)``.  The key is built in place in one new int64 array, or
    in ``h`` itself with ``overwrite_h`` (a scratch int64 array of the caller's)."""
    m = np.int64(max(int(w_max), 0) + 2)
    k = h if overwrite_h and isinstance(h, np.ndarray) and h.dtype == np.int64 else np.array(h, dtype=np.int64)
    k += 1
    k *= m
    k += np.asarray(w, dtype=np.int64)
    k += 1
    return k, m


#: largest key range :func:`key_counts` counts with a bincount (8 Mi counters, 64 MiB)
BINCOUNT_MAX = 1 << 23


def key_counts(keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """How many of ``keys`` equal each of ``queries`` (int64 arrays, values >= 0; ``keys``
    may be reordered in place).  A bincount when the keys span at most
    :data:`BINCOUNT_MAX` values (a coarse level's zones, or its zone pairs), else a sort
    of the keys and a binary search of each query."""
    top = max(int(keys.max(initial=-1)), int(queries.max(initial=-1))) + 1
    if top <= BINCOUNT_MAX:
        return np.bincount(keys, minlength=top)[queries]
    keys.sort()
    bounds = run_starts(keys)
    uk, cnt = keys[bounds[:-1]], np.diff(bounds)
    if not len(uk):
        return np.zeros(len(queries), dtype=np.int64)
    pos = np.minimum(np.searchsorted(uk, queries), len(uk) - 1)
    return np.where(uk[pos] == queries, cnt[pos], 0)
