"""Row lookup by integer id without copying the table.

``frame.set_index("person_id").loc[ids]`` copies every column of ``frame`` into a new
frame before it picks the rows: at 10 M persons that is about 700 MB held for the
length of the call, however few rows or columns are wanted.  :func:`id_positions`
finds the rows' positions from the id column alone, and :func:`rows_by_id` takes
only the columns asked for.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from sim.core.errors import InputError

__all__ = ["id_positions", "rows_by_id"]


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
    if np.all(k[1:] > k[:-1]):
        ks, rows = k, None
    else:
        rows = np.argsort(k, kind="stable")
        ks = k[rows]
        first = np.ones(len(ks), dtype=bool)
        first[1:] = ks[1:] != ks[:-1]
        ks, rows = ks[first], rows[first]
    pos = np.minimum(np.searchsorted(ks, v), len(ks) - 1)
    hit = ks[pos] == v
    if rows is not None:
        pos = rows[pos]
    return np.where(hit, pos, -1).astype(np.int64, copy=False)


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
