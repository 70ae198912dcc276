"""``reidsim run`` on a release above the sample size: the whole release attacked part by
part (the same attack tables as in memory), context figures on a seeded device sample."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from _runfixture import tiny_run, tiny_scenario

ATTACK_TABLES = ("ladder", "linkage", "time_to_identification", "unicity", "topn", "known_points", "geofence")


@pytest.fixture(scope="module")
def streamed(tmp_path_factory):
    from sim.pipeline.main import run_main

    d = tmp_path_factory.mktemp("run_streamed")
    scn = tiny_scenario().replace(block_devices=97)  # several parts
    info = run_main(scn, d, report=True, progress=False, sample_devices=80)
    return d, info


def test_attack_tables_equal_the_in_memory_run(streamed, tmp_path_factory):
    d, info = streamed
    ref = tiny_run(tmp_path_factory)  # the same scenario, everything in memory
    assert json.loads((ref / "run.json").read_text())["sample"] is None
    for name in ATTACK_TABLES:
        a = pd.read_parquet(d / "attacks" / f"{name}.parquet")
        b = pd.read_parquet(ref / "attacks" / f"{name}.parquet")
        pd.testing.assert_frame_equal(a, b, check_dtype=False, obj=name)
    assert info["headline"] == json.loads((ref / "run.json").read_text())["headline"]
    inf = pd.read_parquet(d / "inferred.parquet").sort_values("pseudonym").reset_index(drop=True)
    inf_ref = pd.read_parquet(ref / "inferred.parquet").sort_values("pseudonym").reset_index(drop=True)
    pd.testing.assert_frame_equal(inf, inf_ref, check_dtype=False)


def test_context_figures_are_on_the_recorded_sample(streamed):
    d, info = streamed
    smp = info["sample"]
    assert smp["devices"] == 80 and smp["of"] == 300
    assert json.loads((d / "calibration.json").read_text())["sample"] == smp
    assert json.loads((d / "calibration.json").read_text())["devices"] == 80
    # the sample's pings were written by the streamed stage, read, and removed
    from sim.pipeline.main import SAMPLE_PINGS_DIR

    assert not (d / SAMPLE_PINGS_DIR).exists()
    from sim.release.dataset import load_sample

    held = load_sample(d, 80).release
    wf = pd.read_parquet(d / "attacks" / "waterfall.parquet")
    # the waterfall counts the sampled devices with a ping, not the release's 300
    assert int(wf.loc[wf["step"] == "all_devices", "n"].iloc[0]) == int((held.lengths > 0).sum()) <= 80
    lad = pd.read_parquet(d / "attacks" / "ladder.parquet")
    assert int(lad["n"].max()) > 200  # the attack tables count the whole release
    assert "infer_attacks_streaming_s" in info["timings_s"]
    peaks = info["peak_rss_mb"]  # per stage (Linux): every stage that ran, each a positive figure
    assert set(peaks) == {k[:-2] for k in info["timings_s"]}
    assert all(v is None or v > 0 for v in peaks.values())
    starts = info["start_rss_mb"]  # what each stage began from: part of its peak
    assert set(starts) == set(peaks)
    for k, v in starts.items():
        assert v is None or 0 < v <= (peaks[k] if k != "generate" else info["stage_processes"]["generate"]["this_process_mb"])
    # a streamed run generates in a child process; its figure is both processes' peaks summed
    gen = info["stage_processes"]["generate"]
    assert gen["child_mb"] > 0
    if peaks["generate"] is not None:
        assert peaks["generate"] == pytest.approx(gen["this_process_mb"] + gen["child_mb"], abs=0.1)
    page = (d / "report.md").read_text()
    assert "seeded random sample of 80 devices" in page


def test_cli_sample_devices(tmp_path, capsys):
    from sim.cli import main

    cfg = tmp_path / "s.toml"
    cfg.write_text("n_devices = 120\nblock_devices = 50\n[world]\nresidents = 1200\n[pings]\ndays = 3\n")
    assert main(["run", "--config", str(cfg), "--out", str(tmp_path / "o"), "-q", "--sample-devices", "40"]) == 0
    assert "context figures on a seeded sample of 40 devices" in capsys.readouterr().out
    assert json.loads((tmp_path / "o" / "run.json").read_text())["sample"]["devices"] == 40
    assert main(["run", "--config", str(cfg), "--out", str(tmp_path / "p"), "-q", "--sample-devices", "-2"]) == 2
    assert not (tmp_path / "p").exists()


def test_dask_backend_gives_the_local_tables(streamed, tmp_path):
    """``run_main(backend="dask")`` (``reidsim run --backend dask``): the part-by-part
    stage on a LocalCluster of two worker processes writes the local backend's tables and
    records the workers' peaks."""
    from sim.pipeline.main import run_main

    d, info = streamed
    scn = tiny_scenario().replace(block_devices=97)
    got = run_main(scn, tmp_path / "o", report=False, progress=False, sample_devices=80, backend="dask", n_workers=2)
    assert got["headline"] == info["headline"]
    assert got["stream"]["backend"] == "dask" and got["stream"]["n_workers"] == 2
    assert len(got["stream"]["worker_peak_rss_mb"]) == 2 and all(v > 0 for v in got["stream"]["worker_peak_rss_mb"])
    assert info["stream"]["backend"] == "local" and "worker_peak_rss_mb" not in info["stream"]
    for name in ATTACK_TABLES:
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "o" / "attacks" / f"{name}.parquet"),
                                      pd.read_parquet(d / "attacks" / f"{name}.parquet"), obj=name)
