"""Re-linking rotated pseudonyms across rotations by inferred home/work.

When the broker rotates pseudonyms every R days, the attacker sees a new pseudonym per
device and epoch.  Epochs are what the attacker can see: a pseudonym's epoch is
``first_day // R`` where ``first_day`` is the local day of its first ping in the
release (:func:`pseudonym_epochs`).

Linking (between each epoch e and e + 1):

* ``method="nearest"`` — each pseudonym is the 4-D point (home_x, home_y, work_x,
  work_y) in metres (an unknown work is replaced by the home, an unknown home drops the
  pseudonym).  A pair (a in e, b in e+1) is linked if a and b are *mutual* nearest
  neighbours and their distance is <= ``max_dist_m`` (inclusive).
* ``method="zone"`` — the key is (home zone, work zone) at ``level`` (work -1 when
  unknown); a pair is linked if its key occurs exactly once in e and once in e+1.

Scoring uses the truth pseudonyms table (pseudonym -> device_idx): a link is correct
if both pseudonyms belong to the same device.  *True pairs* are, for each device, its
pseudonyms in consecutive attacker epochs (e, e+1) among those present in the inputs.
precision = correct links / links; recall (linking accuracy) = correct links / true pairs.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from sim.core.errors import ConfigError, InputError
from sim.core.traces import Traces
from sim.attacks._common import (METRIC_COLUMNS, check_positive, count_row, rate_row, require_columns, span_table,
                                truth_device)

METHODS = ("nearest", "zone")


def pseudonym_epochs(traces, period_days: float) -> pd.DataFrame:
    """pseudonym, first_day, last_day, epoch (= first_day // period_days) per trace with pings.

    ``traces`` is the release (Traces) or its observed-span table
    (:func:`sim.attacks._common.observed_span`, e.g. built part by part).
    """
    if not isinstance(traces, (Traces, pd.DataFrame)):
        raise InputError(f"traces must be a sim.core.traces.Traces (or its observed-span table), got "
                         f"{type(traces).__name__}.")
    period_days = check_positive("period_days (rotation period R)", period_days)
    span = span_table(traces)
    return span.assign(epoch=np.floor(span["first_day"].to_numpy() / period_days).astype(np.int64))


def propose_links(
    inferred: pd.DataFrame,
    epochs: pd.DataFrame,
    *,
    method: str = "nearest",
    max_dist_m: float = np.inf,
    world=None,
    level: str = "block",
) -> pd.DataFrame:
    """Proposed links between consecutive epochs (no truth used).

    Returns DataFrame pseudonym_from, pseudonym_to, epoch_from, distance_m (NaN for the
    zone method).
    """
    if method not in METHODS:
        raise ConfigError(f"method must be one of {METHODS}, got {method!r}.")
    require_columns(inferred, ["pseudonym", "home_x_m", "home_y_m", "work_x_m", "work_y_m"], "inferred table")
    require_columns(epochs, ["pseudonym", "epoch"], "epochs table", "Build it with pseudonym_epochs(release, R).")
    if not (max_dist_m >= 0):
        raise ConfigError(f"max_dist_m must be >= 0, got {max_dist_m!r}.")
    d = inferred.merge(epochs[["pseudonym", "epoch"]], on="pseudonym", how="inner")
    hx, hy = d["home_x_m"].to_numpy(float), d["home_y_m"].to_numpy(float)
    wx, wy = d["work_x_m"].to_numpy(float), d["work_y_m"].to_numpy(float)
    okh = np.isfinite(hx) & np.isfinite(hy)
    okw = np.isfinite(wx) & np.isfinite(wy)
    d = d.assign(wx_=np.where(okw, wx, hx), wy_=np.where(okw, wy, hy))[okh].reset_index(drop=True)
    if method == "zone":
        if world is None:
            raise ConfigError("method='zone' needs the world (for world.locate).")
        hz = world.locate(d["home_x_m"].to_numpy(float), d["home_y_m"].to_numpy(float), level)
        wz = np.where(okw[okh], world.locate(d["wx_"].to_numpy(float), d["wy_"].to_numpy(float), level), -1)
        d = d.assign(hz_=hz, wz_=wz, key_=(hz + 1) * (int(np.max(wz, initial=0)) + 2) + (wz + 1))
    out = []
    epochs_sorted = np.sort(d["epoch"].unique())
    for e in epochs_sorted:
        a = d[d["epoch"] == e]
        b = d[d["epoch"] == e + 1]
        if len(a) == 0 or len(b) == 0:
            continue
        if method == "nearest":
            fa = a[["home_x_m", "home_y_m", "wx_", "wy_"]].to_numpy(float)
            fb = b[["home_x_m", "home_y_m", "wx_", "wy_"]].to_numpy(float)
            dab, jab = cKDTree(fb).query(fa, k=1)  # a -> nearest b
            _, jba = cKDTree(fa).query(fb, k=1)   # b -> nearest a
            ia = np.arange(len(a))
            mutual = (jba[jab] == ia) & (dab <= max_dist_m)
            out.append(pd.DataFrame({
                "pseudonym_from": a["pseudonym"].to_numpy()[mutual], "pseudonym_to": b["pseudonym"].to_numpy()[jab[mutual]],
                "epoch_from": e, "distance_m": dab[mutual],
            }))
        else:
            ka = a["key_"].to_numpy()
            kb = b["key_"].to_numpy()
            ua = ~pd.Series(ka).duplicated(keep=False).to_numpy() & (a["hz_"].to_numpy() >= 0)
            ub = ~pd.Series(kb).duplicated(keep=False).to_numpy() & (b["hz_"].to_numpy() >= 0)
            ja = pd.DataFrame({"k": ka[ua], "pseudonym_from": a["pseudonym"].to_numpy()[ua]})
            jb = pd.DataFrame({"k": kb[ub], "pseudonym_to": b["pseudonym"].to_numpy()[ub]})
            m = ja.merge(jb, on="k")
            out.append(pd.DataFrame({"pseudonym_from": m["pseudonym_from"].to_numpy(), "pseudonym_to": m["pseudonym_to"].to_numpy(),
                                     "epoch_from": e, "distance_m": np.nan}))
    cols = ["pseudonym_from", "pseudonym_to", "epoch_from", "distance_m"]
    if not out:
        return pd.DataFrame(columns=cols)
    return pd.concat(out, ignore_index=True)[cols]


def score_relinks(links: pd.DataFrame, epochs: pd.DataFrame, pseudonyms: pd.DataFrame, *, inferred=None,
                  ci: str = "wilson", seed: int = 0, **params) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score proposed links against truth: ``(links_with_correct, metrics)``.

    True pairs are built over the pseudonyms of ``epochs`` (restricted to ``inferred``
    when given).  metrics rows: n_links, n_true_pairs (counts), precision, recall.
    """
    pool = epochs if inferred is None else epochs[epochs["pseudonym"].isin(inferred["pseudonym"])]
    dev = truth_device(pseudonyms, pool["pseudonym"].to_numpy(), "epochs table")
    t = pd.DataFrame({"pseudonym": pool["pseudonym"].to_numpy(), "epoch": pool["epoch"].to_numpy(), "device": dev})
    t = t.sort_values(["device", "epoch"], kind="stable")
    nxt = t.shift(-1)
    is_pair = (nxt["device"].to_numpy() == t["device"].to_numpy()) & (nxt["epoch"].to_numpy() == t["epoch"].to_numpy() + 1)
    true_pairs = pd.DataFrame({"pseudonym_from": t["pseudonym"].to_numpy()[is_pair],
                               "pseudonym_to": nxt["pseudonym"].to_numpy()[is_pair]})
    n_true = len(true_pairs)
    out = links.copy()
    if len(out):
        d_from = truth_device(pseudonyms, out["pseudonym_from"].to_numpy(), "links")
        d_to = truth_device(pseudonyms, out["pseudonym_to"].to_numpy(), "links")
        out["correct"] = d_from == d_to
    else:
        out["correct"] = np.zeros(0, dtype=bool)
    correct = out["correct"].to_numpy(dtype=bool)
    rec = true_pairs.merge(out[["pseudonym_from", "pseudonym_to"]].drop_duplicates(), how="left", indicator=True)
    rec = (rec["_merge"] == "both").to_numpy()
    rows = [count_row("n_links", len(out), len(out), **params), count_row("n_true_pairs", n_true, n_true, **params)]
    rows.append(rate_row("precision", correct, ci, seed, (1,), **params))
    rows.append(rate_row("recall", rec, ci, seed, (2,), **params))
    metrics = pd.DataFrame(rows, columns=list(params) + METRIC_COLUMNS)
    return out, metrics


def relink_attack(traces, inferred: pd.DataFrame, pseudonyms: pd.DataFrame, *, period_days: float,
                  method: str = "nearest", max_dist_m: float = np.inf, world=None, level: str = "block",
                  ci: str = "wilson", seed: int = 0):
    """Epochs from the release (Traces, or its observed-span table), links, score:
    ``(links, metrics)`` (metrics carry period_days, method)."""
    ep = pseudonym_epochs(traces, period_days)
    links = propose_links(inferred, ep, method=method, max_dist_m=max_dist_m, world=world, level=level)
    return score_relinks(links, ep, pseudonyms, inferred=inferred, ci=ci, seed=seed,
                         period_days=float(period_days), method=method)


def relink_vs_period(cases: dict, pseudonyms: pd.DataFrame, **kw) -> pd.DataFrame:
    """Linking accuracy vs rotation period: ``cases = {R: (release, inferred)}``.

    ``pseudonyms`` is the truth table covering the pseudonyms of every case (or a dict
    {R: truth table}).  Returns the concatenated metrics of :func:`relink_attack`.
    """
    parts = []
    for R in sorted(cases):
        tr, inf = cases[R]
        truth = pseudonyms[R] if isinstance(pseudonyms, dict) else pseudonyms
        parts.append(relink_attack(tr, inf, truth, period_days=R, **kw)[1])
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
