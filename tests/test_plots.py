"""sim.report.plots on the tables of a tiny real run (tests/_runfixture.py)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import shapely
from _runfixture import tiny_run
from matplotlib.collections import PolyCollection
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure

from sim.report import plots
from sim.core.errors import InputError


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from sim.api import load

    d = tiny_run(tmp_path_factory)
    a = d / "attacks"
    t = {p.stem: pd.read_parquet(p) for p in a.glob("*.parquet")}
    t["inferred"] = pd.read_parquet(d / "inferred.parquet")
    t["privacy"] = pd.read_parquet(d / "defenses" / "privacy.parquet")
    t["utility"] = pd.read_parquet(d / "defenses" / "utility.parquet")
    t["calibration"] = json.loads((d / "calibration.json").read_text())
    t["geofence_meta"] = json.loads((a / "geofence_meta.json").read_text())
    t["sim"] = load(d)
    return t


def _texts(fig):
    out = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        out += [t.get_text() for t in ax.texts] + [ax.get_title()]
        leg = ax.get_legend()
        if leg is not None:
            out += [t.get_text() for t in leg.get_texts()]
    for leg in fig.legends:
        out += [t.get_text() for t in leg.get_texts()]
    if fig._suptitle is not None:
        out.append(fig._suptitle.get_text())
    return out


def _bands(ax):
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


# ------------------------------------------------------------ time to identification
def test_ttid_one_line_and_band_per_group_in_percent(run):
    tt = run["time_to_identification"]
    fig = plots.plot_time_to_identification(tt)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert len(ax.lines) == 1 and len(_bands(ax)) == 1
    g = tt.sort_values("days")
    np.testing.assert_allclose(ax.lines[0].get_ydata(), 100 * g["value"].to_numpy())
    np.testing.assert_allclose(ax.lines[0].get_xdata(), g["days"].to_numpy())
    # a second (level, key) group adds one line and one band
    two = pd.concat([tt, tt.assign(level="block", value=tt["value"] / 2)], ignore_index=True)
    ax2 = plots.plot_time_to_identification(two).axes[0]
    assert len(ax2.lines) == 2 and len(_bands(ax2)) == 2


def test_ttid_into_given_axes_nan_and_empty(run):
    tt = run["time_to_identification"].copy()
    fig0 = Figure()
    ax = fig0.subplots()
    assert plots.plot_time_to_identification(tt, ax=ax) is fig0
    tt.loc[tt.index[0], ["value", "ci_low", "ci_high"]] = np.nan
    fig = plots.plot_time_to_identification(tt)
    assert np.isnan(fig.axes[0].lines[0].get_ydata()).sum() == 1
    empty = plots.plot_time_to_identification(tt.iloc[:0])
    assert not empty.axes[0].lines and any("no time-to-identification" in s for s in _texts(empty))
    with pytest.raises(InputError, match="missing column"):
        plots.plot_time_to_identification(tt.drop(columns="ci_low"))


# ------------------------------------------------------------------ anonymity sets
def test_anonymity_sets_panels(run):
    lk, per = run["linkage"], run["linkage_per_device"]
    levels = [lv for lv in plots.LEVEL_ORDER if lv in set(lk["level"])]
    keys = sorted(set(lk["key"]))
    fig = plots.plot_anonymity_sets(lk)
    assert len(fig.axes) == 2
    a1, a2 = fig.axes
    assert a1.get_yscale() == "symlog"
    assert sum(isinstance(c, ErrorbarContainer) for c in a1.containers) == len(keys)
    assert len(a2.patches) == len(levels) * len(keys)
    ide = lk[(lk.metric == "identified") & (lk.key == "home_work")].set_index("level").reindex(levels)
    bars = sorted(a2.patches, key=lambda p: p.get_x())[1::2]  # home_work is the second bar of each pair
    np.testing.assert_allclose([b.get_height() for b in bars], 100 * ide["value"].to_numpy())
    fig3 = plots.plot_anonymity_sets(lk, per)
    assert len(fig3.axes) == 3
    a3 = fig3.axes[2]
    tops = {}
    for p in a3.patches:
        x = round(p.get_x() + p.get_width() / 2, 6)
        tops[x] = tops.get(x, 0.0) + p.get_height()
    assert len(tops) == len(levels)
    np.testing.assert_allclose(list(tops.values()), 100.0)


def test_anonymity_sets_empty_and_nan(run):
    lk = run["linkage"].copy()
    fig = plots.plot_anonymity_sets(lk.iloc[:0])
    assert any("no linkage" in s for s in _texts(fig))
    lk.loc[lk.metric == "median_set_size", ["ci_low", "ci_high"]] = np.nan
    assert isinstance(plots.plot_anonymity_sets(lk), Figure)
    fig0 = Figure()
    ax = fig0.subplots()
    assert plots.plot_anonymity_sets(run["linkage"], ax=ax) is fig0 and len(fig0.axes) == 1


# ------------------------------------------------------------------------ unicity
def test_unicity_lines_bands_and_fit(run):
    u, pl = run["unicity"], run["unicity_power_law"]
    hmin = u["h_h"].min()
    n_v = u.loc[u.h_h == hmin, "v_m"].nunique()
    n_h = u["h_h"].nunique()
    fig = plots.plot_unicity(u, pl)
    a1, a2 = fig.axes
    assert len(a1.lines) == n_v and len(_bands(a1)) == n_v
    dashed = [ln for ln in a2.lines if ln.get_linestyle() == "--"]
    assert len(dashed) == n_h
    assert all(np.nanmax(ln.get_ydata()) <= 100 for ln in dashed)
    # without the power law: no fit line; a chosen subset: one line per combination
    fig2 = plots.plot_unicity(u, subset=[(u.v_m.max(), u.h_h.max())])
    assert not [ln for ln in fig2.axes[1].lines if ln.get_linestyle() == "--"]
    assert len(fig2.axes[0].lines) == 1


def test_unicity_empty_and_nan_fit(run):
    u, pl = run["unicity"], run["unicity_power_law"].copy()
    pl["exponent"] = np.nan
    fig = plots.plot_unicity(u, pl)
    assert not [ln for ln in fig.axes[1].lines if ln.get_linestyle() == "--"]
    empty = plots.plot_unicity(u.iloc[:0])
    assert any("no unicity" in s for s in _texts(empty))


# -------------------------------------------------------------------- device trail
def _identified(run):
    per, inf = run["linkage_per_device"], run["inferred"]
    ok = per[(per.level == "building") & (per.key == "home_work") & per.identified]
    return sorted(ok.merge(inf[["pseudonym", "n_pings"]]).query("n_pings >= 20")["pseudonym"])


def test_device_trail_linked_shows_register_name(run):
    sim, per, inf = run["sim"], run["linkage_per_device"], run["inferred"]
    ps = _identified(run)[0]
    pid = int(per[(per.pseudonym == ps) & (per.level == "building") & (per.key == "home_work")]
              ["guess_person_id"].iloc[0])
    name = sim.register.set_index("person_id").loc[pid, "name"]
    fig = plots.plot_device_trail(sim.release, inf, sim.world, ps, sim.register, per)
    assert len(fig.axes) == 2
    texts = " ".join(_texts(fig))
    assert name in texts and "right person" in texts
    main = fig.axes[0]
    i = int(np.flatnonzero(sim.release.pseudonym == ps)[0])
    n = int(sim.release.offsets[i + 1] - sim.release.offsets[i])
    pings = [c for c in main.collections if c.get_offsets().shape[0] == n]
    assert len(pings) == 1  # every ping of the trace drawn once
    assert any(type(c).__name__ == "LineCollection" and len(c.get_segments()) for c in main.collections)


def test_device_trail_unlinked_and_unknown_home(run):
    sim, per, inf = run["sim"], run["linkage_per_device"], run["inferred"]
    b = per[(per.level == "building") & (per.key == "home_work")]
    not_unique = b.loc[~b.unique & (b.status == "ok"), "pseudonym"]
    no_home = inf.loc[inf.home_x_m.isna(), "pseudonym"]
    for ps in list(not_unique[:1]) + list(no_home[:1]):
        fig = plots.plot_device_trail(sim.release, inf, sim.world, ps, sim.register, per, color_by="time")
        texts = " ".join(_texts(fig))
        assert "not linked" in texts and "register:" not in texts
    # without register/linkage tables and into one given axes
    fig0 = Figure()
    ax = fig0.subplots()
    out = plots.plot_device_trail(sim.release, inf, sim.world, sim.release.pseudonym[0], ax=ax)
    assert out is fig0 and len(fig0.axes) == 1
    with pytest.raises(InputError, match="not in the release"):
        plots.plot_device_trail(sim.release, inf, sim.world, "no-such-pseudonym")
    with pytest.raises(InputError, match="color_by"):
        plots.plot_device_trail(sim.release, inf, sim.world, sim.release.pseudonym[0], color_by="speed")


# ------------------------------------------------------------------------- geofence
def test_geofence_lines_to_homes(run):
    sim, inf = run["sim"], run["inferred"]
    gm, per = run["geofence_meta"], run["geofence_per_pseudonym"]
    poly = shapely.from_wkt(gm["polygon_wkt"])
    fig = plots.plot_geofence(sim.release, poly, gm["t_start_s"], gm["t_end_s"], per, inf, sim.world)
    ax = fig.axes[0]
    n_home = int(per[["home_x_m", "home_y_m"]].notna().all(axis=1).sum())
    c = poly.centroid
    spokes = [ln for ln in ax.lines if np.allclose(ln.get_xydata()[0], [c.x, c.y])]
    assert len(spokes) == n_home
    assert f"{len(per)} device" in ax.get_title()
    # without home columns: homes come from the inferred table
    fig2 = plots.plot_geofence(sim.release, poly, gm["t_start_s"], gm["t_end_s"], per[["pseudonym"]], inf,
                               sim.world)
    assert len([ln for ln in fig2.axes[0].lines if np.allclose(ln.get_xydata()[0], [c.x, c.y])]) == n_home
    empty = plots.plot_geofence(sim.release, poly, gm["t_start_s"], gm["t_end_s"], per.iloc[:0], inf, sim.world)
    assert "0 devices" in empty.axes[0].get_title()


# ------------------------------------------------------------------ privacy-utility
def test_privacy_utility_points_and_aggregate_panel(run):
    priv, util = run["privacy"], run["utility"]
    fig = plots.plot_privacy_utility(priv, util)
    trace_defs = priv.loc[(priv.metric == "linkage_identified") & (priv.level == "building")
                          & (priv.key == "home_work")]
    agg = set(priv.loc[priv.metric == "membership_advantage", "defense"])
    assert agg  # the main job evaluates aggregate_k
    assert len(fig.axes) == 2
    main, side = fig.axes
    ys = trace_defs.merge(util[util.metric == "od_l1"][["defense", "params", "value"]],
                          on=["defense", "params"], suffixes=("", "_u"))
    distinct = ys[["value", "value_u"]].round(9).drop_duplicates()
    n_err = sum(isinstance(c, ErrorbarContainer) for c in main.containers)
    assert n_err == len(distinct)
    labels = [t.get_text() for t in main.texts]
    assert any("none" in s and "salt" in s for s in labels)  # identical points share one label
    assert sum(isinstance(c, ErrorbarContainer) for c in side.containers) == len(agg)
    assert any("membership" in s for s in _texts(fig))


def test_privacy_utility_without_aggregate_nan_and_empty(run):
    priv, util = run["privacy"], run["utility"].copy()
    trace_only = priv[~priv.metric.str.startswith("membership")]
    fig = plots.plot_privacy_utility(trace_only, util)
    assert len(fig.axes) == 1
    util.loc[(util.defense == "grid") & (util.metric == "od_l1"), "value"] = np.nan
    fig2 = plots.plot_privacy_utility(trace_only, util)
    assert any("n/a" in s for s in _texts(fig2))
    fig0 = Figure()
    ax = fig0.subplots()
    assert plots.plot_privacy_utility(priv, util, ax=ax) is fig0 and len(fig0.axes) == 1
    empty = plots.plot_privacy_utility(priv.iloc[:0], util.iloc[:0])
    assert any("no defense result" in s for s in _texts(empty))
    other = plots.plot_privacy_utility(priv, run["utility"], privacy_metric="unicity", utility_metric="visits_l1")
    assert isinstance(other, Figure)


# ---------------------------------------------------------------------- calibration
def test_calibration_reference_lines_and_missing(run):
    fig = plots.plot_calibration(run["calibration"])
    a1, a2 = fig.axes
    assert len(a1.lines) == 2 and len(a2.lines) == 2
    np.testing.assert_allclose(a1.lines[0].get_ydata(), run["calibration"]["distinct_places_by_day"])
    fig2 = plots.plot_calibration({})
    assert all(len(a.lines) == 0 for a in fig2.axes)
    with pytest.raises(InputError):
        plots.plot_calibration([1, 2])


def test_device_trail_night_window_is_a_parameter(run):
    sim, inf = run["sim"], run["inferred"]
    ps = _identified(run)[0]
    default = " ".join(_texts(plots.plot_device_trail(sim.release, inf, sim.world, ps)))
    assert "night ping, 22–06 h" in default
    other = " ".join(_texts(plots.plot_device_trail(sim.release, inf, sim.world, ps, night_hours=(20.5, 7.0))))
    assert "night ping, 20.5–07 h" in other and "22–06" not in other
    n_def = int(default.split("night ping, 22–06 h (")[1].split(")")[0].replace(",", ""))
    n_oth = int(other.split("night ping, 20.5–07 h (")[1].split(")")[0].replace(",", ""))
    assert n_oth >= n_def  # a wider window holds at least as many pings


# ------------------------------------------------------------ helpers shared with the report
def test_public_helpers():
    from sim.report import document

    assert plots.params_label('{"cell_m": 1000.0, "salt": "secret"}') == "cell_m=1000"
    assert plots.params_label({"k": 10, "level": "tract", "bin_h": 1.0}) == "k=10, level=tract, bin_h=1"
    assert plots.params_label("{}") == "" and plots.params_label(None) == ""
    assert plots.params_label("not json") == "not json"
    assert plots.local_str(0, 3600, "%H:%M") == "01:00"
    assert plots.local_str(86400 * 2 + 7200, -3600) == "Sat 03 Jan 01:00"
    assert plots.KEY_LABELS == {"home": "home only", "home_work": "home + work"}
    # one copy of each, used by the report too
    assert document.KEY_LABELS is plots.KEY_LABELS
    assert document.params_label is plots.params_label and document.local_str is plots.local_str
    for name in ("_params_label", "_local_str", "_KEY_LABEL", "_f"):
        assert not hasattr(plots, name), name
