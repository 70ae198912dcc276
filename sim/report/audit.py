"""The audit report: ``DIR/audit.html`` (self-contained, PNGs inline), ``DIR/audit.md``
(figures under ``DIR/figures/``), the aggregate tables under ``DIR/tables/`` (Parquet and
CSV) and the marker ``DIR/audit.json``.

Aggregate only (DESIGN.md §8a): the report shows shares and counts with their intervals
and ``n``, and density grids whose cells with fewer than ``k`` distinct users are
suppressed; maps are drawn in kilometres from an arbitrary grid origin, never in
coordinates.  It never prints or plots an individual's coordinates, identifier or
inferred home: it only receives the tables of :func:`sim.pipeline.audit.audit`, which
hold none.

Output folder: new, empty, or a previous audit (its ``audit.json`` says so) replaced
with ``overwrite``; only the entries in :data:`AUDIT_ENTRIES` are ever replaced, and
everything is staged first and moved into place with the marker last
(:func:`sim.core.files.commit_staged`).
"""
from __future__ import annotations

import datetime as _dt
import math
import shlex
from pathlib import Path

import numpy as np
import pandas as pd

from sim.report.page import Doc, png, render_html, render_md
from sim.core.errors import InputError
from sim.core.files import (check_output_path, read_marker, clean_stale_staging, commit_staged, is_staging_name,
                            new_staging_dir, write_json, write_table)
from sim.core.fmt import count, num, pct, pct_range

__all__ = ["AUDIT_MARKER", "AUDIT_ENTRIES", "claim_audit_dir", "is_audit_folder", "write_audit",
           "plot_audit_uniqueness", "plot_audit_days", "plot_audit_unicity", "plot_audit_density",
           "plot_audit_defenses", "plot_audit_register", "ATTACK_LABELS", "REGISTER_METRIC_LABELS"]

AUDIT_MARKER = "audit.json"
AUDIT_ENTRIES = (AUDIT_MARKER, "audit.html", "audit.md", "figures", "tables")

#: words for each measure in tables and figures
ATTACK_LABELS = {
    "unicity": "p random points (unicity)",
    "top_n_cells": "top-N cells",
    "known_points": "m known sightings",
    "home_cell": "inferred home cell",
    "home_work_pair": "inferred (home, work) cells",
    "inference": "home inferred at all",
    "skmob_location": "skmob LocationAttack",
    "skmob_location_sequence": "skmob LocationSequenceAttack",
    "skmob_location_time": "skmob LocationTimeAttack (hour)",
    "skmob_unique_location": "skmob UniqueLocationAttack",
    "skmob_frequency": "skmob LocationFrequencyAttack",
    "skmob_home_work": "skmob HomeWorkAttack",
    "skmob_location_probability": "skmob LocationProbabilityAttack",
    "skmob_location_proportion": "skmob LocationProportionAttack",
    "register_exact": "register: exact (home, work) cells",
    "register_hierarchical": "register: hierarchical",
    "register_home_adults": "register: home adults",
    "register_ranked": "register: ranked",
}
#: words for the register-linkage metrics (sim.attacks.register_ladder)
REGISTER_METRIC_LABELS = {
    "single_candidate": "one candidate left",
    "at_most_5": "1–5 candidates",
    "no_candidate": "no candidate",
    "named": "named (the right person)",
    "wrong": "wrongly named",
    "narrowed_5": "≤ 5 candidates, owner among them",
}
_METRIC_LABELS = {"unique": "unique", "success": "singled out", "risk_1": "risk = 1", "mean_risk": "mean risk",
                  "home_known": "home inferred", **REGISTER_METRIC_LABELS}
_REGISTER_RUNG_WORDS = {
    "exact": "exact: register persons whose listed home cell and employer cell are the inferred home and work "
             "cells (no inferred work: no candidate)",
    "hierarchical": "hierarchical: the persons listed in the inferred home cell; if a workplace is inferred, those "
                    "listed at an employer in its cell, if any; else those with no employer listed, if any; else "
                    "all of them",
    "home_adults": "home adults: of those, the adults (age 18 or more; a missing age counts as adult)",
    "ranked": "ranked: a list of persons — the home cell's residents first (earlier rungs' candidates first, then "
              "by employer match and distance), then everyone else by distance from the inferred home; the first "
              "one is named",
}


# ============================================================================ folder
def is_audit_folder(path) -> bool:
    """True when ``path`` holds an audit.json written by ``reidsim audit``."""
    d = read_marker(Path(path) / AUDIT_MARKER)
    return d is not None and "reidsim_audit" in d


def claim_audit_dir(path, *, overwrite: bool = False, create: bool = True, option: str = "--out") -> Path:
    """Check that an audit may be written into ``path`` (new, empty, or a previous audit
    with ``overwrite``) and create it; raises before anything is written."""
    p = check_output_path(path, option)
    if p.is_dir():
        entries = [e for e in p.iterdir() if not is_staging_name(e.name)]
        if entries and not is_audit_folder(p):
            raise InputError(
                f"{option} {str(p)!r} is not empty and is not a reidsim audit folder (it holds "
                f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}, e.g. {sorted(e.name for e in entries)[0]!r}, "
                f"and no {AUDIT_MARKER} written by reidsim audit); an audit writes only into a new or empty folder "
                f"or a previous audit. Choose another {option}.")
        if entries and not overwrite:
            raise InputError(f"{option} {str(p)!r} already holds a reidsim audit; pass --overwrite "
                             "(overwrite=True) to replace it, or choose another folder.")
        if create:
            clean_stale_staging(p)
    if create:
        p.mkdir(parents=True, exist_ok=True)
    return p


# ============================================================================ figures
def _figure(figsize, nrows=1, ncols=1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def _no_data(ax, text="no data"):
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _label(r) -> str:
    return f"{ATTACK_LABELS.get(r['attack'], r['attack'])}: {r['setting']}"


def _headline_selection(uniq: pd.DataFrame) -> pd.DataFrame:
    """The rows shown in the overview figure and headline."""
    if uniq is None or uniq.empty:
        return pd.DataFrame(columns=uniq.columns if uniq is not None else [])
    u = uniq
    keep = (
        ((u["attack"] == "unicity") & (u["cell_m"] == 500) & (u["h_h"] == 1))
        | ((u["attack"] == "top_n_cells") & (u["cell_m"] == 500))
        | ((u["attack"] == "known_points") & (u["noise_m"] == u.loc[u["attack"] == "known_points", "noise_m"].max()))
        | (u["attack"].isin(["home_cell", "home_work_pair"]) & (u["cell_m"] == 500))
        | (u["attack"].str.startswith("skmob_") & (u["metric"] == "risk_1"))
    )
    return u[keep]


def plot_audit_uniqueness(uniq: pd.DataFrame):
    """Horizontal bars: share of users singled out by each measure (95 % CI, n)."""
    sel = _headline_selection(uniq)
    fig, axes = _figure((8.2, max(2.5, 0.32 * len(sel) + 1.2)))
    ax = axes[0, 0]
    if sel.empty:
        _no_data(ax)
        return fig
    sel = sel.iloc[::-1]
    y = np.arange(len(sel))
    v = 100 * sel["value"].to_numpy(float)
    lo = 100 * sel["ci_low"].to_numpy(float)
    hi = 100 * sel["ci_high"].to_numpy(float)
    colors = ["#C44E52" if a.startswith("skmob") else "#4C72B0" for a in sel["attack"]]
    ax.barh(y, np.nan_to_num(v), color=colors, alpha=0.85)
    ax.errorbar(v, y, xerr=[np.nan_to_num(v - lo), np.nan_to_num(hi - v)], fmt="none", ecolor="0.2", lw=1, capsize=2)
    ax.set_yticks(y, [f"{_label(r)}  (n={int(r['n'])})" for _, r in sel.iterrows()], fontsize="small")
    ax.set_xlim(0, 100)
    ax.set_xlabel("users singled out (%), 95% interval")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title("Share of users singled out, by attack", fontsize="medium")
    return fig


def plot_audit_days(by_days: pd.DataFrame):
    """Risk against days observed: one line per headline measure, 95 % bands."""
    fig, axes = _figure((7.5, 4.2))
    ax = axes[0, 0]
    if by_days is None or by_days.empty:
        _no_data(ax)
        return fig
    for (attack, setting), g in by_days.groupby(["attack", "setting"], sort=False):
        g = g.sort_values("days")
        ax.plot(g["days"], 100 * g["value"], marker="o", ms=3,
                label=f"{ATTACK_LABELS.get(attack, attack)}: {setting}")
        ax.fill_between(g["days"], 100 * g["ci_low"], 100 * g["ci_high"], alpha=0.12, lw=0)
    ax.set_xlabel("days observed (each user's first d local days)")
    ax.set_ylabel("users (%)")
    ax.set_ylim(0, 102)
    if by_days["days"].max() > 10:
        ax.set_xscale("log")
        ticks = sorted(by_days["days"].unique())
        ax.set_xticks(ticks, [str(int(d)) for d in ticks])
        ax.minorticks_off()
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small", frameon=False, loc="lower right")
    ax.set_title("How risk grows with the days observed", fontsize="medium")
    return fig


def plot_audit_unicity(uniq: pd.DataFrame):
    """Unicity against p, one line per cell size (solid: 1 h bins, dashed: coarser)."""
    fig, axes = _figure((6.4, 4.0))
    ax = axes[0, 0]
    u = uniq[uniq["attack"] == "unicity"] if uniq is not None and not uniq.empty else None
    if u is None or u.empty:
        _no_data(ax)
        return fig
    hs = sorted(u["h_h"].unique())
    for i, ((v, h), g) in enumerate(u.groupby(["cell_m", "h_h"])):
        g = g.sort_values("p")
        ax.errorbar(g["p"], 100 * g["value"], yerr=[100 * (g["value"] - g["ci_low"]), 100 * (g["ci_high"] - g["value"])],
                    marker="o", ms=3, capsize=2, ls="-" if h == hs[0] else "--",
                    label=f"{v / 1000:g} km, {h:g} h" if v >= 1000 else f"{v:g} m, {h:g} h")
    ax.set_xlabel("points known (p)")
    ax.set_ylabel("unique (%)")
    ax.set_ylim(0, 102)
    ax.set_xticks(sorted(u["p"].unique()))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small", frameon=False)
    ax.set_title("Unicity of p random points", fontsize="medium")
    return fig


def plot_audit_density(density: pd.DataFrame, k: int, n_suppressed: int | None = None):
    """Distinct users per cell; cells with fewer than ``k`` users are not drawn."""
    fig, axes = _figure((6.0, 5.0))
    ax = axes[0, 0]
    if density is None or density.empty:
        _no_data(ax, f"no cell has {k} or more distinct users\n(all cells suppressed)")
        return fig
    c = float(density["cell_m"].iloc[0]) / 1000.0
    ix, iy = density["ix"].to_numpy(), density["iy"].to_numpy()
    x0, y0 = ix.min(), iy.min()
    grid = np.full((iy.max() - y0 + 1, ix.max() - x0 + 1), np.nan)
    grid[iy - y0, ix - x0] = density["n_users"].to_numpy(float)
    im = ax.imshow(grid, origin="lower", cmap="viridis", interpolation="nearest",
                   extent=[x0 * c, (ix.max() + 1) * c, y0 * c, (iy.max() + 1) * c])
    fig.colorbar(im, ax=ax, label="distinct users in the cell", shrink=0.8)
    ax.set_xlabel("km east (arbitrary origin)")
    ax.set_ylabel("km north (arbitrary origin)")
    sup = f"\n({n_suppressed:,} cells with fewer than {k} users suppressed)" if n_suppressed is not None else ""
    ax.set_title(f"Distinct users per {c:g} km cell, cells with ≥ {k} users{sup}", fontsize="small")
    ax.set_aspect("equal")
    return fig


def plot_audit_defenses(tab: pd.DataFrame):
    """Headline measures before and after the defenses."""
    fig, axes = _figure((7.5, 3.8))
    ax = axes[0, 0]
    t = tab[tab["attack"] != "data"] if tab is not None and not tab.empty else None
    if t is None or t.empty:
        _no_data(ax, "no defense applied")
        return fig
    keys = list(dict.fromkeys(zip(t["attack"], t["setting"])))
    x = np.arange(len(keys))
    for off, stage, col in ((-0.2, "before", "#888888"), (0.2, "after", "#2a9d8f")):
        s = t[t["stage"] == stage].set_index(["attack", "setting"])
        v = np.array([100 * float(s.loc[k, "value"]) if k in s.index else np.nan for k in keys])
        lo = np.array([100 * float(s.loc[k, "ci_low"]) if k in s.index else np.nan for k in keys])
        hi = np.array([100 * float(s.loc[k, "ci_high"]) if k in s.index else np.nan for k in keys])
        ax.bar(x + off, np.nan_to_num(v), width=0.4, color=col, label=stage)
        ax.errorbar(x + off, v, yerr=[np.nan_to_num(v - lo), np.nan_to_num(hi - v)], fmt="none", ecolor="0.2",
                    capsize=2, lw=1)
    ax.set_xticks(x, [ATTACK_LABELS.get(a, a).replace(" ", "\n", 2) for a, _ in keys], fontsize="x-small")
    ax.set_ylabel("users (%)")
    ax.set_ylim(0, 102)
    ax.legend(frameon=False, fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("What the defenses changed", fontsize="medium")
    return fig


def plot_audit_register(uniq: pd.DataFrame, metric: str = "named"):
    """Register linkage: share of users per rung (bars) and cell size (groups), 95 %
    whiskers; ``metric`` is ``"named"`` (with truth) or ``"single_candidate"``."""
    fig, axes = _figure((7.5, 3.8))
    ax = axes[0, 0]
    t = uniq[uniq["attack"].str.startswith("register_") & (uniq["metric"] == metric)] \
        if uniq is not None and not uniq.empty else None
    if t is None or t.empty:
        _no_data(ax, "no register linked")
        return fig
    cells = sorted(t["cell_m"].unique())
    rungs = list(dict.fromkeys(t["attack"]))
    width = 0.8 / len(rungs)
    x = np.arange(len(cells))
    colors = ["#4C72B0", "#55A868", "#8172B2", "#C44E52"]
    for i, a in enumerate(rungs):
        g = t[t["attack"] == a].set_index("cell_m")
        v = np.array([100 * float(g.loc[c, "value"]) if c in g.index else np.nan for c in cells])
        lo = np.array([100 * float(g.loc[c, "ci_low"]) if c in g.index else np.nan for c in cells])
        hi = np.array([100 * float(g.loc[c, "ci_high"]) if c in g.index else np.nan for c in cells])
        off = (i - (len(rungs) - 1) / 2) * width
        ax.bar(x + off, np.nan_to_num(v), width=width * 0.95, color=colors[i % len(colors)],
               label=ATTACK_LABELS.get(a, a).replace("register: ", ""))
        ax.errorbar(x + off, v, yerr=[np.nan_to_num(v - lo), np.nan_to_num(hi - v)], fmt="none", ecolor="0.2",
                    capsize=2, lw=1)
    ax.set_xticks(x, [f"{c / 1000:g} km cells" if c >= 1000 else f"{c:g} m cells" for c in cells])
    ax.set_ylabel("users (%)")
    ax.set_ylim(0, 102)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(frameon=False, fontsize="small", title="attacker", title_fontsize="small")
    words = REGISTER_METRIC_LABELS.get(metric, metric)
    ax.set_title(f"Linked to your register: users {words}", fontsize="medium")
    return fig


def _figure_png(fig) -> bytes:
    """PNG bytes without the "Software" tag (no version string in the outputs)."""
    return png(fig, metadata={"Software": None})


# ============================================================================ content
def _share(r) -> list:
    return [pct(r["value"]), pct_range(r["ci_low"], r["ci_high"]), count(r["n"])]


def _find(t, attack, setting, metric=None):
    if t is None or t.empty:
        return None
    m = (t["attack"] == attack) & (t["setting"] == setting)
    if metric is not None:
        m &= t["metric"] == metric
    r = t[m]
    return r.iloc[0] if len(r) else None


def _headline_text(res) -> str:
    u = res["uniqueness"]
    users = int(res["data"].set_index("item")["value"].get("users", 0))
    parts = []
    for attack, setting, words in (
            ("unicity", "p=4, 500 m, 1 h", "4 random points (500 m cells, 1 h bins)"),
            ("top_n_cells", "N=2, 500 m cells", "their 2 most visited 500 m cells"),
            ("home_work_pair", "500 m cells", "their inferred (home, work) 500 m cells")):
        r = _find(u, attack, setting)
        if r is not None and r["n"] > 0:
            parts.append(f"{pct(r['value'])} (95% interval {pct_range(r['ci_low'], r['ci_high'])}, n={count(r['n'])}) "
                         f"are singled out by {words}")
    reg = (res.get("info") or {}).get("register")
    if reg:
        r = _register_headline(u, reg)
        if r is not None:
            rung, cell, metric, row = r
            what = ("are named correctly" if metric == "named" else "are left with a single person")
            parts.append(f"{pct(row['value'])} (95% interval {pct_range(row['ci_low'], row['ci_high'])}, "
                         f"n={count(row['n'])}) {what} when linked to your register ({rung} attacker, "
                         f"{cell:g} m cells)")
    if not parts:
        return f"{users:,} users audited; no measure could be computed."
    return f"Of {users:,} users, " + "; ".join(parts) + "."


def _register_headline(u, reg):
    """(rung, cell_m, metric, row) of the register measure of the headline, or None."""
    metric = "named" if reg.get("truth") else "single_candidate"
    for rung, cell in (("hierarchical", 250.0),):
        r = _find(u, f"register_{rung}", f"{cell:g} m cells", metric)
        if r is not None:
            return rung, cell, metric, r
    r = u[u["attack"].str.startswith("register_") & (u["metric"] == metric)] if u is not None and not u.empty \
        else None
    if r is None or r.empty:
        return None
    r = r.iloc[0]
    return r["attack"][len("register_"):], float(r["cell_m"]), metric, r


def _register_section(doc: Doc, u: pd.DataFrame, reg: dict, n_users: int) -> dict:
    """The "Linking to your register" section; returns its figure's PNG."""
    truth = bool(reg.get("truth"))
    doc.h(2, "Linking to your register", "register")
    rd = reg.get("reader") or {}
    head = _register_headline(u, reg)
    if head is not None:
        rung, cell, metric, r = head
        if truth:
            summary = (f"Linked to your register on {cell:g} m cells, the {rung} attacker named "
                       f"{pct(r['value'])} (95% interval {pct_range(r['ci_low'], r['ci_high'])}) of the "
                       f"{count(r['n'])} users correctly; the owners of {pct(reg.get('listed_share'))} of the users "
                       "are in the register, the most a register-based attacker can name.")
        else:
            summary = (f"Linked to your register on {cell:g} m cells, the {rung} attacker is left with a single "
                       f"person for {pct(r['value'])} (95% interval {pct_range(r['ci_low'], r['ci_high'])}) of the "
                       f"{count(r['n'])} users; whether that person is the right one needs the register's user "
                       "column (--register-user), which was not given.")
        doc.headline(summary)
    doc.p("Each user's inferred home (and work) is looked up in your register: the candidates are the persons "
          "listed in the same square grid cell, narrowed as each attacker does (below). Figures are shares of all "
          f"{count(reg.get('users'))} users; a user without an inferred home has no candidate. "
          + (f"Named, wrongly named and narrowed are scored against the register's user column, "
             f"{reg.get('scoring')}." if truth else
             "Without the register's user column only what the attacker sees is reported: how many candidates "
             "are left, not whether the right person is among them."))
    rows = []
    if rd:
        rows.append(["rows read", count(rd.get("rows_read"))])
        for reason, words in (("missing_name", "no name"), ("missing_home", "no home latitude or longitude"),
                              ("bad_home", "home position not a number or out of range")):
            rows.append([f"dropped: {words}", count((rd.get("dropped") or {}).get(reason, 0))])
        rows.append(["rows kept (persons)", count(rd.get("rows_kept"))])
        if rd.get("bad_work"):
            rows.append(["employer position unusable (kept, no employer listed)", count(rd["bad_work"])])
        if rd.get("bad_age"):
            rows.append(["age unusable (kept, age unknown)", count(rd["bad_age"])])
        if rd.get("duplicate_user"):
            rows.append(["user id repeated on a later row (removed there)", count(rd["duplicate_user"])])
    else:
        rows.append(["persons", count(reg.get("persons"))])
    rows.append(["persons with an employer listed", f"{count(reg.get('with_work'))} "
                                                     f"({pct(reg.get('with_work_share'))})"])
    if reg.get("with_age"):
        rows.append(["persons with an age", count(reg.get("with_age"))])
    if truth:
        rows.append(["users whose owner is listed (user column)", f"{count(reg.get('listed'))} of "
                                                                   f"{count(reg.get('users'))} "
                                                                   f"({pct(reg.get('listed_share'))})"])
        rows.append(["users not listed (can never be named)", count(reg.get("not_listed"))])
    doc.table(["register", "count"], rows, note="Names are only checked to be present, then discarded; no name, "
                                                  "address or user id of the register appears in this report.")
    metric = "named" if truth else "single_candidate"
    pngs = {"register": _figure_png(plot_audit_register(u, metric))}
    doc.fig("register", "Linked to your register",
            f"Share of users {REGISTER_METRIC_LABELS[metric]} by each attacker, per grid cell size (95% intervals, "
            f"n = {count(reg.get('users'))} users).")
    t = u[u["attack"].str.startswith("register_")]
    metrics = ["single_candidate", "at_most_5", "no_candidate"] + (["named", "wrong", "narrowed_5"] if truth else [])
    rows = []
    for (cell, attack), g in t.groupby(["cell_m", "attack"], sort=False):
        gi = g.set_index("metric")
        row = [f"{cell:g} m", ATTACK_LABELS.get(attack, attack).replace("register: ", "")]
        for m in metrics:
            if m in gi.index:
                r = gi.loc[m]
                row.append(f"{pct(r['value'])} ({pct_range(r['ci_low'], r['ci_high'])})")
            else:
                row.append("–")
        row.append(count(g["n"].iloc[0]))
        rows.append(row)
    doc.table(["cells", "attacker"] + [REGISTER_METRIC_LABELS[m] for m in metrics] + ["n"], rows,
              note="Share of users (95% Wilson interval). The ranked attacker always has a list, so 'one candidate' "
                   "and '1–5 candidates' do not apply to it (–); it names the first person of its list.")
    doc.ul([_REGISTER_RUNG_WORDS[r] for r in reg.get("rungs", []) if r in _REGISTER_RUNG_WORDS] + [
        "Grid cells: squares of the stated size anchored at the projection's origin. A home near a cell edge falls "
        "in the neighbour cell and is compared with that cell's residents; the ranked attacker falls back on "
        "distances, which have no edges.",
    ])
    return pngs


def _definitions(info) -> list:
    s = info.get("settings", {})
    return [
        "p random points (unicity, de Montjoye et al. 2013): p of a user's distinct (cell, time bin) points drawn at "
        "random; unique if no other user's trace holds all p. Users with fewer than p points are left out (n short).",
        "top-N cells (Zang & Bolot 2011, on a square grid): the set of a user's N most visited cells, ranked by "
        "distinct local days with a fix there; unique if no other user has the same set.",
        f"m known sightings: m of the user's own fixes, moved by Gaussian noise (the stated sigma per axis) and "
        f"±{s.get('known_jitter_s', 600) / 60:g} min; singled out when exactly one trace has a fix near every "
        "sighting and it is the user's.",
        "inferred home cell / (home, work) cells: home and work inferred from the data (stay points or DBSCAN, see "
        "Data), snapped to the grid; unique if no other user of the dataset shares the cell (pair). n counts "
        "users with a home (and work) inferred.",
        f"skmob attacks: scikit-mobility's privacy attacks (Pellungrini et al. 2017) with knowledge length "
        f"k={s.get('skmob_k', 2)} on visit records (one per stay point, or per run of fixes in one cell), located "
        f"by their {s.get('skmob_cell_m', 500):g} m cell; a user's risk is the largest 1 / (users matching) over "
        "all k-subsets of their records; the share with risk 1 is shown (unique under some background "
        "knowledge), and the mean risk in the table.",
        "Every share has a 95% Wilson interval (bootstrap for means and medians) and n, the users it rests on. "
        "With few users the intervals are wide and uniqueness is easy: a user is compared with the other users "
        "of this dataset only.",
    ]


def _build(res, counts, k) -> tuple[Doc, dict]:
    info = res["info"]
    data = res["data"].set_index("item")["value"]
    doc = Doc()
    doc.h(1, "Re-identification risk audit")
    doc.p(f"Written by reidsim audit on {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC. Aggregate only: "
          "shares and counts of users, and density grids with cells of fewer than "
          f"k = {k} distinct users suppressed. No identifier, coordinate or inferred home of any individual appears "
          "in this report or its tables.")
    doc.headline(_headline_text(res))
    n_users = int(data.get("users", 0) or 0)
    if n_users < max(k, 20):
        doc.p(f"Only {n_users:,} users: every share here rests on very few people, its interval is wide, and being "
              "unique among so few says little about a larger release (a user only has to differ from "
              f"{max(n_users - 1, 0):,} others).")

    doc.h(2, "Data", "data")
    rd = (counts or {}).get("dropped", {})
    rows = []
    if counts:
        rows.append(["rows read", count(counts.get("rows_read"))])
        for reason, words in (("malformed", "malformed lines"), ("missing", "missing id, time or position"),
                              ("bad_coordinates", "coordinates not numbers or out of range"),
                              ("bad_time", "time unparseable or outside 1980–2099"),
                              ("duplicate", "duplicate (same id and second)")):
            rows.append([f"dropped: {words}", count(rd.get(reason, 0))])
        rows.append(["rows kept", count(counts.get("rows_kept"))])
        if counts.get("accuracy_unknown"):
            rows.append(["accuracy unusable (kept, accuracy unknown)", count(counts["accuracy_unknown"])])
    rows += [["users", count(data.get("users"))], ["fixes audited", count(data.get("fixes"))],
             ["median fixes per user", num(data.get("median_fixes_per_user"))],
             ["median days with a fix per user", num(data.get("median_active_days_per_user"), 1)],
             ["median span (first to last day) per user", num(data.get("median_span_days_per_user"), 1)],
             ["median interval between consecutive fixes (s)", num(data.get("median_interval_s"), 1)],
             ["median fixes per active user-day", num(data.get("median_fixes_per_active_day"), 1)]]
    doc.table(["", "count"], rows, note="Every dropped row is counted under its first reason; nothing else is "
                                         "changed. Rows read = rows kept + rows dropped.")
    reader = info.get("reader") or {}
    tz_txt = ""
    if reader.get("tz_source") == "given":
        tz_txt = (f"Local time: {reader.get('tz')}, as a fixed offset of UTC{info['utc_offset_s'] / 3600:+g} h (the "
                  "offset at the data's median time; daylight saving is not modelled"
                  + ("; the offset does change within these data, so part of them has nights shifted by an hour)."
                     if reader.get("tz_offset_varies") else ")."))
    elif reader:
        tz_txt = (f"Local time: no --tz given, so the offset is the data's mean solar time, UTC"
                  f"{info['utc_offset_s'] / 3600:+g} h; pass --tz with the IANA zone for exact nights.")
    method_txt = {"staypoints": "time-based stay points (dense GPS log)", "dbscan": "DBSCAN on pings (sparse pings)"}
    doc.ul([
        f"Format: {reader.get('format', 'frame')}" + (f", {reader.get('files')} file(s)" if reader.get("files") else "")
        + (f"; columns used: {', '.join(f'{r} = {c}' for r, c in (reader.get('columns') or {}).items() if c)}"
           if reader.get("columns") else ""),
        f"Projection: {info.get('crs')} ({'given' if reader.get('crs_source') == 'given' else 'UTM zone of the data'})",
        tz_txt,
        f"Places and home/work: {method_txt.get(info.get('method'), info.get('method'))}; rule: {info.get('method_rule')}",
        ("Unit: pseudonyms (a defense changed the identifiers, so a user may count several times)"
         if info.get("unit") == "pseudonym" else "Unit: users (one identifier = one user)"),
    ])

    pngs = {}
    u = res["uniqueness"]
    doc.h(2, "How many users are singled out", "uniqueness")
    pngs["uniqueness"] = _figure_png(plot_audit_uniqueness(u))
    doc.fig("uniqueness", "Share of users singled out",
            "Share of users singled out by each attack (bars; whiskers: 95% interval; n: users it rests on). "
            "Blue: reidsim's attacks; red: scikit-mobility's, share with risk 1.")
    rows = []
    for _, r in u[~u["attack"].str.startswith("register_")].iterrows():
        rows.append([ATTACK_LABELS.get(r["attack"], r["attack"]), r["setting"],
                     _METRIC_LABELS.get(r["metric"], r["metric"]),
                     pct(r["value"]) if r["metric"] != "mean_risk" else num(r["value"], 3),
                     pct_range(r["ci_low"], r["ci_high"]) if r["metric"] != "mean_risk" else
                     f"{num(r['ci_low'], 3)}–{num(r['ci_high'], 3)}",
                     count(r["n"]), count(r["n_short"])])
    doc.table(["attack", "setting", "measure", "share", "95% interval", "n", "n short"], rows,
              note="n short: users left out because their trace is too short for the setting (fewer than p points "
                   "or N cells), without an inferred home (and work), or (skmob) not assessed because their "
                   "background-knowledge instances exceeded the budget (a seeded random subset is assessed).")
    if (u["attack"] == "unicity").any():
        pngs["unicity"] = _figure_png(plot_audit_unicity(u))
        doc.fig("unicity", "Unicity of p random points",
                "Unicity against the number of points known, per cell size and time bin (95% intervals).")

    if info.get("register"):
        pngs.update(_register_section(doc, u, info["register"], n_users))

    doc.h(2, "Risk against days observed", "days")
    bd = res["risk_by_days"]
    pngs["risk_by_days"] = _figure_png(plot_audit_days(bd))
    doc.fig("risk_by_days", "Risk against days observed",
            "The headline measures computed on each user's first d local days only (95% bands).")
    if bd is not None and not bd.empty:
        keys = list(dict.fromkeys(zip(bd["attack"], bd["setting"])))
        rows = []
        for d, g in bd.groupby("days"):
            gi = g.set_index(["attack", "setting"])
            row = [str(int(d))]
            for key in keys:
                if key in gi.index:
                    r = gi.loc[key]
                    r = r.iloc[0] if isinstance(r, pd.DataFrame) else r
                    row.append(f"{pct(r['value'])} (n={count(r['n'])})")
                else:
                    row.append("n/a")
            rows.append(row)
        doc.table(["days"] + [f"{ATTACK_LABELS.get(a, a)}: {s}" for a, s in keys], rows)

    doc.h(2, "Inferred home and work", "inference")
    inf = res["inference"].set_index("metric")
    rows = []
    for m, words in (("home_known", "users with a home inferred"), ("work_known", "users with a workplace inferred"),
                     ("home_and_work_known", "users with both")):
        if m in inf.index:
            rows.append([words] + _share(inf.loc[m]))
    ip = info.get("inference") or {}
    rule = ""
    if ip:
        cover = (f" covered for at least {ip['min_overlap_s'] / 60:g} min" if info.get("method") == "staypoints"
                 else " with a ping")
        rule = (f" Home: the place{cover} on most distinct nights ({ip['night_start_h']:g}–{ip['night_end_h']:g} h, "
                f"at least {ip['min_home_nights']}); work: another place at least {ip['min_work_dist_m']:g} m away"
                f"{cover} on most working days ({ip['work_start_h']:g}–{ip['work_end_h']:g} h), at least "
                f"{ip['min_work_days']} of them and {100 * ip['min_work_share']:g}% of the observed ones.")
    doc.table(["", "share", "95% interval", "n"], rows,
              note="Where the homes are is never shown: only how many users have one." + rule)
    for m, words in (("median_home_nights", "median nights at the inferred home"),
                     ("median_work_days", "median working days at the inferred workplace")):
        if m in inf.index and inf.loc[m, "n"] > 0:
            r = inf.loc[m]
            doc.p(f"{words}: {num(r['value'], 1)} (95% interval {num(r['ci_low'], 1)}–{num(r['ci_high'], 1)}, "
                  f"n={count(r['n'])})")

    doc.h(2, "Where the users are (k-thresholded density)", "density")
    dens = res["density"]
    n_sup = int(data.get("density_cells_suppressed", 0) or 0)
    n_tot = int(data.get("density_cells_total", 0) or 0)
    pngs["density"] = _figure_png(plot_audit_density(dens, k, n_sup))
    doc.fig("density", "Density of users",
            f"Distinct users per {info['settings'].get('density_cell_m', 1000) / 1000:g} km cell; {n_sup:,} of "
            f"{n_tot:,} cells hold fewer than k = {k} users and are suppressed. Axes are kilometres from an "
            "arbitrary origin.")

    dt = res["defenses"]
    if info.get("defenses"):
        doc.h(2, "What the defenses changed", "defenses")
        doc.ul([f"{d['name']}: " + ", ".join(f"{k_}={v}" for k_, v in d["params"].items()) for d in info["defenses"]])
        pngs["defenses"] = _figure_png(plot_audit_defenses(dt))
        doc.fig("defenses", "Before and after the defenses", "Headline measures on the data as read (grey) and after "
                                                               "the defenses (green), 95% intervals.")
        rows = []
        keys = list(dict.fromkeys(zip(dt["attack"], dt["setting"])))
        for a, s in keys:
            b = _find(dt[dt["stage"] == "before"], a, s)
            f = _find(dt[dt["stage"] == "after"], a, s)
            if a == "data":
                rows.append([f"{s} kept", count(b["value"]) if b is not None else "n/a",
                             count(f["value"]) if f is not None else "n/a"])
            else:
                fmt = lambda r: f"{pct(r['value'])} ({pct_range(r['ci_low'], r['ci_high'])}, n={count(r['n'])})" \
                    if r is not None else "n/a"  # noqa: E731
                rows.append([f"{ATTACK_LABELS.get(a, a)}: {s}", fmt(b), fmt(f)])
        doc.table(["measure", "before", "after"], rows)

    doc.h(2, "Definitions and limits", "definitions")
    doc.ul(_definitions(info) + [
        "Days observed: each user's first d local days, counted from the local midnight before their first fix.",
        ("Register: the linkage above uses your register as the attacker's auxiliary data; a real attacker's "
         "register (people-search sites, voter files) may list more or fewer people, and other addresses."
         if info.get("register") else
         "No register: without names and addresses this audit measures how many users are singled out within the "
         "dataset, the first step of re-identification; whether a singled-out trace can be named depends on what "
         "else an attacker holds (reidsim audit --register links to your own register; reidsim run simulates it)."),
    ])
    doc.h(2, "Reproduce", "reproduce")
    opts = []
    if reader.get("format") in ("csv", "parquet", "geolife"):
        opts.append(f"--format {reader['format']}")
    if reader.get("tz_source") == "given":
        opts.append(f"--tz {reader.get('tz')}")
    if reader.get("crs_source") == "given":
        opts.append(f"--crs {info.get('crs')}")
    for d in info.get("defenses", []):
        opts.append("--defense " + d["name"] + ":" + ",".join(f"{k_}={v}" for k_, v in d["params"].items()))
    reg = info.get("register")
    if reg:
        opts.append("--register REGISTER")
        cols = (reg.get("reader") or {}).get("columns") or {}
        for role, col in cols.items():
            if col is not None:
                opts.append(f"--register-{role.replace('_', '-')} {shlex.quote(str(col))}")
    opts.append(f"--k {k}")
    seed = info.get("settings", {}).get("seed", 0)
    if seed:
        opts.append(f"--seed {seed}")
    doc.code("reidsim audit PINGS --out DIR " + " ".join(opts))
    return doc, pngs


def _clean_json(obj):
    if isinstance(obj, dict):
        return {str(k): _clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean_json(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return None if not math.isfinite(float(obj)) else float(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    return obj


def write_audit(out_dir, res: dict, *, counts: dict | None = None, overwrite: bool = False) -> dict:
    """Write the audit folder from :func:`sim.pipeline.audit.audit`'s result; returns the
    paths written.  See the module docstring for the layout and the guarantees."""
    from sim import __version__

    need = {"data", "uniqueness", "risk_by_days", "inference", "density", "defenses", "info"}
    if not isinstance(res, dict) or not need <= set(res):
        raise InputError(f"write_audit needs the dict returned by sim.pipeline.audit.audit (keys {sorted(need)}).")
    out = claim_audit_dir(out_dir, overwrite=overwrite)
    k = int(res["info"].get("settings", {}).get("k", 5))
    doc, pngs = _build(res, counts, k)
    stage = new_staging_dir(out)
    try:
        fig_paths = {}
        (stage / "figures").mkdir()
        for name, b in pngs.items():
            (stage / "figures" / f"{name}.png").write_bytes(b)
            fig_paths[name] = f"figures/{name}.png"
        (stage / "audit.md").write_text(render_md(doc, fig_paths), encoding="utf-8")
        (stage / "audit.html").write_text(render_html(doc, pngs, "reidsim audit"), encoding="utf-8")
        for name in ("data", "uniqueness", "risk_by_days", "inference", "density", "defenses"):
            write_table(res[name].reset_index(drop=True), stage / "tables" / name)
        counts_ok = {k_: v for k_, v in (counts or {}).items()}
        marker = {"reidsim_audit": __version__, "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(),
                  "k": k, "info": res["info"], "counts": counts_ok,
                  "tables": [f"tables/{n}.parquet" for n in ("data", "uniqueness", "risk_by_days", "inference",
                                                              "density", "defenses")]}
        write_json(_clean_json(marker), stage / AUDIT_MARKER)
        commit_staged(stage, out, marker=AUDIT_MARKER, remove=[e for e in AUDIT_ENTRIES if not (stage / e).exists()])
    finally:
        if stage.exists():
            import shutil

            shutil.rmtree(stage, ignore_errors=True)
    return {"html": str(out / "audit.html"), "md": str(out / "audit.md"), "json": str(out / AUDIT_MARKER),
            "tables": str(out / "tables"), "figures": str(out / "figures")}
