"""Home and work inference from pseudonymous pings (DESIGN.md section 5).

The attacker holds only the broker's release, a :class:`sim.core.traces.Traces` in metres.
For each pseudonym this module clusters the pings into *places* and picks a home and
a workplace, each with its support, in one compiled pass over all pseudonyms.

Algorithm (all distances Euclidean, in metres of ``traces.crs``)
----------------------------------------------------------------
1. **Accuracy filter.**  Pings with ``accuracy_m > max_accuracy_m`` are dropped
   (``<=`` is kept; NaN accuracy counts as unknown and is kept).  ``None`` keeps all.
2. **Places = DBSCAN** of the kept pings of each pseudonym, exactly as
   ``sklearn.cluster.DBSCAN(eps=eps_m, min_samples=min_samples)``: neighbours are the
   pings (itself included) at distance ``<= eps_m`` (inclusive); a ping with
   ``>= min_samples`` neighbours is core; core pings within ``eps_m`` share a place.
   Border rule (scikit-learn's depends on visiting order): a non-core ping within
   ``eps_m`` of core pings joins the place of its *nearest* core ping, ties to the
   earliest such core ping.  Other pings are noise.  Places are numbered 0, 1, ... by
   their earliest ping.  Core pings, noise and the partition of core pings are
   identical to scikit-learn's; only border pings near two places may differ.
3. **Support per place.**  *Nights*: distinct local nights with a ping in the night
   window ``[night_start_h, night_end_h)`` (wraps midnight when start > end; a night
   is identified by the local day it began, so 23:00 and 02:00 count once).
   *Working days*: distinct local days in ``work_weekdays`` (0 = Monday) with a ping
   in ``[work_start_h, work_end_h)``.  Pings = all kept pings of the place.
4. **Home** = the place with the most nights (ties: more night pings, then the
   earliest place).  Unknown (NaN, 0 support) when below ``min_home_nights``.
5. **Work** = among places other than home whose centre is ``>= min_work_dist_m``
   from home's, the one with most working days (ties: more working-hours pings, then
   earliest).  It is reported only if its working days are ``>= min_work_days`` *and*
   ``>= min_work_share`` x the number of working days on which the pseudonym has any
   kept working-hours ping, *and* its nights are ``<= max_work_night_share`` x the
   home's nights; otherwise work is unknown (it does not fall back to the runner-up).
   With ``work_requires_home`` (default) work is also unknown when home is: a place
   seen on weekday daytimes cannot be told apart from an unseen home.
   The share rule keeps errands of people without a job (a shop seen on 2 of 10
   weekdays) from becoming a "work"; the night rule makes a night-shift worker's work
   unknown rather than the swapped home (their daytime sleeping place also has many
   nights when they are off work).  Known limitation: a night worker who is never home
   at night gets the workplace as home (the home rule is "most nights", by design).
6. **Position** of a place = arithmetic mean of its pings (core and border).

Support columns: ``home_nights`` (nights), ``home_pings`` (kept pings in the home
place, any hour), ``work_days``, ``work_pings`` (kept pings in the work place, any
hour), ``n_pings`` (all pings in the window, before the accuracy filter),
``n_days_observed`` (distinct local days with a ping in the window).

Observation prefixes: :func:`infer_prefixes` computes every window ``d`` (pings with
``t_s < start_s + d * 86400``, as ``Traces.prefix``) in **one kernel call**: each
trace is loaded, filtered and sorted into its DBSCAN grid once, and each window's
DBSCAN goes on from the shorter window's (a ping's neighbours in a window are its
neighbours among the earlier pings, so a ping is core from the window holding its
``min_samples``-th earliest neighbour on, cores only ever join places, and a window
links only its new cores and re-assigns only the non-core pings a new core may take:
``sim.infer._kernels.dbscan_prefixes``); the place support is still counted per
window.  Results equal ``infer_home_work(traces.prefix(d))`` exactly (tested against
the naive DBSCAN of each prefix).

Determinism: each trace's result depends only on its own pings; output is
bit-identical whatever the numba thread count or trace order.
"""
from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass, fields

import numba
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from sim.core.errors import ConfigError, CRSError, InputError
from sim.core.constants import DAY_S
from sim.core.traces import Traces
from sim.infer import _kernels as K

__all__ = [
    "INFERRED_COLUMNS",
    "PLACE_COLUMNS",
    "InferenceParams",
    "HomeWorkInference",
    "infer_home_work",
    "infer_prefixes",
    "home_work_from_labels",
    "place_table",
]

log = logging.getLogger(__name__)

#: Columns of the inferred table (docs/CONTRACTS.md "Inferred"), in order.
INFERRED_COLUMNS = (
    "pseudonym", "home_x_m", "home_y_m", "home_lat_deg", "home_lon_deg", "home_nights",
    "home_pings", "work_x_m", "work_y_m", "work_lat_deg", "work_lon_deg", "work_days",
    "work_pings", "n_pings", "n_days_observed", "window_days",
)
#: Columns of :func:`place_table` / ``HomeWorkInference.places_``.
PLACE_COLUMNS = (
    "pseudonym", "place", "x_m", "y_m", "n_pings", "nights", "night_pings", "work_days",
    "work_pings", "is_home", "is_work",
)

_LABEL_NOISE, _LABEL_DROPPED, _LABEL_OUTSIDE = K.NOISE, K.DROPPED, K.OUTSIDE
_CHUNK = 8  # prange chunk size: dynamic scheduling absorbs heavy-tailed trace lengths
_MAX_KEY = 2**62


# ============================================================================ params
@dataclass(frozen=True)
class InferenceParams:
    """Every parameter of the inference, with its default and allowed values.

    Attributes
    ----------
    eps_m : float > 0
        DBSCAN neighbourhood radius in metres (inclusive: distance ``<= eps_m``).
    min_samples : int >= 1
        Pings (itself included) within ``eps_m`` that make a ping core.
    max_accuracy_m : float > 0 or None
        Drop pings whose reported accuracy is ``> max_accuracy_m`` before clustering
        (NaN accuracy is kept); ``None`` keeps every ping.
    night_start_h, night_end_h : float in [0, 24]
        Local night window ``[start, end)`` in hours; wraps midnight when start > end.
        Must not be empty (start == end is an error).
    work_start_h, work_end_h : float in [0, 24]
        Local working-hours window ``[start, end)``, same rules.
    work_weekdays : non-empty tuple of int in 0..6
        Days (0 = Monday) whose working hours count; a window that wraps midnight
        belongs to the day it opened.
    min_home_nights : int >= 1
        Home needs ``>= min_home_nights`` distinct nights.
    min_work_days : int >= 1
        Work needs ``>= min_work_days`` distinct working days.
    min_work_share : float in [0, 1]
        ... and ``>= min_work_share`` x the pseudonym's observed working days.
    max_work_night_share : float >= 0
        ... and nights ``<= max_work_night_share`` x the home's nights.
    min_work_dist_m : float >= 0
        Work candidates are places whose centre is ``>= min_work_dist_m`` from home's.
    work_requires_home : bool
        Work is unknown whenever home is (a weekday-daytime place cannot be told from
        an unseen home).  False infers work without a home (no distance rule then).
    """

    eps_m: float = 50.0
    min_samples: int = 3
    max_accuracy_m: float | None = 200.0
    night_start_h: float = 22.0
    night_end_h: float = 6.0
    work_start_h: float = 9.0
    work_end_h: float = 17.0
    work_weekdays: tuple = (0, 1, 2, 3, 4)
    min_home_nights: int = 1
    min_work_days: int = 2
    min_work_share: float = 0.5
    max_work_night_share: float = 0.25
    min_work_dist_m: float = 100.0
    work_requires_home: bool = True

    @classmethod
    def names(cls) -> tuple:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def make(cls, **params) -> "InferenceParams":
        """Build and validate from keyword arguments (unknown names are an error)."""
        unknown = sorted(set(params) - set(cls.names()))
        if unknown:
            raise ConfigError(
                f"unknown inference parameter(s) {unknown}; allowed: {list(cls.names())}."
            )
        return cls(**params).validated()

    def validated(self) -> "InferenceParams":
        """Return a normalised copy (floats/ints/tuples) or raise ConfigError."""
        p = {}
        p["eps_m"] = _real("eps_m", self.eps_m, lo=0.0, lo_open=True)
        p["min_samples"] = _integer("min_samples", self.min_samples, lo=1)
        if self.max_accuracy_m is None:
            p["max_accuracy_m"] = None
        else:
            p["max_accuracy_m"] = _real("max_accuracy_m", self.max_accuracy_m, lo=0.0,
                                        lo_open=True, allow_inf=True)
        for name in ("night_start_h", "night_end_h", "work_start_h", "work_end_h"):
            p[name] = _real(name, getattr(self, name), lo=0.0, hi=24.0)
            if name.endswith("start_h") and p[name] == 24.0:
                raise ConfigError(f"{name} must be < 24 (a window starts within the day), got 24; use 0.")
        for a, b, what in (("night_start_h", "night_end_h", "night"),
                           ("work_start_h", "work_end_h", "working-hours")):
            if _hour_s(p[a]) % DAY_S == _hour_s(p[b]) % DAY_S and not (
                _hour_s(p[a]) == 0 and _hour_s(p[b]) == DAY_S
            ):
                raise ConfigError(
                    f"the {what} window [{a}={p[a]}, {b}={p[b]}) is empty; give two different "
                    f"hours, e.g. 22 and 6 (wraps midnight) or 0 and 24 (whole day)."
                )
        wd = self.work_weekdays
        if isinstance(wd, (int, np.integer)) or isinstance(wd, str):
            wd = (wd,)
        try:
            wd = tuple(sorted({int(_integer("work_weekdays[]", d, lo=0, hi=6)) for d in wd}))
        except TypeError:
            raise ConfigError(
                f"work_weekdays must be a collection of weekday numbers 0..6 (0 = Monday), got "
                f"{self.work_weekdays!r}; e.g. (0, 1, 2, 3, 4)."
            ) from None
        if not wd:
            raise ConfigError("work_weekdays is empty; give at least one day 0..6, e.g. (0, 1, 2, 3, 4).")
        p["work_weekdays"] = wd
        p["min_home_nights"] = _integer("min_home_nights", self.min_home_nights, lo=1)
        p["min_work_days"] = _integer("min_work_days", self.min_work_days, lo=1)
        p["min_work_share"] = _real("min_work_share", self.min_work_share, lo=0.0, hi=1.0)
        p["max_work_night_share"] = _real("max_work_night_share", self.max_work_night_share,
                                          lo=0.0, allow_inf=True)
        p["min_work_dist_m"] = _real("min_work_dist_m", self.min_work_dist_m, lo=0.0)
        if not isinstance(self.work_requires_home, (bool, np.bool_)):
            raise ConfigError(f"work_requires_home must be True or False, got {self.work_requires_home!r}.")
        p["work_requires_home"] = bool(self.work_requires_home)
        return InferenceParams(**p)

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _real(name, v, lo=None, hi=None, lo_open=False, allow_inf=False):
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{name} must be a number, got {v!r} ({type(v).__name__}).")
    v = float(v)
    if math.isnan(v) or (math.isinf(v) and not allow_inf):
        raise ConfigError(f"{name} must be a finite number, got {v!r}.")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        op = ">" if lo_open else ">="
        raise ConfigError(f"{name} must be {op} {lo:g}, got {v!r}.")
    if hi is not None and v > hi:
        raise ConfigError(f"{name} must be <= {hi:g}, got {v!r}.")
    return v


def _integer(name, v, lo=None, hi=None):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            v = int(v)
        else:
            raise ConfigError(f"{name} must be an integer, got {v!r} ({type(v).__name__}).")
    v = int(v)
    if lo is not None and v < lo:
        raise ConfigError(f"{name} must be >= {lo}, got {v}.")
    if hi is not None and v > hi:
        raise ConfigError(f"{name} must be <= {hi}, got {v}.")
    return v


def _hour_s(h: float) -> int:
    return int(round(h * 3600.0))


# ============================================================================ inputs
def _check_traces(traces) -> Traces:
    if not isinstance(traces, Traces):
        raise InputError(
            f"traces must be a sim.core.traces.Traces, got {type(traces).__name__}; build one with "
            "Traces.from_frame(df, crs=...)."
        )
    return traces.validate()


def _arrays(traces: Traces):
    t = np.ascontiguousarray(traces.t_s, dtype=np.int64)
    x = np.ascontiguousarray(traces.x_m, dtype=np.float64)
    y = np.ascontiguousarray(traces.y_m, dtype=np.float64)
    acc = np.ascontiguousarray(traces.accuracy_m, dtype=np.float64)
    off = np.ascontiguousarray(traces.offsets, dtype=np.int64)
    return off, t, x, y, acc


def _check_grid(traces: Traces, eps_m: float):
    """The kernel's grid keys are int64: refuse extents that would overflow them."""
    if traces.n_pings == 0:
        return
    span = max(float(np.ptp(traces.x_m)), float(np.ptp(traces.y_m)))
    cells = span * 2.0 / eps_m + 16
    if cells * cells >= _MAX_KEY:
        raise ConfigError(
            f"eps_m={eps_m} is too small for a study area spanning {span:.3g} m (the "
            "neighbour grid would overflow); use a larger eps_m or split the traces."
        )


def _window_args(p: InferenceParams, traces: Traces):
    wd_mask = np.zeros(7, dtype=np.bool_)
    wd_mask[list(p.work_weekdays)] = True
    epoch_day0 = (int(traces.start_s) + int(traces.utc_offset_s)) // DAY_S
    max_acc = math.inf if p.max_accuracy_m is None else float(p.max_accuracy_m)
    return dict(
        start_s=np.int64(traces.start_s), epoch_day0=np.int64(epoch_day0),
        night_a=np.int64(_hour_s(p.night_start_h)), night_b=np.int64(_hour_s(p.night_end_h)),
        work_a=np.int64(_hour_s(p.work_start_h)), work_b=np.int64(_hour_s(p.work_end_h)),
        wd_mask=wd_mask, max_acc=max_acc,
    )


def _check_days(days) -> np.ndarray:
    if isinstance(days, (int, np.integer)) and not isinstance(days, bool):
        days = [days]
    try:
        arr = [_integer("days[]", d, lo=1) for d in days]
    except TypeError:
        raise ConfigError(
            f"days must be a list of whole numbers of days >= 1, got {days!r}; e.g. [1, 2, 3, 7, 14]."
        ) from None
    if not arr:
        raise ConfigError("days is empty; give at least one window length, e.g. [1, 2, 3, 7, 14].")
    return np.array(sorted(set(arr)), dtype=np.int64)


# ============================================================================ core
def _run(traces: Traces, p: InferenceParams, cutoffs_s: np.ndarray, write_labels: bool):
    off, t, x, y, acc = _arrays(traces)
    _check_grid(traces, p.eps_m)
    wa = _window_args(p, traces)
    n_w, n_tr = len(cutoffs_s), traces.n_traces
    out_f = np.full((n_w, n_tr, K.N_F), np.nan)
    out_i = np.zeros((n_w, n_tr, K.N_I), dtype=np.int64)
    labels = np.empty(len(t) if write_labels else 0, dtype=np.int64)
    log.debug("infer: %d traces, %d pings, %d window(s), %s", n_tr, len(t), n_w, p)
    if n_tr:
        with numba.parallel_chunksize(_CHUNK):
            K.infer_kernel(
                off, t, x, y, acc, np.ascontiguousarray(cutoffs_s, dtype=np.int64),
                wa["start_s"], wa["epoch_day0"], p.eps_m, np.int64(p.min_samples), wa["max_acc"],
                wa["night_a"], wa["night_b"], wa["work_a"], wa["work_b"], wa["wd_mask"],
                np.int64(p.min_home_nights), np.int64(p.min_work_days), p.min_work_share,
                p.max_work_night_share, p.min_work_dist_m, p.work_requires_home, out_f, out_i,
                labels, write_labels,
            )
    return out_f, out_i, labels


@functools.lru_cache(maxsize=16)
def _to_wgs84(crs: str):
    import pyproj

    try:
        return pyproj.Transformer.from_crs(pyproj.CRS.from_user_input(crs), "EPSG:4326",
                                           always_xy=True)
    except Exception as exc:  # pyproj raises several types
        raise CRSError(
            f"cannot convert from traces.crs={crs!r} to EPSG:4326 ({exc}); give Traces a "
            "projected CRS pyproj understands, e.g. 'EPSG:32633' or a PROJ string."
        ) from None


def _latlon(crs, x, y):
    lat = np.full(len(x), np.nan)
    lon = np.full(len(x), np.nan)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.any():
        lo, la = _to_wgs84(str(crs)).transform(x[ok], y[ok])
        lon[ok] = lo
        lat[ok] = la
    return lat, lon


def _table(traces: Traces, out_f, out_i, window_days) -> pd.DataFrame:
    """Long table (windows stacked in order) with the INFERRED_COLUMNS."""
    n_w, n_tr = out_i.shape[:2]
    f = out_f.reshape(n_w * n_tr, K.N_F)
    i = out_i.reshape(n_w * n_tr, K.N_I)
    hlat, hlon = _latlon(traces.crs, f[:, K.F_HOME_X], f[:, K.F_HOME_Y])
    wlat, wlon = _latlon(traces.crs, f[:, K.F_WORK_X], f[:, K.F_WORK_Y])
    pseud = np.asarray(traces.pseudonym, dtype=object)
    df = pd.DataFrame(
        {
            "pseudonym": np.tile(pseud, n_w),
            "home_x_m": f[:, K.F_HOME_X],
            "home_y_m": f[:, K.F_HOME_Y],
            "home_lat_deg": hlat,
            "home_lon_deg": hlon,
            "home_nights": i[:, K.I_HOME_NIGHTS],
            "home_pings": i[:, K.I_HOME_PINGS],
            "work_x_m": f[:, K.F_WORK_X],
            "work_y_m": f[:, K.F_WORK_Y],
            "work_lat_deg": wlat,
            "work_lon_deg": wlon,
            "work_days": i[:, K.I_WORK_DAYS],
            "work_pings": i[:, K.I_WORK_PINGS],
            "n_pings": i[:, K.I_N_PINGS],
            "n_days_observed": i[:, K.I_N_DAYS],
            "window_days": np.repeat(np.asarray(window_days, dtype=np.int64), n_tr),
        },
        columns=list(INFERRED_COLUMNS),
    )
    return df


def infer_home_work(traces: Traces, **params) -> pd.DataFrame:
    """Home and work of every pseudonym from its whole trace.

    Parameters
    ----------
    traces : sim.core.traces.Traces
        The release, positions in metres of ``traces.crs``.
    **params
        Any field of :class:`InferenceParams` (``eps_m``, ``min_samples``,
        ``max_accuracy_m``, ``night_start_h``, ...); see the module docstring for the
        rules they control.

    Returns
    -------
    pandas.DataFrame
        One row per trace (in ``traces`` order, empty traces included) with the
        columns :data:`INFERRED_COLUMNS` (docs/CONTRACTS.md "Inferred"); coordinates in
        metres and degrees (EPSG:4326 via pyproj), NaN with 0 support where unknown;
        ``window_days = traces.n_days``.
    """
    p = InferenceParams.make(**params)
    traces = _check_traces(traces)
    out_f, out_i, _ = _run(traces, p, np.array([np.iinfo(np.int64).max]), False)
    return _table(traces, out_f, out_i, [traces.n_days])


def infer_prefixes(traces: Traces, days=(1, 2, 3, 7, 14), **params) -> pd.DataFrame:
    """Home and work from the first ``d`` days of observation, for every ``d`` in ``days``.

    Window ``d`` holds the pings with ``t_s < traces.start_s + d * 86400`` (as
    ``Traces.prefix(d)``); windows longer than the observation are computed all the
    same (they hold every ping).  One kernel call computes every window: each trace
    is read and sorted into its grid once, and each window's clustering goes on from
    the shorter window's (see the module docstring).

    Returns
    -------
    pandas.DataFrame
        A long table, :data:`INFERRED_COLUMNS`, sorted by (``window_days``, trace
        order): ``len(days) * traces.n_traces`` rows; each window's rows equal
        ``infer_home_work(traces.prefix(d))`` except ``window_days = d``.
    """
    p = InferenceParams.make(**params)
    traces = _check_traces(traces)
    d = _check_days(days)
    cutoffs = int(traces.start_s) + d * DAY_S
    out_f, out_i, _ = _run(traces, p, cutoffs, False)
    return _table(traces, out_f, out_i, d)


def _check_labels(traces: Traces, labels) -> np.ndarray:
    """Per-ping place labels as contiguous int64; InputError unless one integer per ping."""
    lab = np.asarray(labels)
    if lab.shape != (traces.n_pings,) or not np.issubdtype(lab.dtype, np.integer):
        raise InputError(
            f"labels must be one integer per ping, shape ({traces.n_pings},), got shape "
            f"{lab.shape} and dtype {lab.dtype}; use -1 for pings in no place."
        )
    return np.ascontiguousarray(lab, dtype=np.int64)


def home_work_from_labels(traces: Traces, labels, **params) -> pd.DataFrame:
    """Home and work from per-ping place labels given by any clusterer.

    Applies the same home/work rules (module docstring, steps 3-6) to ``labels``, one
    int per ping in ``traces`` row order: ``>= 0`` the ping's place number within its
    trace, negative for no place (noise, dropped).  This is how a scikit-learn
    ``DBSCAN``/``HDBSCAN`` run per pseudonym is turned into a comparable table.
    ``max_accuracy_m``, ``eps_m`` and ``min_samples`` are ignored here (the labels
    already encode them).  ``n_pings`` counts every ping, labelled or not.
    """
    p = InferenceParams.make(**params)
    traces = _check_traces(traces)
    lab = _check_labels(traces, labels)
    if traces.n_pings and lab.max() >= traces.n_pings:
        raise InputError(f"labels go up to {lab.max()} but a trace cannot have more places than pings.")
    off, t, x, y, _ = _arrays(traces)
    wa = _window_args(p, traces)
    n_tr = traces.n_traces
    out_f = np.full((1, n_tr, K.N_F), np.nan)
    out_i = np.zeros((1, n_tr, K.N_I), dtype=np.int64)
    if n_tr:
        with numba.parallel_chunksize(_CHUNK):
            K.from_labels_kernel(
                off, t, x, y, lab, wa["start_s"], wa["epoch_day0"], wa["night_a"], wa["night_b"],
                wa["work_a"], wa["work_b"], wa["wd_mask"], np.int64(p.min_home_nights),
                np.int64(p.min_work_days), p.min_work_share, p.max_work_night_share,
                p.min_work_dist_m, p.work_requires_home, out_f[0], out_i[0],
            )
    return _table(traces, out_f, out_i, [traces.n_days])


def place_table(traces: Traces, labels, chosen=None, **params) -> pd.DataFrame:
    """One row per place (:data:`PLACE_COLUMNS`) from per-ping labels.

    ``x_m``/``y_m`` are the mean of the place's pings; ``nights``/``work_days`` follow
    the windows in ``params``.  With ``chosen = (home_place, work_place)`` (one int per
    trace, -1 unknown), ``is_home``/``is_work`` mark those places; otherwise False.
    """
    p = InferenceParams.make(**params)
    traces = _check_traces(traces)
    lab = _check_labels(traces, labels)
    off, t, x, y, _ = _arrays(traces)
    tr = traces.trace_index()
    nplace = np.zeros(traces.n_traces, dtype=np.int64)
    if len(lab):
        np.maximum.at(nplace, tr, lab + 1)
    place_off = np.zeros(traces.n_traces + 1, dtype=np.int64)
    np.cumsum(nplace, out=place_off[1:])
    n = int(place_off[-1])
    p_f = np.full((n, 2), np.nan)
    p_i = np.zeros((n, 5), dtype=np.int64)
    wa = _window_args(p, traces)
    if n:
        with numba.parallel_chunksize(_CHUNK):
            K.place_stats_kernel(off, t, x, y, lab, place_off, wa["start_s"], wa["epoch_day0"],
                                 wa["night_a"], wa["night_b"], wa["work_a"], wa["work_b"],
                                 wa["wd_mask"], p_f, p_i)
    owner = np.repeat(np.arange(traces.n_traces), nplace)
    place = np.arange(n) - place_off[owner]
    df = pd.DataFrame(
        {
            "pseudonym": np.asarray(traces.pseudonym, dtype=object)[owner],
            "place": place,
            "x_m": p_f[:, 0],
            "y_m": p_f[:, 1],
            "n_pings": p_i[:, 0],
            "nights": p_i[:, 1],
            "night_pings": p_i[:, 2],
            "work_days": p_i[:, 3],
            "work_pings": p_i[:, 4],
            "is_home": False,
            "is_work": False,
        },
        columns=list(PLACE_COLUMNS),
    )
    if chosen is not None and n:
        df["is_home"] = place == np.asarray(chosen[0])[owner]
        df["is_work"] = place == np.asarray(chosen[1])[owner]
    return df


# ============================================================================ estimator
_D = InferenceParams()  # defaults are declared once, in InferenceParams


class HomeWorkInference(BaseEstimator):
    """Estimator-style home/work inference (scikit-learn conventions).

    ``__init__`` stores the parameters of :class:`InferenceParams` unchanged;
    ``fit(traces)`` validates them and infers on ``traces``; ``predict(traces)``
    returns the inferred table for any traces with the fitted parameters.

    Attributes (after ``fit``)
    --------------------------
    params_ : InferenceParams
        The validated parameters.
    labels_ : int64 array, one per ping of the fitted traces
        Place number within its trace; -1 noise, -2 dropped by ``max_accuracy_m``.
    n_places_ : int64 array, one per trace
    places_ : DataFrame (:data:`PLACE_COLUMNS`)
    inferred_ : DataFrame (:data:`INFERRED_COLUMNS`)
    n_traces_, n_pings_ : int
    """

    def __init__(self, eps_m=_D.eps_m, min_samples=_D.min_samples,
                 max_accuracy_m=_D.max_accuracy_m, night_start_h=_D.night_start_h,
                 night_end_h=_D.night_end_h, work_start_h=_D.work_start_h,
                 work_end_h=_D.work_end_h, work_weekdays=_D.work_weekdays,
                 min_home_nights=_D.min_home_nights, min_work_days=_D.min_work_days,
                 min_work_share=_D.min_work_share, max_work_night_share=_D.max_work_night_share,
                 min_work_dist_m=_D.min_work_dist_m, work_requires_home=_D.work_requires_home):
        self.eps_m = eps_m
        self.min_samples = min_samples
        self.max_accuracy_m = max_accuracy_m
        self.night_start_h = night_start_h
        self.night_end_h = night_end_h
        self.work_start_h = work_start_h
        self.work_end_h = work_end_h
        self.work_weekdays = work_weekdays
        self.min_home_nights = min_home_nights
        self.min_work_days = min_work_days
        self.min_work_share = min_work_share
        self.max_work_night_share = max_work_night_share
        self.min_work_dist_m = min_work_dist_m
        self.work_requires_home = work_requires_home

    def _params(self) -> InferenceParams:
        return InferenceParams.make(**{k: getattr(self, k) for k in InferenceParams.names()})

    def fit(self, traces: Traces, y=None) -> "HomeWorkInference":
        """Cluster ``traces`` into places and infer home/work; returns self."""
        p = self._params()
        traces = _check_traces(traces)
        out_f, out_i, labels = _run(traces, p, np.array([np.iinfo(np.int64).max]), True)
        self.params_ = p
        self.labels_ = labels
        self.inferred_ = _table(traces, out_f, out_i, [traces.n_days])
        chosen = (out_i[0, :, K.I_HOME_PLACE], out_i[0, :, K.I_WORK_PLACE])
        self.places_ = place_table(traces, labels, chosen, **p.as_dict())
        tr = traces.trace_index()
        self.n_places_ = np.zeros(traces.n_traces, dtype=np.int64)
        if len(labels):
            np.maximum.at(self.n_places_, tr, labels + 1)
        self.n_traces_ = traces.n_traces
        self.n_pings_ = traces.n_pings
        return self

    def _check_fitted(self):
        if not hasattr(self, "params_"):
            raise NotFittedError(
                "This HomeWorkInference instance is not fitted yet; call fit(traces) first "
                "(or use sim.infer.infer_home_work)."
            )

    def predict(self, traces: Traces) -> pd.DataFrame:
        """Inferred table (:data:`INFERRED_COLUMNS`) for ``traces`` with the fitted parameters."""
        self._check_fitted()
        return infer_home_work(traces, **self.params_.as_dict())

    def fit_predict(self, traces: Traces, y=None) -> pd.DataFrame:
        return self.fit(traces).inferred_

    def predict_prefixes(self, traces: Traces, days=(1, 2, 3, 7, 14)) -> pd.DataFrame:
        """:func:`infer_prefixes` with the fitted parameters."""
        self._check_fitted()
        return infer_prefixes(traces, days, **self.params_.as_dict())
