"""Score inferred homes and workplaces against the simulator's ground truth.

Only metrics code reads the truth: the attacker's path (sim.infer) never does.

Unit of scoring: one row of the inferred table, i.e. one released pseudonym in one
observation window (a device when IDs do not rotate; a device with rotating IDs
contributes one row per pseudonym).  Devices absent from the release (no ping) are
not scored.

Definitions (all distances Euclidean in metres of the world CRS; thresholds inclusive)
------------------------------------------------------------------------------------
* ``home_error_m`` / ``work_error_m``: distance from the inferred to the true point;
  NaN where the inference is unknown (or, for work, the person has no workplace).
* ``home_within_<r>m``: inferred home known and ``home_error_m <= r``.  Its share is
  over *all* scored pseudonyms (an unknown home is a miss), as is ``home_known``.
* ``work_*`` rates are over persons *with* a workplace (``work_x_m`` not NaN) only;
  ``false_work`` is the share of persons *without* one that got a work anyway.
* ``home_<level>_correct``: ``world.locate(inferred, level)`` equals the person's
  true zone id at that level (block / tract / district); unknown or outside (-1) is a
  miss.  Only when a ``world`` is given.
* ``pings_per_day``: a pseudonym's pings per device-day over its *longest* window in
  the inferred table (``n_pings / window_days``), so a pseudonym stays in one rate bin
  across windows.  Bins are ``[lo, hi)``.
* Intervals: Wilson for shares, a distribution-free binomial order-statistic interval
  for medians; each summary row carries ``n``, the units it rests on.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as _sps

from sim.core.constants import ZONE_LEVELS
from sim.core.fmt import NA, value_interval
from sim.core.errors import ConfigError, InputError
from sim.core.lookup import id_positions
from sim.core.stats import wilson_ci

__all__ = [
    "RADII_M", "RATE_BINS", "ZONE_LEVELS", "SUMMARY_COLUMNS", "InferenceScore",
    "score_inference", "plot_accuracy_vs_days",
]

RADII_M = (100.0, 250.0, 1000.0)
RATE_BINS = (0.0, 2.0, 5.0, 10.0, 20.0, 50.0, math.inf)
SUMMARY_COLUMNS = ("window_days", "rate_bin", "metric", "value", "ci_low", "ci_high", "n")
ALL_BINS = "all"

_INFERRED_NEED = ("pseudonym", "home_x_m", "home_y_m", "work_x_m", "work_y_m", "n_pings",
                  "window_days")
_PSEUD_NEED = ("pseudonym", "device_idx", "person_id")
_PERSON_NEED = ("person_id", "home_x_m", "home_y_m", "work_x_m", "work_y_m")


@dataclass
class InferenceScore:
    """Result of :func:`score_inference`.

    detail : DataFrame, one row per inferred row (pseudonym x window) with the truth
        joined and every per-unit outcome.
    summary : DataFrame, tidy: :data:`SUMMARY_COLUMNS`, one row per
        (window_days, rate_bin, metric); ``rate_bin == "all"`` pools the bins.
    """

    detail: pd.DataFrame
    summary: pd.DataFrame
    radii_m: tuple
    levels: tuple
    alpha: float = 0.05

    def table(self, metric: str, by_rate: bool = False) -> pd.DataFrame:
        """One metric as a small wide table: rows window_days, columns value/CI/n
        (or, with ``by_rate``, one value column per rate bin)."""
        s = self.summary[self.summary.metric == metric]
        if s.empty:
            raise ConfigError(f"unknown metric {metric!r}; available: {sorted(self.summary.metric.unique())}.")
        if by_rate:
            return s.pivot(index="window_days", columns="rate_bin", values="value")
        s = s[s.rate_bin == ALL_BINS]
        return s.set_index("window_days")[["value", "ci_low", "ci_high", "n"]]

    def to_string(self) -> str:
        """Pooled metrics as text: one row per metric, one column per window, "value [low, high]"."""
        s = self.summary[self.summary.rate_bin == ALL_BINS]
        if s.empty:
            return "(no scored pseudonyms)"
        fmt = s.apply(lambda r: NA if r.n == 0 else (
            value_interval(r.value, r.ci_low, r.ci_high, nd=0, unit="m") if r.metric.endswith("_m")
            else value_interval(r.value, r.ci_low, r.ci_high)), axis=1)
        wide = s.assign(cell=fmt).pivot(index="metric", columns="window_days", values="cell")
        wide = wide.reindex(pd.unique(s.metric))
        wide.columns = [f"{c} days" for c in wide.columns]
        n = s[s.metric == "home_known"].set_index("window_days").n
        conf = f"{100 * (1 - self.alpha):g} %"
        return (wide.to_string() + f"\n(shares with {conf} Wilson intervals; medians with order-statistic "
                f"intervals; pseudonyms scored per window: {', '.join(map(str, n.tolist()))})")

    def __str__(self) -> str:
        return self.to_string()


def _need(df, cols, name):
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"{name} must be a pandas DataFrame, got {type(df).__name__}.")
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise InputError(f"{name} is missing column(s) {missing}; expected at least {list(cols)} "
                         "(docs/CONTRACTS.md).")


def _bin_labels(edges):
    return [f"[{a:g},{b:g})" for a, b in zip(edges[:-1], edges[1:])]


def median_ci(values, alpha: float = 0.05):
    """Median with a distribution-free interval from binomial order statistics.

    Returns ``(median, low, high)``; NaN for no values.  The interval is
    ``[x_(l), x_(n-l+1)]`` with ``l`` the largest rank such that
    ``P(Binomial(n, 1/2) < l) <= alpha / 2``, so its coverage is at least
    ``1 - alpha``.  When no rank qualifies (``n < 6`` at ``alpha = 0.05``) it is the
    whole range, whose coverage ``1 - 2**(1 - n)`` is then below ``1 - alpha``.
    """
    v = np.sort(np.asarray(values, dtype=np.float64))
    n = len(v)
    if n == 0:
        return math.nan, math.nan, math.nan
    # largest l with P(B <= l-1) <= alpha/2
    l = int(_sps.binom.ppf(alpha / 2.0, n, 0.5))
    if _sps.binom.cdf(l, n, 0.5) > alpha / 2.0:
        l -= 1
    lo_rank = max(l + 1, 1)  # 1-based rank of the lower bound
    hi_rank = n - lo_rank + 1
    return float(np.median(v)), float(v[lo_rank - 1]), float(v[hi_rank - 1])


def score_inference(inferred: pd.DataFrame, pseudonyms: pd.DataFrame, persons: pd.DataFrame,
                    world=None, *, radii_m=RADII_M, rate_bins=RATE_BINS, levels=ZONE_LEVELS,
                    alpha: float = 0.05) -> InferenceScore:
    """Score an inferred table (one or many windows) against the truth.

    Parameters
    ----------
    inferred : DataFrame
        :func:`sim.infer.infer_home_work` / :func:`sim.infer.infer_prefixes` output.
    pseudonyms : DataFrame
        Truth ``pseudonym -> device_idx, person_id`` (docs/CONTRACTS.md).
    persons : DataFrame
        Truth persons: ``home_x_m, home_y_m, work_x_m, work_y_m`` (NaN: no workplace)
        and, for zone scores, ``home_<level>_id``/``work_<level>_id``.
    world : object with ``locate(x_m, y_m, level) -> int64 ids``, optional
        Enables the ``*_<level>_correct`` metrics.
    radii_m : distances (m) for the ``*_within_<r>m`` metrics (inclusive).
    rate_bins : increasing bin edges of pings per device-day, ``[lo, hi)``.
    levels : zone levels to score when ``world`` is given.
    alpha : 1 - confidence level of the intervals.

    Returns
    -------
    InferenceScore with ``detail`` and tidy ``summary`` (module docstring).
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 < float(alpha) < 1.0:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha!r}; use e.g. alpha=0.05 for 95 % intervals.")
    _need(inferred, _INFERRED_NEED, "inferred")
    _need(pseudonyms, _PSEUD_NEED, "pseudonyms")
    _need(persons, _PERSON_NEED, "persons")
    radii = tuple(float(r) for r in radii_m)
    if not radii or any(not (r > 0 and math.isfinite(r)) for r in radii):
        raise ConfigError(f"radii_m must be positive finite distances in metres, got {radii_m!r}.")
    edges = np.asarray(rate_bins, dtype=np.float64)
    if edges.ndim != 1 or len(edges) < 2 or np.any(np.diff(edges) <= 0) or np.isnan(edges).any():
        raise ConfigError(f"rate_bins must be >= 2 increasing edges, got {rate_bins!r}; e.g. {RATE_BINS}.")
    levels = tuple(levels) if world is not None else ()
    if world is not None and not hasattr(world, "locate"):
        raise InputError(f"world must offer locate(x_m, y_m, level), got {type(world).__name__}.")
    for lv in levels:
        for kind in ("home", "work"):
            if f"{kind}_{lv}_id" not in persons.columns:
                raise InputError(f"persons lacks column {kind}_{lv}_id needed to score level {lv!r}; "
                                 f"pass levels=() or a persons table with zone ids.")
    if pseudonyms.pseudonym.duplicated().any():
        dup = pseudonyms.pseudonym[pseudonyms.pseudonym.duplicated()].iloc[0]
        raise InputError(f"pseudonym {dup!r} appears twice in pseudonyms; each pseudonym must map to "
                         "one device.")
    if persons.person_id.duplicated().any():
        raise InputError("persons.person_id has duplicates; give one row per person.")

    inf = inferred.reset_index(drop=True)
    pmap = pseudonyms.set_index("pseudonym")[["device_idx", "person_id"]]
    miss = ~inf.pseudonym.isin(pmap.index)
    if miss.any():
        raise InputError(
            f"{int(miss.sum())} inferred row(s) have a pseudonym missing from pseudonyms (e.g. "
            f"{inf.pseudonym[miss].iloc[0]!r}); score against the truth of the same run."
        )
    dev = pmap.loc[inf.pseudonym.to_numpy()]
    ppos = id_positions(persons.person_id.to_numpy(), dev.person_id.to_numpy())
    pmiss = ppos < 0
    if pmiss.any():
        raise InputError(f"{int(pmiss.sum())} pseudonym(s) map to a person_id missing from persons "
                         f"(e.g. {int(dev.person_id.to_numpy()[pmiss][0])}).")
    truth = pd.DataFrame({c: persons[c].take(ppos).reset_index(drop=True)  # the rows wanted, not a copy of persons
                          for c in persons.columns if c != "person_id"})

    d = pd.DataFrame({
        "pseudonym": inf.pseudonym.to_numpy(),
        "window_days": inf.window_days.to_numpy(),
        "device_idx": dev.device_idx.to_numpy(),
        "person_id": dev.person_id.to_numpy(),
        "n_pings": inf.n_pings.to_numpy(),
    })
    if "schedule" in truth.columns:
        d["schedule"] = truth.schedule.to_numpy()
    # rate per device-day over the pseudonym's longest window
    longest = inf.loc[inf.groupby("pseudonym", sort=False).window_days.idxmax(), ["pseudonym", "n_pings", "window_days"]]
    rate = pd.Series(longest.n_pings.to_numpy() / longest.window_days.to_numpy(), index=longest.pseudonym)
    d["pings_per_day"] = rate.loc[d.pseudonym].to_numpy()
    labels = _bin_labels(edges)
    b = np.searchsorted(edges, d.pings_per_day.to_numpy(), side="right") - 1
    b = np.clip(b, 0, len(labels) - 1)  # out-of-range rates join the end bins
    d["rate_bin"] = pd.Categorical(np.asarray(labels, dtype=object)[b], categories=labels)

    hx, hy = inf.home_x_m.to_numpy(float), inf.home_y_m.to_numpy(float)
    wx, wy = inf.work_x_m.to_numpy(float), inf.work_y_m.to_numpy(float)
    thx, thy = truth.home_x_m.to_numpy(float), truth.home_y_m.to_numpy(float)
    twx, twy = truth.work_x_m.to_numpy(float), truth.work_y_m.to_numpy(float)
    d["home_known"] = np.isfinite(hx) & np.isfinite(hy)
    d["has_work"] = np.isfinite(twx) & np.isfinite(twy)
    d["work_known"] = np.isfinite(wx) & np.isfinite(wy)
    d["home_error_m"] = np.hypot(hx - thx, hy - thy)
    d["work_error_m"] = np.where(d.has_work, np.hypot(wx - twx, wy - twy), np.nan)
    for r in radii:
        d[f"home_within_{r:g}m"] = d.home_known & (d.home_error_m <= r)
        d[f"work_within_{r:g}m"] = d.work_known & d.has_work & (d.work_error_m <= r)
    for lv in levels:
        for kind, x, y in (("home", hx, hy), ("work", wx, wy)):
            known = d[f"{kind}_known"].to_numpy()
            z = np.full(len(d), -1, dtype=np.int64)
            if known.any():
                z[known] = np.asarray(world.locate(x[known], y[known], lv), dtype=np.int64)
            true_z = truth[f"{kind}_{lv}_id"].to_numpy()
            d[f"{kind}_{lv}_correct"] = known & (z >= 0) & (z == true_z)

    summary = _summarise(d, radii, levels, alpha)
    summary["rate_bin"] = pd.Categorical(summary.rate_bin, categories=[*labels, ALL_BINS], ordered=True)
    return InferenceScore(detail=d, summary=summary, radii_m=radii, levels=levels, alpha=float(alpha))


def _summarise(d: pd.DataFrame, radii, levels, alpha) -> pd.DataFrame:
    rows = []

    def share(w, rb, metric, mask, succ):
        k, n = int(np.count_nonzero(succ[mask])), int(np.count_nonzero(mask))
        lo, hi = wilson_ci(k, n, alpha) if n else (math.nan, math.nan)
        rows.append((w, rb, metric, k / n if n else math.nan, lo, hi, n))

    def median(w, rb, metric, vals):
        v = vals[np.isfinite(vals)]
        m, lo, hi = median_ci(v, alpha)
        rows.append((w, rb, metric, m, lo, hi, len(v)))

    groups = [(w, ALL_BINS, g) for w, g in d.groupby("window_days", sort=True)]
    groups += [(w, str(rb), g) for (w, rb), g in d.groupby(["window_days", "rate_bin"], sort=True,
                                                           observed=False)]
    for w, rb, g in groups:
        allm = np.ones(len(g), bool)
        hw = g.has_work.to_numpy()
        share(w, rb, "home_known", allm, g.home_known.to_numpy())
        for r in radii:
            share(w, rb, f"home_within_{r:g}m", allm, g[f"home_within_{r:g}m"].to_numpy())
        for lv in levels:
            share(w, rb, f"home_{lv}_correct", allm, g[f"home_{lv}_correct"].to_numpy())
        median(w, rb, "home_error_median_m", g.home_error_m.to_numpy())
        share(w, rb, "work_known", hw, g.work_known.to_numpy())
        for r in radii:
            share(w, rb, f"work_within_{r:g}m", hw, g[f"work_within_{r:g}m"].to_numpy())
        for lv in levels:
            share(w, rb, f"work_{lv}_correct", hw, g[f"work_{lv}_correct"].to_numpy())
        median(w, rb, "work_error_median_m", g.work_error_m.to_numpy())
        share(w, rb, "false_work", ~hw, g.work_known.to_numpy())
    out = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    out["n"] = out["n"].astype(np.int64)
    return out


def plot_accuracy_vs_days(score: InferenceScore, metrics=None, ax=None, title=None):
    """Figure: share of pseudonyms correct vs days observed, with confidence bands.

    ``metrics`` defaults to home/work within 250 m and ``false_work``; each line is
    the pooled (``rate_bin == "all"``) value with its Wilson interval.
    Returns the matplotlib Figure.
    """
    if ax is None:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.0, 4.0), dpi=110)
    else:
        fig = ax.figure
    if metrics is None:
        r = 250.0 if 250.0 in score.radii_m else score.radii_m[0]
        metrics = (f"home_within_{r:g}m", f"work_within_{r:g}m", "false_work")
    s = score.summary[score.summary.rate_bin == ALL_BINS]
    for m in metrics:
        t = s[s.metric == m].sort_values("window_days")
        if t.empty:
            raise ConfigError(f"unknown metric {m!r}; available: {sorted(s.metric.unique())}.")
        line, = ax.plot(t.window_days, t.value, marker="o", label=m.replace("_", " "))
        ax.fill_between(t.window_days, t.ci_low, t.ci_high, color=line.get_color(), alpha=0.2, lw=0)
    n = int(s[s.metric == "home_known"].n.max()) if len(s) else 0
    ax.set_xlabel("days observed")
    ax.set_ylabel("share of pseudonyms")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize="small")
    ax.set_title(title or f"Home/work inference vs observation window (n = {n}, "
                          f"{100 * (1 - score.alpha):g} % CI)",
                 fontsize="medium")
    fig.tight_layout()
    return fig
