"""Figures of a run: matplotlib functions over the tidy tables of the pipeline.

Every function returns a :class:`matplotlib.figure.Figure` and never touches pyplot's
global state when it creates the figure itself (figures are built on the Agg canvas,
so they work headless and do not display twice in a notebook).  Functions that take
``ax`` draw into that Axes instead and return its figure.

Inputs are the tables written under a run folder (see :mod:`sim.pipeline.main`): rows with
``value, ci_low, ci_high, n``.  Missing or NaN values are drawn as gaps; an empty table
gives an empty panel that says so, never an exception.  Shares are shown in percent.

Example (``DIR`` is the ``--out`` folder of ``reidsim run``)::

    import pandas as pd
    from sim.report.plots import plot_time_to_identification
    fig = plot_time_to_identification(pd.read_parquet("DIR/attacks/time_to_identification.parquet"))
    fig.savefig("ttid.png")
"""
from __future__ import annotations

import datetime as _dt
import math

import numpy as np
import pandas as pd

from sim.core.constants import DAY_S, LEVELS
from sim.core.errors import InputError
from sim.core.fmt import to_float

__all__ = [
    "plot_time_to_identification", "plot_anonymity_sets", "plot_unicity", "plot_device_trail",
    "plot_geofence", "plot_privacy_utility", "plot_calibration", "LEVEL_ORDER", "NIGHT_HOURS", "KEY_LABELS",
    "params_label", "local_str", "plot_waterfall", "plot_sensitivity",
    "plot_ladder", "plot_panel_curve",
]

#: zone levels, finest first (the one constant of sim.core.constants)
LEVEL_ORDER = LEVELS
#: default local night window [start, end) in hours used to colour pings (the
#: attacker's default night window in sim.infer; the report passes the run's own)
NIGHT_HOURS = (22.0, 6.0)
#: Golle & Partridge 2009: median anonymity set of US workers' (home, work) pair
GOLLE_PARTRIDGE_MEDIANS = {"block": 1, "tract": 21, "district": 34_980}

#: words for the linkage keys (what the attacker matched on), in figures and report text
KEY_LABELS = {"home": "home only", "home_work": "home + work"}
_KEY_COLOR = {"home": "#4C72B0", "home_work": "#C44E52"}
_NIGHT_COLOR = "#1f3b73"
_DAY_COLOR = "#f0a202"
_HOME_COLOR = "#2a9d8f"
_WORK_COLOR = "#6a4c93"
_REG_COLOR = "#d62828"
_UTILITY_LABEL = {
    "od_l1": "utility loss: error of zone-to-zone trip counts (normalised L1)",
    "od_tvd": "utility loss: total variation of zone-to-zone trip shares",
    "visits_l1": "utility loss: error of visitors per zone and hour (normalised L1)",
    "visits_tvd": "utility loss: total variation of visitor shares per zone and hour",
    "residents_l1_increase": "utility loss: added error of residents per zone",
    "residents_l1_vs_truth": "error of residents per zone vs the truth",
    "residents_l1_vs_undefended": "error of residents per zone vs the undefended release",
    "share_pings_kept": "share of pings kept",
    "share_devices_kept": "share of devices kept",
}


# ============================================================================ helpers
def _new_figure(figsize, nrows=1, ncols=1, **kw):
    """A Figure on the Agg canvas (no pyplot) and its axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def _fig_ax(ax, figsize):
    if ax is None:
        fig, axes = _new_figure(figsize)
        return fig, axes[0, 0]
    return ax.figure, ax


def _need(df, cols, what):
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"{what} must be a pandas DataFrame, got {type(df).__name__}; "
                         "read it with pd.read_parquet from the run folder.")
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise InputError(f"{what} is missing column(s) {missing}; it has {list(df.columns)}. "
                         "Pass the table written by the pipeline (see sim/pipeline/main.py).")


def _no_data(ax, text="no data"):
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4",
            fontsize="medium", wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def _pct_axis(ax, axis="y"):
    from matplotlib.ticker import PercentFormatter

    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(PercentFormatter(100, decimals=0))


def _halo():
    from matplotlib import patheffects

    return [patheffects.withStroke(linewidth=2.5, foreground="white")]


def _levels_present(values):
    vals = list(dict.fromkeys(str(v) for v in values if isinstance(v, str) or not pd.isna(v)))
    known = [lv for lv in LEVEL_ORDER if lv in vals]
    return known + [v for v in vals if v not in known]


def local_str(t_s, utc_offset_s, fmt="%a %d %b %H:%M"):
    """Epoch seconds ``t_s`` as local time text (``strftime`` format ``fmt``), the local
    time being UTC shifted by ``utc_offset_s`` (the release's fixed offset, no DST)."""
    d = _dt.datetime.fromtimestamp(int(t_s) + int(utc_offset_s), tz=_dt.timezone.utc)
    return d.strftime(fmt)


def _short(pseudonym, n=10):
    s = str(pseudonym)
    return s if len(s) <= n else s[:n] + "…"


def _view_box(xs, ys, pad_frac=0.08, min_span_m=1500.0):
    """(x0, x1, y0, y1) around finite points, square-ish, at least ``min_span_m`` wide."""
    xs = np.asarray(xs, dtype=float)
    ys = np.asarray(ys, dtype=float)
    ok = np.isfinite(xs) & np.isfinite(ys)
    if not ok.any():
        return (-min_span_m / 2, min_span_m / 2, -min_span_m / 2, min_span_m / 2)
    x0, x1 = float(xs[ok].min()), float(xs[ok].max())
    y0, y1 = float(ys[ok].min()), float(ys[ok].max())
    span = max(x1 - x0, y1 - y0, min_span_m) * (1 + 2 * pad_frac)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return cx - span / 2, cx + span / 2, cy - span / 2, cy + span / 2


def _draw_zone_boundaries(ax, world, box, level="block", color="0.82", lw=0.6, label=None):
    """Zone outlines of ``world.zones[level]`` intersecting ``box``; returns the count."""
    import shapely
    from matplotlib.collections import LineCollection

    zones = getattr(world, "zones", None) or {}
    if level not in zones or zones[level] is None or not len(zones[level]):
        return 0
    geoms = np.asarray(zones[level].geometry.values, dtype=object)
    x0, x1, y0, y1 = box
    hit = shapely.intersects(geoms, shapely.box(x0, y0, x1, y1))
    if not hit.any():
        return 0
    bounds = shapely.get_parts(shapely.boundary(geoms[hit]))
    segs = [np.asarray(shapely.get_coordinates(b)) for b in bounds]
    segs = [s for s in segs if len(s) > 1]
    lc = LineCollection(segs, colors=color, linewidths=lw, zorder=0, label=label)
    ax.add_collection(lc)
    return int(hit.sum())


def _map_axes(ax, box):
    x0, x1, y0, y1 = box
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("x (m, local projection)")
    ax.set_ylabel("y (m, local projection)")
    ax.tick_params(labelsize="small")


def _trace_rows(release, pseudonym):
    names = np.asarray(release.pseudonym, dtype=object)
    idx = np.flatnonzero(names == pseudonym)
    if not len(idx):
        raise InputError(f"pseudonym {_short(pseudonym, 16)!r} is not in the release "
                         f"({release.n_traces} traces); pass one of release.pseudonym.")
    i = int(idx[0])
    return slice(int(release.offsets[i]), int(release.offsets[i + 1]))


def _is_night(hour, night_hours=NIGHT_HOURS):
    a, b = night_hours
    return (hour >= a) | (hour < b) if a > b else (hour >= a) & (hour < b)


# ============================================================ time to identification
def plot_time_to_identification(tt, ax=None):
    """Share of devices identified vs days observed, with its confidence band.

    ``tt`` is ``attacks/time_to_identification`` (days, level, key, value, ci_low,
    ci_high, n; rows of ``metric == "identified"`` if a metric column is present).
    One line (and one band) per (level, key).  y in percent.
    """
    _need(tt, ["days", "value", "ci_low", "ci_high"], "time-to-identification table")
    fig, ax = _fig_ax(ax, (6.4, 4.0))
    t = tt
    if "metric" in t.columns:
        t = t[t["metric"] == "identified"]
    t = t[np.isfinite(t["days"].astype(float))]
    if t.empty:
        _no_data(ax, "no time-to-identification result")
        return fig
    groups = [c for c in ("level", "key") if c in t.columns]
    top = 0.0
    for gk, g in (t.groupby(groups, sort=False) if groups else [((), t)]):
        gk = gk if isinstance(gk, tuple) else (gk,)
        g = g.sort_values("days")
        info = dict(zip(groups, gk))
        lab = []
        if "key" in info:
            lab.append(KEY_LABELS.get(info["key"], str(info["key"])))
        if "level" in info:
            lab.append(f"at {info['level']} level")
        n = pd.to_numeric(g["n"], errors="coerce").max() if "n" in g.columns else math.nan
        if np.isfinite(n):
            lab.append(f"(n = {int(n):,})")
        d = g["days"].to_numpy(float)
        v = 100 * g["value"].to_numpy(float)
        lo = 100 * g["ci_low"].to_numpy(float)
        hi = 100 * g["ci_high"].to_numpy(float)
        line, = ax.plot(d, v, marker="o", lw=2, label=" ".join(lab) or "identified")
        ax.fill_between(d, lo, hi, color=line.get_color(), alpha=0.25, lw=0)
        top = max(top, np.nanmax(np.concatenate([v, hi, [0.0]])))
        last = np.flatnonzero(np.isfinite(v))
        if len(last):
            j = last[-1]
            ax.annotate(f"{v[j]:.0f}%", (d[j], v[j]), xytext=(6, 0), textcoords="offset points",
                        va="center", fontsize="small", color=line.get_color())
    ax.set_ylim(0, min(100.0, max(10.0, top * 1.2 + 2)))
    ax.set_xlim(left=0)
    _pct_axis(ax)
    ax.set_xlabel("days of pings the attacker has seen")
    ax.set_ylabel("devices tied to a named person")
    ax.set_title("How fast pseudonyms become people (shaded: 95% CI)", fontsize="medium")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize="small", frameon=False)
    return fig


# ================================================================= anonymity sets
def _set_size_buckets(per_device, key):
    """Share of devices (with a known home) per anonymity-set-size bucket, per level."""
    edges = [(0, 0, "0 (no match in register)"), (1, 1, "1 (unique)"), (2, 5, "2–5"), (6, 20, "6–20"),
             (21, 100, "21–100"), (101, np.inf, "> 100")]
    d = per_device
    if "key" in d.columns:
        d = d[d["key"] == key]
    if "status" in d.columns:
        d = d[d["status"].astype(str) == "ok"]
    d = d[d["set_size"] >= 0]
    levels = _levels_present(d["level"].unique()) if "level" in d.columns else []
    rows = {}
    for lv in levels:
        s = d.loc[d["level"] == lv, "set_size"].to_numpy()
        if len(s):
            rows[lv] = [float(((s >= a) & (s <= b)).mean()) for a, b, _ in edges]
    return rows, [e[2] for e in edges]


def plot_anonymity_sets(linkage, per_device=None, ax=None, *, dist_key="home_work"):
    """Median anonymity-set size and share identified per zone level.

    ``linkage`` is ``attacks/linkage`` (level, key, metric, value, ci_low, ci_high, n).
    Panel 1: median anonymity-set size per level (symmetric-log y so 0 is shown) for
    keys home and home_work, with the Golle & Partridge (2009) US medians as reference;
    panel 2: share identified per level, in percent.  With ``per_device``
    (``attacks/linkage_per_device``) a third panel shows the distribution of set sizes
    (key ``dist_key``) per level as stacked shares of devices with a known home.
    ``ax``: one Axes (panel 1 only) or a sequence of 2 or 3 Axes.
    """
    _need(linkage, ["level", "key", "metric", "value", "ci_low", "ci_high"], "linkage table")
    if per_device is not None:
        _need(per_device, ["level", "set_size"], "linkage_per_device table")
    fig, axes = _panel_axes(ax, 3 if per_device is not None else 2)
    levels = _levels_present(linkage["level"].unique())
    keys = [k for k in ("home", "home_work") if k in set(linkage["key"])]
    if not levels or not keys:
        for a in axes:
            _no_data(a, "no linkage result")
        return fig
    _anon_medians_panel(axes[0], linkage, levels, keys)
    if len(axes) < 2:
        return fig
    _anon_identified_panel(axes[1], linkage, levels, keys)
    if len(axes) < 3 or per_device is None:
        return fig
    _anon_distribution_panel(axes[2], per_device, dist_key)
    return fig


def _panel_axes(ax, npan):
    """(figure, list of axes): a new ``npan``-panel row when ``ax`` is None, else the
    given Axes or sequence of Axes."""
    if ax is None:
        fig, axes = _new_figure((4.6 * npan, 4.0), 1, npan)
        return fig, list(axes[0])
    if hasattr(ax, "plot"):
        return ax.figure, [ax]
    axes = list(ax)
    return axes[0].figure, axes


def _anon_medians_panel(a, linkage, levels, keys):
    """Panel 1 of :func:`plot_anonymity_sets`: median set size per level and key."""
    from matplotlib.ticker import FuncFormatter

    xpos = {lv: i for i, lv in enumerate(levels)}
    med = linkage[linkage["metric"] == "median_set_size"]
    width = 0.12
    for j, k in enumerate(keys):
        m = med[med["key"] == k].set_index("level").reindex(levels)
        x = np.arange(len(levels)) + (j - (len(keys) - 1) / 2) * width
        v = m["value"].to_numpy(float)
        lo = m["ci_low"].to_numpy(float)
        hi = m["ci_high"].to_numpy(float)
        err = np.vstack([np.where(np.isfinite(lo), v - lo, 0), np.where(np.isfinite(hi), hi - v, 0)])
        err = np.clip(np.nan_to_num(err), 0, None)
        a.errorbar(x, v, yerr=err, marker="o", lw=1.8, capsize=3, color=_KEY_COLOR[k],
                   label=KEY_LABELS[k])
        for xi, vi in zip(x, v):
            if np.isfinite(vi):
                a.annotate(f"{vi:,.0f}", (xi, vi), xytext=(-6, 5), textcoords="offset points", ha="right",
                           fontsize="x-small", color=_KEY_COLOR[k], path_effects=_halo())
    gp = [(xpos[lv], v) for lv, v in GOLLE_PARTRIDGE_MEDIANS.items() if lv in xpos]
    if gp and "home_work" in keys:
        a.scatter([p[0] for p in gp], [p[1] for p in gp], marker="x", color="0.35", s=40, zorder=3,
                  label="Golle & Partridge 2009\n(US workers, home + work)")
    a.set_yscale("symlog", linthresh=1.0, linscale=0.4)
    a.set_ylim(bottom=0)
    a.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    a.set_xlim(-0.5, len(levels) - 0.5)
    a.set_xticks(range(len(levels)), levels)
    a.set_xlabel("zone level (fine → coarse)")
    a.set_ylabel("median anonymity-set size (people)")
    a.set_title("People sharing a device's home (and work)", fontsize="medium")
    a.grid(alpha=0.3, axis="y")
    a.legend(fontsize="x-small", frameon=False, loc="upper left")


def _anon_identified_panel(a, linkage, levels, keys):
    """Panel 2 of :func:`plot_anonymity_sets`: share identified per level and key."""
    ide = linkage[linkage["metric"] == "identified"]
    bw = 0.8 / len(keys)
    for j, k in enumerate(keys):
        m = ide[ide["key"] == k].set_index("level").reindex(levels)
        x = np.arange(len(levels)) + (j - (len(keys) - 1) / 2) * bw
        v = 100 * m["value"].to_numpy(float)
        lo = 100 * m["ci_low"].to_numpy(float)
        hi = 100 * m["ci_high"].to_numpy(float)
        err = np.clip(np.nan_to_num(np.vstack([v - lo, hi - v])), 0, None)
        a.bar(x, np.nan_to_num(v), width=bw, yerr=err, capsize=3, color=_KEY_COLOR[k], alpha=0.85,
              label=KEY_LABELS[k])
        for xi, vi, hi_ in zip(x, v, hi):
            if np.isfinite(vi):
                a.annotate(f"{vi:.1f}%", (xi, hi_ if np.isfinite(hi_) else vi), xytext=(0, 3),
                           textcoords="offset points", ha="center", fontsize="x-small")
    n = pd.to_numeric(ide.get("n"), errors="coerce").max() if "n" in ide.columns and len(ide) else math.nan
    a.set_xticks(range(len(levels)), levels)
    _pct_axis(a)
    top = np.nanmax(np.append(100 * ide["ci_high"].to_numpy(float), 1.0)) if len(ide) else 1.0
    a.set_ylim(0, min(100, top * 1.2 + 1))
    a.set_xlabel("zone level (fine → coarse)")
    a.set_ylabel("devices uniquely and correctly identified")
    a.set_title("Identified" + (f" (n = {int(n):,} devices, 95% CI)" if np.isfinite(n) else ""),
                fontsize="medium")
    a.grid(alpha=0.3, axis="y")
    a.legend(fontsize="x-small", frameon=False)


def _anon_distribution_panel(a, per_device, dist_key):
    """Panel 3 of :func:`plot_anonymity_sets`: stacked shares of set-size buckets per level."""
    rows, labels = _set_size_buckets(per_device, dist_key)
    if not rows:
        _no_data(a, f"no device with a known home (key {dist_key})")
        return
    from matplotlib import colormaps

    cmap = colormaps["RdYlBu"]
    cols = [cmap(0.0), cmap(0.12)] + [cmap(x) for x in np.linspace(0.45, 1.0, len(labels) - 2)]
    cols[0] = "0.75"
    lv = list(rows)
    bottom = np.zeros(len(lv))
    for b, lab in enumerate(labels):
        h = np.array([100 * rows[l][b] for l in lv])
        a.bar(range(len(lv)), h, bottom=bottom, color=cols[b], label=lab, width=0.65,
              edgecolor="white", lw=0.5)
        bottom += h
    a.set_xticks(range(len(lv)), lv)
    a.set_ylim(0, 100)
    _pct_axis(a)
    a.set_xlabel("zone level (fine → coarse)")
    a.set_ylabel("devices with a known home and work" if dist_key == "home_work" else "devices with a known home")
    a.set_title(f"Anonymity-set sizes ({KEY_LABELS.get(dist_key, dist_key)})", fontsize="medium")
    a.legend(title="set size", fontsize="x-small", title_fontsize="x-small", frameon=False,
             loc="center left", bbox_to_anchor=(1.0, 0.5))


# ======================================================================== unicity
def _unicity_rows(unicity):
    u = unicity
    if "metric" in u.columns:
        u = u[u["metric"] == "unicity"]
    return u


def plot_unicity(unicity, power_law=None, *, subset=None, p_for_resolution=4, resolution="vh"):
    """Unicity vs points known, and vs spatial resolution with the fitted power law.

    ``unicity`` is ``attacks/unicity`` (p, v_m, h_h, value, ci_low, ci_high, n);
    ``power_law`` is ``attacks/unicity_power_law`` (p, exponent, exponent_se,
    prefactor), fitted on ``resolution`` ("vh": v_m * h_h as in
    :func:`sim.attacks.unicity.fit_power_law`'s default, "v" or "h").
    Left: one line per (v_m, h_h) in ``subset`` (default: every v_m at the finest
    h_h), with de Montjoye et al.'s 2013 figures as reference.  Right: unicity at
    ``p_for_resolution`` points vs v_m, one series per h_h, with the fit dashed.
    """
    _need(unicity, ["p", "v_m", "h_h", "value", "ci_low", "ci_high"], "unicity table")
    if power_law is not None:
        _need(power_law, ["p", "exponent", "prefactor"], "unicity power-law table")
    fig, axes = _new_figure((11.0, 4.2), 1, 2)
    a1, a2 = axes[0]
    u = _unicity_rows(unicity)
    u = u[np.isfinite(u["p"].astype(float))]
    if u.empty:
        _no_data(a1, "no unicity result")
        _no_data(a2, "no unicity result")
        return fig
    combos = list(dict.fromkeys(zip(u["v_m"].astype(float), u["h_h"].astype(float))))
    if subset is None:
        hmin = min(h for _, h in combos)
        subset = sorted(c for c in combos if c[1] == hmin)
    subset = [(float(v), float(h)) for v, h in subset]
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    for i, (v, h) in enumerate(subset):
        g = u[(u["v_m"].astype(float) == v) & (u["h_h"].astype(float) == h)].sort_values("p")
        if g.empty:
            continue
        col = cmap(i / max(1, len(subset) - 1) * 0.9)
        line, = a1.plot(g["p"], 100 * g["value"], marker="o", color=col, label=f"{v:,.0f} m, {h:g} h")
        a1.fill_between(g["p"].astype(float), 100 * g["ci_low"], 100 * g["ci_high"], color=col, alpha=0.2, lw=0)
    a1.scatter([2, 4], [50, 95], marker="*", s=140, color="k", zorder=4,
               label="de Montjoye et al. 2013\n(antennas, 1 h)")
    a1.set_ylim(0, 102)
    _pct_axis(a1)
    a1.set_xticks(sorted(u["p"].astype(int).unique()))
    a1.set_xlabel("random points of a trace the attacker knows (p)")
    a1.set_ylabel("traces that are unique (unicity)")
    a1.set_title("More known points → more traces unique", fontsize="medium")
    a1.grid(alpha=0.3)
    a1.legend(title="cell size, time bin", fontsize="x-small", title_fontsize="x-small", frameon=False,
              loc="lower right")
    # right panel
    ps = u["p"].astype(int).unique()
    p = int(p_for_resolution) if int(p_for_resolution) in ps else int(np.max(ps))
    g = u[u["p"].astype(int) == p]
    hs = sorted(g["h_h"].astype(float).unique())
    fit = None
    if power_law is not None and len(power_law):
        pl = power_law[power_law["p"].astype(int) == p]
        if len(pl) and np.isfinite(to_float(pl["exponent"].iloc[0])) and np.isfinite(to_float(pl["prefactor"].iloc[0])):
            fit = pl.iloc[0]
    hc = colormaps["plasma"]
    for i, h in enumerate(hs):
        s = g[g["h_h"].astype(float) == h].sort_values("v_m")
        col = hc(i / max(1, len(hs) - 1) * 0.8)
        v = s["v_m"].to_numpy(float)
        val = 100 * s["value"].to_numpy(float)
        err = np.clip(np.nan_to_num(np.vstack([val - 100 * s["ci_low"].to_numpy(float),
                                               100 * s["ci_high"].to_numpy(float) - val])), 0, None)
        a2.errorbar(v, val, yerr=err, marker="o", ls="none", capsize=2, color=col, label=f"time bin {h:g} h")
        if fit is not None and len(v):
            vv = np.geomspace(v.min(), v.max(), 50)
            res = {"vh": vv * h, "v": vv, "h": np.full_like(vv, h)}.get(resolution, vv * h)
            yy = 100 * np.minimum(1.0, float(fit["prefactor"]) * res ** float(fit["exponent"]))
            a2.plot(vv, yy, ls="--", lw=1.2, color=col)
    if fit is not None:
        se = to_float(fit.get("exponent_se"))
        unit = {"vh": "(cell × time bin)", "v": "cell size", "h": "time bin"}.get(resolution, "resolution")
        txt = f"dashed: fit unicity ∝ {unit}$^{{{float(fit['exponent']):.2f}}}$"
        if np.isfinite(se):
            txt += f" ± {se:.2f}"
        txt += "\n(de Montjoye et al.: about −0.1)"
        a2.text(0.02, 0.03, txt, transform=a2.transAxes, fontsize="x-small", va="bottom",
                bbox=dict(fc="white", ec="0.8", alpha=0.9))
    a2.set_xscale("log")
    vt = sorted(g["v_m"].astype(float).unique())
    if 0 < len(vt) <= 8:
        from matplotlib.ticker import NullFormatter

        a2.set_xticks(vt, [f"{v:,.0f}" for v in vt])
        a2.xaxis.set_minor_formatter(NullFormatter())
    a2.set_ylim(0, 102)
    _pct_axis(a2)
    a2.set_xlabel("spatial cell size v (m, log scale)")
    a2.set_ylabel(f"unicity with p = {p} points")
    a2.set_title("Coarser data helps only slowly", fontsize="medium")
    a2.grid(alpha=0.3, which="both")
    a2.legend(fontsize="x-small", frameon=False, loc="upper right")
    return fig


# ===================================================================== device trail
def _link_row(linkage_per_device, pseudonym, level="building", key="home_work"):
    if linkage_per_device is None or not len(linkage_per_device):
        return None
    d = linkage_per_device[linkage_per_device["pseudonym"] == pseudonym]
    if d.empty:
        return None
    pref = d[(d.get("level") == level) & (d.get("key") == key)] if {"level", "key"} <= set(d.columns) else d
    if len(pref) and bool(pref["unique"].iloc[0] if "unique" in pref.columns else pref["set_size"].iloc[0] == 1):
        return pref.iloc[0]
    uniq = d[d["unique"]] if "unique" in d.columns else d[d["set_size"] == 1]
    if len(uniq):  # finest level first
        order = {lv: i for i, lv in enumerate(LEVEL_ORDER)}
        uniq = uniq.assign(_o=uniq["level"].map(order).fillna(99)).sort_values(["_o", "key"])
        return uniq.iloc[0]
    return pref.iloc[0] if len(pref) else d.iloc[0]


def _draw_buildings(ax, world, box, s=6):
    b = getattr(world, "buildings", None)
    if b is None or not len(b) or not {"x_m", "y_m"} <= set(b.columns):
        return 0
    x0, x1, y0, y1 = box
    bx = b["x_m"].to_numpy(float)
    by = b["y_m"].to_numpy(float)
    m = (bx >= x0) & (bx <= x1) & (by >= y0) & (by <= y1)
    if m.sum() > 5000:  # too many to read: skip
        return 0
    ax.scatter(bx[m], by[m], marker="s", s=s, c="0.78", lw=0, zorder=1)
    return int(m.sum())


def _draw_trail(ax, world, box, x, y, colours, places, reg_txt, *, zoom=False):
    """One map panel of :func:`plot_device_trail`."""
    _draw_zone_boundaries(ax, world, box, color="0.7" if zoom else "0.82", lw=0.9 if zoom else 0.6)
    nb = _draw_buildings(ax, world, box) if zoom else 0
    if len(x):
        ax.plot(x, y, color="0.45", lw=0.4, alpha=0.35, zorder=2)
        ax.scatter(x, y, s=16 if zoom else 9, c=colours, alpha=0.6, lw=0, zorder=4)
    for name, (px, py) in places.items():
        if not (np.isfinite(px) and np.isfinite(py)):
            continue
        if name == "home":
            ax.scatter([px], [py], marker="^", s=260 if zoom else 170, facecolors="none",
                       edgecolors=_HOME_COLOR, linewidths=2.5, zorder=5)
        elif name == "work":
            ax.scatter([px], [py], marker="s", s=200 if zoom else 130, facecolors="none",
                       edgecolors=_WORK_COLOR, linewidths=2.5, zorder=5)
        elif name == "register":
            ax.scatter([px], [py], marker="*", s=300 if zoom else 240, c=_REG_COLOR, edgecolors="k",
                       lw=0.8, alpha=0.85, zorder=6)
            if reg_txt:
                ax.annotate(reg_txt, (px, py), xytext=(0.97, 0.97), textcoords="axes fraction",
                            ha="right", va="top", fontsize="small", fontweight="bold",
                            bbox=dict(fc="white", ec=_REG_COLOR, alpha=0.95),
                            arrowprops=dict(arrowstyle="->", color=_REG_COLOR, lw=1.2), zorder=7)
    _map_axes(ax, box)
    return nb


def plot_device_trail(release, inferred, world, pseudonym, register=None, linkage_per_device=None,
                      ax=None, *, color_by="night", level="building", key="home_work", zoom_m=600.0,
                      night_hours=NIGHT_HOURS):
    """Map (metres) of one pseudonym's pings: "the anonymous trail leads home".

    Pings are coloured night/day (``color_by="night"``; night = the local window
    ``night_hours = (start, end)`` in hours, default 22:00–06:00: pass the attacker's
    night window of the run) or by time (``"time"``, days since the start).  Block
    outlines come from ``world.zones['block']``; the inferred home and work from
    ``inferred`` (pseudonym, home_x_m, home_y_m, work_x_m, work_y_m); when the pseudonym
    is linked (anonymity set of 1 in ``linkage_per_device``, preferably at
    ``level``/``key``) the register person's synthetic name and registered home are
    marked.  Works for unlinked devices and unknown homes.

    With ``ax=None`` the figure has two panels: the whole trail, and a ``zoom_m``-wide
    close-up around the home with the address points (buildings).  ``ax`` may be one
    Axes (whole trail only) or a pair.
    """
    if color_by not in ("night", "time"):
        raise InputError(f"color_by must be 'night' or 'time', got {color_by!r}.")
    if not (isinstance(zoom_m, (int, float)) and zoom_m > 0):
        raise InputError(f"zoom_m must be a positive width in metres, got {zoom_m!r}.")
    _need(inferred, ["pseudonym", "home_x_m", "home_y_m", "work_x_m", "work_y_m"], "inferred table")
    sl = _trace_rows(release, pseudonym)
    x = np.asarray(release.x_m[sl], float)
    y = np.asarray(release.y_m[sl], float)
    t = np.asarray(release.t_s[sl], np.int64)
    acc = np.asarray(release.accuracy_m[sl], float)
    if ax is None:
        fig, axes = _new_figure((12.4, 6.6), 1, 2)
        ax_main, ax_zoom = axes[0]
    elif hasattr(ax, "plot"):
        fig, ax_main, ax_zoom = ax.figure, ax, None
    else:
        ax_main, ax_zoom = ax[0], (ax[1] if len(ax) > 1 else None)
        fig = ax_main.figure
    places, reg_txt, link, reg = _trail_places(inferred, pseudonym, linkage_per_device, register, level, key)
    hx, wx = places["home"][0], places["work"][0]
    colours, night, handles = _trail_colours(release, t, color_by, night_hours)
    _trail_place_handles(handles, hx, wx, reg)
    # overview: the bulk of the pings (2-98 %) plus every marked place
    good = np.isfinite(x) & np.isfinite(y) & (~np.isfinite(acc) | (acc <= 200))
    px, py = (x[good], y[good]) if good.sum() >= 5 else (x, y)
    qx = np.nanpercentile(px, [2, 98]) if len(px) else [np.nan, np.nan]
    qy = np.nanpercentile(py, [2, 98]) if len(py) else [np.nan, np.nan]
    box = _view_box([*qx, *(p[0] for p in places.values())], [*qy, *(p[1] for p in places.values())])
    _draw_trail(ax_main, world, box, x, y, colours, places, reg_txt if ax_zoom is None else "")
    title = _trail_title(release, pseudonym, t, link, reg, hx)
    if ax_zoom is None:
        ax_main.set_title(title, fontsize="medium")
        ax_main.legend(handles=handles, loc="upper left", fontsize="x-small", framealpha=0.9)
        return fig
    ax_main.set_title("the whole trail", fontsize="medium")
    centre = next(((px_, py_) for px_, py_ in (places["home"], places.get("register", (np.nan, np.nan)))
                   if np.isfinite(px_) and np.isfinite(py_)), None)
    if centre is None:
        night_c = None
        if color_by == "night" and np.any(night & good):
            night_c = (float(np.median(x[night & good])), float(np.median(y[night & good])))
        centre = night_c or ((float(np.median(px)), float(np.median(py))) if len(px) else (0.0, 0.0))
    _trail_zoom_panel(ax_main, ax_zoom, world, centre, float(zoom_m), x, y, colours, places, reg_txt)
    fig.suptitle(title, fontsize="medium")
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4), fontsize="small",
               frameon=False)
    return fig


def _trail_places(inferred, pseudonym, linkage_per_device, register, level, key):
    """({"home"|"work"|"register": (x, y)}, register label, link row, register row) of
    :func:`plot_device_trail`: the inferred places (longest window) and, when the
    pseudonym is linked, the register person's home."""
    row = inferred[inferred["pseudonym"] == pseudonym]
    if "window_days" in row.columns and len(row) > 1:
        row = row.sort_values("window_days").iloc[[-1]]

    def val(c):
        return to_float(row[c].iloc[0]) if len(row) else math.nan

    hx, hy, wx, wy = val("home_x_m"), val("home_y_m"), val("work_x_m"), val("work_y_m")
    link = _link_row(linkage_per_device, pseudonym, level, key)
    linked = link is not None and bool(link["unique"] if "unique" in link.index else link["set_size"] == 1)
    reg = None
    if linked and register is not None and int(link["guess_person_id"]) >= 0:
        r = register[register["person_id"] == int(link["guess_person_id"])]
        reg = r.iloc[0] if len(r) else None
    places = {"home": (hx, hy), "work": (wx, wy)}
    reg_txt = ""
    if reg is not None:
        places["register"] = (to_float(reg["home_x_m"]), to_float(reg["home_y_m"]))
        verdict = ""
        if "identified" in link.index:
            verdict = "\n(the right person)" if bool(link["identified"]) else "\n(a wrong person)"
        reg_txt = f"register: {reg.get('name', 'a person')}{verdict}"
    return places, reg_txt, link, reg


def _trail_colours(release, t, color_by, night_hours):
    """(RGBA per ping, night mask or None, legend handles) of :func:`plot_device_trail`."""
    from matplotlib.lines import Line2D

    night = None
    handles = [Line2D([], [], color="0.8", lw=1, label="block boundaries")]
    if color_by == "night":
        hour = ((t - release.start_s) % DAY_S) / 3600.0
        night = _is_night(hour, night_hours)
        colours = np.where(night[:, None], np.array([_to_rgba(_NIGHT_COLOR)]), np.array([_to_rgba(_DAY_COLOR)]))
        handles += [Line2D([], [], ls="none", marker="o", color=_NIGHT_COLOR,
                           label=f"night ping, {_hour_text(night_hours[0])}–{_hour_text(night_hours[1])} h "
                                 f"({int(night.sum()):,})"),
                    Line2D([], [], ls="none", marker="o", color=_DAY_COLOR,
                           label=f"day ping ({int((~night).sum()):,})")]
    else:
        from matplotlib import colormaps

        days = (t - release.start_s) / DAY_S
        span = max(1.0, float(release.n_days))
        colours = colormaps["viridis"](np.clip(days / span, 0, 1)) if len(t) else np.empty((0, 4))
        handles += [Line2D([], [], ls="none", marker="o", color=colormaps["viridis"](0.0), label="ping, first day"),
                    Line2D([], [], ls="none", marker="o", color=colormaps["viridis"](1.0), label="ping, last day")]
    return colours, night, handles


def _hour_text(h):
    """An hour of the day as in "22–06 h": two digits, decimals only when it has any."""
    h = float(h)
    return f"{h:02.0f}" if h == int(h) else f"{h:g}"


def _trail_place_handles(handles, hx, wx, reg):
    """Append the legend entries of the marked places (home, work, register home)."""
    from matplotlib.lines import Line2D

    if np.isfinite(hx):
        handles.append(Line2D([], [], ls="none", marker="^", ms=11, mfc="none", mec=_HOME_COLOR, mew=2.5,
                              label="inferred home"))
    if np.isfinite(wx):
        handles.append(Line2D([], [], ls="none", marker="s", ms=10, mfc="none", mec=_WORK_COLOR, mew=2.5,
                              label="inferred work"))
    if reg is not None:
        handles.append(Line2D([], [], ls="none", marker="*", ms=15, mfc=_REG_COLOR, mec="k",
                              label="home address in the register"))


def _trail_title(release, pseudonym, t, link, reg, hx):
    """Title of :func:`plot_device_trail`: pings, days and whether the device was linked."""
    n_days = len(np.unique((t - release.start_s) // DAY_S)) if len(t) else 0
    if reg is not None:
        sub = (f"linked by {KEY_LABELS.get(str(link.get('key')), link.get('key'))} at {link.get('level')} "
               "level: one person in the register fits")
    elif link is not None and int(link.get("set_size", -1)) > 1:
        sub = f"not linked: {int(link['set_size']):,} people in the register fit ({link.get('level')} level)"
    elif not np.isfinite(hx):
        sub = "not linked: no home could be inferred"
    else:
        sub = "not linked"
    return (f'The "anonymous" trail of pseudonym {_short(pseudonym)}: {len(t):,} pings on {n_days} '
            f"day{'s' if n_days != 1 else ''}\n{sub}")


def _trail_zoom_panel(ax_main, ax_zoom, world, centre, zoom_m, x, y, colours, places, reg_txt):
    """The close-up panel of :func:`plot_device_trail` around ``centre`` (widened to show
    a far register home) and its dashed frame on the overview."""
    from matplotlib.patches import Rectangle

    zx = [centre[0]]
    zy = [centre[1]]
    if "register" in places and np.isfinite(places["register"][0]):
        zx.append(places["register"][0])
        zy.append(places["register"][1])
    zbox = _view_box(zx, zy, pad_frac=0.0, min_span_m=zoom_m)
    if zbox[1] - zbox[0] > zoom_m * 1.01:  # register home far away: widen, with a margin
        zbox = _view_box(zx, zy, pad_frac=0.15, min_span_m=zoom_m)
    nb = _draw_trail(ax_zoom, world, zbox, x, y, colours, places, reg_txt, zoom=True)
    ax_zoom.set_title(f"close-up of the home ({zbox[1] - zbox[0]:,.0f} m wide"
                      + ("; grey squares: addresses)" if nb else ")"), fontsize="medium")
    ax_main.add_patch(Rectangle((zbox[0], zbox[2]), zbox[1] - zbox[0], zbox[3] - zbox[2], fill=False,
                                ec="k", lw=1, ls="--", zorder=7))


def _to_rgba(c):
    from matplotlib.colors import to_rgba

    return to_rgba(c)



# ========================================================================= geofence
def plot_geofence(release, polygon, t0_s, t1_s, per_pseudonym, inferred, world, ax=None):
    """The geofence, attendees' pings in the window and lines to their inferred homes.

    ``per_pseudonym`` is ``attacks/geofence_per_pseudonym`` (pseudonym, and home_x_m,
    home_y_m, linked, linked_correct when present); homes missing there come from
    ``inferred``.  Attendees linked to the right person are highlighted, wrong links
    marked, the rest drawn in grey.
    """
    import shapely
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    if not isinstance(polygon, shapely.Geometry) or polygon.is_empty:
        raise InputError(f"polygon must be a non-empty shapely geometry in metres, got {polygon!r}.")
    _need(per_pseudonym, ["pseudonym"], "geofence per-pseudonym table")
    fig, ax = _fig_ax(ax, (7.2, 7.0))
    att = per_pseudonym.drop_duplicates("pseudonym").reset_index(drop=True)
    if not {"home_x_m", "home_y_m"} <= set(att.columns) and inferred is not None:
        att = att.merge(inferred[["pseudonym", "home_x_m", "home_y_m"]].drop_duplicates("pseudonym"),
                        on="pseudonym", how="left")
    elif inferred is not None and len(att):
        miss = att["home_x_m"].isna()
        if miss.any():
            h = inferred.drop_duplicates("pseudonym").set_index("pseudonym")
            att.loc[miss, "home_x_m"] = h["home_x_m"].reindex(att.loc[miss, "pseudonym"]).to_numpy()
            att.loc[miss, "home_y_m"] = h["home_y_m"].reindex(att.loc[miss, "pseudonym"]).to_numpy()
    for c in ("linked", "linked_correct"):
        if c not in att.columns:
            att[c] = False
    att["linked"] = att["linked"].fillna(False).astype(bool)
    att["linked_correct"] = att["linked_correct"].fillna(False).astype(bool)
    # attendees' pings inside the window
    names = np.asarray(release.pseudonym, dtype=object)
    tr = np.flatnonzero(np.isin(names, att["pseudonym"].to_numpy(dtype=object)))
    px, py = [], []
    for i in tr:  # attendees only: a handful of traces
        a, b = int(release.offsets[i]), int(release.offsets[i + 1])
        tt = release.t_s[a:b]
        k = (tt >= t0_s) & (tt < t1_s)
        px.append(release.x_m[a:b][k])
        py.append(release.y_m[a:b][k])
    px = np.concatenate(px) if px else np.empty(0)
    py = np.concatenate(py) if py else np.empty(0)
    c = polygon.centroid
    cx, cy = float(c.x), float(c.y)
    hx = att["home_x_m"].to_numpy(float) if "home_x_m" in att.columns else np.full(len(att), np.nan)
    hy = att["home_y_m"].to_numpy(float) if "home_y_m" in att.columns else np.full(len(att), np.nan)
    minx, miny, maxx, maxy = polygon.bounds
    box = _view_box(np.r_[minx, maxx, hx], np.r_[miny, maxy, hy], min_span_m=2500.0)
    _draw_zone_boundaries(ax, world, box, color="0.88", lw=0.5)
    for part in shapely.get_parts(polygon):
        if part.geom_type == "Polygon":
            ax.fill(*part.exterior.xy, fc="#ffd166", ec="#b5651d", lw=1.5, alpha=0.55, zorder=2)
    ax.scatter(px, py, s=10, c="k", alpha=0.6, lw=0, zorder=3)
    known = np.isfinite(hx) & np.isfinite(hy)
    cats = [("wrong", att["linked"].to_numpy() & ~att["linked_correct"].to_numpy(), "#f4a261", 1.4),
            ("other", ~att["linked"].to_numpy(), "0.55", 0.8),
            ("right", att["linked_correct"].to_numpy(), _REG_COLOR, 2.2)]
    for _, m, col, lw in cats:
        for j in np.flatnonzero(m & known):
            ax.plot([cx, hx[j]], [cy, hy[j]], color=col, lw=lw, alpha=0.8, zorder=4)
            ax.scatter([hx[j]], [hy[j]], marker="^", s=70 if col != _REG_COLOR else 120, c=col,
                       edgecolors="k", lw=0.5, zorder=5)
    n = len(att)
    n_home = int(known.sum())
    n_right = int(att["linked_correct"].sum())
    n_wrong = int((att["linked"] & ~att["linked_correct"]).sum())
    handles = [Patch(fc="#ffd166", ec="#b5651d", alpha=0.6, label="geofence (the gathering)"),
               Line2D([], [], ls="none", marker="o", ms=4, color="k", label="attendees' pings in the window"),
               Line2D([], [], color="0.55", marker="^", mec="k",
                      label=f"followed home, not linked ({n_home - n_right - n_wrong})"),
               Line2D([], [], color=_REG_COLOR, lw=2.2, marker="^", mec="k",
                      label=f"named: the right person ({n_right})")]
    if n_wrong:
        handles.append(Line2D([], [], color="#f4a261", marker="^", mec="k", label=f"named: a wrong person ({n_wrong})"))
    _map_axes(ax, box)
    when = f"{local_str(t0_s, release.utc_offset_s)}–{local_str(t1_s, release.utc_offset_s, '%H:%M')} local time"
    ax.set_title(f"Geofence: {n} device{'s' if n != 1 else ''} seen at the gathering ({when});\n"
                 f"{n_home} followed to an inferred home, {n_right} named correctly", fontsize="medium")
    if n == 0:
        ax.text(0.5, 0.08, "no device seen in the geofence during the window", transform=ax.transAxes,
                ha="center", color="0.3")
    ax.legend(handles=handles, loc="upper left", fontsize="x-small", framealpha=0.9)
    return fig


# ================================================================= privacy-utility
def params_label(params):
    """A defense's parameters as short text: ``'{"cell_m": 1000.0}' -> "cell_m=1000"``.

    ``params`` is the JSON text of the tables' ``params`` column or a dict; floats
    print with ``:g``, the ``salt`` secret is left out, no parameter gives ``""`` and
    unreadable text is returned as is."""
    import json

    try:
        d = json.loads(params) if isinstance(params, str) else dict(params or {})
    except (ValueError, TypeError):
        return str(params)
    if not d:
        return ""
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in d.items()
                     if k != "salt")


def _pick(df, metric, level=None, key=None):
    d = df[df["metric"] == metric]
    if level is not None and "level" in d.columns and d["level"].notna().any():
        d = d[d["level"] == level]
    if key is not None and "key" in d.columns and d["key"].notna().any():
        d = d[d["key"] == key]
    if "days" in d.columns and d["days"].notna().any():
        d = d.sort_values("days").groupby(["defense", "params"], sort=False).tail(1)
    return d.drop_duplicates(["defense", "params"])


def _place_labels(ax, pts, texts, fontsize="x-small", colors=None):
    """Annotate points, nudging each label so it overlaps neither another label nor a
    marker and stays inside the axes when possible (a thin leader line joins each label
    to its point)."""
    from matplotlib.transforms import Bbox

    renderer = _renderer(ax.figure)
    frame = ax.get_window_extent(renderer)
    placed = []
    for x, y in pts:
        px, py = ax.transData.transform((x, y))
        placed.append(Bbox.from_extents(px - 6, py - 6, px + 6, py + 6))
    offsets = [(8, 5), (8, -14), (-8, 5), (-8, -14), (8, 18), (8, -27), (-8, 18), (-8, -27), (8, 31),
               (8, -40), (-8, 31), (-8, -40), (8, 44), (-8, 44)]
    colors = colors or ["k"] * len(pts)
    for (x, y), s, col in zip(pts, texts, colors):
        chosen = offsets[0]
        for dx, dy in offsets:
            an = ax.annotate(s, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                             ha="left" if dx > 0 else "right", va="bottom")
            bb = an.get_window_extent(renderer)
            an.remove()
            inside = (bb.x0 >= frame.x0 and bb.x1 <= frame.x1 and bb.y0 >= frame.y0 and bb.y1 <= frame.y1)
            if inside and not any(bb.overlaps(p) for p in placed):
                chosen = (dx, dy)
                break
        an = ax.annotate(s, (x, y), xytext=chosen, textcoords="offset points", fontsize=fontsize,
                         ha="left" if chosen[0] > 0 else "right", va="bottom", color=col,
                         arrowprops=dict(arrowstyle="-", color=col, lw=0.6, alpha=0.7, shrinkA=0, shrinkB=4))
        an.set_in_layout(False)
        ann = ax.annotate(s, (x, y), xytext=chosen, textcoords="offset points", fontsize=fontsize,
                          ha="left" if chosen[0] > 0 else "right", va="bottom")
        placed.append(ann.get_window_extent(renderer))
        ann.remove()


def _renderer(fig):
    """The figure's renderer (a bare ``Figure()`` gets an Agg canvas first)."""
    get = getattr(fig.canvas, "get_renderer", None)
    if get is None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig)
        get = fig.canvas.get_renderer
    return get()


def _darker(c, f=0.75):
    from matplotlib.colors import to_rgb

    return tuple(f * v for v in to_rgb(c))


def _point_label(defense, params):
    pl = params_label(params)
    return defense + (f" ({pl})" if pl else "")


def plot_privacy_utility(privacy, utility, privacy_metric="linkage_identified", level="building",
                         key="home_work", utility_metric="od_l1", ax=None):
    """One point per defense on the privacy (y) vs utility-loss (x) plane.

    ``privacy``/``utility`` are ``defenses/privacy`` and ``defenses/utility`` (columns
    defense, params, metric, value[, ci_low, ci_high, n, level, key, days]).  y is
    ``privacy_metric`` at ``level``/``key`` in percent with CI bars (the longest window
    when the metric has days); x is ``utility_metric``.  Defenses that give the same
    point share one label ("none = salt").

    Aggregate defenses (a zone x time count table) have no per-device result: they are
    drawn as hollow diamonds at their membership-inference advantage (true minus false
    positive rate), in a side panel when ``ax`` is None (beside a dashed line at the
    right-hand edge of ``ax`` otherwise), as are defenses without a finite utility value.
    """
    _need(privacy, ["defense", "params", "metric", "value"], "defense privacy table")
    _need(utility, ["defense", "params", "metric", "value"], "defense utility table")
    pts = _pu_points(privacy, utility, privacy_metric, level, key, utility_metric)
    own = ax is None
    main = [p for p in pts if p["kind"] == "trace" and np.isfinite(p["x"])]
    side = [p for p in pts if p not in main]
    if ax is None:
        if side:
            fig, axes = _new_figure((10.0, 5.6), 1, 2, gridspec_kw=dict(width_ratios=[4.0, 1.0]))
            ax, sax = axes[0]
        else:
            fig, axes = _new_figure((8.6, 5.6))
            ax, sax = axes[0, 0], None
    else:
        fig, sax = ax.figure, None
    if not pts:
        _no_data(ax, f"no defense result for {privacy_metric} ({level}, {key})")
        return fig
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    colors = {}
    for p in pts:
        colors.setdefault(p["defense"], cmap(len(colors) % 10))
    lp, lt, lc, use_log = _pu_main_points(ax, sax, main, side, pts, colors, utility_metric)
    _pu_main_labels(ax, utility, privacy_metric, level, key, utility_metric, use_log)
    note = _pu_aggregate_note(privacy) if side else ""
    if sax is not None:
        _pu_side_panel(fig, sax, side, colors, utility_metric, note)
    elif side:
        ax.text(0.99, 0.99, note.replace("; ", ";\n"), transform=ax.transAxes, ha="right", va="top",
                fontsize="x-small", bbox=dict(fc="white", ec="0.8", alpha=0.9))
    _renderer(fig)
    fig.draw_without_rendering()  # final layout first: labels are placed in display space
    if own and fig.get_layout_engine() is not None:
        fig.set_layout_engine("none")  # freeze it so saving does not move the axes under the labels
    _place_labels(ax, lp, lt, colors=lc)
    return fig


def _pu_points(privacy, utility, privacy_metric, level, key, utility_metric):
    """The points of :func:`plot_privacy_utility` as dicts (defense, params, x, y, lo,
    hi, kind): per-device ("trace") results first, then the aggregate releases'
    membership advantage; y in percent; points without a finite y are dropped."""
    pv = _pick(privacy, privacy_metric, level, key)
    mem = _pick(privacy, "membership_advantage")
    ut = _pick(utility, utility_metric).set_index(["defense", "params"])["value"]
    pts = []  # dicts: defense, params, x, y, lo, hi, kind
    for kind, tab in (("trace", pv), ("aggregate", mem)):
        for _, r in tab.iterrows():
            k = (r["defense"], r["params"])
            if kind == "aggregate" and any((p["defense"], p["params"]) == k for p in pts):
                continue
            pts.append(dict(defense=k[0], params=k[1], x=to_float(ut.get(k)), y=100 * to_float(r["value"]),
                            lo=100 * to_float(r.get("ci_low")), hi=100 * to_float(r.get("ci_high")), kind=kind))
    return [p for p in pts if np.isfinite(p["y"])]


def _pu_draw(a, group, xs, colors, utility_metric):
    """Draw ``group`` at x positions ``xs`` into ``a`` (identical points share one
    marker); returns the label positions, texts and colours."""
    lp, lt, lc = [], [], []
    merged = {}
    for p, xp in zip(group, xs):
        merged.setdefault((round(float(xp), 9), round(p["y"], 9), p["kind"]), []).append(p)
    for (xp, _, kind), members in merged.items():
        p = members[0]
        err = None
        if np.isfinite(p["lo"]) and np.isfinite(p["hi"]):
            err = np.array([[max(0.0, p["y"] - p["lo"])], [max(0.0, p["hi"] - p["y"])]])
        style = dict(marker="o", ms=8) if kind == "trace" else dict(marker="D", ms=9, mfc="white", mew=2)
        a.errorbar([xp], [p["y"]], yerr=err, color=colors[p["defense"]], mec=colors[p["defense"]],
                   capsize=3, ls="none", zorder=3, **style)
        txt = " = ".join(_point_label(q["defense"], q["params"]) for q in members)
        if kind == "trace" and not np.isfinite(p["x"]):
            txt += f"\n({utility_metric} n/a)"
        lp.append((xp, p["y"]))
        lt.append(txt)
        lc.append(_darker(colors[p["defense"]]))
    return lp, lt, lc


def _pu_main_points(ax, sax, main, side, pts, colors, utility_metric):
    """Draw the main panel's points (and, without a side panel, the side points at its
    right-hand edge) and set its scales and limits; returns the label positions, texts,
    colours and whether x is on a symmetric log scale."""
    xs = np.array([p["x"] for p in main], float)
    pos = xs[xs > 0]
    use_log = len(pos) >= 2 and pos.max() / max(float(np.median(pos)), 1e-12) > 5
    xmax = float(xs.max()) if len(xs) else 1.0
    if sax is None and side:  # one axes: the side points sit at the right-hand edge
        x_na = (xmax * 3.0 if use_log else xmax * 1.2) if xmax > 0 else 1.0
        ax.axvline(x_na / (1.6 if use_log else 1.08), color="0.6", ls="--", lw=1)
        lp, lt, lc = _pu_draw(ax, main + side, list(xs) + [x_na] * len(side), colors, utility_metric)
        right = x_na * (2.5 if use_log else 1.3)
    else:
        lp, lt, lc = _pu_draw(ax, main, xs, colors, utility_metric)
        right = (xmax * 2.5 if use_log else xmax * 1.3) if xmax > 0 else 1.0
    xmin = float(np.nanmin(xs)) if len(xs) and np.isfinite(xs).any() else 0.0
    if use_log:
        lin = max(float(pos.min()), 1e-3)
        ax.set_xscale("symlog", linthresh=lin, linscale=0.6)
        ax.set_xlim(min(-0.5 * lin, 1.5 * xmin), right)
    else:  # negative losses (a defense that happens to help the analyst) stay visible
        ax.set_xlim(min(-0.04 * right, xmin - 0.05 * (right - xmin)), right)
    ys = [max(p["y"], p["hi"] if np.isfinite(p["hi"]) else p["y"]) for p in (main if sax is not None else pts)]
    top = min(105, max(10.0, max(ys, default=0.0) * 1.3 + 3))
    ax.set_ylim(-0.07 * top, top)
    _pct_axis(ax)
    ax.grid(alpha=0.3)
    return lp, lt, lc, use_log


def _pu_main_labels(ax, utility, privacy_metric, level, key, utility_metric, use_log):
    """Axis labels and title of the main privacy-utility panel."""
    xl = _UTILITY_LABEL.get(utility_metric)
    if xl is None:
        d = utility.loc[utility["metric"] == utility_metric, "description"] if "description" in utility.columns else []
        xl = f"utility loss: {d.iloc[0]}" if len(d) else f"utility loss: {utility_metric}"
    ax.set_xlabel(xl + (" (symmetric log scale)" if use_log else "") + "\n→ worse for analysts")
    pm = {"linkage_identified": "devices re-identified", "identified_after_days": "devices re-identified",
          "unicity": "traces unique (unicity)"}.get(privacy_metric, privacy_metric)
    if privacy_metric in ("linkage_identified", "identified_after_days", "linkage_wrong_unique",
                          "linkage_top1_correct"):
        pm += f" ({KEY_LABELS.get(key, key)}, {level} level)"
    ax.set_ylabel(f"{pm}\n→ worse for privacy")
    ax.set_title("What each defense buys (privacy) and costs (utility); best: bottom left", fontsize="medium")


def _pu_aggregate_note(privacy):
    """The note explaining the aggregate releases' points (membership advantage)."""
    n = privacy.loc[privacy["metric"] == "membership_advantage", "n"] if "n" in privacy.columns else []
    nt = f" ({int(np.nanmax(n))} target devices)" if len(n) and np.isfinite(to_float(np.nanmax(n))) else ""
    return ("◇ aggregate release (counts per zone and hour): per-device re-identification does not "
            f"apply; shown: membership-inference advantage{nt}")


def _pu_side_panel(fig, sax, side, colors, utility_metric, note):
    """The side panel of the aggregate releases (membership advantage) and the note."""
    sp, st, sc = _pu_draw(sax, side, [0.0] * len(side), colors, utility_metric)
    sax.set_xlim(-1, 1)
    sax.set_xticks([])
    sax.set_ylim(-2, 105)
    _pct_axis(sax)
    sax.yaxis.tick_right()
    sax.yaxis.set_label_position("right")
    sax.set_ylabel("membership-inference advantage\n(true − false positive rate)")
    sax.set_title("aggregate releases", fontsize="medium")
    sax.grid(alpha=0.3, axis="y")
    sax.set_xlabel("no per-device data:\nutility loss not comparable", fontsize="small")
    for (xp, yp), s, c in zip(sp, st, sc):
        an = sax.annotate(s.replace(" (", "\n(").replace(", ", ",\n"), (xp, yp), xytext=(0, -12),
                          textcoords="offset points", ha="center", va="top", fontsize="x-small", color=c)
        an.set_in_layout(False)
    fig.supxlabel(note, fontsize="x-small", color="0.3")


# ====================================================================== calibration
def plot_calibration(stats):
    """Calibration curves of the generator with the source laws as dashed references.

    ``stats`` is ``calibration.json`` (:func:`sim.metrics.calibration.calibration_stats`):
    distinct places discovered over time (Song et al. 2010: S(t) ~ t^0.6) and the share
    of pings by place rank (Zipf-like, f_k ~ k^-1.2).  Missing entries give empty panels.
    """
    if not isinstance(stats, dict):
        raise InputError(f"stats must be a dict (calibration.json), got {type(stats).__name__}.")
    fig, axes = _new_figure((10.0, 3.8), 1, 2)
    a1, a2 = axes[0]
    S = np.asarray(stats.get("distinct_places_by_day") or [], float)
    if len(S) and np.isfinite(S).any():
        t = np.arange(1, len(S) + 1)
        a1.plot(t, S, "o-", label="this run")
        if np.isfinite(S[0]) and S[0] > 0:
            a1.plot(t, S[0] * t ** 0.6, "k--", lw=1, label="∝ t$^{0.6}$ (Song et al. 2010)")
        ex = to_float(stats.get("distinct_places_growth_exponent"))
        if np.isfinite(ex):
            a1.text(0.97, 0.05, f"fitted exponent {ex:.2f}", transform=a1.transAxes, ha="right",
                    fontsize="small")
        a1.set_xlim(left=0)
        a1.set_ylim(bottom=0)
        a1.legend(fontsize="small", frameon=False, loc="upper left")
    else:
        _no_data(a1, "no distinct-places statistic")
    a1.set(xlabel="days observed", ylabel="distinct 250 m cells visited (mean per device)")
    a1.set_title("Places discovered over time", fontsize="medium")
    a1.grid(alpha=0.3)
    f = np.asarray(stats.get("visit_share_by_rank") or [], float)
    ok = np.isfinite(f) & (f > 0)
    if ok.any():
        k = np.arange(1, len(f) + 1)
        a2.loglog(k[ok], f[ok], "o-", label="this run")
        a2.loglog(k, f[ok][0] * k ** -1.2, "k--", lw=1, label="∝ k$^{-1.2}$ (Song et al. 2010)")
        ex = to_float(stats.get("visit_rank_exponent"))
        if np.isfinite(ex):
            a2.text(0.03, 0.05, f"fitted exponent −{ex:.2f}", transform=a2.transAxes, fontsize="small")
        a2.legend(fontsize="small", frameon=False)
    else:
        _no_data(a2, "no visit-rank statistic")
    a2.set(xlabel="rank of place (1 = most visited)", ylabel="share of a device's visits")
    a2.set_title("Visit frequency by rank", fontsize="medium")
    a2.grid(alpha=0.3, which="both")
    return fig


# ============================================================================ honest figures
def plot_waterfall(table: pd.DataFrame, ceilings: dict | None = None, ax=None):
    """Where identification is lost: share of devices left after each step of
    :func:`sim.metrics.waterfall.identification_waterfall` (bars with 95 % intervals),
    and the home-based ceiling as a dashed line.  Returns the Figure."""
    _need(table, ["label", "value", "ci_low", "ci_high", "n_devices"], "waterfall table")
    fig, ax = _fig_ax(ax, (7.5, 0.45 * len(table) + 1.2))
    y = np.arange(len(table))[::-1]
    v = 100 * table["value"].to_numpy(float)
    err = np.vstack([v - 100 * table["ci_low"].to_numpy(float), 100 * table["ci_high"].to_numpy(float) - v])
    ax.barh(y, v, xerr=err, color="#4C72B0", alpha=0.85, capsize=2, error_kw={"lw": 0.8})
    for yi, vi, hi_, k in zip(y, v, 100 * table["ci_high"].to_numpy(float), table["n_devices"]):
        ax.text(np.nanmax([vi, hi_]) + 1.5, yi, f"{vi:.1f}% ({int(k):,})", va="center", fontsize="small")
    ax.set_yticks(y, table["label"])
    if ceilings and "ceiling_home" in ceilings and np.isfinite(ceilings["ceiling_home"].get("value", np.nan)):
        c = 100 * float(ceilings["ceiling_home"]["value"])
        ax.axvline(c, color=_REG_COLOR, ls="--", lw=1)
        ax.text(c - 1, y[-1] - 0.45, "ceiling of a home-based attacker", color=_REG_COLOR, fontsize="small",
                ha="right", va="center", path_effects=_halo())
    ax.set_xlim(0, 125)
    ax.set_xticks(range(0, 101, 20))
    _pct_axis(ax, "x")
    ax.set_xlabel("share of devices still identifiable")
    ax.set_title("Where identification is lost\n(exact home + work join, building level)", fontsize="medium")
    return fig


def plot_sensitivity(table: pd.DataFrame, metric: str, label: str | None = None, ax=None):
    """A tornado chart: the headline ``metric`` at the low and high end of each
    assumption's range (:func:`sim.pipeline.sensitivity.sensitivity`), around its value
    at the run's settings.  Parameters whose end could not be measured show the note.
    Returns the Figure."""
    _need(table, ["path", "setting", "param_value", "metric", "value"], "sensitivity table")
    t = table[(table["metric"] == metric) | table["metric"].isna()]
    paths = list(dict.fromkeys(t["path"]))
    fig, ax = _fig_ax(ax, (7.5, 0.55 * max(len(paths), 1) + 1.4))
    if not paths:
        _no_data(ax, "no sensitivity computed")
        return fig

    def val(path, setting):
        r = t[(t["path"] == path) & (t["setting"] == setting) & (t["metric"] == metric)]
        if not len(r):
            return np.nan, None
        pv = r["param_value"].iloc[0]
        if "window_days" in r.columns and r["method"].iloc[0] == "prefix":
            pv = r["window_days"].iloc[0]  # the window measured (the release may be shorter than the range)
        return float(r["value"].iloc[0]), pv

    rows = []
    for pth in paths:
        base, bval = val(pth, "value")
        lo, lval = val(pth, "low")
        hi, hval = val(pth, "high")
        span = np.nanmax([abs(lo - base), abs(hi - base), 0.0])
        rows.append((pth, base, bval, lo, lval, hi, hval, span))
    rows.sort(key=lambda r: r[-1])
    for i, (pth, base, bval, lo, lval, hi, hval, _) in enumerate(rows):
        for end, pv, colour in ((lo, lval, "#C44E52"), (hi, hval, "#4C72B0")):
            if np.isfinite(end) and np.isfinite(base):
                ax.barh(i, 100 * (end - base), left=100 * base, color=colour, alpha=0.8, height=0.6)
                ax.text(100 * end, i, f" {pv:g} " if isinstance(pv, (int, float)) else "", va="center",
                        ha="left" if end >= base else "right", fontsize="x-small")
        ax.plot([100 * base], [i], marker="|", color="black", ms=14)
    ax.set_yticks(range(len(rows)), [f"{r[0]} = {r[2]:g}" if isinstance(r[2], (int, float)) else r[0]
                                     for r in rows])
    _pct_axis(ax, "x")
    ax.set_xlabel(label or metric)
    ax.set_title("The headline across each assumption's range\n(red: low end, blue: high end, bar: this run)",
                 fontsize="medium")
    return fig


_RUNG_COLOR = {"exact": "#C44E52", "hierarchical": "#4C72B0", "home_adults": "#2a9d8f", "ranked": "#6a4c93"}


def plot_ladder(ladder: pd.DataFrame, unit: str = "device", ax=None):
    """The attacker ladder (:mod:`sim.attacks.ladder`): left, the share of devices
    narrowed to k or fewer people with the owner among them, against k, at the longest
    window (a filled marker at k = 1 for "named uniquely"); right, the share named
    against days observed.  One line per rung.  Returns the Figure."""
    _need(ladder, ["rung", "days", "k", "metric", "value", "ci_low", "ci_high", "unit"], "ladder table")
    t = ladder[ladder["unit"] == unit]
    fig, axes = _new_figure((10.5, 4.0), 1, 2)
    a1, a2 = axes[0]
    if t.empty:
        _no_data(a1)
        _no_data(a2)
        return fig
    last = t["days"].max()
    for rung in dict.fromkeys(t["rung"]):
        c = _RUNG_COLOR.get(rung, "0.3")
        r = t[(t["rung"] == rung) & (t["days"] == last) & (t["metric"] == "narrowed_k")].sort_values("k")
        if len(r):
            a1.plot(r["k"], 100 * r["value"], marker="o", ms=3, color=c, label=rung.replace("_", " "))
            a1.fill_between(r["k"], 100 * r["ci_low"], 100 * r["ci_high"], color=c, alpha=0.15, lw=0)
        named = t[(t["rung"] == rung) & (t["days"] == last) & (t["metric"] == "named")]
        if len(named):
            a1.plot([1], [100 * named["value"].iloc[0]], marker="*", ms=10, color=c, ls="none")
        n = t[(t["rung"] == rung) & (t["metric"] == "named")].sort_values("days")
        if len(n):
            a2.plot(n["days"], 100 * n["value"], marker="o", ms=3, color=c, label=rung.replace("_", " "))
            a2.fill_between(n["days"], 100 * n["ci_low"], 100 * n["ci_high"], color=c, alpha=0.15, lw=0)
    a1.set(xlabel="k (people the attacker is left with)", ylabel=f"share of {unit}s",
           title=f"Owner among k or fewer candidates, {int(last)} days (star: named)")
    a1.set_xscale("log")
    ks = sorted(t.loc[t["metric"] == "narrowed_k", "k"].dropna().unique())
    if ks:
        a1.set_xticks(ks, [f"{int(k)}" for k in ks])
        a1.xaxis.set_minor_formatter(_null_formatter())
    a2.set(xlabel="days observed", ylabel=f"share of {unit}s named", title="Named uniquely and correctly")
    for a in (a1, a2):
        _pct_axis(a)
        a.set_ylim(0, 100)
        a.grid(alpha=0.3)
    a2.legend(fontsize="small", loc="upper left")
    return fig


def _null_formatter():
    from matplotlib.ticker import NullFormatter

    return NullFormatter()


def plot_panel_curve(table: pd.DataFrame, title: str = "Unicity against panel size", ax=None):
    """A uniqueness share measured on sub-panels of growing size (points with 95 %
    intervals) and its extrapolation (diamond with interval), log-scaled panel size
    (:func:`sim.attacks.panel.unicity_vs_panel_size`).  Returns the Figure."""
    _need(table, ["n_panel", "value", "ci_low", "ci_high", "kind", "metric"], "panel table")
    fig, ax = _fig_ax(ax, (6.0, 3.8))
    main = table[~table["metric"].astype(str).str.endswith("lower_bound")]
    m = main[main["kind"] == "measured"].sort_values("n_panel")
    e = main[main["kind"] == "extrapolated"].sort_values("n_panel")
    if m.empty:
        _no_data(ax)
        return fig
    ax.errorbar(m["n_panel"], 100 * m["value"], yerr=[100 * (m["value"] - m["ci_low"]), 100 * (m["ci_high"] - m["value"])],
                fmt="o-", ms=4, color="#4C72B0", capsize=2, label="measured on sub-panels")
    if len(e):
        ax.errorbar(e["n_panel"], 100 * e["value"], yerr=[100 * (e["value"] - e["ci_low"]), 100 * (e["ci_high"] - e["value"])],
                    fmt="D", ms=6, color="#C44E52", capsize=3, label="extrapolated (fitted model)")
    ax.set_xscale("log")
    ax.set(xlabel="devices in the data set", ylabel="unique", title=title)
    _pct_axis(ax)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="lower left")
    return fig
