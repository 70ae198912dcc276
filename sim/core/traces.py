"""``Traces``: pings grouped by pseudonym in CSR layout — what the attacker holds.

Rows are sorted by (trace, time).  Trace ``i`` owns rows ``offsets[i]:offsets[i+1]``
of every column.  Positions are in metres in a projected CRS (``crs``); lat/lon
appear only at I/O.  Local time (for night/day windows) is UTC plus a fixed
``utc_offset_s``.  ``start_s`` is the UTC instant of local midnight that opens day 0
of the observation window, so the local day of a ping is
``(t_s - start_s) // 86400`` and its local hour ``((t_s - start_s) % 86400) / 3600``.

Kernels take the contiguous arrays plus ``offsets``; nothing here loops in Python over
traces.
"""
from __future__ import annotations

import functools
import numbers
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sim.core.constants import DAY_S
from sim.core.errors import CRSError, InputError
from sim.core.jit import jit

_CRS_HINT = (
    "pass the projected (metric) CRS of x_m/y_m as a string pyproj understands, e.g. "
    "crs=world.crs, 'EPSG:32633' (a UTM zone) or a PROJ string; for synthetic coordinates "
    "with no place on Earth use an engineering CRS such as 'LOCAL_CS[\"local\"]'"
)


@functools.lru_cache(maxsize=64)
def _crs_problem(crs: str) -> str | None:
    """Why ``crs`` cannot label metre coordinates (None if it can); memoised."""
    import pyproj

    try:
        c = pyproj.CRS.from_user_input(crs)
    except Exception as exc:  # pyproj raises several types
        return f"is not a CRS pyproj understands ({exc})"
    if c.is_geographic:
        return ("is geographic (degrees), but x_m/y_m are metres; project lat/lon to metres first "
                "(e.g. sim.world.crs.project_from_latlon) and")
    if c.is_geocentric:
        return "is geocentric (3-D), but x_m/y_m are planar metres; instead"
    return None


def check_crs(crs) -> str:
    """``crs`` if it is a string pyproj parses as a projected or engineering CRS, else
    raise :class:`~sim.core.errors.CRSError` saying what was received and how to fix it."""
    if crs is None:
        raise CRSError(f"traces.crs is None; Traces positions need a CRS: {_CRS_HINT}.")
    if not isinstance(crs, str):
        raise CRSError(
            f"traces.crs must be a string, got {type(crs).__name__} ({crs!r:.80}); {_CRS_HINT} "
            "(a pyproj.CRS object converts with .to_wkt())."
        )
    why = _crs_problem(crs)
    if why is not None:
        raise CRSError(f"traces.crs={crs!r:.200} {why}; {_CRS_HINT}.")
    return crs


def _int_value(name: str, v, *, lo=None, hi=None, hint: str = "") -> int:
    """``v`` as a Python int if it is an integral number within [lo, hi]; else InputError."""
    ok = isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, (bool, np.bool_))
    if not ok and isinstance(v, (float, np.floating)) and np.isfinite(v) and float(v).is_integer():
        ok = True
    if not ok:
        raise InputError(f"{name} must be an integer, got {type(v).__name__} {v!r:.80}.{hint}")
    iv = int(v)
    if (lo is not None and iv < lo) or (hi is not None and iv > hi):
        rng = f">= {lo}" if hi is None else (f"<= {hi}" if lo is None else f"in [{lo}, {hi}]")
        raise InputError(f"{name} must be {rng}, got {iv}.{hint}")
    return iv


def _numeric_column(df: pd.DataFrame, col: str, what: str) -> None:
    s = df[col]
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        return
    example = s.iloc[0] if len(s) else None
    raise InputError(
        f"column {col} must hold numbers ({what}), got dtype {s.dtype} (first value {example!r:.60}); "
        f"convert it, e.g. df[{col!r}] = pd.to_numeric(df[{col!r}]), and fix the values that fail."
    )


_I64_MAX = int(np.iinfo(np.int64).max)


def local_midnight(t_s: int, utc_offset_s: int) -> int:
    """UTC seconds of the local midnight at or before ``t_s``."""
    local = int(t_s) + int(utc_offset_s)
    return local - (local % DAY_S) - int(utc_offset_s)


def weekday_of_day(start_s: int, utc_offset_s: int, day: np.ndarray) -> np.ndarray:
    """Weekday (0 = Monday .. 6 = Sunday) of local day index ``day`` of a window."""
    epoch_day = (int(start_s) + int(utc_offset_s)) // DAY_S  # 1970-01-01 was a Thursday
    return (epoch_day + np.asarray(day, dtype=np.int64) + 3) % 7


@jit
def _first_nonfinite(x, y):  # pragma: no cover - numba
    """First row whose x or y is NaN or infinite, -1 if none."""
    for i in range(len(x)):
        if not (np.isfinite(x[i]) and np.isfinite(y[i])):
            return i
    return -1


@jit
def _first_unsorted(t, offsets):  # pragma: no cover - numba
    """First row whose time is before the previous row's in the same trace (traces are
    the ``offsets`` ranges), -1 if none."""
    for tr in range(len(offsets) - 1):
        for r in range(offsets[tr] + 1, offsets[tr + 1]):
            if t[r] < t[r - 1]:
                return r
    return -1


@dataclass(frozen=True, eq=False)
class Traces:
    """Pings grouped by pseudonym (CSR).

    Parameters
    ----------
    pseudonym : array of str, shape (n_traces,)
        The published identifier of each trace.
    offsets : int64 array, shape (n_traces + 1,)
        ``offsets[0] == 0``, non-decreasing, ``offsets[-1] == n_pings``.
    t_s : int64 array, shape (n_pings,)
        Unix seconds (UTC), non-decreasing within each trace (ties allowed).
    x_m, y_m : float64 arrays, shape (n_pings,)
        Projected position in metres.
    accuracy_m : float32 array, shape (n_pings,)
        Reported horizontal accuracy in metres (68 % radius).
    crs : str
        The projected CRS of ``x_m``/``y_m`` (any string pyproj accepts).
    utc_offset_s : int
        Local time minus UTC, seconds (fixed; no daylight saving).
    start_s : int
        UTC instant of local midnight opening day 0 of the window.
    n_days : int
        Length of the observation window in days.
    """

    pseudonym: np.ndarray
    offsets: np.ndarray
    t_s: np.ndarray
    x_m: np.ndarray
    y_m: np.ndarray
    accuracy_m: np.ndarray
    crs: str
    utc_offset_s: int = 0
    start_s: int = 0
    n_days: int = 1
    meta: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ basics
    @property
    def n_traces(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_pings(self) -> int:
        return int(self.offsets[-1])

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def trace_index(self) -> np.ndarray:
        """Trace number of every ping (int64, shape (n_pings,))."""
        return np.repeat(np.arange(self.n_traces, dtype=np.int64), self.lengths)

    def day(self) -> np.ndarray:
        """Local day index of every ping within the window (int64)."""
        return (self.t_s - self.start_s) // DAY_S

    def hour(self) -> np.ndarray:
        """Local hour of day of every ping, float64 in [0, 24)."""
        return ((self.t_s - self.start_s) % DAY_S) / 3600.0

    def weekday(self) -> np.ndarray:
        """Local weekday of every ping (0 = Monday)."""
        return weekday_of_day(self.start_s, self.utc_offset_s, self.day())

    def replace(self, **changes) -> "Traces":
        """A copy with some fields replaced (validated)."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d.update(changes)
        out = Traces(**d)
        out.validate()
        return out

    # ------------------------------------------------------------- validation
    def validate(self) -> "Traces":
        """Check the CRS, window, dtypes, shapes, offsets, finiteness and per-trace time
        order; raise CRSError for the CRS and InputError for everything else."""
        check_crs(self.crs)
        hint = " Build Traces with Traces.from_frame, which computes the window from the pings."
        _int_value("n_days", self.n_days, lo=1, hi=10**7, hint=hint)
        _int_value("start_s", self.start_s, lo=-_I64_MAX // 2, hi=_I64_MAX // 2, hint=hint)
        _int_value("utc_offset_s", self.utc_offset_s, lo=-DAY_S + 1, hi=DAY_S - 1,
                   hint=" It is local time minus UTC in seconds, e.g. 3600 for UTC+1.")
        for name in ("t_s", "x_m", "y_m", "accuracy_m", "offsets"):
            a = np.asarray(getattr(self, name))
            if a.ndim != 1:
                raise InputError(f"{name} must be a 1-D array, got shape {a.shape}.")
            kind = "iu" if name in ("t_s", "offsets") else "iuf"
            if a.dtype.kind not in kind:
                want = "integers (Unix seconds)" if name == "t_s" else (
                    "integers" if name == "offsets" else "numbers in metres")
                raise InputError(
                    f"{name} must hold {want}, got dtype {a.dtype}; convert it (e.g. with "
                    "Traces.from_frame, which checks and sorts the columns)."
                )
        n = len(self.t_s)
        off = np.asarray(self.offsets)
        if off.ndim != 1 or len(off) < 1 or off[0] != 0 or off[-1] != n:
            raise InputError(
                f"offsets must start at 0 and end at the number of pings ({n}); got "
                f"{off[:1].tolist()}..{off[-1:].tolist()}. Build Traces with Traces.from_frame."
            )
        if len(off) - 1 != len(self.pseudonym):
            raise InputError(
                f"{len(self.pseudonym)} pseudonyms but {len(off) - 1} traces in offsets; "
                "there must be one pseudonym per trace."
            )
        if np.any(np.diff(off) < 0):
            raise InputError("offsets must be non-decreasing.")
        for name in ("x_m", "y_m", "accuracy_m"):
            a = getattr(self, name)
            if len(a) != n:
                raise InputError(f"column {name} has {len(a)} rows, t_s has {n}; all columns must match.")
        bad = _first_nonfinite(np.asarray(self.x_m, dtype=np.float64), np.asarray(self.y_m, dtype=np.float64))
        if bad >= 0:
            raise InputError(
                f"non-finite coordinate at ping row {bad}; drop or repair NaN/inf positions "
                "before building Traces."
            )
        if n > 1:
            r = _first_unsorted(np.asarray(self.t_s, dtype=np.int64), np.asarray(off, dtype=np.int64))
            if r >= 0:
                tr = int(np.searchsorted(off, r, side="right") - 1)
                raise InputError(
                    f"t_s is not sorted within trace {tr} (pseudonym {self.pseudonym[tr]!r}) at row {r}; "
                    "sort pings by (pseudonym, t_s), e.g. with Traces.from_frame."
                )
        return self

    # ----------------------------------------------------------- constructors
    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        *,
        crs: str,
        utc_offset_s: int = 0,
        start_s: int | None = None,
        n_days: int | None = None,
        pseudonym_col: str = "pseudonym",
    ) -> "Traces":
        """Build from a table with columns pseudonym, t_s, x_m, y_m[, accuracy_m].

        Rows are sorted (stably) by (pseudonym, t_s); the table itself is not modified.
        ``start_s`` defaults to the local midnight before the first ping, ``n_days`` to
        the number of local days up to the last ping.
        """
        if not isinstance(df, pd.DataFrame):
            raise InputError(
                f"Traces.from_frame needs a pandas DataFrame, got {type(df).__name__}; wrap it, "
                "e.g. Traces.from_frame(pd.DataFrame(data), crs=...)."
            )
        check_crs(crs)
        utc_offset_s = _int_value("utc_offset_s", utc_offset_s, lo=-DAY_S + 1, hi=DAY_S - 1,
                                  hint=" It is local time minus UTC in seconds, e.g. 3600 for UTC+1.")
        if start_s is not None:
            start_s = _int_value("start_s", start_s, lo=-_I64_MAX // 2, hi=_I64_MAX // 2,
                                 hint=" Omit it to start at the local midnight before the first ping.")
        if n_days is not None:
            n_days = _int_value("n_days", n_days, lo=1, hi=10**7,
                                hint=" Omit it to cover every ping from start_s to the last one.")
        need = [pseudonym_col, "t_s", "x_m", "y_m"]
        missing = [c for c in need if c not in df.columns]
        if missing:
            raise InputError(
                f"table is missing column(s) {missing}; expected {need} (+ optional accuracy_m)."
            )
        if df[need].isna().any().any():
            col = df[need].columns[df[need].isna().any()].tolist()
            raise InputError(f"column(s) {col} contain missing values; drop those rows first.")
        t = df["t_s"].to_numpy()
        if t.dtype.kind not in "iu":
            example = t[0] if len(t) else None
            raise InputError(
                f"t_s must be integer Unix seconds, got dtype {t.dtype} (first value {example!r:.60}); "
                "convert datetimes or date strings with sim.release.dataset.to_unix_seconds "
                "(unparseable strings must be fixed or dropped first)."
            )
        for col in ("x_m", "y_m"):
            _numeric_column(df, col, "metres in the projected CRS")
        if "accuracy_m" in df.columns:
            _numeric_column(df, "accuracy_m", "metres")
        codes, uniques = pd.factorize(df[pseudonym_col], sort=True)
        order = np.lexsort((t, codes))
        codes = codes[order]
        counts = np.bincount(codes, minlength=len(uniques))
        offsets = np.zeros(len(uniques) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        t_s = t[order].astype(np.int64)
        acc = (
            df["accuracy_m"].to_numpy(dtype=np.float32)[order]
            if "accuracy_m" in df.columns
            else np.full(len(df), np.nan, dtype=np.float32)
        )
        if start_s is None:
            start_s = local_midnight(int(t_s.min()), utc_offset_s) if len(t_s) else 0
        elif len(t_s) and start_s > int(t_s.max()):
            raise InputError(
                f"start_s={start_s} is after the last ping (t_s max {int(t_s.max())}), so the window "
                "would hold no ping (and n_days would be negative); omit start_s to start at the local "
                "midnight before the first ping, or pass local_midnight(first t_s, utc_offset_s)."
            )
        if n_days is None:
            n_days = int((int(t_s.max()) - start_s) // DAY_S + 1) if len(t_s) else 1
        out = cls(
            pseudonym=np.asarray(uniques, dtype=object),
            offsets=offsets,
            t_s=t_s,
            x_m=df["x_m"].to_numpy(dtype=np.float64)[order],
            y_m=df["y_m"].to_numpy(dtype=np.float64)[order],
            accuracy_m=acc,
            crs=crs,
            utc_offset_s=int(utc_offset_s),
            start_s=int(start_s),
            n_days=int(n_days),
        )
        return out.validate()

    def to_frame(self) -> pd.DataFrame:
        """One row per ping: pseudonym, t_s, x_m, y_m, accuracy_m."""
        return pd.DataFrame(
            {
                "pseudonym": pd.Categorical.from_codes(
                    self.trace_index(), categories=pd.Index(self.pseudonym)
                )
                if self.n_traces
                else pd.Categorical([]),
                "t_s": self.t_s,
                "x_m": self.x_m,
                "y_m": self.y_m,
                "accuracy_m": self.accuracy_m,
            }
        )

    # ------------------------------------------------------------- selections
    def select_pings(self, keep: np.ndarray, drop_empty: bool = True) -> "Traces":
        """Keep the pings where boolean ``keep`` is True (order preserved)."""
        keep = np.asarray(keep, dtype=bool)
        if keep.shape != self.t_s.shape:
            raise InputError(f"mask has shape {keep.shape}, expected {self.t_s.shape}.")
        tr = self.trace_index()[keep]
        counts = np.bincount(tr, minlength=self.n_traces)
        pseud = self.pseudonym
        if drop_empty:
            nz = counts > 0
            counts = counts[nz]
            pseud = pseud[nz]
        offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return Traces(
            pseudonym=pseud, offsets=offsets, t_s=self.t_s[keep], x_m=self.x_m[keep],
            y_m=self.y_m[keep], accuracy_m=self.accuracy_m[keep], crs=self.crs,
            utc_offset_s=self.utc_offset_s, start_s=self.start_s, n_days=self.n_days,
            meta=dict(self.meta),
        )

    def prefix(self, days: float) -> "Traces":
        """Only the first ``days`` days of the window (pings with t_s < start + days*86400).

        Traces with no ping in the prefix are kept (empty) so trace numbers stay aligned.
        """
        if days <= 0:
            raise InputError(f"days must be > 0, got {days}.")
        keep = self.t_s < self.start_s + int(round(days * DAY_S))
        out = self.select_pings(keep, drop_empty=False)
        return out.replace(n_days=int(np.ceil(min(days, self.n_days))))

    def take(self, idx: np.ndarray) -> "Traces":
        """The traces with the given indices, in that order."""
        idx = np.asarray(idx, dtype=np.int64)
        lens = self.lengths[idx]
        offsets = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        rows = (
            np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in idx])
            if len(idx) and len(idx) < 64
            else _gather_rows(self.offsets, idx, offsets)
        )
        return Traces(
            pseudonym=self.pseudonym[idx], offsets=offsets, t_s=self.t_s[rows],
            x_m=self.x_m[rows], y_m=self.y_m[rows], accuracy_m=self.accuracy_m[rows],
            crs=self.crs, utc_offset_s=self.utc_offset_s, start_s=self.start_s,
            n_days=self.n_days, meta=dict(self.meta),
        )


def _gather_rows(src_off, idx, dst_off):
    n = int(dst_off[-1])
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    tr = np.repeat(np.arange(len(idx)), np.diff(dst_off))
    within = np.arange(n) - dst_off[tr]
    return src_off[idx][tr] + within


def ping_zones(traces: Traces, world, level: str) -> np.ndarray:
    """Zone id at ``level`` of every ping of ``traces`` (``world.locate``), memoised.

    Traces are immutable, so the lookup is cached on the object (per world and level);
    a derived Traces (``select_pings``, ``take``, ``replace``) starts with no cache.
    Tracts and districts are read off the (cached) blocks: zones nest, so the points are
    located once for the three levels.
    """
    cache = derived_cache(traces)
    key = ("zones", id(world), level)
    hit = cache.get(key)
    if hit is not None and hit[0] is world:
        return hit[1]
    if level in ("tract", "district") and hasattr(world, "zones_of_blocks"):
        z = world.zones_of_blocks(ping_zones(traces, world, "block"), level)  # the points located once
    else:
        z = np.asarray(world.locate(traces.x_m, traces.y_m, level), dtype=np.int64)
    z.setflags(write=False)
    cache[key] = (world, z)
    return z


def forget_derived(traces: Traces, keep_zones=()) -> None:
    """Drop what is memoised on ``traces`` (to bound memory between uses), except the
    ping zones of the levels in ``keep_zones`` (e.g. ``("block",)``, which
    :func:`ping_zones` reads tracts and districts off)."""
    cache = derived_cache(traces)
    keep = {k: v for k, v in cache.items() if isinstance(k, tuple) and k[0] == "zones" and k[-1] in keep_zones}
    cache.clear()
    cache.update(keep)


def derived_cache(traces: Traces) -> dict:
    """A per-object dict for memoising values derived from an (immutable) Traces.

    Keys must identify every input besides the traces; values that depend on another
    object should hold a reference to it (so its ``id`` cannot be reused).
    """
    cache = traces.__dict__.get("_derived_cache")
    if cache is None:
        cache = {}
        object.__setattr__(traces, "_derived_cache", cache)
    return cache
