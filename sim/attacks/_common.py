"""Helpers shared by the attack modules: validation, truth look-up, stable indices,
tidy metric rows and seeded uniforms.

Nothing here reads truth on the attack path: :func:`truth_person` is only called by
the scoring half of each attack.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from sim.core.jit import jit, pjit, prange
from sim.core.constants import DAY_S, LEVELS
from sim.core.errors import ConfigError, InputError
from sim.core.lookup import BINCOUNT_MAX, run_starts, strictly_increasing
from sim.core.rng import stream_key, uniform
from sim.core import stats
from sim.core.traces import Traces
from sim.world._kernels import counting_argsort

METRIC_COLUMNS = ["metric", "value", "ci_low", "ci_high", "n"]


def check_levels(levels, world) -> tuple:
    known = LEVELS
    if isinstance(levels, str):
        levels = (levels,)
    levels = tuple(levels) if levels is not None else known
    bad = [lv for lv in levels if lv not in known]
    if bad or not levels:
        raise ConfigError(f"unknown zone level(s) {bad or levels!r}; expected a subset of {known}.")
    return levels


def require_columns(df, cols, what: str, fix: str = "") -> None:
    """Raise InputError naming the missing columns of table ``what``."""
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"{what} must be a pandas DataFrame, got {type(df).__name__}.")
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise InputError(
            f"{what} is missing column(s) {missing}; it has {list(df.columns)}. "
            + (fix or "See docs/CONTRACTS.md for the expected columns.")
        )


def register_column(side: str, level: str) -> str:
    """Register column with the zone id of a person's home/work at ``level``."""
    return f"{side}_{level}_id"


def device_zone(world, x, y, level) -> np.ndarray:
    """Zone id per point at ``level``: -2 unknown (NaN), -1 outside the area, else the id."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    known = np.isfinite(x) & np.isfinite(y)
    z = np.full(len(x), -2, dtype=np.int64)
    if known.any():
        z[known] = np.asarray(world.locate(x[known], y[known], level), dtype=np.int64)
    return z


def observed_span(traces: Traces) -> pd.DataFrame:
    """pseudonym, first_day, last_day (local days of the first and last ping) of every
    trace of the release that has a ping.  A pseudonym *exists* in the window of the
    first ``d`` days when ``first_day < d``."""
    if not isinstance(traces, Traces):
        raise InputError(f"release must be a sim.core.traces.Traces, got {type(traces).__name__}.")
    has = traces.lengths > 0
    off = traces.offsets
    first_t = traces.t_s[off[:-1][has]]
    last_t = traces.t_s[off[1:][has] - 1]
    return pd.DataFrame({
        "pseudonym": traces.pseudonym[has],
        "first_day": (first_t - traces.start_s) // DAY_S,
        "last_day": (last_t - traces.start_s) // DAY_S,
    })


#: columns of :func:`observed_span`
SPAN_COLUMNS = ["pseudonym", "first_day", "last_day"]


def span_table(release) -> pd.DataFrame:
    """The observed-span table of ``release``: :func:`observed_span` of a Traces, or a
    DataFrame that already is one (pseudonym, first_day[, last_day]) — e.g. the
    per-part spans of a release streamed part by part, concatenated (every pseudonym
    lies in one part, so they are the whole release's rows)."""
    if isinstance(release, pd.DataFrame):
        require_columns(release, ["pseudonym", "first_day"], "observed-span table",
                        "Build it with sim.attacks._common.observed_span (per part, concatenated).")
        return release
    return observed_span(release)


def first_days(release=None, pseudonyms=None):
    """``(pseudonym, first_day)`` arrays (object, float64) of the release (a Traces or
    its :func:`observed_span` table), else of the truth ``pseudonyms`` table's
    ``first_day`` column; None when neither gives a first day.  Computed once for the
    many windows of :func:`existing_pseudonyms`: every window's pseudonyms are then
    slices of one array (a str column converts to new Python strings at each call)."""
    if release is not None:
        span = span_table(release)
    elif pseudonyms is not None and "first_day" in pseudonyms.columns:
        span = pseudonyms.drop_duplicates("pseudonym")
    else:
        return None
    return span["pseudonym"].to_numpy(dtype=object), span["first_day"].to_numpy(dtype=np.float64)


def existing_pseudonyms(days, release=None, pseudonyms=None, fallback=None, *, first=None) -> np.ndarray:
    """Pseudonyms that exist in the window of the first ``days`` days (object array).

    A pseudonym exists when it has a ping in the window, i.e. ``first_day < days``.
    ``first_day`` comes from the ``release`` (a Traces, or its :func:`observed_span`
    table, see :func:`span_table`) when given, else from the truth ``pseudonyms``
    table's ``first_day`` column; without either, every pseudonym of ``fallback`` (an
    iterable) is taken to exist.  ``first``: :func:`first_days` of ``release`` and
    ``pseudonyms``, computed once, in place of them.
    """
    if first is None:
        first = first_days(release, pseudonyms)
    if first is None:
        return np.asarray(pd.unique(np.asarray(fallback, dtype=object)), dtype=object)
    ps, fd = first
    return ps[fd < float(days)]


@jit
def _one_uniform(seed, tag, index, counter):
    return uniform(stream_key(seed, tag, index), counter)


@pjit
def _uniform_many(seed, tag, index, counter, out):
    for i in prange(len(index)):
        out[i] = _one_uniform(seed, tag, index[i], counter)


def groups_by_key(reg_key: np.ndarray, reg_pid) -> tuple:
    """Register rows sorted by (key, person_id): ``(order, keys, start, size)`` with the
    distinct keys in order and each one's start and size in ``order``.  A register
    ordered by person_id (as generated) needs only a stable sort of the keys: a counting
    sort where they span at most ``BINCOUNT_MAX`` values and four per row (zones, and
    zone pairs of the coarser levels), a stable argsort otherwise."""
    reg_pid = np.asarray(reg_pid)
    reg_key = np.asarray(reg_key)
    if len(reg_pid) < 2 or strictly_increasing(reg_pid):
        lo = int(reg_key.min(initial=0))
        span = int(reg_key.max(initial=0)) - lo + 1
        if len(reg_key) and np.issubdtype(reg_key.dtype, np.integer) and span <= min(BINCOUNT_MAX, 4 * len(reg_key)):
            order, bstart = counting_argsort(reg_key.astype(np.int64) - lo, span)  # stable: = the lexsort below
            full = np.flatnonzero(bstart[1:] > bstart[:-1])
            return order, (full + lo).astype(reg_key.dtype), bstart[full], bstart[full + 1] - bstart[full]
        order = np.argsort(reg_key, kind="stable")  # = the lexsort below
    else:
        order = np.lexsort((reg_pid, reg_key))
    ks = reg_key[order]
    bounds = run_starts(ks)
    start = bounds[:-1]
    return order, ks[start], start, np.diff(bounds)


def uniforms(seed: int, tag: int, index: np.ndarray, counter: int) -> np.ndarray:
    """One uniform [0, 1) per stream ``stream_key(seed, tag, index[i])`` at ``counter``."""
    index = np.ascontiguousarray(index, dtype=np.uint64)
    out = np.empty(len(index), dtype=np.float64)
    if len(index):
        _uniform_many(np.uint64(seed), np.uint64(tag), index, np.uint64(counter), out)
    return out


def object_index(values) -> pd.Index:
    """``values`` (pseudonyms) as an object-dtype Index.  pandas infers its Arrow-backed
    str dtype for strings, and a str Index converts itself and each query to a million
    new Python strings on every ``get_indexer``; an object Index hashes its strings once.
    The positions are the same."""
    return pd.Index(np.asarray(values, dtype=object), dtype=object)


def aligned_rows(table: pd.DataFrame, pseud: np.ndarray) -> pd.DataFrame:
    """``table``'s rows (one per pseudonym) for the pseudonyms ``pseud``, in that order, with
    a leading ``pseudonym`` column (NaN places where a pseudonym is missing)."""
    if table["pseudonym"].duplicated().any():
        raise InputError("inferred table has duplicate pseudonyms; expected one row per pseudonym.")
    pos = object_index(table["pseudonym"]).get_indexer(object_index(pseud))
    cols = [c for c in table.columns if c != "pseudonym"]
    out = table.iloc[np.maximum(pos, 0)][cols].reset_index(drop=True) if len(table) else \
        pd.DataFrame({c: np.full(len(pseud), np.nan) for c in cols})
    miss = pos < 0
    if miss.any():
        out = out.astype({c: np.float64 for c in cols if out[c].dtype.kind in "iub"})
        out.loc[miss, cols] = np.nan
    out.insert(0, "pseudonym", np.asarray(pseud, dtype=object))
    return out


class TruthIndex:
    """The truth pseudonyms table indexed by pseudonym once, for many lookups (the
    per-window loops of the ladder and of time to identification look up a million
    pseudonyms per window).  :func:`truth_person` and :func:`truth_device` accept it in
    place of the table; the answers are the table's (first row of a repeated pseudonym)."""

    def __init__(self, pseudonyms_table: pd.DataFrame):
        require_columns(pseudonyms_table, ["pseudonym"], "truth pseudonyms table")
        index = object_index(pseudonyms_table["pseudonym"])
        if index.is_unique:  # the usual case: the index's hash table serves the lookups too,
            self.table, self.index = pseudonyms_table, index  # no copy of the table
        else:
            self.table = pseudonyms_table.drop_duplicates("pseudonym")
            self.index = object_index(self.table["pseudonym"])
        self._last = None  # (query, positions) of the last lookup

    def column(self, query, column: str, what: str) -> np.ndarray:
        require_columns(self.table, ["pseudonym", column], "truth pseudonyms table")
        q = object_index(query)
        qa = q.to_numpy()
        last = self._last
        if last is not None and len(last[0]) == len(qa) and np.array_equal(last[0], qa):
            pos = last[1]  # the same pseudonyms as the last lookup (every window of a prefix table)
        else:
            pos = self.index.get_indexer(q)
            self._last = (qa.copy(), pos)  # a copy: the caller may reuse its array
        if np.any(pos < 0):
            bad = q[pos < 0]
            raise InputError(
                f"{len(bad)} pseudonym(s) of the {what} are unknown to the truth pseudonyms table "
                f"(e.g. {list(bad[:3])}); score with the truth table of the same simulation run."
            )
        return self.table[column].to_numpy()[pos]


def truth_index(pseudonyms) -> TruthIndex:
    """``pseudonyms`` (a truth table or a :class:`TruthIndex`) as a TruthIndex."""
    return pseudonyms if isinstance(pseudonyms, TruthIndex) else TruthIndex(pseudonyms)


def truth_person(pseudonyms_table, query, what: str = "inferred table") -> np.ndarray:
    """person_id of the true owner of each queried pseudonym (scoring only).
    ``pseudonyms_table``: the truth table or its :class:`TruthIndex`.

    Raises InputError if a queried pseudonym is not in the truth table.
    """
    return truth_index(pseudonyms_table).column(query, "person_id", what)


def truth_device(pseudonyms_table, query, what: str = "release") -> np.ndarray:
    """device_idx of each queried pseudonym (scoring only); InputError if unknown.
    ``pseudonyms_table``: the truth table or its :class:`TruthIndex`."""
    return truth_index(pseudonyms_table).column(query, "device_idx", what).astype(np.int64)


def rate_row(metric: str, success, ci: str = "wilson", seed: int = 0, tags: tuple = (), **params) -> dict:
    """A tidy row ``{**params, metric, value, ci_low, ci_high, n}`` for a share of units."""
    r = stats.rate(success, method=ci, seed=seed, tags=tags)
    return {**params, "metric": metric, **r}


def count_row(metric: str, count: int, n: int, **params) -> dict:
    """A tidy row for a plain count (no interval: it is not an estimate)."""
    return {**params, "metric": metric, "value": float(count), "ci_low": np.nan, "ci_high": np.nan, "n": int(n)}


def check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def check_positive(name: str, value, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok:
        v = float(value)
        ok = np.isfinite(v) and (v >= 0 if allow_zero else v > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be a finite number {bound}, got {value!r}.")
    return float(value)
