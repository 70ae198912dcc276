"""Unicity and top-N uniqueness against the panel's size, extrapolated to a population.

A trace is unique only relative to the crowd it is compared with: the same p points
that single a device out among 4,000 traces may be shared by someone else among
200,000.  A broker's panel holds a share of the population (DESIGN.md §6a), so a
unicity measured on the panel describes that panel, not the population.  This module
measures the two uniqueness attacks on random sub-panels of growing size and
extrapolates, as Farzanehfar, Houssiau & de Montjoye (2021, Patterns 2:100204, "The
risk of re-identification remains high even in country-scale location datasets") do.

Sub-panels
----------
For each size n, the sub-panel is the n traces (among those with a ping) with the
smallest uniform ``uniform(stream_key(seed, TAG_ATTACK, uid(pseudonym) ^ SALT_PANEL),
counter)`` where ``counter = n`` (independent sub-panels per size, the default) or
``counter = 0`` for every size (``nested=True``: each sub-panel contains the smaller
ones).  Either way the choice depends on the pseudonyms and the seed only, never on
trace order.  The full size is the whole panel.  Unicity is then
:func:`sim.attacks.unicity.unicity_attack` on the sub-panel (same seed: a trace's p
points are the same in every sub-panel it belongs to) and top-N uniqueness is
:func:`sim.attacks.topn.signature_set_sizes` on the sub-panel's rows of
:func:`sim.attacks.topn.top_locations` (a trace's top places depend on its pings only).

Model
-----
If the other n - 1 traces of a panel are drawn at random from a population, trace i is
unique with probability ``(1 - π_i)^(n-1)``, where π_i is the chance that one random
other trace holds trace i's p points (or shares its top-N set).  Unicity is then

    U(n) = E_i[(1 - π_i)^(n-1)].

Farzanehfar et al. approximate the decay of unicity with dataset size by a model built
from three population-wide marginal distributions, prove unicity convex and derive a
linear lower bound from it (their abstract; 4 points: 93 % unique among 60M people,
lower bound 22 %).  This module does not rebuild their marginal model: it *fits* the
mixture above, with logit(π) ~ Normal(μ, σ) (:func:`panel_model`), to the measured
curve.  The family contains a homogeneous panel (σ = 0, a pure exponential decay in
n) and ever slower, heavier-tailed decays as σ grows; μ and σ are fitted by binomial
maximum likelihood over the measured sizes (k unique out of m attacked at each size).
The interval of an extrapolated value comes from refitting on resamples of the
per-size estimates: each replicate draws every size's share from its Jeffreys
posterior Beta(k + 1/2, m - k + 1/2) (which still varies when k = m) and refits; the
2.5 and 97.5 percentiles of the refitted predictions are the interval.  It reflects
sampling error only, not the choice of model.

Every term (1 - π)^(n-1) is convex in n, so U is, and the straight line through the two
largest measured sizes, extended to larger n, lies below U: a lower bound that needs no
fitted model, reported as the metric ``<metric>_lower_bound`` (clipped at 0) with the
same resampling interval.  It rests on two noisy points, so its value can land above
the model's; read its interval.

Both extrapolations assume the population's traces look like the panel's (the panel
is a random share of it) and that the sub-panels' traces were drawn from the same
distribution; rows carry ``kind = "extrapolated"``.
"""
from __future__ import annotations


import numpy as np
import pandas as pd
from scipy import optimize

from sim.core.errors import ConfigError, InputError
from sim.core.rng import TAG_ATTACK, TAG_BOOT, seed_sequence, stable_uid64
from sim.core.traces import Traces
from sim.attacks._common import check_int, check_levels, rate_row, uniforms
from sim.attacks.topn import BY, signature_set_sizes, top_locations
from sim.attacks.unicity import unicity_attack


#: columns of :func:`unicity_vs_panel_size`
PANEL_COLUMNS = ["metric", "p", "v_m", "h_h", "n_panel", "value", "ci_low", "ci_high", "n", "kind"]
#: columns of :func:`topn_vs_panel_size`
TOPN_PANEL_COLUMNS = ["metric", "level", "N", "by", "n_panel", "value", "ci_low", "ci_high", "n", "kind"]
#: columns of the fit table (besides the group columns)
FIT_COLUMNS = ["metric", "mu", "sigma", "loglik", "n_sizes", "n_panel_min", "n_panel_max", "converged"]

SALT_PANEL = np.uint64(0x5A17_0003)  # sub-stream of TAG_ATTACK for choosing sub-panels
_BOOT_TAG = 0x9A_0E1  # seed_sequence(seed, TAG_BOOT, _BOOT_TAG, group): extrapolation intervals
_MU_BOUNDS = (-60.0, 20.0)
_SIGMA_BOUNDS = (0.0, 12.0)
_Z = np.linspace(-8.0, 8.0, 641)  # quadrature grid of the normal mixing distribution
_W = np.exp(-0.5 * _Z**2)
_W /= _W.sum()


# ----------------------------------------------------------------------- sub-panels
def panel_sizes(n_total: int, *, n_min: int = 500, per_decade: int = 4) -> np.ndarray:
    """A geometric grid of panel sizes from ``n_min`` to ``n_total`` (both included),
    ``per_decade`` sizes per factor of ten; just ``[n_total]`` when it is <= n_min."""
    n_total = check_int("n_total (panel size)", n_total, 1)
    n_min = check_int("n_min", n_min, 2)
    per_decade = check_int("per_decade", per_decade, 1)
    if n_total <= n_min:
        return np.array([n_total], dtype=np.int64)
    k = int(np.ceil(np.log10(n_total / n_min) * per_decade)) + 1
    return np.unique(np.round(np.geomspace(n_min, n_total, max(k, 2))).astype(np.int64))


def panel_subset(traces: Traces, n: int, seed: int, *, nested: bool = False, uid=None) -> np.ndarray:
    """Indices (ascending) of the size-``n`` sub-panel of ``traces`` (module docstring).

    Only traces with a ping are eligible; ``n`` at least their number gives them all.
    ``uid`` may pass ``stable_uid64(traces.pseudonym)`` to avoid hashing it again.
    """
    eligible = np.flatnonzero(traces.lengths > 0)
    n = check_int("n (panel size)", n, 1)
    if n >= len(eligible):
        return eligible.astype(np.int64)
    if uid is None:
        uid = stable_uid64(traces.pseudonym)
    u = uniforms(seed, TAG_ATTACK, np.asarray(uid, dtype=np.uint64)[eligible] ^ SALT_PANEL, 0 if nested else n)
    return np.sort(eligible[np.argsort(u, kind="stable")[:n]]).astype(np.int64)


def _check_sizes(sizes, n_total: int) -> np.ndarray:
    if sizes is None:
        return panel_sizes(n_total) if n_total > 0 else np.zeros(0, np.int64)
    s = [check_int("panel size", v, 2) for v in np.atleast_1d(sizes)]
    bad = [v for v in s if v > n_total]
    if bad:
        raise ConfigError(f"panel sizes {bad} exceed the {n_total} traces with a ping; use sizes <= {n_total} "
                          "(the largest is the whole panel).")
    return np.unique(np.asarray(s, dtype=np.int64))


def _check_targets(target_sizes) -> list:
    if target_sizes is None:
        return []
    return [check_int("target size (population)", v, 2) for v in np.atleast_1d(target_sizes)]


# ---------------------------------------------------------------------------- model
def panel_model(n, mu: float, sigma: float) -> np.ndarray:
    """U(n) = E[(1 - π)^(n-1)] with logit(π) ~ Normal(mu, sigma) (module docstring).

    ``n`` may be an array; U(1) = 1; U decreases and is convex in n.
    """
    n = np.asarray(n, dtype=np.float64)
    a = mu + sigma * _Z
    log1m = -np.logaddexp(0.0, a)  # log(1 - π) = -softplus(logit π)
    e = np.exp(np.multiply.outer(n - 1.0, log1m))
    return e @ _W


def _nll(theta, n, k, m):
    u = np.clip(panel_model(n, theta[0], theta[1]), 1e-300, 1.0)
    nu = np.clip(1.0 - u, 1e-300, 1.0)
    return -float(np.sum(k * np.log(u) + (m - k) * np.log(nu)))


def _fit_one(n, k, m, start=None):
    """Binomial ML fit of (mu, sigma); returns (mu, sigma, loglik, converged)."""
    n, k, m = (np.asarray(v, dtype=np.float64) for v in (n, k, m))
    if start is None:
        best = None
        for s in (0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0):
            for mu in np.linspace(-40.0, 5.0, 91):
                v = _nll((mu, s), n, k, m)
                if best is None or v < best[0]:
                    best = (v, mu, s)
        start = best[1:]
    res = optimize.minimize(_nll, np.asarray(start, float), args=(n, k, m), method="Nelder-Mead",
                            bounds=[_MU_BOUNDS, _SIGMA_BOUNDS],
                            options={"xatol": 1e-7, "fatol": 1e-10, "maxiter": 4000, "maxfev": 8000})
    return float(res.x[0]), float(res.x[1]), -float(res.fun), bool(res.success)


def _lower_bound(n_a, u_a, n_b, u_b, target):
    """Convexity bound: the line through (n_a, u_a), (n_b, u_b), n_a < n_b, at target."""
    slope = (u_b - u_a) / (n_b - n_a)
    return np.clip(u_b + np.minimum(slope, 0.0) * (target - n_b), 0.0, 1.0)


def fit_panel_curve(measured: pd.DataFrame, group_cols, *, target_sizes=None, n_boot: int = 200,
                    seed: int = 0, alpha: float = 0.05):
    """Fit :func:`panel_model` to measured rows, one fit per group; extrapolate.

    ``measured`` has the group columns plus metric, n_panel, value and n (the traces
    the share rests on); ``k = round(value * n)``.  Returns ``(fit, extrapolated)``:
    ``fit`` has the group columns and :data:`FIT_COLUMNS`; ``extrapolated`` has one
    row per group and target size for the model's prediction (metric unchanged) and for
    the convexity lower bound (metric + "_lower_bound"), kind "extrapolated", n = the
    traces behind the largest measured size.  Groups with fewer than two measured sizes
    get NaN parameters and NaN extrapolations.
    """
    group_cols = list(group_cols)
    targets = _check_targets(target_sizes)
    n_boot = check_int("n_boot", n_boot, 10)
    fits, rows = [], []
    m0 = measured[np.isfinite(measured["value"].to_numpy(float)) & (measured["n"].to_numpy() > 0)]
    keys = group_cols + ["metric"]
    for gi, (key, g) in enumerate(m0.groupby(keys, sort=True, dropna=False)):
        key = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        g = g.sort_values("n_panel")
        n = g["n_panel"].to_numpy(float)
        m = g["n"].to_numpy(float)
        k = np.round(g["value"].to_numpy(float) * m)
        ok = len(np.unique(n)) >= 2
        if ok:
            mu, sigma, ll, conv = _fit_one(n, k, m)
        else:
            mu = sigma = ll = np.nan
            conv = False
        fits.append({**key, "mu": mu, "sigma": sigma, "loglik": ll, "n_sizes": int(len(n)),
                     "n_panel_min": int(n.min()) if len(n) else 0, "n_panel_max": int(n.max()) if len(n) else 0,
                     "converged": conv})
        if not targets:
            continue
        tg = np.asarray(targets, dtype=np.float64)
        base = {c: key[c] for c in group_cols}
        n_units = int(m[-1]) if len(m) else 0
        if not ok:
            for t in targets:
                for met in (key["metric"], key["metric"] + "_lower_bound"):
                    rows.append({**base, "metric": met, "n_panel": int(t), "value": np.nan, "ci_low": np.nan,
                                 "ci_high": np.nan, "n": n_units, "kind": "extrapolated"})
            continue
        pred = panel_model(tg, mu, sigma)
        a = int(np.flatnonzero(n < n[-1])[-1])  # the second-largest size
        lb = _lower_bound(n[a], k[a] / m[a], n[-1], k[-1] / m[-1], tg)
        rng = seed_sequence(seed, TAG_BOOT, _BOOT_TAG, gi)
        bp = np.empty((n_boot, len(tg)))
        bl = np.empty((n_boot, len(tg)))
        for b in range(n_boot):
            u = rng.beta(k + 0.5, m - k + 0.5)
            mb, sb, _, _ = _fit_one(n, u * m, m, start=(mu, sigma))
            bp[b] = panel_model(tg, mb, sb)
            bl[b] = _lower_bound(n[a], u[a], n[-1], u[-1], tg)
        for j, t in enumerate(targets):
            for met, est, reps in ((key["metric"], pred[j], bp[:, j]),
                                   (key["metric"] + "_lower_bound", lb[j], bl[:, j])):
                lo, hi = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
                rows.append({**base, "metric": met, "n_panel": int(t), "value": float(est),
                             "ci_low": float(min(lo, est)), "ci_high": float(max(hi, est)), "n": n_units,
                             "kind": "extrapolated"})
    fit = pd.DataFrame(fits, columns=group_cols + FIT_COLUMNS)
    return fit, pd.DataFrame(rows)


# --------------------------------------------------------------------------- curves
def unicity_vs_panel_size(
    traces: Traces,
    *,
    sizes=None,
    p=4,
    v_m=500.0,
    h_h=1.0,
    seed: int = 0,
    n_sample: int | None = None,
    ci: str = "wilson",
    nested: bool = False,
    target_sizes=None,
    n_boot: int = 200,
    return_fit: bool = False,
):
    """Unicity of p random points on sub-panels of growing size, and its extrapolation.

    Parameters
    ----------
    traces : Traces
        The release (the whole panel).
    sizes : iterable of int, optional
        Sub-panel sizes (traces); default :func:`panel_sizes` (500 to the whole panel,
        4 per decade).  Each must be at most the number of traces with a ping.
    p, v_m, h_h : number or iterable
        Points known, cell size (m) and time bin (h), as in
        :func:`sim.attacks.unicity.unicity_attack`; every combination is measured.
    seed : int
        Root seed of the sub-panels, the point draws and the intervals.
    n_sample : int, optional
        Attack at most this many traces of each sub-panel (seeded); default all.
    ci : "wilson" or "bootstrap"
        Interval of each measured share.
    nested : bool
        Nested sub-panels (one ordering for every size) instead of independent ones.
    target_sizes : int or iterable of int, optional
        Population sizes to extrapolate to, e.g. ``scenario.residents`` (every resident
        carrying a device in the panel) or residents x a plausible full-panel share.
    n_boot : int
        Refits behind each extrapolated interval.
    return_fit : bool
        Also return the fit table (:func:`fit_panel_curve`).

    Returns
    -------
    DataFrame with :data:`PANEL_COLUMNS`: measured rows (metric "unicity", one per
    size and (p, v_m, h_h); n = traces attacked with >= p points) and, for each target
    size, extrapolated rows (metrics "unicity" and "unicity_lower_bound").  With
    ``return_fit``, a tuple (table, fit).
    """
    if not isinstance(traces, Traces):
        raise InputError(f"traces must be a sim.core.traces.Traces, got {type(traces).__name__}.")
    n_total = int(np.count_nonzero(traces.lengths))
    sizes = _check_sizes(sizes, n_total)
    ps = list(np.atleast_1d(p))
    uid = stable_uid64(traces.pseudonym)
    parts = []
    for n in sizes:
        sub = traces if n >= n_total else traces.take(panel_subset(traces, int(n), seed, nested=nested, uid=uid))
        t = unicity_attack(sub, p_values=ps, v_values_m=np.atleast_1d(v_m), h_values_h=np.atleast_1d(h_h),
                           n_sample=n_sample, seed=seed, ci=ci)
        parts.append(t)
    measured = (pd.concat(parts, ignore_index=True) if parts
                else pd.DataFrame(columns=["p", "v_m", "h_h", "metric", "value", "ci_low", "ci_high", "n", "n_panel"]))
    measured["kind"] = "measured"
    measured = measured[PANEL_COLUMNS]
    fit, extra = fit_panel_curve(measured, ["p", "v_m", "h_h"], target_sizes=target_sizes, n_boot=n_boot, seed=seed)
    table = pd.concat([measured, extra[PANEL_COLUMNS]] if len(extra) else [measured], ignore_index=True)
    table = table.astype({"n_panel": np.int64, "n": np.int64})
    return (table, fit) if return_fit else table


def topn_vs_panel_size(
    traces: Traces,
    world,
    *,
    sizes=None,
    levels=("building", "block"),
    n_values=(1, 2, 3),
    by: str = "pings",
    ordered: bool = False,
    seed: int = 0,
    ci: str = "wilson",
    nested: bool = False,
    target_sizes=None,
    n_boot: int = 200,
    return_fit: bool = False,
):
    """Top-N uniqueness (:func:`sim.attacks.topn.topn_uniqueness`'s "unique") on
    sub-panels of growing size, and its extrapolation (see the module docstring).

    Arguments as :func:`unicity_vs_panel_size` and
    :func:`sim.attacks.topn.topn_uniqueness`.  Returns a DataFrame with
    :data:`TOPN_PANEL_COLUMNS` (metric "unique", and "unique_lower_bound" for the
    extrapolated bound); with ``return_fit`` a tuple (table, fit).
    """
    if not isinstance(traces, Traces):
        raise InputError(f"traces must be a sim.core.traces.Traces, got {type(traces).__name__}.")
    if by not in BY:
        raise ConfigError(f"by must be one of {BY}, got {by!r}.")
    levels = check_levels(levels, world)
    ns = [check_int("N (number of top places)", n, 1) for n in np.atleast_1d(n_values)]
    n_total = int(np.count_nonzero(traces.lengths))
    sizes = _check_sizes(sizes, n_total)
    uid = stable_uid64(traces.pseudonym)
    subsets = {int(n): panel_subset(traces, int(n), seed, nested=nested, uid=uid) for n in sizes}
    rows = []
    for li, lv in enumerate(levels):
        top, n_places = top_locations(traces, world, lv, n_max=max(ns), by=by)
        for n_panel, idx in subsets.items():
            for N in ns:
                size = signature_set_sizes(top[idx], n_places[idx], N, ordered)
                has = size > 0
                r = rate_row("unique", size[has] == 1, ci, seed, (li, N), level=lv, N=N, by=by)  # topn's tags
                rows.append({**r, "n_panel": n_panel, "kind": "measured"})
    measured = pd.DataFrame(rows, columns=TOPN_PANEL_COLUMNS)
    fit, extra = fit_panel_curve(measured, ["level", "N", "by"], target_sizes=target_sizes, n_boot=n_boot,
                                 seed=seed)
    table = pd.concat([measured, extra[TOPN_PANEL_COLUMNS]] if len(extra) else [measured], ignore_index=True)
    table = table.astype({"n_panel": np.int64, "n": np.int64})
    return (table, fit) if return_fit else table
