"""sim.report.write_report on a tiny real run folder (tests/_runfixture.py)."""
from __future__ import annotations

import base64
import html
import json
import re
import shutil

import pandas as pd
import pytest
from _runfixture import tiny_run

from sim.report import plots
from sim.report import document as report
from sim.core.errors import InputError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _with_settings(d, **overrides):
    """Give ``d/run.json`` (a COPY of a run folder) the ``settings`` block the main job
    writes, built from the main job's settings if the run.json has none yet; then
    update its parts with ``overrides`` ({part: {key: value}}).  Returns the settings."""
    run = json.loads((d / "run.json").read_text())
    if "settings" not in run:
        import dataclasses

        from sim.infer import InferenceParams
        from sim.pipeline.evaluate import DEFAULT_DEFENSES
        from sim.pipeline.main import DEFENSE_SAMPLE_TRACES, MAIN_ATTACK_CONFIG

        gm = json.loads((d / "attacks" / "geofence_meta.json").read_text())
        days = run["scenario"]["pings"]["days"]
        attacks = dict(MAIN_ATTACK_CONFIG, seed=run["seed"], geofence_polygon_wkt=gm["polygon_wkt"],
                       geofence_window_s=[gm["t_start_s"], gm["t_end_s"]])
        run["settings"] = json.loads(json.dumps({
            "inference": dataclasses.asdict(InferenceParams()),
            "attacks": attacks,
            "defenses": [{"name": n, "params": p} for n, p in DEFAULT_DEFENSES],
            "defense_attack_config": {"ttid_level": "building", "seed": run["seed"]},
            "defense_sample_traces": DEFENSE_SAMPLE_TRACES,
            "defense_days": sorted({min(7, days), days}),
        }))
    for part, values in overrides.items():
        run["settings"][part].update(values)
    (d / "run.json").write_text(json.dumps(run, indent=2))
    return run["settings"]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    src = tiny_run(tmp_path_factory)
    d = tmp_path_factory.mktemp("report_run") / "run"
    shutil.copytree(src, d)
    _with_settings(d)
    paths = report.write_report(d)
    return d, paths


def _strip_images(page: str) -> str:
    return re.sub(r'src="data:image/png;base64,[^"]*"', 'src=""', page)


def test_paths_returned_exist_and_all_figures_written(written):
    d, paths = written
    assert paths["report_html"] == d / "report.html" and paths["report_md"] == d / "report.md"
    for name in report.FIGURES:
        p = paths[f"figure_{name}"]
        assert p == d / "figures" / f"{name}.png"
        assert p.read_bytes().startswith(PNG_MAGIC)
    assert not [p for p in d.rglob(".*tmp*")]  # no temporary file left behind


def test_html_is_self_contained(written):
    d, _ = written
    page = (d / "report.html").read_text(encoding="utf-8")
    assert page.lstrip().lower().startswith("<!doctype html>")
    # no reference to anything outside the file
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:|//|file:)""", page, re.I)
    assert not re.search(r"<(?:script|link|iframe|object|embed)\b", page, re.I)
    assert "@import" not in page and "url(" not in page
    imgs = re.findall(r"<img\b[^>]*>", page)
    assert len(imgs) == len(report.FIGURES)
    for tag in imgs:
        m = re.search(r'src="data:image/png;base64,([^"]+)"', tag)
        assert m, f"image not embedded as a data URI: {tag[:80]}"
        assert base64.b64decode(m.group(1)).startswith(PNG_MAGIC)
    # in-page links only (table of contents)
    for href in re.findall(r'href="([^"]*)"', page):
        assert href.startswith("#")
        assert f'id="{href[1:]}"' in page


def test_headline_seed_hash_in_both_formats(written):
    d, _ = written
    run = json.loads((d / "run.json").read_text())
    page = (d / "report.html").read_text(encoding="utf-8")
    md = (d / "report.md").read_text(encoding="utf-8")
    assert html.escape(run["headline"]) in page and run["headline"] in md
    for text in (page, md):
        assert f"Seed {run['seed']}" in text and run["config_hash"] in text
        assert run["reidsim_version"] in text
    # the headline comes first, before any section
    assert md.index(run["headline"]) < md.index("## ")
    man = json.loads((d / "manifest.json").read_text())
    for pkg, ver in man["versions"].items():
        assert ver in md


def test_markdown_references_existing_figures(written):
    d, _ = written
    md = (d / "report.md").read_text(encoding="utf-8")
    refs = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert sorted(refs) == sorted(f"figures/{n}.png" for n in report.FIGURES)
    for r in refs:
        assert not r.startswith(("/", "http"))
        assert (d / r).read_bytes().startswith(PNG_MAGIC)


def test_report_states_assumptions_and_sources(written):
    d, _ = written
    md = (d / "report.md").read_text(encoding="utf-8")
    for needle in ("How this was computed", "DBSCAN", "22:00–06:00", "log-normal", "register",
                   "de Montjoye", "Golle & Partridge", "27.6 min", "Song et al. 2010", "Reproducibility",
                   "reidsim run", "Defenses: privacy and utility", "membership-inference advantage"):
        assert needle in md, needle
    # one row per evaluated defense (name and setting) in the defenses table
    priv = pd.read_parquet(d / "defenses" / "privacy.parquet")
    for name in priv["defense"].unique():
        assert re.search(rf"^\| {re.escape(name)} \|", md, re.M), name


def test_no_personal_data_beyond_one_synthetic_name(written):
    d, _ = written
    page = _strip_images((d / "report.html").read_text(encoding="utf-8"))
    md = (d / "report.md").read_text(encoding="utf-8")
    reg = pd.read_parquet(d / "register.parquet")
    for text in (page, md):
        names = [n for n in reg["name"] if n in text]
        assert len(set(names)) <= 1
        assert not re.search(r"\b[0-9a-f]{64}\b", text)  # no full pseudonym
        assert not re.search(r"\b-?\d{1,3}\.\d{4,}\b", text)  # no lat/lon-like coordinate


def test_scenario_toml_round_trips(written):
    import tomllib

    from sim.core.config import Scenario

    d, _ = written
    run = json.loads((d / "run.json").read_text())
    toml = report.scenario_toml(run["scenario"])
    assert Scenario.from_dict(tomllib.loads(toml)).config_hash() == run["config_hash"]
    assert toml in (d / "report.md").read_text(encoding="utf-8")


def test_trail_device_rule(written):
    d, _ = written
    per = pd.read_parquet(d / "attacks" / "linkage_per_device.parquet")
    inf = pd.read_parquet(d / "inferred.parquet")
    b = per[(per.level == "building") & (per.key == "home_work")].merge(inf[["pseudonym", "n_pings"]])
    want = sorted(b.loc[b.identified & (b.n_pings >= report.TRAIL_MIN_PINGS), "pseudonym"])
    got = report.pick_trail_device(per, inf)
    assert got == (want[0] if want else got)
    # the same input in another row order gives the same device
    assert report.pick_trail_device(per.sample(frac=1, random_state=1), inf.sample(frac=1, random_state=2)) == got
    # nobody identified: the first pseudonym with an inferred home and enough pings
    none = per.assign(identified=False, unique=False)
    fb = sorted(inf.loc[inf.home_x_m.notna() & (inf.n_pings >= report.TRAIL_MIN_PINGS), "pseudonym"])
    assert report.pick_trail_device(none, inf) == fb[0]
    assert report.pick_trail_device(None, inf.iloc[:0]) is None


def test_interrupted_write_keeps_previous_report(written, tmp_path, monkeypatch):
    src, _ = written
    d = tmp_path / "run"
    shutil.copytree(src, d)
    before = {p: (d / p).read_bytes() for p in ("report.html", "report.md", "figures/unicity.png")}

    def boom(*a, **k):
        raise RuntimeError("figure failed")

    monkeypatch.setattr(plots, "plot_privacy_utility", boom)
    with pytest.raises(RuntimeError, match="figure failed"):
        report.write_report(d)
    for p, data in before.items():
        assert (d / p).read_bytes() == data
    assert not [p for p in d.rglob(".*tmp*")]


def test_missing_tables_still_give_a_report(written, tmp_path):
    src, _ = written
    d = tmp_path / "run"
    shutil.copytree(src, d)
    shutil.rmtree(d / "defenses")
    for f in (d / "attacks").glob("unicity*"):
        f.unlink()
    for f in d.glob("report.*"):
        f.unlink()
    shutil.rmtree(d / "figures")
    paths = report.write_report(d)
    assert "figure_unicity" not in paths and "figure_privacy_utility" not in paths
    md = (d / "report.md").read_text(encoding="utf-8")
    assert "Not computed in this run." in md
    assert "Defenses: privacy and utility" not in md
    assert (d / "report.html").exists()


def test_missing_run_json_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="run.json"):
        report.write_report(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        report.write_report(tmp_path / "nowhere")


def test_report_is_deterministic(written, tmp_path):
    src, _ = written
    d = tmp_path / "run"
    shutil.copytree(src, d)
    report.write_report(d)
    for p in ("report.md", "report.html", "figures/device_trail.png"):
        assert (d / p).read_bytes() == (src / p).read_bytes(), p


def test_report_states_the_settings_of_run_json_not_defaults(written, tmp_path):
    src, _ = written
    d = tmp_path / "run"
    shutil.copytree(src, d)
    default = json.loads((d / "run.json").read_text())["settings"]
    st = _with_settings(d, attacks={"unicity_n_sample": 1234, "known_n_targets": 77, "known_m": [2, 6],
                                    "unicity_v_m": [321.0, 654.0], "known_jitter_s": 300.0},
                        inference={"eps_m": 75.0, "night_start_h": 21.0, "min_work_share": 0.4,
                                   "work_weekdays": [0, 1, 2, 3, 4, 5], "max_accuracy_m": None})
    assert st["attacks"]["unicity_n_sample"] != default["attacks"]["unicity_n_sample"]
    report.write_report(d)
    md = (d / "report.md").read_text(encoding="utf-8")
    for needle in ("1,234 traces sampled", "for 77 target devices", "m = 2, 6 sightings", "v = 321, 654 m",
                   "time within ±5 min", "neighbours within 75 m", "(21:00–06:00 local time)",
                   "(Mon, Tue, Wed, Thu, Fri, Sat, 09:00–17:00)", "on at least 40% of the observed",
                   "No ping is dropped for its reported accuracy.", "inference settings this run used"):
        assert needle in md, needle
    assert f"{default['attacks']['unicity_n_sample']:,} traces sampled" not in md
    assert f"neighbours within {default['inference']['eps_m']:g} m" not in md
    assert "defaults" not in md.split("## How this was computed")[1].split("### The attacks")[0]
    html_page = (d / "report.html").read_text(encoding="utf-8")
    assert "1,234 traces sampled" in html_page


def test_report_of_an_older_run_folder_is_an_input_error(written, tmp_path):
    src, _ = written
    run = json.loads((src / "run.json").read_text())
    run.pop("settings")
    (tmp_path / "run.json").write_text(json.dumps(run))
    with pytest.raises(InputError, match=r"older reidsim.*re-run|older reidsim.*Re-run") as e:
        report.write_report(tmp_path)
    assert "reidsim run" in str(e.value)
    run["settings"] = {"attacks": {}}  # half a settings block: the same advice
    (tmp_path / "run.json").write_text(json.dumps(run))
    with pytest.raises(InputError, match="older reidsim"):
        report.write_report(tmp_path)
    assert not list(tmp_path.glob("report.*"))


def test_report_stage_imports_no_later_stage_nor_defaults():
    """The report reads settings from run.json: no import of a later stage (pipeline,
    api, cli), of the inference defaults or of the scenario defaults."""
    import ast
    from pathlib import Path

    import sim.report

    for path in Path(sim.report.__file__).parent.glob("*.py"):
        src = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(src)):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                mods = [node.module]
            for m in mods:
                assert not m.startswith(("sim.pipeline", "sim.api", "sim.cli")), (path.name, m)
        assert "InferenceParams" not in src and "MAIN_ATTACK_CONFIG" not in src and "Scenario()" not in src, \
            path.name


def test_report_of_a_large_release_draws_a_device_sample(written, tmp_path, monkeypatch):
    """Above DEFAULT_SAMPLE_DEVICES the report reads a seeded device sample part by part;
    the maps draw sampled devices only and say so, the figures are the tables'."""
    import sim.report.document as doc
    from sim.release.dataset import load_sample

    d, _ = written
    monkeypatch.setattr(doc, "DEFAULT_SAMPLE_DEVICES", 60)
    data = doc._load(d)
    assert data["sim"].meta["sample"]["devices"] == 60
    held = set(data["sim"].release.pseudonym)
    assert held == set(load_sample(d, 60).release.pseudonym)
    # of the per-device tables only the sample's rows are read; of linkage_per_device's
    # every row, only the set-size columns (the anonymity-set distribution)
    lpd = pd.read_parquet(d / "attacks" / "linkage_per_device.parquet")
    sub = data["linkage_per_device_held"]
    assert set(sub["pseudonym"].astype(str)) == held & set(lpd["pseudonym"]) and len(sub) < len(lpd)
    want = lpd[lpd["pseudonym"].isin(held)]
    for c in doc._LPD_COLUMNS:
        assert list(sub[c].astype(object)) == list(want[c]), c
    sizes = data["linkage_per_device"]
    assert list(sizes.columns) == list(doc._LPD_SIZE_COLUMNS) and len(sizes) == len(lpd)
    for c in doc._LPD_SIZE_COLUMNS:
        assert list(sizes[c].astype(object)) == list(lpd[c]), c
    for name, path in (("inferred", d / "inferred.parquet"),
                       ("geofence_per_pseudonym", d / "attacks" / "geofence_per_pseudonym.parquet")):
        full = pd.read_parquet(path)
        got = data[name]
        assert set(got["pseudonym"]) <= held and len(got) == int(full["pseudonym"].isin(held).sum()), name
    pngs, facts = doc._render_figures(data)
    assert facts["device_trail"]["pseudonym"] in held and "device_trail" in pngs
    assert facts["geofence"]["sample"] == {"devices": 60, "of": data["sim"].meta["sample"]["of"],
                                           "seed": data["sim"].meta["sample"]["seed"]}
    assert "seeded sample of 60" in doc._cap_geofence(data, facts["geofence"])


def test_linkage_per_device_is_read_narrow(tmp_path):
    """The report reads only the per-device linkage columns it uses, text as categories,
    from Parquet or (without it) from the CSV; the values are the table's."""
    from sim.core.files import write_table
    from sim.report.document import _LPD_CATEGORIES, _LPD_COLUMNS, _read_table

    t = pd.DataFrame({"pseudonym": ["p2", "p1", "p2"], "level": ["building", "block", "block"],
                      "key": ["home", "home", "home_work"], "home_zone": [1, 2, 3], "status": ["ok", "ok", "outside"],
                      "set_size": [1, 4, -1], "guess_person_id": [7, 8, -1], "unique": [True, False, False],
                      "identified": [True, False, False], "top1_correct": [True, True, False]})
    write_table(t, tmp_path / "lpd", dataset_id="abc")
    got = _read_table(tmp_path / "lpd.parquet", "abc", columns=_LPD_COLUMNS, categories=_LPD_CATEGORIES)
    assert list(got.columns) == [c for c in _LPD_COLUMNS if c in t.columns]
    assert all(isinstance(got[c].dtype, pd.CategoricalDtype) for c in _LPD_CATEGORIES)
    for c in got.columns:
        assert list(got[c].astype(object)) == list(t[c]), c
    p2 = _read_table(tmp_path / "lpd.parquet", "abc", columns=_LPD_COLUMNS, categories=_LPD_CATEGORIES,
                     pseudonyms=["p2"])
    assert list(p2["pseudonym"].astype(str)) == ["p2", "p2"] and list(p2["set_size"]) == [1, -1]
    (tmp_path / "lpd.parquet").unlink()
    from_csv = _read_table(tmp_path / "lpd.parquet", "abc", columns=_LPD_COLUMNS)
    assert list(from_csv.columns) == list(got.columns) and list(from_csv["set_size"]) == [1, 4, -1]
    p2 = _read_table(tmp_path / "lpd.parquet", "abc", columns=_LPD_COLUMNS, pseudonyms=["p2"])
    assert list(p2["pseudonym"]) == ["p2", "p2"] and list(p2["set_size"]) == [1, -1]
