"""Defenses: transforms a data broker could apply to the released pings (DESIGN.md §7).

Every defense is a function of the release with one *strength* parameter, declared in
:data:`REGISTRY` together with its allowed range and its *identity* value (the setting
that leaves the release bit-identical).  :func:`apply_defense` is the single entry point:
it validates the name and every parameter (:class:`~sim.core.errors.ConfigError` naming the
allowed values) and the inputs (:class:`~sim.core.errors.InputError`) before doing any work.

    >>> out, mapping = apply_defense("planar_laplace", traces, ctx, eps_per_m=2 / 500)

The broker knows more than it publishes: :class:`BrokerContext` carries, per trace of the
input :class:`~sim.core.traces.Traces`, the device's MAID and true home, plus the seed and
(for zone-based defenses) the world.

Randomness
----------
Every draw comes from :mod:`sim.core.rng` counter streams.  For a defense with sub-tag ``S``
the stream of a trace is ``stream_key(stream_key(seed, TAG_DEFENSE, S), 0, uid)`` where
``uid`` is the first 8 bytes (little endian) of SHA-256 of the trace's pseudonym (of the
MAID for the pseudonym resets), and the counter is the ping's rank inside its trace.
Draws therefore depend neither on the order of traces nor on how they are chunked, and a
weaker setting reuses the very same draws (a subsample with a larger fraction keeps a
superset of pings, noise with a smaller scale moves every ping along the same direction
by a proportionally smaller distance), which makes "privacy never improves when a
defense is weakened" provable rather than a statistical accident.

Pseudonyms
----------
The new pseudonym is the lowercase hex SHA-256 of a UTF-8 string::

    salt:           sha256((salt + maid).encode("utf-8")).hexdigest()
    rotate / reset: sha256((salt + maid + ":" + str(epoch)).encode("utf-8")).hexdigest()

with ``epoch`` the decimal integer epoch (may be negative for pings before the window).
Rotation and resets split each trace into one trace per epoch (contiguous in time, since
epochs never decrease within a trace).  Input traces that share a MAID and an epoch get
the same pseudonym and are merged (rows re-sorted by time, stable).  Traces with no ping
are dropped (there is nothing to publish).  The returned mapping table lets scoring find
the device: one row per output trace with ``pseudonym, source_pseudonym, epoch,
first_day, last_day, n_pings`` (first/last *observed* local day of the new trace).

Outputs
-------
Trace defenses return ``(Traces, mapping)``; ``mapping`` is ``None`` unless pseudonyms
changed.  Traces left with no ping are dropped (except by the pure position/time
transforms, which keep every trace).  ``accuracy_m`` is passed through unchanged.
Aggregate defenses (``aggregate_k``, ``aggregate_dp``) return ``(DataFrame, None)``:
a zone × time-bin count table, see :func:`zone_time_counts`.  Per-trace attacks
(home/work linkage, unicity, top-N, geofence, known points, re-linking) do not apply to
such a table; the risk that still applies is membership inference, measured by
:func:`aggregate_membership_risk`.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from sim.core.constants import LEVELS
from sim.core.errors import ConfigError, InputError
from sim.core.lookup import id_positions, values_at
from sim.core.rng import TAG_DEFENSE, check_seed, seed_sequence, stable_uid64
from sim.core.traces import Traces, ping_zones
from sim.generate.pseudonyms import pseudonym_hash
from sim.release._kernels import (
    SUB_CAP,
    SUB_GAUSS,
    SUB_LAPLACE,
    SUB_RESET,
    SUB_SALT,
    SUB_SUBSAMPLE,
    cap_kernel,
    defense_key,
    gauss_kernel,
    laplace_kernel,
    reset_kernel,
    subsample_kernel,
)
from sim.release.aggregate import (
    AGGREGATE_ATTACKS,
    TRACE_ATTACKS,
    bin_seconds,
    check_traces,
    night_mask,
    transform_aggregate_dp,
    transform_aggregate_k,
)

log = logging.getLogger(__name__)

#: Location Guard's privacy levels: radius r (metres) with eps = 2 / r, so that the
#: mean displacement of planar Laplace noise is exactly r.
LOCATION_GUARD_R_M = {"low": 200.0, "medium": 500.0, "high": 2000.0}
LOCATION_GUARD_EPS_PER_M = {k: 2.0 / r for k, r in LOCATION_GUARD_R_M.items()}

# =============================================================================
# Broker context
# =============================================================================
@dataclass(frozen=True, eq=False)
class BrokerContext:
    """What the broker knows beyond the release, aligned with the input traces.

    Parameters
    ----------
    maid : array of str, shape (n_traces,)
        Advertising ID of the device behind each trace.
    home_x_m, home_y_m : float64 arrays, shape (n_traces,)
        True home of each trace's device in metres (NaN = unknown: home suppression
        then drops nothing from that trace).
    seed : int
        Root seed of every random draw of the defenses.
    world : World, optional
        Needed by the zone-based defenses (``zone_centroid``, aggregates).
    """

    maid: np.ndarray
    home_x_m: np.ndarray
    home_y_m: np.ndarray
    seed: int
    world: Any = None

    def __post_init__(self):
        maid = np.asarray(self.maid, dtype=object)
        hx = np.asarray(self.home_x_m, dtype=np.float64)
        hy = np.asarray(self.home_y_m, dtype=np.float64)
        if maid.ndim != 1 or hx.shape != maid.shape or hy.shape != maid.shape:
            raise InputError(
                f"BrokerContext arrays must be 1-D of equal length (one per trace); got "
                f"maid {maid.shape}, home_x_m {hx.shape}, home_y_m {hy.shape}."
            )
        object.__setattr__(self, "maid", maid)
        object.__setattr__(self, "home_x_m", hx)
        object.__setattr__(self, "home_y_m", hy)
        object.__setattr__(self, "seed", check_seed(self.seed))

    @property
    def n_traces(self) -> int:
        return len(self.maid)

    def take(self, idx) -> "BrokerContext":
        """The context of the traces with the given indices, in that order."""
        idx = np.asarray(idx, dtype=np.int64)
        return BrokerContext(self.maid[idx], self.home_x_m[idx], self.home_y_m[idx],
                             self.seed, self.world)

    def follow(self, traces_in: Traces, traces_out: Traces, mapping=None) -> "BrokerContext":
        """The context aligned with ``traces_out``, the result of a defense on ``traces_in``.

        Each output trace is matched to its source trace by pseudonym (through
        ``mapping.source_pseudonym`` when pseudonyms changed).
        """
        if mapping is None:
            src = np.asarray(traces_out.pseudonym, dtype=object)
        else:
            m = mapping.set_index("pseudonym")["source_pseudonym"]
            src = m.reindex(pd.Index(traces_out.pseudonym, dtype=object)).to_numpy(dtype=object)
        idx = pd.Index(traces_in.pseudonym, dtype=object).get_indexer(src)
        if np.any(idx < 0):
            bad = src[np.flatnonzero(idx < 0)[0]]
            raise InputError(
                f"output trace with source {bad!r} has no source trace in the input; pass the "
                "traces the defense was applied to and the mapping it returned."
            )
        return self.take(idx)

    @classmethod
    def from_truth(cls, traces: Traces, pseudonyms: pd.DataFrame, persons: pd.DataFrame,
                   *, seed: int, world=None) -> "BrokerContext":
        """Build from the truth tables of docs/CONTRACTS.md.

        ``pseudonyms`` needs columns pseudonym, maid, person_id; ``persons`` person_id,
        home_x_m, home_y_m.
        """
        for name, df, cols in (("pseudonyms", pseudonyms, ["pseudonym", "maid", "person_id"]),
                               ("persons", persons, ["person_id", "home_x_m", "home_y_m"])):
            miss = [c for c in cols if c not in df.columns]
            if miss:
                raise InputError(f"{name} table is missing column(s) {miss}; expected {cols}.")
        ps = pseudonyms.drop_duplicates("pseudonym").set_index("pseudonym")
        pos = ps.index.get_indexer(pd.Index(traces.pseudonym, dtype=object))
        if np.any(pos < 0):
            bad = traces.pseudonym[np.flatnonzero(pos < 0)[0]]
            raise InputError(f"pseudonym {bad!r} of the release is not in the pseudonyms table.")
        rows = ps.iloc[pos]
        ppos = id_positions(persons["person_id"].to_numpy(), rows["person_id"].to_numpy())
        hx = values_at(persons["home_x_m"].to_numpy(np.float64), ppos, np.nan)
        hy = values_at(persons["home_y_m"].to_numpy(np.float64), ppos, np.nan)
        return cls(rows["maid"].astype(str).to_numpy(dtype=object), hx, hy, seed, world)


def derive_salt(seed: int) -> str:
    """A secret 32-hex-digit salt derived from ``seed`` (for ``salt=derive_salt(seed)``)."""
    g = seed_sequence(check_seed(seed), TAG_DEFENSE, SUB_SALT)
    return g.bytes(16).hex()


def location_guard_eps(level_or_r_m) -> float:
    """Planar Laplace ``eps_per_m`` of a Location Guard setting: 2 / r.

    ``level_or_r_m`` is "low" (r = 200 m), "medium" (500 m), "high" (2000 m) or a radius
    in metres; the mean displacement of the noise is r.
    """
    if isinstance(level_or_r_m, str):
        if level_or_r_m not in LOCATION_GUARD_R_M:
            raise ConfigError(f"unknown Location Guard level {level_or_r_m!r}; expected one of "
                              f"{tuple(LOCATION_GUARD_R_M)} or a radius in metres.")
        return LOCATION_GUARD_EPS_PER_M[level_or_r_m]
    r = float(level_or_r_m)
    if not (r > 0 and math.isfinite(r)):
        raise ConfigError(f"Location Guard radius must be a positive number of metres, got {r}.")
    return 2.0 / r


# =============================================================================
# Small helpers
# =============================================================================
def _with(traces: Traces, step: dict, **changes) -> Traces:
    """Copy of ``traces`` with fields replaced and ``step`` appended to meta['defenses']."""
    meta = dict(traces.meta)
    meta["defenses"] = list(meta.get("defenses", [])) + [step]
    return dataclasses.replace(traces, meta=meta, **changes)


def _select(traces: Traces, keep: np.ndarray, step: dict) -> Traces:
    out = traces.select_pings(keep, drop_empty=True)
    log.info("%s kept %d of %d pings, %d of %d traces", step["name"], out.n_pings,
             traces.n_pings, out.n_traces, traces.n_traces)
    return _with(out, step)


def _zone_centroids(world, level):
    """(sorted zone ids, centroid x, centroid y) of ``level`` from the World contract."""
    if level == "building":
        b = world.buildings
        ids = b["building_id"].to_numpy(np.int64)
        cx, cy = b["x_m"].to_numpy(np.float64), b["y_m"].to_numpy(np.float64)
    else:
        z = world.zones[level]
        ids = z["zone_id"].to_numpy(np.int64)
        c = z.geometry.centroid
        cx, cy = c.x.to_numpy(np.float64), c.y.to_numpy(np.float64)
    o = np.argsort(ids, kind="stable")
    return ids[o], cx[o], cy[o]


# =============================================================================
# Implementations (called by apply_defense after validation)
# =============================================================================
def _repseudonymise(traces, ctx, epoch, salt, with_epoch, step):
    n = traces.n_pings
    lengths = traces.lengths
    tr = traces.trace_index()
    change = np.zeros(n, dtype=bool)
    change[traces.offsets[:-1][lengths > 0]] = True
    if n > 1:
        change[1:] |= epoch[1:] != epoch[:-1]
    seg_rows = np.flatnonzero(change)
    seg_tr = tr[seg_rows]
    seg_ep = epoch[seg_rows]
    maid = ctx.maid
    if with_epoch:
        names = [pseudonym_hash(maid[t], salt, e) for t, e in zip(seg_tr.tolist(), seg_ep.tolist())]
    else:
        names = [pseudonym_hash(maid[t], salt) for t in seg_tr.tolist()]
    codes, uniq = pd.factorize(pd.Index(names, dtype=object), sort=False)
    day = traces.day()
    if len(uniq) == len(names):
        offsets = np.append(seg_rows, n).astype(np.int64)
        t_s, x_m, y_m, acc = traces.t_s, traces.x_m, traces.y_m, traces.accuracy_m
        first_seg = np.arange(len(names))
    else:  # several input traces share a MAID and an epoch: merge them
        seg_of_ping = np.cumsum(change) - 1
        pcode = codes[seg_of_ping]
        order = np.lexsort((traces.t_s, pcode))
        counts = np.bincount(pcode, minlength=len(uniq))
        offsets = np.zeros(len(uniq) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        t_s, x_m, y_m = traces.t_s[order], traces.x_m[order], traces.y_m[order]
        acc, day = traces.accuracy_m[order], day[order]
        first_seg = np.unique(codes, return_index=True)[1]
        log.warning("%s: %d input segments merged into %d pseudonyms (traces sharing a MAID)",
                    step["name"], len(names), len(uniq))
    pseud = np.asarray(uniq, dtype=object)
    k = len(pseud)
    mapping = pd.DataFrame({
        "pseudonym": pseud,
        "source_pseudonym": np.asarray(traces.pseudonym, dtype=object)[seg_tr[first_seg]],
        "epoch": seg_ep[first_seg].astype(np.int64),
        "first_day": day[offsets[:-1]] if k else np.zeros(0, np.int64),
        "last_day": day[offsets[1:] - 1] if k else np.zeros(0, np.int64),
        "n_pings": np.diff(offsets),
    })
    out = _with(traces, step, pseudonym=pseud, offsets=offsets, t_s=t_s, x_m=x_m, y_m=y_m,
                accuracy_m=acc)
    log.info("%s: %d traces -> %d pseudonyms", step["name"], traces.n_traces, k)
    return out, mapping


def _salt(traces, ctx, step, salt):
    return _repseudonymise(traces, ctx, np.zeros(traces.n_pings, np.int64), salt, False, step)


def _rotate(traces, ctx, step, period_days, salt=""):
    epoch = traces.day() // int(period_days)
    return _repseudonymise(traces, ctx, epoch, salt, True, step)


def _reset(traces, ctx, step, reset_prob, salt=""):
    epoch = np.empty(traces.n_pings, dtype=np.int64)
    reset_kernel(traces.offsets, stable_uid64(ctx.maid), defense_key(ctx.seed, SUB_RESET),
                  traces.day(), float(reset_prob), epoch)
    return _repseudonymise(traces, ctx, epoch, salt, True, step)


def _grid(traces, ctx, step, cell_m):
    v = float(cell_m)
    x = (np.floor(traces.x_m / v) + 0.5) * v
    y = (np.floor(traces.y_m / v) + 0.5) * v
    return _with(traces, step, x_m=x, y_m=y), None


def _zone_centroid(traces, ctx, step, level):
    ids, cx, cy = _zone_centroids(ctx.world, level)
    z = ping_zones(traces, ctx.world, level)
    if len(ids):
        pos = np.clip(np.searchsorted(ids, z), 0, len(ids) - 1)
        found = (z >= 0) & (ids[pos] == z)
        x = np.where(found, cx[pos], traces.x_m)
        y = np.where(found, cy[pos], traces.y_m)
    else:
        found = np.zeros(traces.n_pings, dtype=bool)
        x, y = traces.x_m, traces.y_m
    moved = _with(traces, step, x_m=x, y_m=y)
    if found.all():
        return moved, None
    log.info("zone_centroid: dropping %d pings outside the study area", int((~found).sum()))
    return moved.select_pings(found, drop_empty=True), None


def _time_round(traces, ctx, step, bin_h):
    b = bin_seconds(bin_h, "bin_h")
    t = traces.start_s + ((traces.t_s - traces.start_s) // b) * b
    return _with(traces, step, t_s=t.astype(np.int64)), None


def _noise(traces, ctx, step, kernel, sub, scale):
    """Move every ping by the noise ``kernel`` draws from its trace's stream ``sub``."""
    xo = np.empty_like(traces.x_m, dtype=np.float64)
    yo = np.empty_like(traces.y_m, dtype=np.float64)
    kernel(traces.offsets, stable_uid64(traces.pseudonym), defense_key(ctx.seed, sub), float(scale),
           traces.x_m.astype(np.float64, copy=False), traces.y_m.astype(np.float64, copy=False), xo, yo)
    return _with(traces, step, x_m=xo, y_m=yo), None


def _gaussian(traces, ctx, step, sigma_m):
    return _noise(traces, ctx, step, gauss_kernel, SUB_GAUSS, sigma_m)


def _planar_laplace(traces, ctx, step, eps_per_m):
    return _noise(traces, ctx, step, laplace_kernel, SUB_LAPLACE, eps_per_m)


def subsample_mask(traces: Traces, seed: int, fraction: float) -> np.ndarray:
    """Boolean keep-mask of :func:`subsample`: ping i kept iff u_i < fraction (exclusive)."""
    keep = np.empty(traces.n_pings, dtype=np.bool_)
    subsample_kernel(traces.offsets, stable_uid64(traces.pseudonym), defense_key(seed, SUB_SUBSAMPLE),
                      float(fraction), keep)
    return keep


def _subsample(traces, ctx, step, fraction):
    return _select(traces, subsample_mask(traces, ctx.seed, fraction), step), None


def _daily_cap(traces, ctx, step, max_per_day):
    keep = np.empty(traces.n_pings, dtype=np.bool_)
    cap_kernel(traces.offsets, stable_uid64(traces.pseudonym), defense_key(ctx.seed, SUB_CAP),
                traces.day(), int(max_per_day), keep)
    return _select(traces, keep, step), None


def _home_suppression(traces, ctx, step, radius_m):
    hx = np.repeat(ctx.home_x_m, traces.lengths)
    hy = np.repeat(ctx.home_y_m, traces.lengths)
    d = np.hypot(traces.x_m - hx, traces.y_m - hy)
    keep = ~(d < float(radius_m))  # NaN home -> NaN distance -> kept
    n_unknown = int(np.sum(np.isnan(ctx.home_x_m) | np.isnan(ctx.home_y_m)))
    if n_unknown:
        log.warning("home_suppression: %d traces have no known home; nothing dropped there",
                    n_unknown)
    return _select(traces, keep, step), None


def _night_suppression(traces, ctx, step, duration_h, end_h=6.0):
    return _select(traces, ~night_mask(traces, duration_h, end_h), step), None


def _drop_sparse(traces, ctx, step, min_pings):
    codes, uniq = pd.factorize(pd.Index(ctx.maid, dtype=object))
    per_dev = np.bincount(codes, weights=traces.lengths, minlength=len(uniq))
    keep_trace = per_dev[codes] >= int(min_pings)
    idx = np.flatnonzero(keep_trace)
    out = traces.take(idx)
    log.info("drop_sparse: kept %d of %d traces (devices with >= %d pings)",
             out.n_traces, traces.n_traces, min_pings)
    return _with(out, step), None


# =============================================================================
# Registry
# =============================================================================
_REQUIRED = object()


@dataclass(frozen=True)
class Param:
    """A parameter's allowed values (bounds and their inclusiveness) and default."""

    name: str
    kind: str  # "float" | "int" | "str" | "choice"
    low: float | None = None
    high: float | None = None
    low_inclusive: bool = True
    high_inclusive: bool = True
    choices: tuple = ()
    allow_none: bool = False
    default: Any = _REQUIRED
    doc: str = ""

    def allowed(self) -> str:
        if self.kind == "choice":
            s = f"one of {self.choices}"
        elif self.kind == "str":
            s = "a string"
        else:
            lo = "[" if self.low_inclusive else "("
            hi = "]" if self.high_inclusive else ")"
            what = "an integer" if self.kind == "int" else "a number"
            s = f"{what} in {lo}{self.low:g}, {self.high:g}{hi}"
        return s + (" or None" if self.allow_none else "")

    def check(self, value, defense: str):
        def bad():
            return ConfigError(
                f"defense {defense!r}: {self.name}={value!r} is not allowed; expected "
                f"{self.allowed()}" + (f" ({self.doc})" if self.doc else "") + "."
            )

        if value is None:
            if self.allow_none:
                return None
            raise bad()
        if self.kind == "choice":
            if value not in self.choices:
                raise bad()
            return value
        if self.kind == "str":
            if not isinstance(value, str):
                raise bad()
            return value
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise bad()
        v = float(value)
        if math.isnan(v):
            raise bad()
        if self.kind == "int" and math.isfinite(v) and v != int(v):
            raise bad()
        if v < self.low or (v == self.low and not self.low_inclusive):
            raise bad()
        if v > self.high or (v == self.high and not self.high_inclusive):
            raise bad()
        if self.kind == "int":
            return int(v) if math.isfinite(v) else math.inf
        return v


@dataclass(frozen=True)
class DefenseSpec:
    """One defense: its strength parameter, identity value, options and output kind."""

    name: str
    strength: Param
    identity: Any
    func: Callable
    description: str
    stronger_when: str  # "higher" | "lower" | "set"
    options: tuple = ()
    output: str = "traces"  # "traces" | "table"
    needs_world: bool = False
    changes_pseudonyms: bool = False

    @property
    def applies_to(self) -> tuple:
        """Attacks that still apply to this defense's output."""
        return AGGREGATE_ATTACKS if self.output == "table" else TRACE_ATTACKS

    def is_identity(self, value) -> bool:
        if self.identity is None:
            return value is None
        return value is not None and value == self.identity


_INF = math.inf
_salt_opt = Param("salt", "str", default="", doc="prepended to the MAID before hashing")
_level_opt = Param("level", "choice", choices=LEVELS, default="tract")
_bin_opt = Param("bin_h", "float", 0.0, 24.0 * 366, low_inclusive=False, default=1.0,
                 doc="time bin in hours, a whole number of seconds")

REGISTRY: dict[str, DefenseSpec] = {s.name: s for s in (
    DefenseSpec("salt", Param("salt", "str", allow_none=True, doc="None keeps the pseudonyms"),
                None, _salt, "re-hash pseudonyms as sha256(salt + maid)", "set",
                changes_pseudonyms=True),
    DefenseSpec("rotate", Param("period_days", "int", 1, _INF, doc="inf = never rotate"),
                _INF, _rotate, "new pseudonym every period_days local days: "
                "sha256(salt + maid + ':' + epoch), epoch = day // period_days", "lower",
                options=(_salt_opt,), changes_pseudonyms=True),
    DefenseSpec("reset", Param("reset_prob", "float", 0.0, 1.0,
                               doc="probability of a reset at each local midnight"),
                0.0, _reset, "MAID reset at each local midnight with probability reset_prob: "
                "sha256(salt + maid + ':' + epoch), epoch = number of resets so far", "higher",
                options=(_salt_opt,), changes_pseudonyms=True),
    DefenseSpec("grid", Param("cell_m", "float", 0.0, _INF, high_inclusive=False,
                              doc="0 = no snapping"),
                0.0, _grid, "snap positions to the centre of a cell_m grid anchored at the "
                "CRS origin", "higher"),
    DefenseSpec("zone_centroid", Param("level", "choice", choices=LEVELS, allow_none=True,
                                       doc="None = keep positions"),
                None, _zone_centroid, "replace positions by the centroid of their zone at "
                "level (pings outside the study area are dropped)", "set", needs_world=True),
    DefenseSpec("time_round", Param("bin_h", "float", 0.0, 24.0 * 366, high_inclusive=False,
                                    doc="0 = exact times; else a whole number of seconds"),
                0.0, _time_round, "round times down to multiples of bin_h hours counted from "
                "local midnight of day 0 (start_s)", "higher"),
    DefenseSpec("gaussian", Param("sigma_m", "float", 0.0, _INF, high_inclusive=False),
                0.0, _gaussian, "add isotropic Gaussian noise of sigma_m per axis", "higher"),
    DefenseSpec("planar_laplace", Param("eps_per_m", "float", 0.0, _INF, low_inclusive=False,
                                        doc="inf = no noise; Location Guard: 2/r"),
                _INF, _planar_laplace, "geo-indistinguishability: radius ~ Gamma(2, 1/eps), "
                "uniform angle; mean displacement 2/eps", "lower"),
    DefenseSpec("subsample", Param("fraction", "float", 0.0, 1.0),
                1.0, _subsample, "keep ping i iff u_i < fraction", "lower"),
    DefenseSpec("daily_cap", Param("max_per_day", "int", 1, _INF, doc="inf = no cap"),
                _INF, _daily_cap, "keep a random max_per_day pings per trace and local day "
                "(the ones with the smallest u_i)", "lower"),
    DefenseSpec("home_suppression", Param("radius_m", "float", 0.0, _INF, high_inclusive=False),
                0.0, _home_suppression, "drop pings at distance < radius_m (exclusive) of the "
                "device's true home", "higher"),
    DefenseSpec("night_suppression", Param("duration_h", "float", 0.0, 24.0),
                0.0, _night_suppression, "drop pings with local time in "
                "[end_h - duration_h, end_h)", "higher",
                options=(Param("end_h", "float", 0.0, 24.0, high_inclusive=False, default=6.0),)),
    DefenseSpec("drop_sparse", Param("min_pings", "int", 0, _INF, high_inclusive=False),
                0, _drop_sparse, "drop devices (MAIDs) with fewer than min_pings pings in the "
                "release", "higher"),
    DefenseSpec("aggregate_k", Param("k", "int", 1, _INF, high_inclusive=False,
                                     doc="1 = no suppression"),
                1, transform_aggregate_k, "zone x time-bin counts of distinct traces; cells with count "
                "< k suppressed", "higher",
                options=(_level_opt, _bin_opt,
                         Param("max_zones_per_bin", "int", 1, _INF, high_inclusive=False,
                               allow_none=True, default=None)),
                output="table", needs_world=True),
    DefenseSpec("aggregate_dp", Param("epsilon", "float", 0.0, _INF, low_inclusive=False,
                                      doc="total budget of the table; inf = exact counts"),
                _INF, transform_aggregate_dp, "all zone x time-bin counts (one zone per trace and bin "
                "by default) + Laplace or two-sided geometric noise of scale "
                "n_bins * max_zones_per_bin / epsilon", "lower",
                options=(_level_opt, _bin_opt,
                         Param("mechanism", "choice", choices=("laplace", "geometric"),
                               default="laplace"),
                         Param("max_zones_per_bin", "int", 1, _INF, high_inclusive=False,
                               default=1)),
                output="table", needs_world=True),
)}


def defense_table() -> pd.DataFrame:
    """The registry as a table: name, strength parameter, allowed values, identity, ..."""
    rows = []
    for s in REGISTRY.values():
        rows.append(dict(
            name=s.name, strength=s.strength.name, allowed=s.strength.allowed(),
            identity=repr(s.identity), stronger_when=s.stronger_when,
            options=", ".join(f"{o.name}={o.default!r}" for o in s.options),
            output=s.output, needs_world=s.needs_world, changes_pseudonyms=s.changes_pseudonyms,
            applies_to=", ".join(s.applies_to), description=s.description,
        ))
    return pd.DataFrame(rows)


def _spec_value(text: str):
    t = text.strip()
    low = t.lower()
    if low in ("none", "null"):
        return None
    if low in ("inf", "+inf", "infinity"):
        return math.inf
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(t)
        except ValueError:
            pass
    return t


def parse_defense_spec(spec: str) -> tuple[str, dict]:
    """``"grid:cell_m=500"`` -> ``("grid", {"cell_m": 500})``, validated
    (:func:`validate_defense`); several parameters are separated by commas
    (``"night_suppression:duration_h=8,end_h=6"``); values parse as int, float,
    ``inf``, ``true``/``false``, ``none`` or text."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"--defense needs NAME:param=value, e.g. grid:cell_m=500; got {spec!r}.")
    name, _, rest = spec.strip().partition(":")
    name = name.strip()
    params = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        k, eq, v = part.partition("=")
        if not eq or not k.strip():
            raise ConfigError(f"--defense {spec!r}: {part!r} is not param=value; e.g. grid:cell_m=500.")
        params[k.strip()] = _spec_value(v)
    validate_defense(name, params)  # names and ranges, before any work
    return name, params


def validate_defense(name: str, params: dict) -> tuple[DefenseSpec, dict]:
    """Check a defense name and its parameters; return the spec and the full parameters."""
    if name not in REGISTRY:
        raise ConfigError(f"unknown defense {name!r}; expected one of {tuple(REGISTRY)}.")
    spec = REGISTRY[name]
    allowed = {spec.strength.name: spec.strength, **{o.name: o for o in spec.options}}
    extra = sorted(set(params) - set(allowed))
    if extra:
        raise ConfigError(f"defense {name!r} got unknown parameter(s) {extra}; it accepts "
                          f"{tuple(allowed)}.")
    if spec.strength.name not in params:
        raise ConfigError(f"defense {name!r} needs its strength {spec.strength.name}= "
                          f"({spec.strength.allowed()}; identity {spec.identity!r}).")
    full = {}
    for pname, p in allowed.items():
        if pname in params:
            full[pname] = p.check(params[pname], name)
        else:
            full[pname] = p.default
    return spec, full


def apply_defense(name: str, traces: Traces, ctx: BrokerContext, **params):
    """Apply defense ``name`` with ``params`` (see :data:`REGISTRY`).

    Returns ``(Traces, mapping or None)`` for trace defenses and ``(DataFrame, None)`` for
    aggregate ones.  At the identity strength a trace defense returns ``traces`` itself
    (bit-identical) and ``None``.  Raises ConfigError for an unknown name, an unknown
    parameter or an out-of-range value, and InputError when ``ctx`` does not match
    ``traces``, all before any work.
    """
    spec, full = validate_defense(name, params)
    check_traces(traces)
    if not isinstance(ctx, BrokerContext):
        raise InputError(f"ctx must be a BrokerContext, got {type(ctx).__name__}.")
    if ctx.n_traces != traces.n_traces:
        raise InputError(f"ctx describes {ctx.n_traces} traces but the release has "
                         f"{traces.n_traces}; build the context for these traces (or use "
                         "BrokerContext.follow after a previous defense).")
    if spec.needs_world and ctx.world is None:
        raise ConfigError(f"defense {name!r} needs a world; pass BrokerContext(..., world=world).")
    traces.validate()
    strength = full[spec.strength.name]
    if spec.output == "traces" and spec.is_identity(strength):
        return traces, None
    step = {"name": name, **full}
    return spec.func(traces, ctx, step, **full)


def apply_defenses(traces: Traces, ctx: BrokerContext, steps):
    """Apply several defenses in order: ``steps`` is a list of ``(name, params)``.

    Returns ``(release, mapping or None, ctx)``: the mapping composes every pseudonym
    change back to the input pseudonyms (epoch of the last change; first/last day and
    n_pings of the final traces) and ``ctx`` is aligned with the final traces.  An
    aggregate defense may only be the last step (the context is then returned unchanged).
    """
    steps = list(steps)
    for i, (name, params) in enumerate(steps):  # validate everything before any work
        spec, _ = validate_defense(name, dict(params))
        if spec.output == "table" and i != len(steps) - 1:
            raise ConfigError(f"aggregate defense {name!r} must be the last step (its output "
                              "is a table, not traces).")
    cur, mapping = traces, None
    for name, params in steps:
        out, m = apply_defense(name, cur, ctx, **dict(params))
        if REGISTRY[name].output == "table":
            return out, mapping, ctx
        ctx = ctx.follow(cur, out, m)
        if m is not None:
            if mapping is not None:
                back = mapping.set_index("pseudonym")["source_pseudonym"]
                m = m.assign(source_pseudonym=back.reindex(m["source_pseudonym"]).to_numpy())
            mapping = m
        cur = out
    if mapping is not None:
        mapping = _refresh_mapping(mapping, cur)
    return cur, mapping, ctx


def _refresh_mapping(mapping, traces):
    """Restrict a mapping to the traces present and recompute their observed days."""
    k = traces.n_traces
    day = traces.day()
    lengths = traces.lengths
    ne = lengths > 0
    first = np.full(k, -1, np.int64)
    last = np.full(k, -1, np.int64)
    first[ne] = day[traces.offsets[:-1][ne]]
    last[ne] = day[traces.offsets[1:][ne] - 1]
    m = mapping.set_index("pseudonym").reindex(pd.Index(traces.pseudonym, dtype=object))
    return pd.DataFrame({"pseudonym": np.asarray(traces.pseudonym, dtype=object),
                         "source_pseudonym": m["source_pseudonym"].to_numpy(dtype=object),
                         "epoch": m["epoch"].to_numpy(np.int64), "first_day": first,
                         "last_day": last, "n_pings": lengths.astype(np.int64)})


