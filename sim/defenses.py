"""Defenses: transforms a data broker could apply to the released pings (DESIGN.md §7).

Every defense is a function of the release with one *strength* parameter, declared in
:data:`REGISTRY` together with its allowed range and its *identity* value (the setting
that leaves the release bit-identical).  :func:`apply_defense` is the single entry point:
it validates the name and every parameter (:class:`~sim.errors.ConfigError` naming the
allowed values) and the inputs (:class:`~sim.errors.InputError`) before doing any work.

    >>> out, mapping = apply_defense("planar_laplace", traces, ctx, eps_per_m=2 / 500)

The broker knows more than it publishes: :class:`BrokerContext` carries, per trace of the
input :class:`~sim.traces.Traces`, the device's MAID and true home, plus the seed and
(for zone-based defenses) the world.

Randomness
----------
Every draw comes from :mod:`sim.rng` counter streams.  For a defense with sub-tag ``S``
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
import hashlib
import logging
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from ._numba import jit, pjit, prange
from .errors import ConfigError, InputError
from .rng import (
    TAG_DEFENSE,
    check_seed,
    exponential,
    normal,
    seed_sequence,
    stream_key,
    uniform,
)
from .traces import DAY_S, Traces, derived_cache, ping_zones

log = logging.getLogger(__name__)

#: Zone levels of a World (docs/CONTRACTS.md), finest first.
LEVELS = ("building", "block", "tract", "district")

#: Location Guard's privacy levels: radius r (metres) with eps = 2 / r, so that the
#: mean displacement of planar Laplace noise is exactly r.
LOCATION_GUARD_R_M = {"low": 200.0, "medium": 500.0, "high": 2000.0}
LOCATION_GUARD_EPS_PER_M = {k: 2.0 / r for k, r in LOCATION_GUARD_R_M.items()}

#: Attacks of DESIGN.md §6 that need per-pseudonym traces.
TRACE_ATTACKS = (
    "home_work_linkage",
    "time_to_identification",
    "unicity",
    "top_n_locations",
    "geofence",
    "known_points",
    "relinking",
)
#: What still applies to a zone x time-bin count table.
AGGREGATE_ATTACKS = ("membership_inference",)

# Sub-tags of TAG_DEFENSE (fixed forever: changing one changes every output).
_SUB_SUBSAMPLE = 1
_SUB_CAP = 2
_SUB_GAUSS = 3
_SUB_LAPLACE = 4
_SUB_RESET = 5
_SUB_DP = 6
_SUB_MIA = 7
_SUB_SALT = 8


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
        pers = persons.drop_duplicates("person_id").set_index("person_id")
        ppos = pers.index.get_indexer(rows["person_id"])
        hx = np.where(ppos >= 0, pers["home_x_m"].to_numpy(np.float64)[ppos], np.nan)
        hy = np.where(ppos >= 0, pers["home_y_m"].to_numpy(np.float64)[ppos], np.nan)
        return cls(rows["maid"].astype(str).to_numpy(dtype=object), hx, hy, seed, world)


def derive_salt(seed: int) -> str:
    """A secret 32-hex-digit salt derived from ``seed`` (for ``salt=derive_salt(seed)``)."""
    g = seed_sequence(check_seed(seed), TAG_DEFENSE, _SUB_SALT)
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
# Hashing and stream helpers (per trace, not per ping)
# =============================================================================
def _uid64(strings) -> np.ndarray:
    """First 8 bytes (little endian) of SHA-256 of each string: a stable 64-bit identity."""
    return np.fromiter(
        (int.from_bytes(hashlib.sha256(str(s).encode("utf-8")).digest()[:8], "little")
         for s in strings),
        dtype=np.uint64, count=len(strings),
    )


def _dkey(seed: int, sub: int) -> np.uint64:
    return np.uint64(stream_key(seed, TAG_DEFENSE, sub))


def pseudonym_hash(maid: str, salt: str = "", epoch: int | None = None) -> str:
    """The published pseudonym of ``maid``: hex SHA-256 of ``salt + maid [+ ":" + epoch]``."""
    s = salt + str(maid) if epoch is None else f"{salt}{maid}:{int(epoch)}"
    return hashlib.sha256(s.encode("utf-8")).hexdigest()


# =============================================================================
# Kernels: serial worker over one trace, parallel kernel over traces
# =============================================================================
@jit
def _subsample_one(key, fraction, keep):
    for j in range(keep.shape[0]):
        keep[j] = uniform(key, j) < fraction


@pjit
def _subsample_kernel(offsets, uids, dkey, fraction, keep):
    for i in prange(offsets.shape[0] - 1):
        a, b = offsets[i], offsets[i + 1]
        _subsample_one(stream_key(dkey, 0, uids[i]), fraction, keep[a:b])


@jit
def _cap_one(key, day, cap, keep):
    n = day.shape[0]
    j = 0
    while j < n:
        k = j
        while k < n and day[k] == day[j]:
            k += 1
        m = k - j
        if m <= cap:
            for q in range(j, k):
                keep[q] = True
        else:
            u = np.empty(m)
            for q in range(m):
                u[q] = uniform(key, j + q)
            order = np.argsort(u, kind="mergesort")
            for q in range(m):
                keep[j + q] = False
            for q in range(cap):
                keep[j + order[q]] = True
        j = k


@pjit
def _cap_kernel(offsets, uids, dkey, day, cap, keep):
    for i in prange(offsets.shape[0] - 1):
        a, b = offsets[i], offsets[i + 1]
        _cap_one(stream_key(dkey, 0, uids[i]), day[a:b], cap, keep[a:b])


@jit
def _gauss_one(key, sigma_m, x, y, xo, yo):
    for j in range(x.shape[0]):
        xo[j] = x[j] + sigma_m * normal(key, 4 * j)
        yo[j] = y[j] + sigma_m * normal(key, 4 * j + 2)


@pjit
def _gauss_kernel(offsets, uids, dkey, sigma_m, x, y, xo, yo):
    for i in prange(offsets.shape[0] - 1):
        a, b = offsets[i], offsets[i + 1]
        _gauss_one(stream_key(dkey, 0, uids[i]), sigma_m, x[a:b], y[a:b], xo[a:b], yo[a:b])


@jit
def _laplace_one(key, eps_per_m, x, y, xo, yo):
    for j in range(x.shape[0]):
        # Gamma(2, 1/eps) radius as the sum of two exponentials; uniform angle.
        r = (exponential(key, 4 * j) + exponential(key, 4 * j + 1)) / eps_per_m
        th = 2.0 * np.pi * uniform(key, 4 * j + 2)
        xo[j] = x[j] + r * np.cos(th)
        yo[j] = y[j] + r * np.sin(th)


@pjit
def _laplace_kernel(offsets, uids, dkey, eps_per_m, x, y, xo, yo):
    for i in prange(offsets.shape[0] - 1):
        a, b = offsets[i], offsets[i + 1]
        _laplace_one(stream_key(dkey, 0, uids[i]), eps_per_m, x[a:b], y[a:b], xo[a:b], yo[a:b])


@jit
def _reset_one(key, day, prob, epoch):
    # A reset happens at the local midnight opening day d >= 1 iff uniform(key, d) < prob;
    # the epoch of a ping on day d is the number of resets on days 1..d.
    count = 0
    cur = 0
    for j in range(day.shape[0]):
        d = day[j]
        while cur < d:
            cur += 1
            if uniform(key, cur) < prob:
                count += 1
        epoch[j] = count


@pjit
def _reset_kernel(offsets, uids, dkey, day, prob, epoch):
    for i in prange(offsets.shape[0] - 1):
        a, b = offsets[i], offsets[i + 1]
        _reset_one(stream_key(dkey, 0, uids[i]), day[a:b], prob, epoch[a:b])


@jit
def _contrib_one(zone, tbin, cap, oz, ob):
    """Distinct (zone, bin) cells of one trace, at most ``cap`` zones per bin.

    Within a bin the zones with most pings win, ties to the lowest zone id; zones < 0
    are ignored.  Returns the number of cells written to ``oz``/``ob``.
    """
    n = zone.shape[0]
    zs = np.empty(n, dtype=np.int64)  # scratch, reused by every bin of the trace
    uz = np.empty(n, dtype=np.int64)
    cnt = np.empty(n, dtype=np.int64)
    w = 0
    j = 0
    while j < n:
        k = j
        while k < n and tbin[k] == tbin[j]:
            k += 1
        if k - j == 1:  # fast path: a lone ping in its bin
            if zone[j] >= 0:
                oz[w] = zone[j]
                ob[w] = tbin[j]
                w += 1
            j = k
            continue
        g = zs[: k - j]
        g[:] = zone[j:k]
        g.sort()
        m = 0
        for q in range(k - j):
            if g[q] < 0:
                continue
            if m > 0 and uz[m - 1] == g[q]:
                cnt[m - 1] += 1
            else:
                uz[m] = g[q]
                cnt[m] = 1
                m += 1
        if m <= cap:
            for q in range(m):
                oz[w] = uz[q]
                ob[w] = tbin[j]
                w += 1
        else:
            order = np.argsort(-cnt[:m], kind="mergesort")  # stable: ties keep lowest zone
            for q in range(cap):
                oz[w] = uz[order[q]]
                ob[w] = tbin[j]
                w += 1
        j = k
    return w


@pjit
def _contrib_kernel(offsets, zone, tbin, cap, oz, ob, nw):
    for i in prange(offsets.shape[0] - 1):
        a, b = offsets[i], offsets[i + 1]
        nw[i] = _contrib_one(zone[a:b], tbin[a:b], cap, oz[a:b], ob[a:b])


@pjit
def _dp_noise_kernel(zone_ids, n_bins, dkey, scale, geometric, out):
    # Cell (zone z, bin b) uses draws 2b, 2b+1 of stream (dkey, z): Laplace(scale) as the
    # difference of two exponentials, two-sided geometric as the difference of floors.
    for zi in prange(zone_ids.shape[0]):
        key = stream_key(dkey, 0, zone_ids[zi])
        for b in range(n_bins):
            e1 = exponential(key, 2 * b)
            e2 = exponential(key, 2 * b + 1)
            if geometric:
                out[zi, b] = np.floor(e1 * scale) - np.floor(e2 * scale)
            else:
                out[zi, b] = scale * (e1 - e2)


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


def _bin_s(bin_h: float, what: str) -> int:
    s = bin_h * 3600.0
    si = int(round(s))
    if si < 1 or abs(s - si) > 1e-6:
        raise ConfigError(f"{what}={bin_h!r} hours is not a whole number of seconds >= 1; "
                          "use e.g. 0.25, 1, 2 or 24.")
    return si


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


def _zone_ids(world, level) -> np.ndarray:
    if level == "building":
        return np.sort(world.buildings["building_id"].to_numpy(np.int64))
    return np.sort(world.zones[level]["zone_id"].to_numpy(np.int64))


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
    _reset_kernel(traces.offsets, _uid64(ctx.maid), _dkey(ctx.seed, _SUB_RESET),
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
    b = _bin_s(bin_h, "bin_h")
    t = traces.start_s + ((traces.t_s - traces.start_s) // b) * b
    return _with(traces, step, t_s=t.astype(np.int64)), None


def _gaussian(traces, ctx, step, sigma_m):
    xo = np.empty_like(traces.x_m, dtype=np.float64)
    yo = np.empty_like(traces.y_m, dtype=np.float64)
    _gauss_kernel(traces.offsets, _uid64(traces.pseudonym), _dkey(ctx.seed, _SUB_GAUSS),
                  float(sigma_m), traces.x_m.astype(np.float64, copy=False),
                  traces.y_m.astype(np.float64, copy=False), xo, yo)
    return _with(traces, step, x_m=xo, y_m=yo), None


def _planar_laplace(traces, ctx, step, eps_per_m):
    xo = np.empty_like(traces.x_m, dtype=np.float64)
    yo = np.empty_like(traces.y_m, dtype=np.float64)
    _laplace_kernel(traces.offsets, _uid64(traces.pseudonym), _dkey(ctx.seed, _SUB_LAPLACE),
                    float(eps_per_m), traces.x_m.astype(np.float64, copy=False),
                    traces.y_m.astype(np.float64, copy=False), xo, yo)
    return _with(traces, step, x_m=xo, y_m=yo), None


def subsample_mask(traces: Traces, seed: int, fraction: float) -> np.ndarray:
    """Boolean keep-mask of :func:`subsample`: ping i kept iff u_i < fraction (exclusive)."""
    keep = np.empty(traces.n_pings, dtype=np.bool_)
    _subsample_kernel(traces.offsets, _uid64(traces.pseudonym), _dkey(seed, _SUB_SUBSAMPLE),
                      float(fraction), keep)
    return keep


def _subsample(traces, ctx, step, fraction):
    return _select(traces, subsample_mask(traces, ctx.seed, fraction), step), None


def _daily_cap(traces, ctx, step, max_per_day):
    keep = np.empty(traces.n_pings, dtype=np.bool_)
    _cap_kernel(traces.offsets, _uid64(traces.pseudonym), _dkey(ctx.seed, _SUB_CAP),
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


def night_mask(traces: Traces, duration_h: float, end_h: float = 6.0) -> np.ndarray:
    """True for pings whose local time of day is in [end_h - duration_h, end_h) (mod 24).

    The start is inclusive, the end exclusive; ``duration_h >= 24`` covers the whole day
    and ``duration_h == 0`` nothing.
    """
    if duration_h <= 0:
        return np.zeros(traces.n_pings, dtype=bool)
    if duration_h >= 24:
        return np.ones(traces.n_pings, dtype=bool)
    sod = (traces.t_s - traces.start_s) % DAY_S  # local seconds of day, in [0, 86400)
    end = (end_h % 24.0) * 3600.0
    start = ((end_h - duration_h) % 24.0) * 3600.0
    if start < end:
        return (sod >= start) & (sod < end)
    return (sod >= start) | (sod < end)


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


# ------------------------------------------------------------------ aggregates
def _cell_contributions(traces: Traces, world, level: str, bin_s: int, n_bins: int,
                        max_zones_per_bin):
    """Per trace, its distinct (zone, bin) cells; returns (trace, zone, bin) int64 arrays
    (memoised on the traces: membership risk asks for the same cells once per target)."""
    cache = derived_cache(traces)
    key = ("cells", id(world), level, int(bin_s), int(n_bins), max_zones_per_bin)
    hit = cache.get(key)
    if hit is not None and hit[0] is world:
        return hit[1]
    res = _cell_contributions_uncached(traces, world, level, bin_s, n_bins, max_zones_per_bin)
    for a in res:
        a.setflags(write=False)
    cache[key] = (world, res)
    return res


def _cell_contributions_uncached(traces, world, level, bin_s, n_bins, max_zones_per_bin):
    z = ping_zones(traces, world, level)
    b = (traces.t_s - traces.start_s) // bin_s
    z = np.where((b >= 0) & (b < n_bins), z, -1)
    cap = np.iinfo(np.int64).max if max_zones_per_bin is None else int(max_zones_per_bin)
    n = traces.n_pings
    oz = np.empty(n, dtype=np.int64)
    ob = np.empty(n, dtype=np.int64)
    nw = np.zeros(traces.n_traces, dtype=np.int64)
    _contrib_kernel(traces.offsets, z, b.astype(np.int64), cap, oz, ob, nw)
    lengths = traces.lengths
    within = np.arange(n, dtype=np.int64) - np.repeat(traces.offsets[:-1], lengths)
    sel = within < np.repeat(nw, lengths)
    return traces.trace_index()[sel], oz[sel], ob[sel]


def _count_cells(zone, tbin, n_bins):
    """Sorted distinct (zone, bin) keys and their multiplicities."""
    key = zone * np.int64(n_bins) + tbin
    space = (int(zone.max()) + 1) * int(n_bins) if len(zone) else 0
    if space <= max(4 * len(key), 1 << 22):  # dense key space: counting beats sorting
        c = np.bincount(key, minlength=space)
        u = np.flatnonzero(c)
        c = c[u]
    else:
        u, c = np.unique(key, return_counts=True)
    return u // n_bins, u % n_bins, c.astype(np.int64)


def zone_time_counts(traces: Traces, world, level: str = "tract", bin_h: float = 1.0,
                     max_zones_per_bin: int | None = None) -> pd.DataFrame:
    """Exact zone x time-bin counts of distinct traces (no threshold, no noise).

    A trace counts once in cell (zone, bin) if it has a ping located in ``zone`` (by
    ``world.locate`` at ``level``) with ``(t_s - start_s) // bin_s == bin``; with
    ``max_zones_per_bin = c`` only its c zones with most pings in that bin count (ties to
    the lowest zone id).  Pings outside the study area or the window are ignored.
    Returns non-zero cells only: zone_id, bin, t_start_s, count (int64).
    """
    _check_traces(traces)
    if world is None:
        raise ConfigError("zone_time_counts needs a world (with locate(x_m, y_m, level)).")
    if level not in LEVELS:
        raise ConfigError(f"level={level!r} is not a zone level; expected one of {LEVELS}.")
    b = _bin_s(bin_h, "bin_h")
    n_bins = -(-int(traces.n_days) * DAY_S // b)
    _, z, tb = _cell_contributions(traces, world, level, b, n_bins, max_zones_per_bin)
    zz, bb, cc = _count_cells(z, tb, n_bins)
    return pd.DataFrame({"zone_id": zz, "bin": bb, "t_start_s": traces.start_s + bb * b,
                         "count": cc})


def _agg_attrs(df, traces, level, bin_s, n_bins, name, **kw):
    df.attrs.update(dict(defense=name, level=level, bin_h=bin_s / 3600.0, n_bins=int(n_bins),
                         start_s=int(traces.start_s), unit="distinct traces per zone and bin",
                         applies_to=AGGREGATE_ATTACKS, no_longer_applies=TRACE_ATTACKS, **kw))
    return df


def _aggregate_k(traces, ctx, step, k, level="tract", bin_h=1.0, max_zones_per_bin=None):
    b = _bin_s(bin_h, "bin_h")
    n_bins = -(-int(traces.n_days) * DAY_S // b)
    t = zone_time_counts(traces, ctx.world, level, bin_h, max_zones_per_bin)
    out = t[t["count"] >= int(k)].reset_index(drop=True)
    log.info("aggregate_k: %d of %d non-empty cells have count >= %d", len(out), len(t), k)
    return _agg_attrs(out, traces, level, b, n_bins, "aggregate_k", k=int(k),
                      max_zones_per_bin=max_zones_per_bin), None


def dp_sensitivity(n_bins: int, max_zones_per_bin: int) -> int:
    """L1 sensitivity of the whole zone x bin table to one trace: n_bins * max_zones_per_bin."""
    return int(n_bins) * int(max_zones_per_bin)


def _aggregate_dp(traces, ctx, step, epsilon, level="tract", bin_h=1.0, mechanism="laplace",
                  max_zones_per_bin=1):
    b = _bin_s(bin_h, "bin_h")
    n_bins = -(-int(traces.n_days) * DAY_S // b)
    zone_ids = _zone_ids(ctx.world, level)
    _, z, tb = _cell_contributions(traces, ctx.world, level, b, n_bins, max_zones_per_bin)
    zi = np.searchsorted(zone_ids, z)
    exact = np.bincount(zi * np.int64(n_bins) + tb, minlength=len(zone_ids) * n_bins
                        ).astype(np.float64).reshape(len(zone_ids), n_bins)
    delta = dp_sensitivity(n_bins, max_zones_per_bin)
    scale = float(delta) / float(epsilon)  # 0 for epsilon = inf
    noise = np.empty_like(exact)
    _dp_noise_kernel(zone_ids, n_bins, _dkey(ctx.seed, _SUB_DP), scale,
                     mechanism == "geometric", noise)
    count = exact + noise
    count = count.astype(np.int64) if mechanism == "geometric" else count
    bins = np.tile(np.arange(n_bins, dtype=np.int64), len(zone_ids))
    out = pd.DataFrame({"zone_id": np.repeat(zone_ids, n_bins), "bin": bins,
                        "t_start_s": traces.start_s + bins * b, "count": count.ravel()})
    return _agg_attrs(out, traces, level, b, n_bins, "aggregate_dp", epsilon=float(epsilon),
                      mechanism=mechanism, sensitivity_l1=delta, noise_scale=scale,
                      max_zones_per_bin=int(max_zones_per_bin)), None


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
                1, _aggregate_k, "zone x time-bin counts of distinct traces; cells with count "
                "< k suppressed", "higher",
                options=(_level_opt, _bin_opt,
                         Param("max_zones_per_bin", "int", 1, _INF, high_inclusive=False,
                               allow_none=True, default=None)),
                output="table", needs_world=True),
    DefenseSpec("aggregate_dp", Param("epsilon", "float", 0.0, _INF, low_inclusive=False,
                                      doc="total budget of the table; inf = exact counts"),
                _INF, _aggregate_dp, "all zone x time-bin counts (one zone per trace and bin "
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


def _check_traces(traces):
    if not isinstance(traces, Traces):
        raise InputError(f"expected a sim.traces.Traces, got {type(traces).__name__}; build one "
                         "with Traces.from_frame.")


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
    _check_traces(traces)
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


# =============================================================================
# Public per-defense functions (thin wrappers: validation happens in apply_defense)
# =============================================================================
def salt_pseudonyms(traces, ctx, salt):
    """Re-hash every pseudonym as ``sha256(salt + maid)``; ``salt=None`` is the identity."""
    return apply_defense("salt", traces, ctx, salt=salt)


def rotate_pseudonyms(traces, ctx, period_days, salt=""):
    """One pseudonym per ``period_days`` local days (``inf`` = never); see module doc."""
    return apply_defense("rotate", traces, ctx, period_days=period_days, salt=salt)


def reset_pseudonyms(traces, ctx, reset_prob, salt=""):
    """MAID reset at each local midnight with probability ``reset_prob`` (0 = never)."""
    return apply_defense("reset", traces, ctx, reset_prob=reset_prob, salt=salt)


def snap_to_grid(traces, ctx, cell_m):
    """Snap x/y to the centre of their ``cell_m``-metre cell (at most half a diagonal away)."""
    return apply_defense("grid", traces, ctx, cell_m=cell_m)


def snap_to_zone_centroid(traces, ctx, level):
    """Replace positions by their zone's centroid at ``level``; drop pings outside the area."""
    return apply_defense("zone_centroid", traces, ctx, level=level)


def round_time(traces, ctx, bin_h):
    """Round t_s down to multiples of ``bin_h`` hours from local midnight of day 0."""
    return apply_defense("time_round", traces, ctx, bin_h=bin_h)


def gaussian_noise(traces, ctx, sigma_m):
    """Add N(0, sigma_m^2) to x and y (mean displacement sigma_m * sqrt(pi / 2))."""
    return apply_defense("gaussian", traces, ctx, sigma_m=sigma_m)


def planar_laplace(traces, ctx, eps_per_m):
    """Geo-indistinguishable noise (Andres et al. 2013); mean displacement 2 / eps_per_m."""
    return apply_defense("planar_laplace", traces, ctx, eps_per_m=eps_per_m)


def subsample(traces, ctx, fraction):
    """Keep each ping independently with probability ``fraction`` (nested in fraction)."""
    return apply_defense("subsample", traces, ctx, fraction=fraction)


def cap_per_day(traces, ctx, max_per_day):
    """Keep at most ``max_per_day`` random pings per trace and local day (nested)."""
    return apply_defense("daily_cap", traces, ctx, max_per_day=max_per_day)


def suppress_home(traces, ctx, radius_m):
    """Drop pings strictly within ``radius_m`` of the device's true home."""
    return apply_defense("home_suppression", traces, ctx, radius_m=radius_m)


def suppress_night(traces, ctx, duration_h, end_h=6.0):
    """Drop pings with local time in ``[end_h - duration_h, end_h)`` (mod 24 h)."""
    return apply_defense("night_suppression", traces, ctx, duration_h=duration_h, end_h=end_h)


def drop_sparse_devices(traces, ctx, min_pings):
    """Drop devices (MAIDs of ``ctx``) with fewer than ``min_pings`` pings in total."""
    return apply_defense("drop_sparse", traces, ctx, min_pings=min_pings)


def aggregate_k(traces, ctx, k, level="tract", bin_h=1.0, max_zones_per_bin=None):
    """Zone x time-bin counts of distinct traces, cells with count < k suppressed.

    Returns ``(DataFrame[zone_id, bin, t_start_s, count], None)``; only cells with
    count >= k (inclusive) appear.  Per-trace attacks no longer apply to this table (see
    ``df.attrs['no_longer_applies']``); membership inference does, and a k threshold
    gives no protection against it (see :func:`aggregate_membership_risk`).
    """
    return apply_defense("aggregate_k", traces, ctx, k=k, level=level, bin_h=bin_h,
                         max_zones_per_bin=max_zones_per_bin)


def aggregate_dp(traces, ctx, epsilon, level="tract", bin_h=1.0, mechanism="laplace",
                 max_zones_per_bin=1):
    """Differentially private zone x time-bin counts (every cell released, noisy).

    Sensitivity: each trace adds 1 to at most ``max_zones_per_bin`` zones per time bin
    (the zones where it has most pings in that bin), so adding or removing one trace
    changes the whole table by at most ``Delta = n_bins * max_zones_per_bin`` in L1.
    Every cell gets independent Laplace(Delta / epsilon) noise (float counts) or
    two-sided geometric noise with alpha = exp(-epsilon / Delta) (integer counts), which
    makes the whole table epsilon-DP with the *trace* as the unit of privacy (a device
    whose pings are split over several pseudonyms is protected at a multiple of epsilon).
    Noisy counts are released unclamped (unbiased); epsilon = inf gives exact counts.
    """
    return apply_defense("aggregate_dp", traces, ctx, epsilon=epsilon, level=level,
                         bin_h=bin_h, mechanism=mechanism, max_zones_per_bin=max_zones_per_bin)


# =============================================================================
# The risk that still applies to aggregates: membership inference
# =============================================================================
def _wilson(k, n, z=1.959963984540054):
    if n == 0:
        return (np.nan, np.nan)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def aggregate_membership_risk(traces: Traces, ctx: BrokerContext, target, name: str,
                              n_trials: int = 2000, **params) -> pd.DataFrame:
    """Membership inference against an aggregate release (the risk that still applies).

    Threat model (the one differential privacy is defined against): the attacker knows
    the target's trace and the exact counts of everybody else, and must tell whether the
    published table was computed with the target (IN) or without (OUT).  Attack: sum, over
    the target's cells, of (published count - others' count), a missing (suppressed)
    cell counting 0; decide IN iff the sum exceeds half the number of *informative* cells
    (all target cells under noise; under a k threshold, those where others' count + 1 >= k).
    With no informative cell the attacker always answers OUT.

    ``target`` is a trace index or pseudonym; ``name`` is "aggregate_k" or "aggregate_dp"
    with its ``params``.  IN and OUT worlds are simulated ``n_trials`` times each with
    fresh noise (numpy stream keyed by (seed, TAG_DEFENSE, sub-tag)).  Returns a tidy
    table: metric (tpr, fpr, advantage = tpr - fpr, advantage_bound, n_target_cells,
    n_informative_cells), value, ci_low, ci_high, description.  ``advantage_bound`` is
    (e^eps - 1) / (e^eps + 1), the most any test can achieve under eps-DP; it is 1 for
    the k threshold (no guarantee).
    """
    spec, full = validate_defense(name, params)
    if spec.output != "table":
        raise ConfigError(f"aggregate_membership_risk needs an aggregate defense "
                          f"('aggregate_k' or 'aggregate_dp'), got {name!r}.")
    _check_traces(traces)
    if ctx.world is None:
        raise ConfigError("aggregate_membership_risk needs ctx.world.")
    if isinstance(n_trials, bool) or not isinstance(n_trials, (int, np.integer)) or n_trials < 1:
        raise ConfigError(f"n_trials must be a positive integer, got {n_trials!r}.")
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        ti = int(target)
        if not 0 <= ti < traces.n_traces:
            raise InputError(f"target index {ti} out of range [0, {traces.n_traces}).")
    else:
        hits = np.flatnonzero(np.asarray(traces.pseudonym, dtype=object) == target)
        if not len(hits):
            raise InputError(f"target pseudonym {target!r} is not in the release.")
        ti = int(hits[0])
    b = _bin_s(full["bin_h"], "bin_h")
    n_bins = -(-int(traces.n_days) * DAY_S // b)
    tr, z, tb = _cell_contributions(traces, ctx.world, full["level"], b, n_bins,
                                    full["max_zones_per_bin"])
    key = z * np.int64(n_bins) + tb
    mine = tr == ti
    tkeys = np.unique(key[mine])
    others = np.sort(key[~mine])
    base = (np.searchsorted(others, tkeys, side="right")
            - np.searchsorted(others, tkeys, side="left")).astype(np.float64)
    n_c = len(tkeys)
    if name == "aggregate_k":
        k = full["k"]
        informative = int(np.sum(base + 1 >= k))
        # Deterministic: the score is `informative` in IN and 0 in OUT, the threshold
        # informative / 2, so the attacker is right every time iff one cell is informative.
        tp, fp, trials = int(informative > 0), 0, 1
        tpr, fpr, bound = float(tp), 0.0, 1.0
    else:
        eps = full["epsilon"]
        delta = dp_sensitivity(n_bins, full["max_zones_per_bin"])
        informative = n_c
        g = seed_sequence(ctx.seed, TAG_DEFENSE, _SUB_MIA)
        shape = (2, int(n_trials), n_c)
        if math.isinf(eps):
            noise = np.zeros(shape)
        elif full["mechanism"] == "geometric":
            p = -math.expm1(-eps / delta)  # 1 - alpha
            noise = (g.geometric(p, size=shape) - g.geometric(p, size=shape)).astype(np.float64)
        else:
            noise = g.laplace(0.0, delta / eps, size=shape)
        tau = n_c / 2.0
        s_in = n_c + noise[0].sum(axis=1)
        s_out = noise[1].sum(axis=1)
        tp = int(np.sum(s_in > tau)) if n_c else 0
        fp = int(np.sum(s_out > tau)) if n_c else 0
        trials = int(n_trials)
        tpr, fpr = tp / trials, fp / trials
        bound = 1.0 if math.isinf(eps) else math.tanh(eps / 2.0)  # (e^eps-1)/(e^eps+1)
    lo_t, hi_t = _wilson(tp, trials)
    lo_f, hi_f = _wilson(fp, trials)
    rows = [
        ("tpr", tpr, lo_t, hi_t, "share of IN worlds the attacker calls IN"),
        ("fpr", fpr, lo_f, hi_f, "share of OUT worlds the attacker calls IN"),
        ("advantage", tpr - fpr, lo_t - hi_f, hi_t - lo_f,
         "tpr - fpr (0 = no information; CI from the two Wilson intervals)"),
        ("advantage_bound", bound, np.nan, np.nan,
         "largest advantage any attack can have ((e^eps-1)/(e^eps+1) under eps-DP; 1 = none)"),
        ("n_target_cells", float(n_c), np.nan, np.nan, "zone x bin cells the target occupies"),
        ("n_informative_cells", float(informative), np.nan, np.nan,
         "cells whose published value can differ between IN and OUT"),
    ]
    out = pd.DataFrame(rows, columns=["metric", "value", "ci_low", "ci_high", "description"])
    out["n_trials"] = trials
    out["defense"] = name
    return out
