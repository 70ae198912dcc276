"""The ``reidsim`` command: each sub-command end to end on a tiny dataset, and clear
errors (exit status 2, a message naming the fix) for bad input."""
import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from sim.cli import main


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli") / "data"
    rc = main(["generate", "--devices", "150", "--residents", "1500", "--days", "4", "--seed", "3",
               "--block-devices", "64", "--out", str(d), "-q"])
    assert rc == 0
    return d


def test_generate_writes_the_layout(dataset):
    for p in ("pings", "truth/persons.parquet", "truth/devices.parquet", "truth/pseudonyms.parquet",
              "register.parquet", "world/world.json", "manifest.json"):
        assert (dataset / p).exists(), p
    man = json.loads((dataset / "manifest.json").read_text())
    assert man["rows"]["devices"] == 150 and man["seed"] == 3 and man["blocks"] == 3


def test_validate(dataset, capsys):
    from sim.metrics.calibration import check_calibration

    rc = main(["validate", str(dataset)])
    out = capsys.readouterr().out
    assert "pings_per_device_day_mean" in out
    stats = json.loads((dataset / "calibration.json").read_text())
    assert stats["devices"] == 150
    # exit 1 exactly when a statistic is outside its sane range (a 150-device sample may be)
    bad = check_calibration(stats)
    assert rc == (1 if bad else 0)
    assert ("outside sane ranges" in out) == bool(bad)
    assert "sample" not in stats  # 150 devices: below the default sample size, all are measured


def test_validate_on_a_device_sample(dataset, capsys):
    from sim.metrics.calibration import calibration_stats
    from sim.release.dataset import load_sample

    main(["validate", str(dataset), "--sample-devices", "40"])
    out = capsys.readouterr().out
    assert "seeded sample of 40 of 150 devices" in out
    stats = json.loads((dataset / "calibration.json").read_text())
    assert stats["devices"] == 40 and stats["sample"]["devices"] == 40
    want = calibration_stats(load_sample(dataset, 40))
    assert stats["pings"] == want["pings"] and stats["pings_per_device_day_mean"] == want["pings_per_device_day_mean"]
    assert main(["validate", str(dataset), "--sample-devices", "-1"]) == 2


def test_infer_with_prefix_and_score(dataset, capsys):
    assert main(["infer", str(dataset), "--days", "2", "--score"]) == 0
    inf = pd.read_parquet(dataset / "inferred.parquet")
    assert set(inf["window_days"]) == {2}
    assert inf["pseudonym"].is_unique and len(inf) > 100
    assert "home_within_100m" in capsys.readouterr().out


def test_attack_writes_tables_and_summary(dataset, capsys):
    assert main(["attack", str(dataset)]) == 0
    a = dataset / "attacks"
    for t in ("linkage", "time_to_identification", "unicity", "topn", "known_points", "geofence"):
        assert (a / f"{t}.parquet").exists() and (a / f"{t}.csv").exists(), t
    s = json.loads((a / "summary.json").read_text())
    assert "linkage_identified" in s and "time_to_identification" in s
    assert "devices were named correctly and uniquely" in capsys.readouterr().out


def test_sweep(tmp_path, capsys):
    f = tmp_path / "s.toml"
    f.write_text('[scenario]\nn_devices = 80\n[scenario.world]\nresidents = 800\n[scenario.pings]\ndays = 3\n'
                 '[sweep]\nreplicates = [1]\nattacks = ["linkage"]\n'
                 '[[sweep.defenses]]\nname = "grid"\ngrid = { cell_m = [1000.0] }\n')
    assert main(["sweep", str(f), "--out", str(tmp_path / "o"), "-q"]) == 0
    assert "2 cells computed" in capsys.readouterr().out
    assert main(["sweep", str(f), "--out", str(tmp_path / "o"), "-q"]) == 0
    assert "0 cells computed, 2 already done" in capsys.readouterr().out
    # the Dask backend computes the same cells (tested in detail in test_sweep.py)
    assert main(["sweep", str(f), "--out", str(tmp_path / "d"), "-q", "--backend", "dask", "--workers", "1"]) == 0
    assert "2 cells computed" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "d" / "cells").iterdir()) == \
        sorted(p.name for p in (tmp_path / "o" / "cells").iterdir())


@pytest.mark.parametrize("argv, message", [
    (["generate", "--devices", "0", "--out", "X"], "n_devices must be in"),
    (["generate", "--days", "-3", "--out", "X"], "pings.days"),
    (["infer", "NOPE"], "is not a folder"),
    (["attack", "NOPE"], "is not a folder"),
    (["validate", "NOPE"], "is not a folder"),
    (["sweep", "NOPE.toml", "--out", "X"], "does not exist"),
    (["run", "--config", "NOPE.toml", "--out", "X"], "does not exist"),
])
def test_errors_exit_2_with_a_message(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("reidsim: error:") and message in err
    assert not (tmp_path / "X").exists()


@pytest.mark.parametrize("value, message", [(95.0, "NaN or out-of-range coordinates"),
                                            (float("nan"), "missing values")])
def test_malformed_pings_are_refused(dataset, tmp_path, capsys, value, message):
    d = tmp_path / "bad"
    shutil.copytree(dataset, d)
    (d / "inferred.parquet").write_bytes(b"previous result")
    part = sorted((d / "pings").glob("*.parquet"))[0]
    t = pd.read_parquet(part)
    t.loc[t.index[0], "lat_deg"] = value
    t.to_parquet(part, index=False)
    # an edited part no longer matches the manifest: refused before it is read
    assert main(["infer", str(d)]) == 2
    assert "was changed or truncated" in capsys.readouterr().err
    # with the manifest re-recorded (a consistent but broken release), the content check fires
    _rerecord_manifest(d)
    assert main(["infer", str(d)]) == 2
    assert message in capsys.readouterr().err
    assert (d / "inferred.parquet").read_bytes() == b"previous result"  # nothing overwritten


def _rerecord_manifest(d):
    from sim.generate.engine import dataset_id, part_records

    man = json.loads((d / "manifest.json").read_text())
    man["parts"] = part_records(d / "pings")
    man["dataset_id"] = dataset_id(man)
    (d / "manifest.json").write_text(json.dumps(man))


def test_console_script_is_installed():
    exe = shutil.which("reidsim")
    cmd = [exe, "--help"] if exe else [sys.executable, "-m", "sim.cli", "--help"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0
    for sub in ("generate", "validate", "infer", "attack", "run", "sweep"):
        assert sub in p.stdout
