"""``reidsim defend``: a release defended part by part equals the release defended whole."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import sim.pipeline.defend as D
from sim.core.errors import ConfigError, InputError
from sim.pipeline.defend import defend_streaming
from sim.pipeline.evaluate import truth_for
from sim.release.dataset import check_dataset, dataset_digest, load, load_release
from sim.release.defenses import BrokerContext, apply_defenses, parse_defense_spec

STEPS = {
    "grid": ["grid:cell_m=500"],
    "rotate_laplace": ["rotate:period_days=1", "planar_laplace:eps_per_m=0.004"],
    "subsample": ["subsample:fraction=0.3"],
    "home_suppression": ["home_suppression:radius_m=300"],
    "zone_centroid": ["zone_centroid:level=block"],
    "salt_time_round": ["salt:salt=s3cret", "time_round:bin_h=6"],
}


def _by_trace(traces):
    """{pseudonym: (t_s, x, y, accuracy)} of the traces with pings."""
    out = {}
    for i in np.flatnonzero(traces.lengths > 0):
        a, b = traces.offsets[i], traces.offsets[i + 1]
        out[str(traces.pseudonym[i])] = (traces.t_s[a:b], traces.x_m[a:b], traces.y_m[a:b], traces.accuracy_m[a:b])
    return out


@pytest.fixture(scope="module")
def whole(small_dataset):
    return load(small_dataset[0])


@pytest.mark.parametrize("key", sorted(STEPS))
def test_part_by_part_equals_whole(small_dataset, whole, tmp_path, key):
    src, man = small_dataset
    steps = D.check_steps(STEPS[key])
    assert [n for n, _ in steps] == [parse_defense_spec(s)[0] for s in STEPS[key]]
    m = defend_streaming(src, tmp_path / "out", STEPS[key])
    assert check_dataset(tmp_path / "out")["dataset_id"] == m["dataset_id"] != man["dataset_id"]
    assert m["source_dataset_id"] == man["dataset_id"] and m["defenses"] == [{"name": n, "params": p} for n, p in steps]
    assert [r["file"] for r in m["parts"]] == [r["file"] for r in man["parts"]]
    ctx = BrokerContext.from_truth(whole.release, whole.pseudonyms, whole.persons, seed=whole.scenario.seed,
                                   world=whole.world)
    ref, mapping, _ = apply_defenses(whole.release, ctx, steps)
    got = load_release(tmp_path / "out")
    a, b = _by_trace(got), _by_trace(ref)
    assert a.keys() == b.keys() and m["rows"]["pings"] == ref.n_pings
    for k in b:
        assert np.array_equal(a[k][0], b[k][0])                      # times exactly
        assert np.allclose(a[k][1], b[k][1], rtol=0, atol=1e-6)      # metres, after the degree round trip
        assert np.allclose(a[k][2], b[k][2], rtol=0, atol=1e-6)
        assert np.array_equal(a[k][3], b[k][3], equal_nan=True)
    # truth: every published pseudonym maps to its device and person
    truth = pd.read_parquet(tmp_path / "out" / "truth" / "pseudonyms.parquet")
    present = set(a)
    assert present <= set(truth["pseudonym"])
    if mapping is not None:
        want = truth_for(whole.pseudonyms, mapping).set_index("pseudonym")
        t = truth.set_index("pseudonym").loc[sorted(present)]
        assert (t["device_idx"].to_numpy() == want.loc[sorted(present), "device_idx"].to_numpy()).all()
        assert (t["person_id"].to_numpy() == want.loc[sorted(present), "person_id"].to_numpy()).all()
    n = truth.set_index("pseudonym")["n_pings"]
    assert all(int(n[k]) == len(a[k][0]) for k in present)
    # everything the attacker and the scorer read is there
    sim2 = load(tmp_path / "out")
    assert len(sim2.register) == len(whole.register) and len(sim2.persons) == len(whole.persons)


def test_dask_backend_writes_identical_parts(small_dataset, tmp_path):
    src, _ = small_dataset
    a = defend_streaming(src, tmp_path / "a", STEPS["rotate_laplace"])
    b = defend_streaming(src, tmp_path / "b", STEPS["rotate_laplace"], backend="dask", n_workers=2)
    assert [r["sha256"] for r in a["parts"]] == [r["sha256"] for r in b["parts"]]
    assert a["dataset_id"] == b["dataset_id"]
    assert dataset_digest(tmp_path / "a") == dataset_digest(tmp_path / "b")


def test_streaming_inference_reads_the_defended_dataset(small_dataset, tmp_path):
    from sim.infer import infer_home_work
    from sim.pipeline.stream import infer_streaming

    src, _ = small_dataset
    defend_streaming(src, tmp_path / "g", STEPS["grid"])
    s = infer_streaming(tmp_path / "g")
    inf = pd.read_parquet(tmp_path / "g" / "inferred.parquet").sort_values("pseudonym").reset_index(drop=True)
    ref = infer_home_work(load_release(tmp_path / "g")).sort_values("pseudonym").reset_index(drop=True)
    assert s["rows"] == len(ref)
    pd.testing.assert_frame_equal(inf, ref, check_dtype=False)


@pytest.mark.parametrize("steps, match", [
    ([], "no defense"),
    (["aggregate_k:k=5"], "count table"),
    (["nonsense:x=1"], "unknown defense"),
    (["grid:cell_m=-5"], "cell_m"),
    (["grid:cell_m"], "param=value"),
])
def test_bad_steps_fail_before_any_work(small_dataset, tmp_path, steps, match):
    with pytest.raises(ConfigError, match=match):
        defend_streaming(small_dataset[0], tmp_path / "o", steps)
    assert not (tmp_path / "o").exists()


def test_never_writes_into_the_source_or_a_foreign_folder(small_dataset, tmp_path):
    src, _ = small_dataset
    before = json.loads((src / "manifest.json").read_text())
    with pytest.raises(InputError, match="source dataset"):
        defend_streaming(src, src, STEPS["grid"], overwrite=True)
    assert json.loads((src / "manifest.json").read_text()) == before
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("keep me")
    with pytest.raises(InputError, match="not a reidsim folder"):
        defend_streaming(src, tmp_path / "mine", STEPS["grid"])
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "keep me"


def test_interrupted_run_leaves_the_previous_dataset(small_dataset, tmp_path, monkeypatch):
    src, _ = small_dataset
    first = defend_streaming(src, tmp_path / "o", STEPS["grid"])
    real = D.defend_part
    calls = {"n": 0}

    def flaky(**kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated interruption")
        return real(**kw)

    monkeypatch.setattr(D, "defend_part", flaky)
    with pytest.raises(KeyboardInterrupt):
        defend_streaming(src, tmp_path / "o", STEPS["subsample"], overwrite=True)
    assert check_dataset(tmp_path / "o", verify_hashes=True)["dataset_id"] == first["dataset_id"]
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == sorted(
        ["manifest.json", "pings", "truth", "register.parquet", "world"])


def test_cli(small_dataset, tmp_path, capsys):
    from sim.cli import main

    src, _ = small_dataset
    assert main(["defend", str(src), "--defense", "rotate:period_days=1", "--defense", "grid:cell_m=250",
                 "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "rotate(period_days=1" in out and "grid(cell_m=250" in out
    assert check_dataset(tmp_path / "o")["defenses"][1] == {"name": "grid", "params": {"cell_m": 250}}
    # exists without --overwrite, aggregate, no defense, missing source: exit 2 with a message
    for argv, msg in ((["--defense", "grid:cell_m=250"], "--overwrite"),
                      (["--defense", "aggregate_k:k=5"], "count table"),
                      ([], "no defense")):
        assert main(["defend", str(src), "--out", str(tmp_path / "o")] + argv) == 2
        assert msg in capsys.readouterr().err
    assert main(["defend", str(tmp_path / "nope"), "--defense", "grid:cell_m=250", "--out",
                 str(tmp_path / "p")]) == 2
    assert "not a folder" in capsys.readouterr().err
