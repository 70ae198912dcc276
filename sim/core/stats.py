"""Confidence intervals for the rates and summaries that reidsim reports.

Every figure reidsim prints carries an interval and the number of units it rests on.
Three tools, all seeded and reproducible:

* :func:`wilson_ci` — Wilson score interval for a proportion ``k / n``; closed form,
  the fast default for "share of devices" rates.
* :func:`bootstrap_ci` — percentile bootstrap over units (devices) with a generator
  from :func:`sim.core.rng.seed_sequence` (tag ``TAG_BOOT``).  For 0/1 data the resampled
  mean is drawn exactly as ``Binomial(n, k/n) / n``; otherwise a resample is drawn as
  multinomial counts over the distinct values — the same distribution as resampling
  the n values with replacement, far cheaper when values repeat (set sizes).
* :func:`combine_replicates` — combine one value per replicate seed into a mean and a
  Student-t interval (between-seed variability).

Tidy result rows use the columns :data:`ROW_COLUMNS`: ``value, ci_low, ci_high, n``
next to whatever parameter columns identify the row.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as _sps

from sim.core.errors import ConfigError, InputError
from sim.core.rng import TAG_BOOT, seed_sequence

ROW_COLUMNS = ("value", "ci_low", "ci_high", "n")
CI_METHODS = ("wilson", "bootstrap")
STATISTICS = ("mean", "median")

_CHUNK_ELEMS = 4_000_000  # bootstrap resampling memory cap (indices per chunk)


def _check_alpha(alpha: float) -> float:
    if not (isinstance(alpha, (float, int)) and 0.0 < float(alpha) < 1.0):
        raise ConfigError(f"alpha must be in (0, 1), got {alpha!r}; use e.g. alpha=0.05 for 95 % intervals.")
    return float(alpha)


def wilson_ci(k, n, alpha: float = 0.05):
    """Wilson score interval for a binomial proportion.

    Parameters
    ----------
    k, n : int or array of int
        Successes and trials (``0 <= k <= n``).  Broadcast together.
    alpha : float
        1 - confidence level (0.05 gives a 95 % interval).

    Returns
    -------
    (low, high) : float or arrays of float
        NaN where ``n == 0``.  Always ``0 <= low <= k/n <= high <= 1``.
    """
    alpha = _check_alpha(alpha)
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    if np.any(k < 0) or np.any(k > n):
        raise InputError(f"wilson_ci needs 0 <= k <= n; got k={k!r}, n={n!r}.")
    z = _sps.norm.ppf(1.0 - alpha / 2.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1.0 + z * z / n
        centre = (p + z * z / (2.0 * n)) / denom
        half = z * np.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denom
        low = np.clip(centre - half, 0.0, 1.0)
        high = np.clip(centre + half, 0.0, 1.0)
        # guard against rounding: the estimate is always inside its interval
        low = np.minimum(low, p)
        high = np.maximum(high, p)
    low = np.where(n > 0, low, np.nan)
    high = np.where(n > 0, high, np.nan)
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


def _stat(values: np.ndarray, statistic: str, axis=None):
    if statistic == "mean":
        return np.mean(values, axis=axis)
    return np.median(values, axis=axis)


def bootstrap_ci(
    values,
    *,
    statistic: str = "mean",
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    tags: tuple = (),
):
    """Percentile bootstrap interval of a statistic over units (devices).

    Parameters
    ----------
    values : 1-D array of numbers (bool allowed), one per unit.  NaN is not allowed.
    statistic : "mean" or "median".
    n_boot : number of bootstrap resamples (>= 10).
    alpha : 1 - confidence level.
    seed, tags : the generator is ``seed_sequence(seed, TAG_BOOT, *tags)``; give each
        reported figure its own tags so intervals are independent but reproducible.

    Returns
    -------
    (estimate, low, high) : floats; all NaN for empty input.
    """
    alpha = _check_alpha(alpha)
    if statistic not in STATISTICS:
        raise ConfigError(f"statistic must be one of {STATISTICS}, got {statistic!r}.")
    if int(n_boot) < 10:
        raise ConfigError(f"n_boot must be >= 10, got {n_boot!r}; 1000 is a sensible default.")
    v = np.asarray(values)
    if v.ndim != 1:
        raise InputError(f"values must be 1-D, got shape {v.shape}.")
    n = len(v)
    if n == 0:
        return math.nan, math.nan, math.nan
    is_binary = v.dtype == bool or (np.issubdtype(v.dtype, np.integer) and np.all((v == 0) | (v == 1)))
    v = v.astype(np.float64)
    if np.any(~np.isfinite(v)):
        raise InputError("bootstrap_ci values contain NaN/inf; drop undefined units before bootstrapping.")
    v = np.sort(v)  # the interval depends only on the multiset of values, not their order
    est = float(_stat(v, statistic))
    rng = seed_sequence(seed, TAG_BOOT, *tags)
    n_boot = int(n_boot)
    if is_binary and statistic == "mean":
        k = int(v.sum())
        reps = rng.binomial(n, k / n, size=n_boot) / n
    else:
        # Resampling n units with replacement = multinomial counts over the distinct
        # values (same distribution, far cheaper when values repeat, e.g. set sizes).
        vals, cnt = np.unique(v, return_counts=True)
        pv = cnt / n
        reps = np.empty(n_boot)
        per = max(1, _CHUNK_ELEMS // len(vals))
        lo_rank, hi_rank = (n - 1) // 2, n // 2
        done = 0
        while done < n_boot:
            m = min(per, n_boot - done)
            w = rng.multinomial(n, pv, size=m)
            if statistic == "mean":
                reps[done:done + m] = (w @ vals) / n
            else:
                cum = np.cumsum(w, axis=1)
                lo = (cum <= lo_rank).sum(axis=1)
                hi = (cum <= hi_rank).sum(axis=1)
                reps[done:done + m] = 0.5 * (vals[lo] + vals[hi])
            done += m
    low, high = np.quantile(reps, [alpha / 2.0, 1.0 - alpha / 2.0])
    return est, float(min(low, est)), float(max(high, est))


def rate(
    success,
    *,
    method: str = "wilson",
    alpha: float = 0.05,
    n_boot: int = 1000,
    seed: int = 0,
    tags: tuple = (),
) -> dict:
    """A share of units with its interval: ``{"value", "ci_low", "ci_high", "n"}``.

    ``success`` is a boolean array, one entry per unit (device).  ``method`` is
    "wilson" (closed form) or "bootstrap" (percentile bootstrap over units).
    """
    if method not in CI_METHODS:
        raise ConfigError(f"ci method must be one of {CI_METHODS}, got {method!r}.")
    s = np.asarray(success, dtype=bool)
    n = int(s.size)
    k = int(s.sum())
    if n == 0:
        return dict(value=math.nan, ci_low=math.nan, ci_high=math.nan, n=0)
    if method == "wilson":
        lo, hi = wilson_ci(k, n, alpha)
        return dict(value=k / n, ci_low=lo, ci_high=hi, n=n)
    est, lo, hi = bootstrap_ci(s, n_boot=n_boot, alpha=alpha, seed=seed, tags=tags)
    return dict(value=est, ci_low=lo, ci_high=hi, n=n)


def summary_ci(
    values,
    *,
    statistic: str = "median",
    alpha: float = 0.05,
    n_boot: int = 1000,
    seed: int = 0,
    tags: tuple = (),
) -> dict:
    """A mean or median over units with its bootstrap interval (dict of ROW_COLUMNS)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return dict(value=math.nan, ci_low=math.nan, ci_high=math.nan, n=0)
    est, lo, hi = bootstrap_ci(v, statistic=statistic, alpha=alpha, n_boot=n_boot, seed=seed, tags=tags)
    return dict(value=est, ci_low=lo, ci_high=hi, n=int(v.size))


def combine_replicates(
    table: pd.DataFrame,
    by,
    *,
    value_col: str = "value",
    replicate_col: str = "replicate",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Combine one value per replicate seed into mean and Student-t interval.

    Parameters
    ----------
    table : DataFrame with columns ``by + [replicate_col, value_col]`` (and usually
        ``n``, the units behind each replicate's value).
    by : column name or list of names identifying a figure (e.g. ["level", "metric"]).

    Returns
    -------
    DataFrame, one row per ``by`` group: ``by``, value (mean over replicates), ci_low,
    ci_high (t interval of the mean; NaN with a single replicate), n (sum of ``n`` if
    present, else the replicate count), n_replicates, sd.
    """
    alpha = _check_alpha(alpha)
    by = [by] if isinstance(by, str) else list(by)
    need = by + [replicate_col, value_col]
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise InputError(
            f"combine_replicates: table lacks column(s) {missing}; expected {need}. Add a "
            f"'{replicate_col}' column holding each run's seed before concatenating runs."
        )
    dup = table.duplicated(subset=by + [replicate_col])
    if dup.any():
        raise InputError(
            f"combine_replicates: {int(dup.sum())} duplicate rows for the same {by + [replicate_col]}; "
            "each replicate must contribute one value per figure."
        )
    g = table.groupby(by, sort=True, dropna=False)
    mean = g[value_col].mean()
    sd = g[value_col].std(ddof=1)
    k = g[value_col].count()
    with np.errstate(invalid="ignore", divide="ignore"):
        tq = pd.Series(_sps.t.ppf(1.0 - alpha / 2.0, np.maximum(k.to_numpy() - 1, 1)), index=k.index)
        half = tq * sd / np.sqrt(k)
    half = half.where(k > 1)
    out = pd.DataFrame({"value": mean, "ci_low": mean - half, "ci_high": mean + half})
    out["n"] = g["n"].sum() if "n" in table.columns else k
    out["n_replicates"] = k
    out["sd"] = sd
    return out.reset_index()
