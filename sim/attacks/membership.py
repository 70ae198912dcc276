"""Membership inference against aggregate releases (zone x time-bin count tables).

Given a published count table, can an attacker who knows a target's trace tell whether
the target was in the data?  The per-trace attacks do not apply to such a table; this one
does.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from sim.core.constants import DAY_S
from sim.core.errors import ConfigError, InputError
from sim.core.rng import SUB_MEMBERSHIP_TARGETS, TAG_ATTACK, TAG_DEFENSE, seed_sequence
from sim.core.stats import bootstrap_ci, wilson_ci
from sim.core.traces import Traces
from sim.release._kernels import SUB_MIA
from sim.release.aggregate import bin_seconds, cell_contributions, check_traces, dp_sensitivity
from sim.release.defenses import BrokerContext, validate_defense

# =============================================================================
# The risk that still applies to aggregates: membership inference
# =============================================================================
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
    check_traces(traces)
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
    b = bin_seconds(full["bin_h"], "bin_h")
    n_bins = -(-int(traces.n_days) * DAY_S // b)
    tr, z, tb = cell_contributions(traces, ctx.world, full["level"], b, n_bins,
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
        g = seed_sequence(ctx.seed, TAG_DEFENSE, SUB_MIA)
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
    lo_t, hi_t = (float(v) for v in wilson_ci(tp, trials))
    lo_f, hi_f = (float(v) for v in wilson_ci(fp, trials))
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


def membership_risk_over_targets(traces: Traces, ctx: BrokerContext, name: str, params: dict,
                                 n_targets: int, *, seed: int, n_trials: int = 200) -> pd.DataFrame:
    """:func:`aggregate_membership_risk` against ``n_targets`` devices drawn at random
    (stream ``(seed, TAG_ATTACK, SUB_MEMBERSHIP_TARGETS)``), pooled: per metric the mean
    over targets with a percentile bootstrap interval over targets.  Returns a tidy
    table: metric, value, ci_low, ci_high, n (targets with a finite value)."""
    rng = seed_sequence(seed, TAG_ATTACK, SUB_MEMBERSHIP_TARGETS)
    targets = rng.choice(traces.n_traces, size=min(n_targets, traces.n_traces), replace=False)
    mem = pd.concat([aggregate_membership_risk(traces, ctx, int(t), name, n_trials=n_trials, **params)
                     .assign(target=int(t)) for t in targets])
    rows = []
    for i, (metric, g) in enumerate(mem.groupby("metric", sort=True)):
        v = g["value"].to_numpy(float)
        v = v[np.isfinite(v)]
        est, lo, hi = bootstrap_ci(v, statistic="mean", seed=seed, tags=(i,))
        rows.append({"metric": metric, "value": est, "ci_low": lo, "ci_high": hi, "n": len(v)})
    return pd.DataFrame(rows)
