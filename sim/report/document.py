"""The run report: ``figures/*.png``, ``report.md`` and a self-contained ``report.html``.

:func:`write_report` reads everything from a run folder written by
:func:`sim.pipeline.main.run_main` (layout in its module docstring) and writes

* ``figures/<name>.png`` — one file per figure of :data:`FIGURES`;
* ``report.md`` — Markdown, figures referenced by relative path;
* ``report.html`` — one file that opens offline: PNGs embedded as base64 data URIs,
  inline CSS, no script, font or link to anything outside the file.

The text is built once as a list of blocks and rendered to both formats, so they say
the same thing.  Every figure is rendered in memory first and every file is written
atomically (temporary name, then ``os.replace``) only when all of them succeeded: a
failure leaves the previous report untouched.

Every setting the report describes (inference, attacks, scenario) is read from the
folder's ``run.json`` (its ``settings`` and ``scenario`` blocks), never from this
version's defaults: a folder whose run.json has no ``settings`` (written by an older
reidsim) is an :class:`~sim.core.errors.InputError`.

The report contains no personal data beyond the synthetic register's names (the
device map names one synthetic person); coordinates appear only as metres of the
local projection on the maps, pseudonyms only shortened.
"""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from sim.core.errors import InputError
from sim.attacks.ladder import RUNGS
from sim.core.files import atomic_path, read_dataset_id
from sim.core.storage import parquet_file, read_schema, read_table
from sim.core.fmt import NA, count, is_finite, num, num_auto, num_range, pct, pct_ci, pct_range
from sim.metrics.calibration import SANE_RANGES
from sim.release.dataset import DEFAULT_SAMPLE_DEVICES, check_derived, keep_pseudonyms, load_sample, register_names
from sim.report import plots
from sim.report.page import DPI, Doc, png, render_html, render_md
from sim.report.plots import KEY_LABELS, local_str, params_label

log = logging.getLogger(__name__)

__all__ = ["write_report", "FIGURES", "scenario_toml", "pick_trail_device"]

#: figure name -> title, in report order
FIGURES = {
    "ladder": "How far each attacker gets",
    "waterfall": "Where identification is lost",
    "sensitivity": "How the headline depends on the assumptions",
    "unicity_panel": "Unicity against the size of the data set",
    "time_to_identification": "How fast pseudonyms become people",
    "anonymity_sets": "Anonymity-set sizes per zone level",
    "unicity": "Unicity vs points known and resolution",
    "device_trail": "One device's \"anonymous\" trail leads home",
    "geofence": "Geofence: from a gathering to homes",
    "privacy_utility": "Privacy vs utility of the defenses",
    "calibration": "Calibration of the simulated mobility",
}

#: minimum pings of the device shown on the trail map
TRAIL_MIN_PINGS = 50


# ============================================================================ loading
def _read_json(path: Path, required=False):
    if not path.exists():
        if required:
            raise InputError(f"{str(path)!r} is missing; run the main job first "
                             "(`reidsim run --out DIR` or sim.api.run_main) or pass the run folder.")
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise InputError(f"{str(path)!r} is not valid JSON ({e}); re-run the step that writes it.") from e


#: what the report reads of the per-device linkage table (8 M rows at 1 M devices): these
#: columns, the text ones as categories
_LPD_COLUMNS = ("pseudonym", "level", "key", "status", "set_size", "unique", "identified", "guess_person_id")
_LPD_CATEGORIES = ("pseudonym", "level", "key", "status")
#: what the anonymity-set distribution reads of every row of linkage_per_device
_LPD_SIZE_COLUMNS = ("level", "key", "status", "set_size")


def _read_table(path: Path, dataset_id: str | None = None, columns=None, categories=(), pseudonyms=None):
    """A table of the run folder; a Parquet table that records another dataset_id than
    ``dataset_id`` (the folder's) is refused.  ``columns``: only those (of the ones the
    table has); ``categories``: text columns read as pandas categories (far smaller than
    one string per row on a large table); ``pseudonyms``: only the rows of those
    pseudonyms (filtered as the file is read)."""
    if path.exists():
        recorded = read_dataset_id(path)
        if dataset_id is not None and recorded is not None and recorded != dataset_id:
            raise InputError(
                f"{str(path)!r} was computed from another dataset (dataset_id {recorded!r}, the "
                f"folder's is {dataset_id!r}); re-run `reidsim run` (or `reidsim attack`) on this folder.")
        if columns is None and not categories and pseudonyms is None:
            return pd.read_parquet(path)
        have = read_schema(path).names
        cols = [c for c in (columns or have) if c in have]
        dictionary = [c for c in categories if c in cols]
        if pseudonyms is None or "pseudonym" not in have:
            return read_table(path, columns=cols, read_dictionary=dictionary).to_pandas()
        return _rows_of(path, cols, dictionary, pseudonyms).to_pandas()
    csv = path.with_suffix(".csv")
    if csv.exists():
        t = pd.read_csv(csv)
        if pseudonyms is not None and "pseudonym" in t.columns:
            t = t[t["pseudonym"].astype(str).isin(pd.Index(pseudonyms).astype(str))].reset_index(drop=True)
        return t if columns is None else t[[c for c in columns if c in t.columns]]
    return None


def _rows_of(path: Path, columns: list, dictionary: list, pseudonyms):
    """The rows of ``pseudonyms`` of a Parquet table, read one row group at a time (each
    decided on its pseudonym dictionary, :func:`sim.release.dataset.keep_pseudonyms`), so
    memory is one row group's, not the table's (Arrow's ``filters`` read held 1.7 GB for
    20,000 of 8 M rows)."""
    import pyarrow as pa

    names = np.sort(np.asarray([str(p) for p in pseudonyms], dtype=object))
    f = parquet_file(path)
    read = list(dict.fromkeys([*columns, "pseudonym"]))
    kept = [keep_pseudonyms(f.read_row_group(i, columns=read, use_pandas_metadata=False), names)
            for i in range(f.num_row_groups)]
    kept = [t.select(columns) for t in kept if t.num_rows] or [f.schema_arrow.empty_table().select(columns)]
    t = pa.concat_tables(kept, promote_options="permissive")
    # text as categories where asked (the rows' own values), plain text elsewhere
    for c in t.column_names:
        ty = t.schema.field(c).type
        if c in dictionary and not pa.types.is_dictionary(ty):
            t = t.set_column(t.schema.get_field_index(c), c, t.column(c).dictionary_encode())
        elif c not in dictionary and pa.types.is_dictionary(ty):
            t = t.set_column(t.schema.get_field_index(c), c, t.column(c).cast(ty.value_type))
    return t


def _read_run(path: Path) -> dict:
    """run.json, checked for the ``settings`` block the report describes the run from."""
    run = _read_json(path, required=True)
    if not isinstance(run, dict):
        raise InputError(f"{str(path)!r} is not a run.json object; re-run `reidsim run --out DIR`.")
    st = run.get("settings")
    if not isinstance(st, dict):
        raise InputError(f"{str(path)!r} has no 'settings' block: the folder was written by an older reidsim, "
                         "whose run.json does not record the settings the run used. Re-run `reidsim run "
                         "--out DIR` (or sim.api.run_main) with this version to get a report.")
    missing = [k for k in ("inference", "attacks") if not isinstance(st.get(k), dict)]
    if missing:
        raise InputError(f"{str(path)!r}: settings lack {missing}; the folder was written by an older reidsim. "
                         "Re-run `reidsim run --out DIR` with this version to get a report.")
    return run


def _load(d: Path, simulation=None) -> dict:
    run = _read_run(d / "run.json")
    if (d / "manifest.json").exists():  # tables derived from another dataset are refused
        check_derived(d, run.get("dataset_id"), "run.json")
    did = run.get("dataset_id")
    data = {"dir": d, "run": run,
            "manifest": _read_json(d / "manifest.json") or {},
            "calibration": _read_json(d / "calibration.json"),
            "summary": _read_json(d / "attacks" / "summary.json") or {},
            "geofence_meta": _read_json(d / "attacks" / "geofence_meta.json")}
    for name in ("linkage", "time_to_identification", "unicity", "unicity_power_law",
                 "topn", "known_points", "geofence", "geofence_per_pseudonym", "relink", "ladder",
                 "waterfall", "sensitivity", "unicity_panel", "topn_panel"):
        data[name] = _read_table(d / "attacks" / f"{name}.parquet", did)
    data["privacy"] = _read_table(d / "defenses" / "privacy.parquet", did)
    data["utility"] = _read_table(d / "defenses" / "utility.parquet", did)
    if simulation is None and (d / "pings").exists() and (d / "world").exists():
        # the maps need pings in memory: a seeded device sample on a large release
        simulation = load_sample(d, DEFAULT_SAMPLE_DEVICES)
    data["sim"] = simulation
    # a sampled Simulation (sim.release.dataset.load_sample) holds some devices' pings: the
    # maps show those devices only, so of the per-device tables only their rows are read,
    # and of linkage_per_device's (millions on a large release) only the set sizes
    held = None if simulation is None or "sample" not in simulation.meta else simulation.release.pseudonym
    lpd = d / "attacks" / "linkage_per_device.parquet"
    data["linkage_per_device_held"] = _read_table(lpd, did, columns=_LPD_COLUMNS, categories=_LPD_CATEGORIES,
                                                  pseudonyms=held)
    data["linkage_per_device"] = data["linkage_per_device_held"] if held is None else \
        _read_table(lpd, did, columns=_LPD_SIZE_COLUMNS, categories=_LPD_SIZE_COLUMNS[:3])
    data["inferred"] = _read_table(d / "inferred.parquet", did, pseudonyms=held)
    data["geofence_per_pseudonym"] = _held_rows(data["geofence_per_pseudonym"], held)
    return data


def _held_rows(t, held):
    """The rows of ``t`` whose pseudonym is in ``held`` (all rows when ``held`` is None)."""
    if held is None or t is None:
        return t
    return t[t["pseudonym"].astype(str).isin(pd.Index(held).astype(str))].reset_index(drop=True)


# ========================================================================= formatting
def _row(df, **eq):
    """First row of ``df`` matching every column == value (None if none)."""
    if df is None or not len(df):
        return None
    m = np.ones(len(df), dtype=bool)
    for k, v in eq.items():
        if k not in df.columns:
            return None
        col = df[k]
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            m &= np.isclose(pd.to_numeric(col, errors="coerce").to_numpy(float), float(v))
        else:
            m &= (col == v).fillna(False).to_numpy(dtype=bool)
    r = df[m]
    return r.iloc[0] if len(r) else None


def _row_pct_ci(r):
    """"12.3% (11.0–13.6%)" of a tidy row (value, ci_low, ci_high)."""
    return pct_ci(r["value"], r.get("ci_low"), r.get("ci_high"))


def _share_row(label, r, nd=1):
    if r is None:
        return None
    return [label, pct(r["value"], nd), pct_range(r.get("ci_low"), r.get("ci_high"), nd), count(r.get("n"))]


def _size_row(label, r):
    if r is None:
        return None
    return [label, num(r["value"]), num_range(r.get("ci_low"), r.get("ci_high")), count(r.get("n"))]


def _key_words(key):
    return KEY_LABELS.get(key, str(key))


# ========================================================================== figures
def pick_trail_device(linkage_per_device, inferred, level="building", key="home_work",
                      min_pings=TRAIL_MIN_PINGS):
    """The pseudonym shown on the trail map, chosen deterministically.

    The first pseudonym (string order) that is identified (unique and correct) at
    ``level``/``key`` and has ``>= min_pings`` pings; failing that, the first uniquely
    linked one; then the first with an inferred home; then the one with most pings.
    Returns None when there is no pseudonym.
    """
    if inferred is None or not len(inferred):
        return None
    inf = inferred
    if "window_days" in inf.columns:
        inf = inf[inf["window_days"] == inf["window_days"].max()]
    npings = inf.set_index("pseudonym")["n_pings"] if "n_pings" in inf.columns else None
    enough = set(npings[npings >= min_pings].index) if npings is not None else set(inf["pseudonym"])
    lpd = linkage_per_device
    if lpd is not None and len(lpd):
        sel = lpd[(lpd["level"] == level) & (lpd["key"] == key)] if {"level", "key"} <= set(lpd.columns) else lpd
        for col in ("identified", "unique"):
            if col in sel.columns:
                c = sorted(p for p in sel.loc[sel[col].astype(bool), "pseudonym"] if p in enough)
                if c:
                    return c[0]
    c = sorted(p for p in inf.loc[inf["home_x_m"].notna(), "pseudonym"] if p in enough)
    if c:
        return c[0]
    if npings is not None and len(npings):
        return sorted(npings[npings == npings.max()].index)[0]
    return sorted(inf["pseudonym"])[0]


def _ttid_level_key(data):
    """(level, key) of the time-to-identification curve: from its table, else the run's
    attack settings."""
    t = data.get("time_to_identification")
    if t is not None and len(t) and {"level", "key"} <= set(t.columns):
        return str(t["level"].iloc[0]), str(t["key"].iloc[0])
    a = _settings(data, "attacks")
    return str(a.get("ttid_level", "building")), str(a.get("ttid_key", "home_work"))


def _settings(data, part) -> dict:
    """``run.json["settings"][part]`` (checked to exist by :func:`_read_run`)."""
    return (data["run"].get("settings") or {}).get(part) or {}


def _render_figures(data) -> tuple[dict, dict]:
    """{name: PNG bytes} and {name: facts for the captions} (skips what cannot be drawn)."""
    import shapely


    pngs, facts = {}, {}
    if data["ladder"] is not None and len(data["ladder"]):
        pngs["ladder"] = png(plots.plot_ladder(data["ladder"]))
    if data["waterfall"] is not None and len(data["waterfall"]):
        ceil = (data["run"].get("headline_figures") or {}).get("ceilings")
        pngs["waterfall"] = png(plots.plot_waterfall(data["waterfall"], ceil))
    if data["sensitivity"] is not None and len(data["sensitivity"]):
        pngs["sensitivity"] = png(plots.plot_sensitivity(data["sensitivity"], "named",
                                                          "share of devices named uniquely and correctly"))
    if data["unicity_panel"] is not None and len(data["unicity_panel"]):
        pngs["unicity_panel"] = png(plots.plot_panel_curve(data["unicity_panel"]))
    if data["time_to_identification"] is not None:
        pngs["time_to_identification"] = png(plots.plot_time_to_identification(data["time_to_identification"]))
    if data["linkage"] is not None:
        pngs["anonymity_sets"] = png(plots.plot_anonymity_sets(data["linkage"], data["linkage_per_device"]))
    if data["unicity"] is not None:
        pngs["unicity"] = png(plots.plot_unicity(data["unicity"], data["unicity_power_law"]))
    simulation = data["sim"]
    # on a sampled Simulation the per-device tables hold the sample's rows (_load)
    if simulation is not None and data["inferred"] is not None and simulation.release.n_traces:
        level, key = _ttid_level_key(data)
        ps = pick_trail_device(data["linkage_per_device_held"], data["inferred"], level, key)
        if ps is not None:
            register = _named_register(data, simulation.register, ps)
            pngs["device_trail"] = png(plots.plot_device_trail(
                simulation.release, data["inferred"], simulation.world, ps, register,
                data["linkage_per_device_held"],
                level=level, key=key, night_hours=_night_hours(data)))
            facts["device_trail"] = _trail_facts(data, ps, level, key, register)
    gm = data["geofence_meta"]
    if simulation is not None and gm and data["geofence_per_pseudonym"] is not None:
        poly = shapely.from_wkt(gm["polygon_wkt"])
        pngs["geofence"] = png(plots.plot_geofence(simulation.release, poly, int(gm["t_start_s"]), int(gm["t_end_s"]),
                                                    data["geofence_per_pseudonym"], data["inferred"],
                                                    simulation.world))
        facts["geofence"] = {"radius_m": math.sqrt(poly.area / math.pi),
                             "utc_offset_s": simulation.release.utc_offset_s, **gm}
        if "sample" in simulation.meta:
            facts["geofence"]["sample"] = simulation.meta["sample"]
    if data["privacy"] is not None and data["utility"] is not None:
        pngs["privacy_utility"] = png(plots.plot_privacy_utility(data["privacy"], data["utility"]))
    if data["calibration"]:
        pngs["calibration"] = png(plots.plot_calibration(data["calibration"]))
    return pngs, facts


def _night_hours(data):
    """The attacker's night window (start, end) in local hours, from the run's inference
    settings (the trail map colours night pings with it)."""
    inf = _settings(data, "inference")
    st, en = inf.get("night_start_h"), inf.get("night_end_h")
    return (float(st), float(en)) if is_finite(st) and is_finite(en) else plots.NIGHT_HOURS


def _named_register(data, register, ps):
    """``register``, or, when it was read without names (a device sample,
    :func:`sim.release.dataset.load_sample`), its rows of the persons ``ps`` is linked to
    with their names read from the run's register file."""
    lpd = data["linkage_per_device_held"]
    if register is None or "name" in register.columns or lpd is None:
        return register
    guess = lpd.loc[lpd["pseudonym"] == ps, "guess_person_id"].to_numpy()
    rows = register[register["person_id"].isin(guess[guess >= 0])].copy()
    names = register_names(data["dir"], rows["person_id"].to_numpy())
    if names:
        rows["name"] = [names.get(int(i), "") for i in rows["person_id"]]
    return rows


def _trail_facts(data, ps, level, key, register):
    out = {"pseudonym": ps, "level": level, "key": key}
    lpd = data["linkage_per_device_held"]
    if lpd is not None:
        r = lpd[(lpd["pseudonym"] == ps) & (lpd["level"] == level) & (lpd["key"] == key)]
        if len(r):
            r = r.iloc[0]
            out.update(unique=bool(r.get("unique", False)), identified=bool(r.get("identified", False)),
                       set_size=int(r.get("set_size", -1)))
            if out["unique"] and register is not None and int(r["guess_person_id"]) >= 0:
                reg = register[register["person_id"] == int(r["guess_person_id"])]
                if len(reg) and "name" in reg.columns:
                    out["name"] = str(reg["name"].iloc[0])
    inf = data["inferred"]
    row = inf[inf["pseudonym"] == ps]
    if len(row):
        out["n_pings"] = int(row["n_pings"].iloc[-1]) if "n_pings" in row.columns else None
        out["home_nights"] = int(row["home_nights"].iloc[-1]) if "home_nights" in row.columns else None
        out["work_days"] = int(row["work_days"].iloc[-1]) if "work_days" in row.columns else None
    return out


# ============================================================================ content
def scenario_toml(scenario: dict) -> str:
    """The scenario dict as TOML that ``Scenario.from_toml`` reads back (None omitted)."""
    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        return json.dumps(str(v))

    lines, tables = [], []
    for k, v in scenario.items():
        if isinstance(v, dict):
            tables.append((k, v))
        elif v is not None:
            lines.append(f"{k} = {val(v)}")
    for k, sub in tables:
        lines.append("")
        lines.append(f"[{k}]")
        lines += [f"{kk} = {val(vv)}" for kk, vv in sub.items() if vv is not None]
    return "\n".join(lines) + "\n"


def _ladder_rows(data):
    """The headline's figures: per window shown, named and narrowed to k by the strongest
    candidate-set rung, then the ceilings (all from run.json and the ladder table)."""
    head = data["run"].get("headline_figures") or {}
    lad = data["ladder"]
    rung, k = head.get("rung"), head.get("k", 5)
    rows = []
    if lad is None or rung is None:
        return rows
    t = lad[(lad["rung"] == rung) & (lad["unit"] == "device")]
    days = sorted(t["days"].unique())
    for d in dict.fromkeys(x for x in (days[0], 7, days[-1]) if x in days):
        s = "s" if d != 1 else ""
        rows.append(_share_row(f"Devices named uniquely and correctly after {int(d)} day{s}",
                               _row(t, days=d, metric="named")))
        rows.append(_share_row(f"Devices narrowed to {k} or fewer people, owner among them, after {int(d)} day{s}",
                               _row(t, days=d, metric="narrowed_k", k=float(k))))
    rows.append(_share_row(f"Devices named wrongly (a single candidate who is not the owner), {int(days[-1])} days",
                           _row(t, days=days[-1], metric="wrong")))
    for key, label in (("ceiling_home", "Ceiling: owner listed in the register with the right home address"),
                       ("ceiling_exact", "Ceiling of the exact home + work join: employer listed too")):
        c = (head.get("ceilings") or {}).get(key)
        if c:
            rows.append(_share_row(label, c))
    return rows


def _headline_rows(data):
    rows = _ladder_rows(data)
    tt = data["time_to_identification"]
    level, key = _ttid_level_key(data)
    if tt is not None and len(tt):
        t = tt.sort_values("days")
        for d in dict.fromkeys([int(t["days"].iloc[0]), 7, int(t["days"].iloc[-1])]):
            r = _row(t, days=d)
            if r is not None:
                rows.append(_share_row(f"Devices tied to the right named person after {d} day{'s' if d != 1 else ''} "
                                       f"({_key_words(key)}, {level} level)", r))
    lk = data["linkage"]
    if lk is not None:
        rows.append(_share_row("Identified from home + work, block level (a few hundred residents)",
                               _row(lk, metric="identified", level="block", key="home_work")))
        rows.append(_share_row("Identified from the home alone, building level",
                               _row(lk, metric="identified", level="building", key="home")))
        rows.append(_share_row(f"Wrong person named: unique but wrong match ({_key_words(key)}, {level})",
                               _row(lk, metric="wrong_unique", level=level, key=key)))
        for lv in ("block", "tract", "district"):
            rows.append(_size_row(f"Median anonymity set (people), home + work, {lv} level",
                                  _row(lk, metric="median_set_size", level=lv, key="home_work")))
    u = data["unicity"]
    if u is not None and len(u):
        v, h = _unicity_setting(u)
        for p in (4, 2):
            rows.append(_share_row(f"Unicity: {p} random points of a trace, {v:,.0f} m cells, {h:g} h bins",
                                   _row(u, p=p, v_m=v, h_h=h)))
    tn = data["topn"]
    if tn is not None:
        rows.append(_share_row("Top-2 most pinged blocks are unique to the device",
                               _row(tn, metric="unique", level="block", N=2)))
    kp = data["known_points"]
    if kp is not None:
        for m, s in ((2, 0.0), (2, 100.0)):
            r = _row(kp, metric="success", m=m, sigma_m=s)
            rows.append(_share_row(f"Known points: {m} sightings" + (f" (±{s:g} m)" if s else " (exact place)")
                                   + " single out the target's trace", r))
    gf = data["geofence"]
    if gf is not None and len(gf):
        r = _row(gf, metric="n_seen")
        if r is not None:
            rows.append(["Geofence: devices seen at the gathering", count(r["value"]), "", count(r["value"])])
        gk = str(gf["key"].iloc[0]) if "key" in gf.columns else "home"
        gl = str(gf["level"].iloc[0]) if "level" in gf.columns else "building"
        rows.append(_share_row(f"Geofence: attendees named correctly ({_GEOFENCE_KEY.get(gk, gk)}, {gl} level)",
                               _row(gf, metric="linked_correct")))
    rl = data["relink"]
    if rl is not None and len(rl):
        for _, r in rl.iterrows():
            rows.append(_share_row(f"Re-linking rotated IDs: {r.get('metric')}", r))
    return rows


def _unicity_setting(u):
    """(v_m, h_h) shown in the headline: the cell closest to 500 m at the finest time bin."""
    uu = u[u["metric"] == "unicity"] if "metric" in u.columns else u
    h = float(uu["h_h"].min())
    vs = np.sort(uu["v_m"].astype(float).unique())
    v = float(vs[np.argmin(np.abs(np.log(vs / 500.0)))])
    return v, h


def _cal_rows(data):
    rows = []
    u, lk, cal = data["unicity"], data["linkage"], data["calibration"] or {}
    if u is not None and len(u):
        v, h = _unicity_setting(u)
        r4, r2 = _row(u, p=4, v_m=v, h_h=h), _row(u, p=2, v_m=v, h_h=h)
        src = "de Montjoye et al. 2013, Sci. Rep. 3:1376 (1.5M phones, antenna cells, hourly)"
        if r4 is not None:
            rows.append([f"Unicity, 4 points ({v:,.0f} m, {h:g} h)", _row_pct_ci(r4), "95%", src])
        if r2 is not None:
            rows.append([f"Unicity, 2 points ({v:,.0f} m, {h:g} h)", _row_pct_ci(r2), "more than 50%", src])
        pl = data["unicity_power_law"]
        r = _row(pl, p=4) if pl is not None else None
        if r is not None and is_finite(r["exponent"]):
            se = f" ± {float(r['exponent_se']):.2f}" if is_finite(r.get("exponent_se")) else ""
            rows.append(["Decay of unicity with resolution (exponent, 4 points)",
                         f"{float(r['exponent']):.2f}{se}", "about −0.1", src])
    if lk is not None:
        for lv, ref, ref_lv in (("block", "1", "census block"), ("tract", "21", "census tract"),
                                ("district", "34,980", "county")):
            r = _row(lk, metric="median_set_size", level=lv, key="home_work")
            if r is not None:
                rows.append([f"Median anonymity set, home + work, {lv}",
                             f"{num(r['value'])} ({num_range(r['ci_low'], r['ci_high'])})",
                             f"{ref} ({ref_lv})", "Golle & Partridge 2009 (US workers)"])
    if is_finite(cal.get("commute_minutes_mean")):
        ci = (f" ({float(cal['commute_minutes_mean_ci_low']):.1f}–{float(cal['commute_minutes_mean_ci_high']):.1f}; "
              f"{count(cal.get('commute_n'))} commutes seen in the pings)"
              if is_finite(cal.get("commute_minutes_mean_ci_low")) else "")
        rows.append(["Mean one-way commute, measured from the pings", f"{float(cal['commute_minutes_mean']):.1f} min{ci}",
                     "27.6 min", "US Census Bureau, American Community Survey 2019"])
    if is_finite(cal.get("distinct_places_growth_exponent")):
        rows.append(["Growth of distinct places visited, S(t) ∝ t^μ",
                     f"μ = {float(cal['distinct_places_growth_exponent']):.2f}",
                     "μ ≈ 0.6", "Song et al. 2010, Nature Physics (phone records)"])
    if is_finite(cal.get("visit_rank_exponent")):
        rows.append(["Visit frequency by place rank, f_k ∝ k^−ζ (counted by visits)",
                     f"ζ = {float(cal['visit_rank_exponent']):.2f}", "ζ ≈ 1.2", "Song et al. 2010, Nature Physics"])
    if is_finite(cal.get("pings_per_device_day_mean")):
        rows.append(["Pings per device-day (mean; median)",
                     f"{float(cal['pings_per_device_day_mean']):.1f}; {num(cal.get('pings_per_device_day_median'))}",
                     "about 17 (Gravy/Venntel); over 90 claimed (Kochava)", "broker disclosures (DESIGN.md §9)"])
    tt = data["time_to_identification"]
    r = _row(tt, days=7) if tt is not None else None
    if r is not None:
        rows.append(["Identified after 7 days of data (context only: another attack)", pct(r["value"]),
                     "16.8% after 1 week", "Kondor et al. 2017 (matching two datasets)"])
    return rows


def _sanity_rows(cal):

    rows = []
    for k, (lo, hi) in SANE_RANGES.items():
        v = cal.get(k)
        ok = is_finite(v) and lo <= float(v) <= hi
        rows.append([k.replace("_", " "), num_auto(v),
                     f"{lo:g} – {hi:g}", "yes" if ok else "NO"])
    return rows


_DEF_UTIL = (("od_l1", "trip-flow error"), ("visits_l1", "visit-count error"),
             ("residents_l1_increase", "added residents error"), ("share_pings_kept", "pings kept"))


def _defense_rows(data, level, key):

    pv, ut = data["privacy"], data["utility"]
    rows = []
    order = list(dict.fromkeys(zip(pv["defense"], pv["params"])))
    for dname, params in order:
        p = pv[(pv["defense"] == dname) & (pv["params"] == params)]
        u = ut[(ut["defense"] == dname) & (ut["params"] == params)] if ut is not None else pd.DataFrame()
        r = _row(p, metric="linkage_identified", level=level, key=key)
        if r is None and level != "building":
            r = _row(p, metric="linkage_identified", level="building", key="home_work")
        un = p[(p["metric"] == "unicity")]
        un = un.sort_values("p").iloc[-1] if len(un) else None
        mem = _row(p, metric="membership_advantage")

        def uval(m):
            x = _row(u, metric=m)
            if x is None or not is_finite(x["value"]):
                return "n/a"
            return pct(x["value"], 0) if m == "share_pings_kept" else f"{float(x['value']):.2f}"

        rows.append([dname, params_label(params) or "–",
                     pct(r["value"]) if r is not None else "n/a (aggregate)",
                     pct_range(r["ci_low"], r["ci_high"]) if r is not None else "",
                     count(r["n"]) if r is not None else "",
                     (pct(un["value"], 0) if un is not None else "n/a"),
                     *[uval(m) for m, _ in _DEF_UTIL],
                     pct(mem["value"], 0) if mem is not None else "–"])
    return rows


def _inference_items(data):
    p = _settings(data, "inference")

    def g(k, spec="g"):
        v = p.get(k)
        return NA if v is None else format(v, spec)

    wd = p.get("work_weekdays")
    names = "Mon Tue Wed Thu Fri Sat Sun".split()
    days = ", ".join(names[int(d)] if 0 <= int(d) < 7 else str(d) for d in wd) if wd else NA
    share = {k: (NA if p.get(k) is None else f"{100 * float(p[k]):g}") for k in ("min_work_share",
                                                                                "max_work_night_share")}
    acc = p.get("max_accuracy_m", NA)
    return [
        (f"Pings whose reported accuracy is worse than {g('max_accuracy_m')} m are dropped." if acc is not None
         else "No ping is dropped for its reported accuracy."),
        f"Each pseudonym's pings are clustered into places (DBSCAN: neighbours within {g('eps_m')} m, "
        f"at least {g('min_samples')} pings to form a place).",
        f"Home = the place seen on the most distinct nights ({g('night_start_h', '02.0f')}:00–"
        f"{g('night_end_h', '02.0f')}:00 local time), ties broken by more night pings; at least "
        f"{g('min_home_nights')} night(s).",
        f"Work = among places at least {g('min_work_dist_m')} m from home, the one seen on the most distinct "
        f"working days ({days}, {g('work_start_h', '02.0f')}:00–{g('work_end_h', '02.0f')}:00); kept only if seen "
        f"on at least {g('min_work_days')} days and on at least {share['min_work_share']}% of the observed working "
        f"days, and on at most {share['max_work_night_share']}% as many nights as the home"
        + ("; no work without a home." if p.get("work_requires_home") else "."),
        "These are the inference settings this run used (run.json); the attacker code never sees the ground "
        "truth.",
    ]


def _join(values, spec="g"):
    """"1, 2, 3" of a list of settings (n/a when absent)."""
    if values is None:
        return NA
    if isinstance(values, (int, float, str)):
        values = [values]
    return ", ".join(format(v, spec) for v in values) if len(values) else NA


def _attack_items(data):
    a = _settings(data, "attacks")
    level, key = _ttid_level_key(data)
    tt = data["time_to_identification"]
    days = ", ".join(str(int(d)) for d in sorted(tt["days"].unique())) if tt is not None and len(tt) else "n/a"
    ns = a.get("unicity_n_sample")
    sampled = f"{int(ns):,} traces sampled" if ns is not None else "every trace used"
    nt = a.get("known_n_targets")
    targets = f"for {int(nt):,} target devices" if nt is not None else "for every device as the target"
    gl, gk = _geofence_level_key(data)
    return [
        "Home/work linkage (Golle & Partridge 2009): the inferred home (and work) is mapped to its zone at each "
        "level (building, block, tract, district); the anonymity set is the register persons with the same home "
        "zone (and work zone); identified = a set of exactly one person who is the device's true owner. "
        "Shares are over all released pseudonyms, including those whose home could not be inferred.",
        f"Time to identification: the same linkage ({_key_words(key)}, {level} level) using only the first d days "
        f"of pings, for d = {days}.",
        f"Unicity (de Montjoye et al. 2013): p = {_join(a.get('unicity_p'))} pings drawn at random from a "
        f"trace, each reduced to a square cell of v = {_join(a.get('unicity_v_m'))} m and a time "
        f"bin of h = {_join(a.get('unicity_h_h'))} h; unique if no other trace has all p points; {sampled}.",
        f"Top-N places (Zang & Bolot 2011): the set of a device's N most pinged zones (N = {_topn_n(data)}) at "
        "each level; unique if no other device has the same set.",
        f"Known points: {targets} the attacker knows m = {_join(a.get('known_m'))} sightings (place with "
        f"{_join(a.get('known_sigma_m'))} m error, time within ±{_known_jitter(data)}); success = the target's "
        "trace is the only one matching them all.",
        f"Geofence: every pseudonym with a ping inside a {_geofence_radius(data)} circle around a busy place "
        "(the centre of the block with the most distinct devices during an afternoon, a Saturday when the "
        f"window has one) is followed to its inferred home and linked by {_geofence_by(gl, gk)}.",
        "Re-linking of rotating IDs: pseudonyms of consecutive rotation periods joined by their inferred "
        "home/work (run only when the broker rotates IDs).",
        "Uncertainty: shares carry 95% Wilson score intervals and median anonymity-set sizes percentile "
        "bootstrap intervals over devices (the inference-accuracy medians use order-statistic intervals), "
        "over the n devices (pseudonyms) given; extrapolated unicity carries an interval from refitting the "
        "panel-size model. They cover the sampling of devices in this one synthetic city and seed, not the "
        "spread between cities or seeds; the sensitivity chart shows how the headline moves with the "
        "assumptions.",
    ]


def _geofence_by(level, key):
    """How the geofence attack links an attendee, in words ("home building alone")."""
    if (level, key) == ("building", "home"):
        return "home building alone"
    return f"{_GEOFENCE_KEY.get(key, key)} at {level} level"


def _geofence_level_key(data):
    """(level, key) the geofence attack linked by: the run's attack settings, else its table."""
    a = _settings(data, "attacks")
    gf = data.get("geofence")
    tl = str(gf["level"].iloc[0]) if gf is not None and len(gf) and "level" in gf.columns else "building"
    tk = str(gf["key"].iloc[0]) if gf is not None and len(gf) and "key" in gf.columns else "home"
    return str(a.get("geofence_level", tl)), str(a.get("geofence_key", tk))


def _topn_n(data):
    """The N of the top-N attack: the run's settings (topn_n), else its table."""
    a = _settings(data, "attacks")
    if a.get("topn_n") is not None:
        return _join(a["topn_n"])
    tn = data.get("topn")
    if tn is not None and len(tn) and "N" in tn.columns:
        return ", ".join(str(int(n)) for n in sorted(tn["N"].unique()))
    return NA


def _known_jitter(data):
    """The known-points time tolerance as "10 min": settings (known_jitter_s), else its table."""
    a = _settings(data, "attacks")
    j = a.get("known_jitter_s")
    kp = data.get("known_points")
    if j is None and kp is not None and len(kp) and "jitter_s" in kp.columns:
        j = kp["jitter_s"].iloc[0]
    return f"{float(j) / 60:g} min" if is_finite(j) else NA


def _geofence_radius(data):
    """Radius of the geofence circle: from geofence_meta.json, else the run's attack settings."""
    wkt = (data.get("geofence_meta") or {}).get("polygon_wkt") or _settings(data, "attacks").get(
        "geofence_polygon_wkt")
    if not wkt:
        return "small"
    import shapely

    poly = shapely.from_wkt(wkt)
    return f"{math.sqrt(poly.area / math.pi):,.0f} m"


def _world_items(data):
    run, man = data["run"], data["manifest"]
    s = run.get("scenario") or {}
    w, pop, g, ids, reg = (s.get(k, {}) for k in ("world", "population", "pings", "ids", "register"))
    rows = man.get("rows", {})
    simulation = data["sim"]
    zones = ""
    if simulation is not None:
        wz = simulation.world
        zones = (f" It has {wz.n_buildings:,} address points (buildings), {wz.n_zones('block'):,} blocks, "
                 f"{wz.n_zones('tract'):,} tracts and {wz.n_zones('district'):,} districts.")
    items = []
    if w:
        kind = "a real polygon file" if w.get("polygons") else (
            f"a synthetic metro area of radius {w.get('radius_km', 0):g} km with a dense core and "
            f"{w.get('n_subcentres')} sub-centres")
        items.append(f"World: {kind}; {count(rows.get('persons', w.get('residents')))} residents (about "
                     f"{w.get('residents_per_block')} per block, {w.get('blocks_per_tract')} blocks per tract, "
                     f"{w.get('tracts_per_district')} tracts per district), {w.get('jobs_per_resident'):g} jobs per "
                     f"resident.{zones}")
    if pop:
        items.append(f"Population: ages from ACS 2019 shares ({100 * pop.get('share_under_18', 0):g}% under 18, "
                     f"{100 * pop.get('share_65_plus', 0):g}% aged 65+); "
                     f"{100 * pop.get('employment_rate', 0):g}% of people aged 16-64 and "
                     f"{100 * pop.get('employment_rate_65_plus', 0):g}% of those 65+ employed, nobody under 16; "
                     f"{100 * pop.get('night_shift_share', 0):g}% of workers work nights; workplaces drawn with "
                     f"distance decay (scale {pop.get('commute_decay_km'):g} km) towards job density. Phones with "
                     f"an advertising ID only from age {pop.get('min_device_age')}, ownership by age as Pew 2021.")
        if "single_unit_share" in w:
            items.append(f"Housing: {100 * w['single_unit_share']:g}% of dwellings are single-household "
                         "buildings (ACS 2019), multi-unit buildings more likely where it is dense; households "
                         "of a multi-unit building share its address; indoor fixes are biased by a "
                         f"per-building offset of median {g.get('indoor_bias_median_m', 0):g} m.")
        items.append(f"Broker panel: {count(rows.get('devices'))} devices "
                     f"({100 * pop.get('device_share', 0):g}% of residents), {count(rows.get('pseudonyms'))} published "
                     f"pseudonyms, {count(rows.get('pings'))} pings.")
    if g:
        mean = g.get("median_pings_per_day", 0) * math.exp(g.get("rate_sigma", 0) ** 2 / 2)
        items.append(f"Observation window: {g.get('days')} days from {g.get('start_date')} (local time, UTC"
                     f"{w.get('utc_offset_h', 0):+g} h, no daylight saving).")
        items.append(f"Ping rate: each device's rate is log-normal with median {g.get('median_pings_per_day'):g} "
                     f"pings per day (sigma {g.get('rate_sigma'):g}, so mean about {mean:.0f}), capped at "
                     f"{g.get('max_pings_per_day'):g}; fewer pings while people sleep, more at commute and evening "
                     "peaks; pings come in app sessions of "
                     f"about {g.get('pings_per_session'):g} pings {g.get('session_gap_s'):g} s apart; on average "
                     f"{100 * g.get('silent_day_prob', 0):g}% of device-days have no ping at all.")
        items.append(f"GPS error: reported accuracy log-normal around {g.get('gps_median_accuracy_m'):g} m; "
                     f"{100 * g.get('coarse_fix_share', 0):g}% of fixes are coarse Wi-Fi/cell fixes around "
                     f"{g.get('coarse_median_accuracy_m'):g} m; positions are displaced consistently with the "
                     "reported accuracy.")
        items.append(f"Movement: daily schedules (home, work, other places chosen by exploration and "
                     f"preferential return, Song et al. 2010), trips at {g.get('travel_speed_kmh'):g} km/h door to "
                     f"door plus {g.get('trip_overhead_min'):g} min, with pings along the way.")
    if ids:
        salt = "salted" if ids.get("salt") else "unsalted"
        rot = f"a new ID every {ids['rotation_days']} days" if ids.get("rotation_days") else "never rotated"
        items.append(f"Published IDs: {salt} SHA-256 of the advertising ID, {rot}, daily reset probability "
                     f"{ids.get('daily_reset_prob', 0):g}.")
    if reg:
        def share(k):
            v = reg.get(k)
            return "per profile" if v is None else f"{100 * v:g}%"

        items.append(f"Attacker's register (public records), profile {reg.get('profile', 'people_search')!r}: "
                     f"adults only; lists {share('coverage')} of those it may list, {share('home_coverage')} of "
                     f"them with their home address, {share('error_rate')} of addresses wrong; employer "
                     f"address for {share('employer_coverage')} of listed employed people. Names are "
                     "synthetic labels.")
    return items


def _reproduce(data):
    """(command line, Python snippet, scenario TOML) that re-run this folder's scenario.

    Built from run.json's scenario alone: the TOML holds every parameter (seed
    included), so the commands do not depend on this version's defaults."""
    sdict = data["run"].get("scenario")
    toml = scenario_toml(sdict) if sdict else ""
    cmd = "reidsim run --config scenario.toml --out DIR   # scenario.toml: the block below"
    py = ("from sim.core.config import Scenario\nfrom sim.api import run_main\n"
          "run_main(Scenario.from_toml('scenario.toml'), 'DIR')")
    return cmd, py, toml


def _build(data, pngs, facts) -> Doc:
    run, man = data["run"], data["manifest"]
    s = run.get("scenario") or {}
    doc = Doc()
    name = s.get("name", "scenario")
    doc.h(1, f"Re-identification risk of \"anonymized\" location pings — scenario \"{name}\"")
    doc.headline(run.get("headline") or "No headline: the time-to-identification step did not run.")
    doc.p(f"Seed {run.get('seed')}, configuration hash {run.get('config_hash')}, reidsim "
          f"{run.get('reidsim_version') or man.get('reidsim_version')}. Everything here is simulated: a synthetic "
          "city, synthetic people with synthetic names, synthetic phones. The attacker sees only what a data "
          "broker sells (pseudonymous pings) and what anyone can buy (a register of names and addresses); the "
          "truth is used only to score whether the attacker named the right person.")
    level, key = _ttid_level_key(data)

    doc.h(2, "Headline figures", "headline")
    doc.table(["Figure", "Value", "95% CI", "n"], _headline_rows(data),
              note="n = number of devices (pseudonyms) the figure rests on.")

    _ladder_section(doc, data)

    doc.h(2, "What the figures show", "figures")
    doc.fig("time_to_identification", FIGURES["time_to_identification"], _cap_ttid(data, level, key))
    doc.fig("anonymity_sets", FIGURES["anonymity_sets"], _cap_anon(data))
    doc.fig("unicity", FIGURES["unicity"], _cap_unicity(data))
    doc.fig("unicity_panel", FIGURES["unicity_panel"], _cap_unicity_panel(data))
    doc.fig("device_trail", FIGURES["device_trail"], _cap_trail(facts.get("device_trail")))
    doc.fig("geofence", FIGURES["geofence"], _cap_geofence(data, facts.get("geofence")))
    doc.fig("privacy_utility", FIGURES["privacy_utility"], _cap_pu(data, level, key))

    if data["privacy"] is not None and len(data["privacy"]):
        doc.h(2, "Defenses: privacy and utility", "defenses")
        pv = data["privacy"]
        un = pv[pv["metric"] == "unicity"]
        us = (f" ({num_auto(un['v_m'].iloc[0])} m cells, {num_auto(un['h_h'].iloc[0])} h bins)"
              if len(un) and {"v_m", "h_h"} <= set(un.columns) else "")
        rot = ""
        if "rotate" in set(pv["defense"]) or "reset" in set(pv["defense"]):
            rot = (" Rotating IDs is scored per published pseudonym, so it looks strong here; but the attacker "
                   "can stitch a device's pseudonyms back together by their common home and work.")
            rl = pv[(pv["defense"] == "rotate") & pv["metric"].isin(["relink_precision", "relink_recall"])]
            if len(rl) == 2:
                p_ = rl[rl["metric"] == "relink_precision"].iloc[0]
                r_ = rl[rl["metric"] == "relink_recall"].iloc[0]
                rot += (f" Doing so, {pct(r_['value'], 0)} of consecutive pseudonym pairs of the same device were "
                        f"re-linked (recall; n = {count(r_['n'])}) and {pct(p_['value'], 0)} of the proposed links "
                        f"were right (precision; n = {count(p_['n'])}).")
        doc.p("Each row is one safeguard applied by the broker before release, attacked again from scratch. "
              f"Re-identified = identified by home + work at building level; unicity with the largest number of "
              f"points evaluated{us}.{rot} Utility columns compare statistics computed from the defended release "
              "with the same statistics from the undefended one (0 = no loss). Aggregate releases (counts per zone "
              "and hour) carry no per-device trace, so the per-device attacks do not apply; for them the last "
              "column gives the membership-inference advantage (true minus false positive rate of guessing whether "
              "a given device is in the data).")
        pmax = f" ({int(un['p'].max())} points)" if len(un) and "p" in un.columns else ""
        doc.table(["Defense", "Setting", "Re-identified", "95% CI", "n", f"Unicity{pmax}",
                   *[lab for _, lab in _DEF_UTIL], "Membership advantage"],
                  _defense_rows(data, "building", "home_work"))
        ut = data["utility"]
        if ut is not None and "description" in ut.columns:
            desc = ut.drop_duplicates("metric").set_index("metric")["description"]
            doc.ul([f"{lab}: {desc[m]}" for m, lab in _DEF_UTIL if m in desc.index])

    doc.h(2, "How this was computed", "method")
    smp = run.get("sample")
    if smp:
        doc.p(f"This release has {count(smp['of'])} devices, too many to hold in memory at once: the headline, the "
              "attacker ladder, time to identification, anonymity sets, unicity, top-N, known points, the "
              "geofence and re-linking were computed over every device, part by part. The calibration figures, "
              "the loss waterfall and its ceilings, unicity and top-N against panel size, the sensitivity "
              f"ranges, the defenses and the maps were measured on a seeded random sample of "
              f"{count(smp['devices'])} devices (seed {smp['seed']}); their intervals reflect that sample's size.")
    doc.h(3, "The simulated world and its phones")
    doc.ul(_world_items(data))
    doc.h(3, "The attacker's inference of home and work")
    doc.ul(_inference_items(data))
    doc.h(3, "The attacks")
    doc.ul(_attack_items(data))
    doc.h(3, "Calibration against published figures")
    doc.p("How close the simulation comes to figures measured on real data. Agreement is a sanity check, not "
          "proof: the sources used other data, places and years.")
    doc.table(["Statistic", "This run (95% CI)", "Published", "Source"], _cal_rows(data))
    doc.fig("calibration", FIGURES["calibration"],
            "Left: the average number of distinct 250 m cells a device has visited grows with the days observed "
            "about as fast as in real phone records (dashed). Right: a device's pings concentrate on a few places "
            "(home first, then work); the dashed line is the law measured by Song et al. 2010.")
    cal = data["calibration"]
    if cal:
        doc.table(["Generator statistic", "Value", "Sane range", "In range"], _sanity_rows(cal),
                  note="Ranges from sim.metrics.calibration.SANE_RANGES (what a realistic broker-like panel "
                       "should meet).")

    doc.h(2, "Reproducibility", "reproduce")
    cmd, py, toml = _reproduce(data)
    items = [f"Seed: {run.get('seed')}", f"Configuration hash: {run.get('config_hash')}",
             f"reidsim version: {run.get('reidsim_version') or man.get('reidsim_version')}",
             f"Dataset created (UTC): {man.get('created_utc', 'n/a')}; backend: {man.get('backend', 'n/a')}"]
    tm = run.get("timings_s") or {}
    if tm:
        items.append("Timings (s): " + ", ".join(f"{k.removesuffix('_s')} {v:g}" for k, v in tm.items()))
    doc.ul(items)
    doc.p("Command line (the same seed and configuration give bit-identical tables):")
    doc.code(cmd)
    doc.p("From Python:")
    doc.code(py)
    vers = man.get("versions") or {}
    if vers:
        doc.table(["Package", "Version"], [[k, str(v)] for k, v in vers.items()])
    if toml:
        doc.p("The complete scenario (every parameter of the run), as scenario.toml:")
        doc.code(toml)
    return doc


def _ladder_section(doc, data):
    run = data["run"]
    head = run.get("headline_figures") or {}
    lad = data["ladder"]
    if lad is None or not len(lad):
        return
    reg = (run.get("scenario") or {}).get("register") or {}
    doc.h(2, "Who can be named: the attacker ladder", "ladder")
    doc.p("\"Named\" means the attacker is left with exactly one person of the register and that person owns "
          f"the device; \"narrowed to k\" means at most k people are left and the owner is among them; "
          "\"wrong\" means one person is left and it is somebody else. The unit is the device (the phone, so the "
          "person): a device whose ID rotated counts as named when any of its pseudonyms is, and each window "
          "counts only the devices seen in it. The attacker holds the register profile "
          f"{reg.get('profile', 'people_search')!r}, which lists adults only. Each rung keeps the candidates of "
          "the rungs before it when its own rule would leave none, so a stronger rung never names fewer devices. "
          f"The headline quotes the strongest candidate-set rung ({str(head.get('rung', '')).replace('_', ' ')}); "
          "the ranked attacker always names its first candidate, so its \"named\" is a best guess, not a unique "
          "match.")
    doc.ul([f"{name.replace('_', ' ')}: {spec.description}" for name, spec in RUNGS.items()
            if name in set(lad["rung"])])
    t = lad[lad["unit"] == "device"]
    last = t["days"].max()
    ks = sorted(t.loc[t["metric"] == "narrowed_k", "k"].dropna().unique())
    rows = []
    for rung in dict.fromkeys(t["rung"]):
        r = t[(t["rung"] == rung) & (t["days"] == last)]

        def cell(**eq):
            x = _row(r, **eq)
            return pct(x["value"]) if x is not None else NA
        rows.append([rung.replace("_", " "), cell(metric="named"),
                     *[cell(metric="narrowed_k", k=float(kk)) for kk in ks],
                     cell(metric="wrong"), cell(metric="no_candidate")])
    n = _row(t, days=last, metric="named")
    doc.table(["Rung", "Named", *[f"≤ {int(kk)}" for kk in ks], "Wrong", "No candidate"], rows,
              note=f"Shares of devices after {int(last)} days (n = {count(n['n']) if n is not None else NA}); "
                   "95 % intervals in attacks/ladder.csv.")
    doc.fig("ladder", FIGURES["ladder"],
            "Left: the share of devices whose owner is among the k or fewer people each attacker is left with; a "
            "star marks \"named\" (a single candidate, the right one). Right: the share named as days go by.")

    wf = data["waterfall"]
    if wf is not None and len(wf):
        doc.h(2, "Where identification is lost", "waterfall")
        c = head.get("ceilings") or {}
        ch, ce = c.get("ceiling_home"), c.get("ceiling_exact")
        txt = ("Each bar is the share of devices still identifiable after one more condition the exact home + work "
               "join needs. The register sets ceilings no attacker of this kind can pass: ")
        if ch:
            txt += (f"{_row_pct_ci(ch)} of devices have an owner listed with the right home address (the most a "
                    "home-based attacker could name)")
        if ce:
            txt += f", and {_row_pct_ci(ce)} also have their employer listed (the most the exact join could name)"
        doc.p(txt + ".")
        doc.fig("waterfall", FIGURES["waterfall"],
                "Shares of all devices, with 95 % intervals and counts; the dashed line is the home-based ceiling.")

    led = run.get("ledger") or []
    if led:
        doc.h(2, "Assumptions behind the headline", "assumptions")
        doc.p("Every parameter that moves the headline, with the value this run used, a plausible range and its "
              "source. Where there is no source the table says \"assumption\".")
        doc.table(["Parameter", "This run", "Plausible range", "Source", "Moves"],
                  [[r["path"], _ledger_value(r["value"]), f"{r['low']:g} – {r['high']:g}", r["source"], r["drives"]]
                   for r in led])
        sens = data["sensitivity"]
        if sens is not None and len(sens):
            swept = sorted(set(sens["path"]))
            doc.fig("sensitivity", FIGURES["sensitivity"],
                    "The headline (devices named uniquely and correctly) re-measured at the low and high end of "
                    "each range, everything else as in this run: " + "; ".join(
                        f"{r['path']} by {r['method']}" for _, r in sens.drop_duplicates("path").iterrows())
                    + ". The register is rebuilt from the same people; days are earlier windows of the same "
                    "pings; a lower ping rate is reached by thinning the pings. Parameters that need a new "
                    "population or release are not swept here: "
                    + ", ".join(r["path"] for r in led if r["path"] not in swept) + ".")


def _ledger_value(v):
    if isinstance(v, float):
        return f"{v:g}"
    return NA if v is None else str(v)


def _cap_unicity_panel(data):
    u = data["unicity_panel"]
    if u is None or not len(u):
        return ""
    m = u[(u["kind"] == "measured") & (u["metric"] == "unicity")]
    e = u[(u["kind"] == "extrapolated") & (u["metric"] == "unicity")]
    txt = ("Unicity depends on how many devices a data set holds: the more people, the likelier another one "
           "shares your points. Measured on random sub-panels of growing size")
    if len(m):
        r = m.iloc[0]
        txt += (f" ({int(r['p'])} points, {num(r['v_m'])} m cells, {num_auto(r['h_h'])} h bins), from "
                f"{count(m['n_panel'].min())} to {count(m['n_panel'].max())} devices")
    if len(e):
        r = e.iloc[0]
        txt += (f", and extrapolated with a fitted model (cf. Farzanehfar et al. 2021) to all "
                f"{count(r['n_panel'])} residents: {_row_pct_ci(r)}")
    return txt + "."


# ----------------------------------------------------------------------- captions
def _cap_ttid(data, level, key):
    tt = data["time_to_identification"]
    if tt is None or not len(tt):
        return "Not computed in this run."
    t = tt.sort_values("days")
    last = t.iloc[-1]
    return (f"Each point is the share of devices whose pseudonym the attacker tied to the right named person "
            f"using only the first days of pings: the inferred {_key_words(key).replace('+', 'and')} matched exactly "
            f"one person in the register at {level} level. After {int(last['days'])} days it is "
            f"{pct(last['value'])} (shaded band: 95% confidence interval, n = {count(last['n'])} devices).")


def _cap_anon(data):
    lk = data["linkage"]
    if lk is None:
        return "Not computed in this run."
    a = _row(lk, metric="median_set_size", level="block", key="home")
    b = _row(lk, metric="median_set_size", level="block", key="home_work")
    extra = ""
    if a is not None and b is not None:
        extra = (f" At block level the home alone leaves a median of {num(a['value'])} people; home and work "
                 f"together leave {num(b['value'])}.")
    return ("An anonymity set is the number of people in the register who share a device's inferred home zone "
            "(and work zone): the smaller it is, the easier it is to put a name on the device. Finer zones and "
            "adding the workplace shrink it, as Golle & Partridge found for US workers (crosses)." + extra)


def _cap_unicity(data):
    u = data["unicity"]
    if u is None or not len(u):
        return "Not computed in this run."
    v, h = _unicity_setting(u)
    r = _row(u, p=4, v_m=v, h_h=h)
    pl = data["unicity_power_law"]
    e = _row(pl, p=4) if pl is not None else None
    txt = ("Unicity is the share of traces that no other trace matches on p random points, each point a place "
           "(a square cell) and an hour.")
    if r is not None:
        txt += (f" With 4 points, {v:,.0f} m cells and {h:g}-hour bins, {pct(r['value'])} of traces are "
                "unique (de Montjoye et al.: 95% with 4 points).")
    if e is not None and is_finite(e["exponent"]):
        txt += (f" Coarsening cells or time bins lowers it only slowly (fitted exponent {float(e['exponent']):.2f}; "
                "right panel).")
    return txt


def _cap_trail(f):
    if not f:
        return "No device to show (no release or no inferred table)."
    txt = (f"The device shown is chosen by a fixed rule: the first pseudonym, in alphabetical order, that was "
           f"identified and has at least {TRAIL_MIN_PINGS} pings. Its night pings (dark) pile up at one address "
           f"and its weekday pings at another; the attacker takes these as home and work.")
    if f.get("unique") and f.get("name"):
        txt += (f" Exactly one register entry, \"{f['name']}\", lives and works at those {f['level']}s, so the "
                f"\"anonymous\" trail leads to a name" + (" — the right one" if f.get("identified") else
                                                           " — here a wrong one") + ". The name is synthetic.")
    elif f.get("set_size", -1) > 1:
        txt += f" {f['set_size']:,} register entries fit, so this device was not named."
    else:
        txt += " This device could not be linked to one register entry."
    return txt


def _cap_geofence(data, f):
    gf = data["geofence"]
    if gf is None or not f:
        return "Not computed in this run."
    n = _row(gf, metric="n_seen")
    hk = _row(gf, metric="home_known")
    lc = _row(gf, metric="linked_correct")
    when = ""
    if f.get("t_start_s") is not None:

        when = (f" on {local_str(f['t_start_s'], f.get('utc_offset_s', 0), '%A')} between "
                f"{local_str(f['t_start_s'], f.get('utc_offset_s', 0), '%H:%M')} and "
                f"{local_str(f['t_end_s'], f.get('utc_offset_s', 0), '%H:%M')}")
    nn = int(n["value"]) if n is not None else 0
    txt = (f"An attacker buys every ping inside a {f['radius_m']:,.0f} m circle around a busy place{when} "
           "(a rally, a clinic, a place of worship) and follows each device seen there to where it spends its "
           f"nights. {nn:,} device{'s were' if nn != 1 else ' was'} seen")
    if hk is not None and nn:
        txt += f", {pct(hk['value'], 0)} of them got an inferred home"
    if lc is not None and nn:
        gk = str(gf["key"].iloc[0]) if "key" in gf.columns else "home"
        gl = str(gf["level"].iloc[0]) if "level" in gf.columns else "building"
        txt += (f", and {pct(lc['value'], 0)} (95% CI {pct_range(lc['ci_low'], lc['ci_high'], 0)}) were named "
                f"correctly from their inferred {_GEOFENCE_KEY.get(gk, gk)} ({gl} level)")
    txt += "."
    if f.get("sample"):
        txt += (f" The map draws the trails of the devices among a seeded sample of {f['sample']['devices']:,} of "
                f"{f['sample']['of']:,}; the figures count every device.")
    return txt


_GEOFENCE_KEY = {"home": "home alone", "home_work": "home and workplace"}


def _cap_pu(data, level, key):
    pv, ut = data["privacy"], data["utility"]
    if pv is None or ut is None:
        return "Not computed in this run."
    txt = ("Each point is one safeguard a broker could apply. Up = more devices re-identified (home + work, "
           "building level); right = more damage to the statistics the data is sold for (here the count of "
           "trips between tracts). The best safeguards sit bottom left.")
    base = _row(pv, metric="linkage_identified", level="building", key="home_work", defense="none")
    if base is not None:
        same = sorted({d for d, g in pv[(pv["metric"] == "linkage_identified") & (pv["level"] == "building")
                                        & (pv["key"] == "home_work")].groupby("defense")
                       if d != "none" and np.isclose(g["value"].iloc[0], base["value"])})
        if same:
            txt += (f" {', '.join(same)} leave{'s' if len(same) == 1 else ''} the risk exactly where it was "
                    f"({pct(base['value'])}): the attacker never needs the device ID, only where it sleeps and works.")
    if "membership_advantage" in set(pv["metric"]):
        txt += (" Aggregate releases (right panel) publish counts instead of traces; their residual risk is "
                "membership inference.")
    return txt


# ============================================================================= main
def write_report(out_dir, *, simulation=None) -> dict:
    """Write ``figures/*.png``, ``report.md`` and ``report.html`` into a run folder.

    Parameters
    ----------
    out_dir : path of a folder written by :func:`sim.pipeline.main.run_main` (needs
        run.json with its ``settings`` block, else :class:`InputError`; every other
        table is optional and its section says "not computed" if absent).  Every setting
        the report describes comes from that run.json, never from this version's defaults.
    simulation : the already loaded :class:`sim.api.Simulation` of that folder (optional; saves
        re-reading the pings, about 4 s on the default scenario).

    Returns
    -------
    dict with paths: ``report_html``, ``report_md`` and ``figure_<name>`` per figure.
    All figures are rendered before any file is written; each file is written atomically.
    """
    import matplotlib

    d = Path(out_dir)
    if not d.is_dir():
        raise InputError(f"run folder {str(d)!r} does not exist; pass the --out folder of `reidsim run`.")
    t0 = time.perf_counter()
    data = _load(d, simulation)
    t1 = time.perf_counter()
    with matplotlib.rc_context({"figure.dpi": 100, "savefig.dpi": DPI, "font.size": 10}):
        pngs, facts = _render_figures(data)
    t2 = time.perf_counter()
    doc = _build(data, pngs, facts)
    fig_rel = {name: f"figures/{name}.png" for name in pngs}
    md = render_md(doc, fig_rel)
    name = (data["run"].get("scenario") or {}).get("name", "scenario")
    page = render_html(doc, pngs, f"reidsim report — {name}")
    paths = {}
    for fname, data_png in pngs.items():
        p = d / fig_rel[fname]
        with atomic_path(p) as tmp:
            Path(tmp).write_bytes(data_png)
        paths[f"figure_{fname}"] = p
    for key, fname, text in (("report_md", "report.md", md), ("report_html", "report.html", page)):
        with atomic_path(d / fname) as tmp:
            Path(tmp).write_text(text, encoding="utf-8")
        paths[key] = d / fname
    log.info("report written to %s (load %.1f s, figures %.1f s, total %.1f s)", d / "report.html", t1 - t0,
             t2 - t1, time.perf_counter() - t0)
    return paths
