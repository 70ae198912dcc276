"""No user file is ever lost and no command answers from broken data.

Each case is a command a user could type; it must end with exit status 2 and a message
naming the problem and the fix, and leave every file it did not write untouched.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from sim.cli import main
from sim.core.errors import InputError
from sim.core.files import STAGING_PREFIX, claim_output_dir
from sim.generate.engine import dataset_id, generate, part_records
from sim.release.dataset import check_dataset, load

GEN = ["--devices", "150", "--residents", "1500", "--days", "4", "--seed", "3", "--block-devices", "64", "-q"]


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    d = tmp_path_factory.mktemp("own") / "data"
    assert main(["generate", *GEN, "--out", str(d)]) == 0
    return d


@pytest.fixture
def copy(ds, tmp_path):
    d = tmp_path / "copy"
    shutil.copytree(ds, d)
    return d


def rerecord(d):
    """Re-record the manifest's part list (a consistent manifest over edited parts)."""
    man = json.loads((d / "manifest.json").read_text())
    man["parts"] = part_records(d / "pings")
    man["dataset_id"] = dataset_id(man)
    (d / "manifest.json").write_text(json.dumps(man))


def fails(argv, capsys, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("reidsim: error:"), err
    for n in needles:
        assert n in err, err
    return err


# ------------------------------------------------------------------ output ownership
def test_generate_never_touches_a_folder_that_is_not_its_own(tmp_path, capsys):
    p = tmp_path / "P"
    (p / "world").mkdir(parents=True)
    (p / "world" / "chapter1.tex").write_text("thesis")
    fails(["generate", *GEN, "--out", str(p)], capsys, "not a reidsim folder", "Choose another --out")
    assert (p / "world" / "chapter1.tex").read_text() == "thesis"
    assert sorted(x.name for x in p.iterdir()) == ["world"]


def test_run_never_touches_a_folder_that_is_not_its_own(tmp_path, capsys):
    p = tmp_path / "P"
    p.mkdir()
    (p / "notes.txt").write_text("mine")
    fails(["run", "--out", str(p), "-q"], capsys, "not a reidsim folder")
    assert [x.name for x in p.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("out", ["", "   "])
def test_empty_out_is_an_error(out, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    fails(["generate", *GEN, "--out", out], capsys, "--out is empty")
    assert list(tmp_path.iterdir()) == []


def test_out_that_is_a_file_is_an_error(tmp_path, capsys):
    f = tmp_path / "f.txt"
    f.write_text("x")
    fails(["generate", *GEN, "--out", str(f)], capsys, "not a folder")
    assert f.read_text() == "x"


def test_existing_dataset_needs_overwrite(copy, capsys):
    before = (copy / "manifest.json").read_text()
    fails(["generate", *GEN, "--seed", "4", "--out", str(copy)], capsys, "already holds a reidsim dataset",
          "--overwrite")
    assert (copy / "manifest.json").read_text() == before


def test_overwrite_replaces_the_dataset_and_its_stale_outputs_but_keeps_user_files(copy, capsys):
    assert main(["infer", str(copy)]) == 0
    (copy / "attacks").mkdir()
    (copy / "attacks" / "summary.json").write_text("{}")
    (copy / "run.json").write_text("{}")
    (copy / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert main(["generate", *GEN, "--seed", "4", "--overwrite", "--out", str(copy)]) == 0
    names = {x.name for x in copy.iterdir()}
    assert "notes.txt" in names and (copy / "notes.txt").read_text() == "mine"
    for stale in ("inferred.parquet", "inferred.csv", "attacks", "run.json"):
        assert stale not in names, stale
    assert json.loads((copy / "manifest.json").read_text())["seed"] == 4
    assert not [n for n in names if n.startswith(".")]


def test_staging_left_by_a_kill_is_cleaned_by_the_next_command(tmp_path):
    out = tmp_path / "o"
    (out / f"{STAGING_PREFIX}deadbeef" / "pings").mkdir(parents=True)
    (out / ".staging-0badc0de").mkdir()  # the older prefix
    claim_output_dir(out)
    assert list(out.iterdir()) == []


def test_interrupted_run_leaves_the_previous_run_intact(tmp_path, monkeypatch):
    import sim.pipeline.main as M
    from sim.core.config import Scenario

    scn = Scenario(n_devices=120, seed=7).replace(world__residents=1200, pings__days=3)
    out = tmp_path / "run"
    M.run_main(scn, out, progress=False, report=False, defenses=[("none", {})])
    before = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}

    def boom(*a, **k):
        raise KeyboardInterrupt("killed (simulated)")

    monkeypatch.setattr(M, "defense_step", boom)
    with pytest.raises(KeyboardInterrupt):
        M.run_main(scn.replace(seed=8), out, progress=False, report=False, overwrite=True)
    after = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert after == before  # the seed-7 run, whole: no seed-8 dataset beside a seed-7 report
    run = json.loads((out / "run.json").read_text())
    assert run["seed"] == 7 and run["dataset_id"] == json.loads((out / "manifest.json").read_text())["dataset_id"]


def test_run_json_records_every_setting_used(tmp_path):
    from sim.core.config import Scenario
    from sim.pipeline.main import run_main

    scn = Scenario(n_devices=120, seed=7).replace(world__residents=1200, pings__days=3)
    info = run_main(scn, tmp_path / "r", progress=False, report=False, defenses=[("none", {})],
                    infer_params={"eps_m": 60.0}, attack_config={"unicity_n_sample": 77})
    s = json.loads((tmp_path / "r" / "run.json").read_text())["settings"]
    assert s["inference"]["eps_m"] == 60.0 and "min_home_nights" in s["inference"]
    assert s["attacks"]["unicity_n_sample"] == 77 and s["attacks"]["seed"] == 7
    assert s["attacks"]["geofence_polygon_wkt"].startswith("POLYGON")
    assert s["defenses"] == [{"name": "none", "params": {}}]
    assert info["dataset_id"] == json.loads((tmp_path / "r" / "manifest.json").read_text())["dataset_id"]


# ------------------------------------------------------------------ dataset integrity
@pytest.mark.parametrize("cmd", ["validate", "infer", "attack"])
def test_deleted_part_is_refused_by_every_command(copy, capsys, cmd):
    sorted((copy / "pings").glob("*.parquet"))[1].unlink()
    err = fails([cmd, str(copy)], capsys)
    assert "missing part file(s) ['part-00001.parquet']" in err


def test_milliseconds_are_refused(copy, capsys):
    part = sorted((copy / "pings").glob("*.parquet"))[0]
    t = pd.read_parquet(part)
    t["t_s"] = t["t_s"] * 1000
    t.to_parquet(part, index=False)
    rerecord(copy)
    for cmd in ("infer", "attack", "validate"):
        err = fails([cmd, str(copy)], capsys)
        assert "look like milliseconds" in err


def test_manifest_n_days_shorter_than_the_data_is_refused(copy, capsys):
    man = json.loads((copy / "manifest.json").read_text())
    man["n_days"] = 1
    (copy / "manifest.json").write_text(json.dumps(man))
    err = fails(["attack", str(copy)], capsys)
    assert "outside the manifest's window" in err and "n_days=1" in err


def test_missing_accuracy_column_is_accepted(copy, capsys):
    """accuracy_m is documented as optional: a release without it still validates."""
    for part in (copy / "pings").glob("*.parquet"):
        pd.read_parquet(part).drop(columns="accuracy_m").to_parquet(part, index=False)
    rerecord(copy)
    assert main(["validate", str(copy)]) in (0, 1)  # 1 = a statistic out of range, not a crash
    assert np.isnan(load(copy).release.accuracy_m).all()


@pytest.mark.parametrize("breakage, needle", [
    (lambda d: (d / "register.parquet").unlink(), "register.parquet' is missing"),
    (lambda d: (d / "world" / "world.json").write_text("{not json"), "world.json' is corrupt"),
    (lambda d: (d / "truth" / "persons.parquet").write_bytes(
        (d / "truth" / "persons.parquet").read_bytes()[:100]), "persons.parquet' is not a readable Parquet"),
    (lambda d: (d / "manifest.json").write_text(json.dumps(
        {k: v for k, v in json.loads((d / "manifest.json").read_text()).items() if k != "start_s"})),
     "lacks ['start_s']"),
    (lambda d: (d / "manifest.json").write_text("[1, 2]"), "is not a JSON object"),
])
def test_broken_dataset_is_refused_with_a_message(copy, capsys, breakage, needle):
    breakage(copy)
    for cmd in ("validate", "infer", "attack"):
        err = fails([cmd, str(copy)], capsys)
        assert needle in err and "regenerate" in err


def test_changed_part_is_refused_by_its_hash(copy):
    part = sorted((copy / "pings").glob("*.parquet"))[0]
    b = bytearray(part.read_bytes())
    b[len(b) // 2] ^= 0xFF  # same size, different content
    part.write_bytes(bytes(b))
    with pytest.raises(InputError, match="does not match its SHA-256"):
        check_dataset(copy, verify_hashes=True)


def test_check_dataset_passes_on_a_fresh_dataset(ds):
    man = check_dataset(ds, verify_hashes=True)
    assert man["dataset_id"] == dataset_id(man) and len(man["parts"]) == 3


# ------------------------------------------------------------------ release side channel
def test_part_files_do_not_follow_person_order(tmp_path):
    """A pseudonym's part number must not narrow its owner's register id."""
    from scipy.stats import spearmanr

    from sim.core.config import Scenario

    scn = Scenario(n_devices=400, seed=5).replace(world__residents=4000, pings__days=2, block_devices=50)
    generate(scn, tmp_path / "d", progress=False)
    ps = pd.read_parquet(tmp_path / "d" / "truth" / "pseudonyms.parquet")
    parts = []
    for i, f in enumerate(sorted((tmp_path / "d" / "pings").glob("*.parquet"))):
        names = pd.read_parquet(f, columns=["pseudonym"])["pseudonym"].astype(str).unique()
        parts.append(pd.DataFrame({"pseudonym": names, "part": i}))
    m = pd.concat(parts).merge(ps[["pseudonym", "person_id"]], on="pseudonym")
    rho = spearmanr(m["part"], m["person_id"]).statistic
    assert abs(rho) < 0.3, rho  # sorted devices gave rho close to 1


def test_report_refuses_results_of_another_dataset(tmp_path):
    from sim.core.config import Scenario
    from sim.pipeline.main import run_main
    from sim.report.document import write_report

    d = tmp_path / "r"
    run_main(Scenario(n_devices=120, seed=7).replace(world__residents=1200, pings__days=3), d,
             progress=False, report=False, defenses=[("none", {})])
    run = json.loads((d / "run.json").read_text())
    run["dataset_id"] = "0" * 16  # e.g. a run.json kept beside a regenerated dataset
    (d / "run.json").write_text(json.dumps(run))
    with pytest.raises(InputError, match="computed from another dataset"):
        write_report(d)
    assert not (d / "report.html").exists()


def test_staging_lookalikes_of_a_user_are_never_removed(tmp_path, capsys):
    """Only reidsim's own staging names are cleaned, and never in a folder that is not its own."""
    p = tmp_path / "P"
    p.mkdir()
    for name in (".old-notes", ".staging-notes", ".reidsim-staging-x"):
        (p / name).write_text("mine")
    (p / "thesis.tex").write_text("mine")
    fails(["generate", *GEN, "--out", str(p)], capsys, "not a reidsim folder")
    assert sorted(x.name for x in p.iterdir()) == [".old-notes", ".reidsim-staging-x", ".staging-notes",
                                                   "thesis.tex"]


def test_derived_tables_record_their_dataset_and_the_report_refuses_a_foreign_one(tmp_path):
    from sim.core.config import Scenario
    from sim.core.files import read_dataset_id, write_table
    from sim.pipeline.main import run_main
    from sim.report.document import write_report

    d = tmp_path / "r"
    run_main(Scenario(n_devices=120, seed=7).replace(world__residents=1200, pings__days=3), d,
             progress=False, report=False, defenses=[("none", {})])
    did = json.loads((d / "manifest.json").read_text())["dataset_id"]
    for rel in ("inferred.parquet", "inferred_by_day.parquet", "attacks/linkage.parquet",
                "defenses/privacy.parquet"):
        assert read_dataset_id(d / rel) == did, rel
    # a table kept from another dataset (e.g. copied in by hand) is refused by the report
    write_table(pd.read_parquet(d / "attacks" / "linkage.parquet"), d / "attacks" / "linkage",
                dataset_id="f" * 16)
    with pytest.raises(InputError, match="linkage.parquet' was computed from another dataset"):
        write_report(d)


def test_infer_command_records_the_dataset(copy, capsys):
    from sim.core.files import read_dataset_id

    assert main(["infer", str(copy)]) == 0
    assert read_dataset_id(copy / "inferred.parquet") == json.loads((copy / "manifest.json").read_text())["dataset_id"]
