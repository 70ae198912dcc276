"""The scaling benchmark's cost model (``benchmarks/bench_scale.py``): the slopes it
reports against the linear-cost target, and the split of ``reidsim run``'s stages."""
import importlib.util
import math
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    import sys

    sys.path.insert(0, str(BENCH))  # the script imports its sibling _common
    try:
        spec = importlib.util.spec_from_file_location("bench_scale", BENCH / "bench_scale.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(BENCH))
    return mod


def _rows(stage, walls, sizes=(10_000, 100_000, 1_000_000), days=30):
    return [{"stage": stage, "devices": n, "device_days": n * days, "wall_s": w} for n, w in zip(sizes, walls)]


def test_linear_cost_has_slope_one_everywhere(bench):
    d = bench.slope_detail(_rows("stream", [2.0, 20.0, 200.0]))
    assert [round(g["slope"], 12) for g in d["wall_segments"]] == [1.0, 1.0]
    assert d["fixed_plus_linear"]["fixed_s"] == pytest.approx(0.0, abs=1e-9)
    assert d["fixed_plus_linear"]["s_per_m_device_days"] == pytest.approx(2.0 / 0.3)
    assert d["within_10pct_of_linear"] == {"fit": True, "top_segment": True}


def test_fixed_cost_bends_the_slope_below_one_and_the_fit_finds_it(bench):
    # wall = 10 s + 1 s per 100,000 device-days: the 10k point is mostly the fixed cost
    walls = [10 + n * 30 / 1e5 for n in (10_000, 100_000, 1_000_000)]
    d = bench.slope_detail(_rows("generate", walls))
    first, top = (g["slope"] for g in d["wall_segments"])
    assert first == pytest.approx(math.log10(walls[1] / walls[0]))
    assert first < top < 1
    assert d["fixed_plus_linear"]["fixed_s"] == pytest.approx(10.0)
    assert d["fixed_plus_linear"]["s_per_m_device_days"] == pytest.approx(10.0)
    assert d["within_10pct_of_linear"]["fit"] is False


def test_superlinear_cost_fails_the_target(bench):
    d = bench.slope_detail(_rows("attack", [1.0, 15.0, 225.0]))  # slope log10(15) = 1.18
    assert d["wall_segments"][-1]["slope"] == pytest.approx(math.log10(15))
    assert d["within_10pct_of_linear"] == {"fit": False, "top_segment": False}


def test_one_point_has_no_slope(bench):
    d = bench.slope_detail(_rows("defend", [3.0], sizes=(10_000,)))
    assert d["wall_segments"] == [] and d["fixed_plus_linear"] is None
    assert d["within_10pct_of_linear"] == {"fit": None, "top_segment": None}


def test_run_stages_split_release_and_sample_stages(bench):
    rows = [
        {"devices": 10_000, "device_days": 300_000,  # in memory: no streaming stage, left out of the split
         "run_timings_s": {"generate_s": 2.0, "infer_s": 1.0, "attacks_s": 7.0, "context_s": 9.0}},
        {"devices": 100_000, "device_days": 3_000_000,
         "run_timings_s": {"generate_s": 10.0, "infer_attacks_streaming_s": 50.0, "load_validate_s": 8.0,
                           "context_s": 12.0}},
        {"devices": 1_000_000, "device_days": 30_000_000,
         "run_timings_s": {"generate_s": 100.0, "infer_attacks_streaming_s": 500.0, "load_validate_s": 8.0,
                           "context_s": 12.0}},
    ]
    r = bench.run_stages(rows)
    assert [(x["devices"], x["data_s"], x["sample_s"]) for x in r["split"]] == [
        (100_000, 60.0, 20.0), (1_000_000, 600.0, 20.0)]
    assert r["data_slope"] == pytest.approx(1.0)
    assert r["sample_slope"] == pytest.approx(0.0, abs=1e-12)
    assert set(r["seconds"]) == {"10000", "100000", "1000000"}
