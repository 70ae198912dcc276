"""Sweeps: validation before any work, tidy output, resume after an interruption,
and privacy that never improves when a defense is weakened (where provable)."""

import numpy as np
import pandas as pd
import pytest

import sim.pipeline.evaluate
import sim.pipeline.sweep
from sim.core.errors import ConfigError
from sim.pipeline.sweep import cell_key, plan_sweep, run_sweep

BASE = {"n_devices": 120, "world": {"residents": 1200}, "pings": {"days": 3}}


def _desc(**sweep):
    s = {"replicates": [1, 2], "attacks": ["linkage"], "max_cells": 50}
    s.update(sweep)
    s.setdefault("defenses", [{"name": "subsample", "grid": {"fraction": [0.5, 0.2]}}])
    return {"name": "t", "scenario": BASE, "sweep": s}


def test_plan_expands_grid_with_baseline():
    plan = plan_sweep(_desc(defenses=[{"name": "grid", "grid": {"cell_m": [100.0, 500.0]}},
                                      {"name": "subsample", "grid": {"fraction": [0.5]}}]))
    assert plan["settings"] == [("none", {}), ("grid", {"cell_m": 100.0}), ("grid", {"cell_m": 500.0}),
                                ("subsample", {"fraction": 0.5})]
    assert plan["n_cells"] == 8


@pytest.mark.parametrize("desc, match", [
    (_desc(defenses=[{"name": "blur", "grid": {"x": [1]}}]), "unknown defense 'blur'"),
    (_desc(defenses=[{"name": "subsample", "grid": {"fraction": [1.5]}}]), "fraction"),
    (_desc(defenses=[{"name": "subsample", "grid": {"fraction": []}}]), "non-empty list"),
    (_desc(defenses=[{"name": "subsample", "grid": {"fraction": [0.1] * 30}}]), "max_cells"),
    (_desc(attacks=["linkage", "mind_reading"]), "unknown sweep attack"),
    (_desc(replicates=[]), "replicates"),
    (_desc(replicates=[1, 1]), "repeated"),
    (_desc(colour="red"), r"unknown key 'colour' in \[sweep\]"),
    ({"sweep": {"replicates": [1]}, "scenario": {"pings": {"days": -1}}}, "pings.days"),
])
def test_bad_sweeps_fail_before_any_work(tmp_path, desc, match):
    with pytest.raises(ConfigError, match=match):
        run_sweep(_write(tmp_path, desc), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def _write(tmp_path, desc):
    import tomli_w

    p = tmp_path / "sweep.toml"
    p.write_bytes(tomli_w.dumps(desc).encode())
    return p


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep_full")
    plan = plan_sweep(_desc())
    res = run_sweep(plan, out, progress=False)
    return plan, out, res


def test_tidy_table(full_run):
    plan, out, res = full_run
    t = pd.read_parquet(out / "results.parquet")
    assert res["cells_done"] == plan["n_cells"] == 6
    for col in ("scenario", "config_hash", "replicate", "seed", "defense", "params", "param_name",
                "param_value", "kind", "metric", "value", "ci_low", "ci_high", "n"):
        assert col in t.columns
    # one row per defense x params x replicate x metric (x level/key for the linkage)
    key = ["defense", "params", "seed", "kind", "metric", "level", "key", "days", "p", "v_m", "h_h"]
    assert not t.duplicated(key).any()
    assert set(t["seed"]) == {1, 2}
    assert set(t["defense"]) == {"none", "subsample"}
    assert (t.groupby("seed")["config_hash"].nunique() == 1).all()
    assert t.loc[t.seed == 1, "config_hash"].iloc[0] != t.loc[t.seed == 2, "config_hash"].iloc[0]
    assert {"privacy", "utility"} == set(t["kind"])
    assert (out / "figures" / "privacy_utility_linkage.png").exists()
    pooled = pd.read_parquet(out / "results_pooled.parquet")
    one = pooled[(pooled.defense == "none") & (pooled.metric == "linkage_identified")
                 & (pooled.level == "building") & (pooled.key == "home_work")]
    assert len(one) == 1 and int(one["n_replicates"].iloc[0]) == 2
    raw = t[(t.defense == "none") & (t.metric == "linkage_identified") & (t.level == "building")
            & (t.key == "home_work")]["value"]
    assert one["value"].iloc[0] == pytest.approx(raw.mean())
    assert one["ci_low"].iloc[0] <= one["value"].iloc[0] <= one["ci_high"].iloc[0]


def test_rerun_skips_done_cells(full_run):
    plan, out, _ = full_run
    before = {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()}
    res = run_sweep(plan, out, progress=False)
    assert res["cells_done"] == 0 and res["cells_skipped"] == plan["n_cells"]
    after = {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()}
    assert before == after


def test_resume_after_interruption_matches_uninterrupted(full_run, tmp_path, monkeypatch):
    plan, out_full, _ = full_run
    real = sim.pipeline.sweep.evaluate_defense
    calls = {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt("simulated interruption")
        return real(*a, **k)

    monkeypatch.setattr(sim.pipeline.sweep, "evaluate_defense", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(plan, tmp_path, progress=False)
    assert len(list((tmp_path / "cells").glob("*.parquet"))) == 3
    assert not list((tmp_path / "cells").glob(".*tmp*"))  # no half-written cell
    monkeypatch.setattr(sim.pipeline.sweep, "evaluate_defense", real)
    res = run_sweep(plan, tmp_path, progress=False)
    assert res["cells_done"] == 3 and res["cells_skipped"] == 3
    a = pd.read_parquet(tmp_path / "results.parquet")
    b = pd.read_parquet(out_full / "results.parquet")
    pd.testing.assert_frame_equal(a, b)


def test_cell_key_depends_on_everything():
    from sim.core.config import Scenario

    s = Scenario.from_dict(BASE)
    k = cell_key(s, "subsample", {"fraction": 0.5}, ("linkage",))
    assert k != cell_key(s.replace(seed=s.seed + 1), "subsample", {"fraction": 0.5}, ("linkage",))
    assert k != cell_key(s, "subsample", {"fraction": 0.2}, ("linkage",))
    assert k != cell_key(s, "grid", {"cell_m": 0.5}, ("linkage",))
    assert k != cell_key(s, "subsample", {"fraction": 0.5}, ("linkage", "unicity"))


# --------------------------------------------------------------------------------------
# Privacy never improves when a defense is weakened, for risks where that is provable:
# the weaker setting keeps a superset of pings (same seed, same draws), so any risk that
# is monotone in the set of released pings can only grow.
@pytest.fixture(scope="module")
def small_sim():
    from sim.api import simulate

    return simulate(n_devices=150, days=4, seed=11, residents=1500)


def _home_exposure(traces, sim, radius_m=100.0):
    """Share of devices with at least one released ping within radius of the true home
    (monotone in the set of released pings)."""
    ps = sim.pseudonyms.drop_duplicates("pseudonym").set_index("pseudonym")
    pers = sim.persons.set_index("person_id")
    dev = ps.loc[traces.pseudonym, "person_id"].to_numpy()
    hx = pers.loc[dev, "home_x_m"].to_numpy()
    hy = pers.loc[dev, "home_y_m"].to_numpy()
    tr = traces.trace_index()
    near = np.hypot(traces.x_m - hx[tr], traces.y_m - hy[tr]) <= radius_m
    exposed = np.zeros(traces.n_traces, bool)
    np.logical_or.at(exposed, tr, near)
    return set(traces.pseudonym[exposed])


def _known_point_recall(traces, ref_points):
    """For each device, whether all its attacker-known (t, x, y) points are still in the
    release: the target stays findable.  Monotone in the set of released pings."""
    have = set(zip(traces.pseudonym[traces.trace_index()], traces.t_s.tolist()))
    return {p for p, pts in ref_points.items() if all((p, t) in have for t in pts)}


@pytest.mark.parametrize("name, weak_to_strong", [
    ("subsample", [{"fraction": 1.0}, {"fraction": 0.7}, {"fraction": 0.4}, {"fraction": 0.1}]),
    ("daily_cap", [{"max_per_day": 50}, {"max_per_day": 10}, {"max_per_day": 3}]),
    ("home_suppression", [{"radius_m": 0.0}, {"radius_m": 50.0}, {"radius_m": 300.0}]),
    ("night_suppression", [{"duration_h": 0.0}, {"duration_h": 4.0}, {"duration_h": 8.0}]),
])
def test_weakening_never_improves_privacy(small_sim, name, weak_to_strong):
    from sim.release.defenses import apply_defense

    ctx = sim.pipeline.evaluate.broker_context(small_sim)
    rel = small_sim.release
    rng = np.random.default_rng(0)
    ref = {}
    for i, p in enumerate(rel.pseudonym):
        a, b = rel.offsets[i], rel.offsets[i + 1]
        if b - a >= 2:
            ref[p] = rel.t_s[a + rng.choice(b - a, 2, replace=False)].tolist()
    exposures, recalls = [], []
    for params in weak_to_strong:
        out, _ = apply_defense(name, rel, ctx, **params)
        exposures.append(_home_exposure(out, small_sim))
        recalls.append(_known_point_recall(out, ref))
    for weak, strong in zip(exposures, exposures[1:]):
        assert strong <= weak
    for weak, strong in zip(recalls, recalls[1:]):
        assert strong <= weak
    # and the defenses do bite somewhere in the range tested
    assert len(exposures[-1]) < len(exposures[0]) or len(recalls[-1]) < len(recalls[0])


def test_dask_backend_gives_the_same_cells(full_run, tmp_path):
    """One task per cell on a 2-worker LocalCluster; the client writes the cells."""
    plan, out_full, _ = full_run
    res = run_sweep(plan, tmp_path, progress=False, backend="dask", n_workers=2)
    assert res["backend"] == "dask" and res["cells_done"] == plan["n_cells"]
    assert sorted(p.name for p in (tmp_path / "cells").iterdir()) == \
        sorted(p.name for p in (out_full / "cells").iterdir())
    for p in (out_full / "cells").iterdir():
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "cells" / p.name), pd.read_parquet(p))
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "results.parquet"),
                                  pd.read_parquet(out_full / "results.parquet"))


@pytest.mark.parametrize("kw, match", [({"backend": "spark"}, "backend"), ({"n_workers": 0}, "n_workers")])
def test_bad_backend_settings(full_run, tmp_path, kw, match):
    plan, _, _ = full_run
    with pytest.raises(ConfigError, match=match):
        run_sweep(plan, tmp_path, progress=False, **kw)
    assert not (tmp_path / "cells").exists()
