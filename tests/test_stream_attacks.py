"""Streaming (part by part) attacks: the same tables as ``run_attacks`` on the whole
release, for every attack (rotating IDs, a picked and a given geofence, samples smaller
than the panel, bootstrap intervals), the same files as the in-memory ``reidsim attack``,
the same on Dask as in-process, whatever the part size, one part in memory at a time,
and clear errors for broken input."""
import json
import shutil
import weakref

import numpy as np
import pandas as pd
import pytest
import pyarrow as pa
import pyarrow.parquet as pq
from shapely.geometry import box

from sim.attacks import run_attacks
from sim.attacks.gathering import pick_gathering
from sim.attacks.run import ATTACK_NAMES, PER_DEVICE_TABLES, summary
from sim.cli import main as cli
from sim.core.config import Scenario
from sim.core.errors import ConfigError, InputError
from sim.core.files import read_dataset_id, write_table
from sim.generate.engine import generate
from sim.pipeline import stream_attacks as SA
from sim.pipeline.evaluate import infer_by_day
from sim.pipeline.main import MAIN_ATTACK_CONFIG, main_attack_config
from sim.pipeline.stream_attacks import GATHERING, attack_streaming, dataset_attack_config
from sim.release.dataset import load

#: a rotating-ID scenario in several parts (240 devices in blocks of 70: 4 parts)
SCENARIO = dict(n_devices=240, seed=7, block_devices=70)
SAMPLES = dict(unicity_n_sample=150, known_n_targets=120)  # fewer than the ~600 pseudonyms


def canon(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(list(df.columns), kind="stable").reset_index(drop=True)


def assert_same_tables(got: dict, ref: dict) -> None:
    assert list(got) == list(ref)
    for name in ref:
        pd.testing.assert_frame_equal(canon(got[name]), canon(ref[name]), obj=name)


def make(out, **over):
    kw = {**SCENARIO, **over}
    scn = Scenario(n_devices=kw["n_devices"], seed=kw["seed"], block_devices=kw["block_devices"]).replace(
        pings__days=5, world__residents=2400, ids__rotation_days=2)
    generate(scn, out, progress=False)
    return out


@pytest.fixture(scope="module")
def rotating(tmp_path_factory):
    """(folder, loaded Simulation, inferred_by_day) of the rotating-ID dataset."""
    d = make(tmp_path_factory.mktemp("stream_attacks") / "data")
    sim = load(d)
    assert len(sim.meta["parts"]) >= 3 and sim.release.n_traces > 2 * SAMPLES["unicity_n_sample"]
    return d, sim, infer_by_day(sim.release)


@pytest.fixture(scope="module")
def main_result(rotating, tmp_path_factory):
    """The main job's configuration (picked geofence, re-linking) run both ways."""
    d, sim, ibd = rotating
    ref_cfg = main_attack_config(sim, SAMPLES)
    ref = run_attacks(sim.release, ibd, sim.register, sim.world, sim.pseudonyms, sim.persons, config=ref_cfg)
    got = attack_streaming(d, out_dir=tmp_path_factory.mktemp("o") / "out",
                           config=dataset_attack_config(d, MAIN_ATTACK_CONFIG, SAMPLES))
    return ref_cfg, ref, got


def test_equals_run_attacks_with_the_main_jobs_settings(main_result):
    ref_cfg, ref, got = main_result
    assert set(ref) == {"linkage", "linkage_per_device", "time_to_identification", "time_to_identification_device",
                        "time_to_identification_per_device", "ladder", "ladder_per_device", "ladder_relink",
                        "unicity", "unicity_power_law", "topn", "known_points", "geofence",
                        "geofence_per_pseudonym", "relink"}
    assert_same_tables(got["tables"], ref)
    # the fence picked out of core is pick_gathering's
    cfg = got["config"]
    assert cfg.geofence_polygon.equals_exact(ref_cfg["geofence_polygon"], 0)
    assert tuple(cfg.geofence_window_s) == tuple(ref_cfg["geofence_window_s"])
    assert len(ref["geofence_per_pseudonym"]) > 0 and len(ref["relink"]) > 0
    # the samples were smaller than the panel, so the merge of per-part candidates mattered
    u = ref["unicity"]
    assert (u["n"] + u["n_short"] == SAMPLES["unicity_n_sample"]).all() and (u["n_panel"] > 300).all()
    assert got["sample_candidates"] == SAMPLES["unicity_n_sample"]
    assert got["parts"] >= 3 and got["largest_part_pings"] < got["pings"]


def test_global_attacks_with_every_trace_a_given_fence_and_bootstrap(rotating):
    d, sim, ibd = rotating
    r = sim.release
    cfg = dict(attacks=("unicity", "topn", "known_points", "geofence", "linkage"), seed=3, ci="bootstrap",
               unicity_p=(1, 3), unicity_v_m=(300.0, 1500.0), unicity_h_h=(2.0,), unicity_n_sample=None,
               topn_n=(1, 2, 4), topn_by="days", levels=("building", "tract"), known_m=(1, 2, 5),
               known_sigma_m=(0.0, 30.0), known_jitter_s=120.0, known_n_targets=None,
               geofence_polygon=box(-3000, -3000, 3000, 3000), geofence_window_s=(r.start_s + 3600, r.start_s + 3 * 86400),
               geofence_level="block", geofence_key="home")
    ref = run_attacks(r, ibd, sim.register, sim.world, sim.pseudonyms, sim.persons, config=cfg)
    got = attack_streaming(d, config=cfg, write=False)
    assert_same_tables(got["tables"], ref)
    assert (ref["unicity"]["n"] + ref["unicity"]["n_short"] == r.n_traces).all()
    assert ref["geofence"].set_index("metric").loc["n_seen", "value"] > 10
    assert got["sample_candidates"] is None


def test_picked_fence_alone_collects_its_box_in_the_count_pass(rotating):
    """A picked fence with neither unicity nor known points: the map pass counts the
    crowds and a count pass collects only the box's pings; the fence and the tables are
    pick_gathering's."""
    d, sim, ibd = rotating
    poly, t0, t1 = pick_gathering(sim.release, sim.world)
    cfg = dict(attacks=("geofence",), seed=4, geofence_level="block")
    ref = run_attacks(sim.release, ibd, sim.register, sim.world, sim.pseudonyms, sim.persons,
                      config=dict(cfg, geofence_polygon=poly, geofence_window_s=(t0, t1)))
    got = attack_streaming(d, config=dict(cfg, geofence_polygon=SA.GATHERING), write=False)
    assert_same_tables(got["tables"], ref)
    assert got["config"].geofence_polygon.equals_exact(poly, 0)
    assert set(got["passes"]) == {"map", "count", "reduce"} and got["geofence"]["picked"]
    assert got["geofence"]["box_pings"] > 0 and len(ref["geofence_per_pseudonym"]) > 0


def test_part_size_does_not_change_the_tables(rotating, tmp_path):
    """The same scenario written in one part and in many gives the same tables."""
    d, sim, _ = rotating
    one = make(tmp_path / "one", block_devices=1000)
    many = make(tmp_path / "many", block_devices=25)
    cfg = dict(MAIN_ATTACK_CONFIG, seed=2, unicity_n_sample=40, known_n_targets=30, unicity_v_m=(500.0,),
               unicity_h_h=(4.0,), attacks=("unicity", "known_points", "topn", "time_to_identification"))
    a = attack_streaming(one, config=cfg, write=False)
    b = attack_streaming(many, config=cfg, write=False)
    assert a["parts"] == 1 and b["parts"] >= 9
    assert_same_tables(b["tables"], a["tables"])


def test_given_inferred_tables_skip_inference(rotating, tmp_path):
    d, sim, ibd = rotating
    cfg = dict(attacks=("linkage", "time_to_identification", "ladder"), relink_period_days=2.0, seed=1)
    ref = run_attacks(sim.release, ibd, sim.register, sim.world, sim.pseudonyms, sim.persons, config=cfg)
    out = tmp_path / "o"
    got = attack_streaming(d, out_dir=out, config=cfg, inferred_by_day=ibd)
    assert_same_tables(got["tables"], ref)
    assert not got["inferred"] and not got["inferred_written"]
    assert sorted(p.name for p in out.iterdir()) == ["attacks"]
    with pytest.raises(ConfigError, match="infer_params"):
        attack_streaming(d, config=cfg, inferred_by_day=ibd, infer_params={"eps_m": 60.0}, write=False)


def test_dask_equals_local(rotating, main_result, tmp_path):
    d, _, _ = rotating
    _, _, local = main_result
    got = attack_streaming(d, out_dir=tmp_path / "o", config=dataset_attack_config(d, MAIN_ATTACK_CONFIG, SAMPLES),
                           backend="dask", n_workers=2)
    assert got["backend"] == "dask" and got["n_workers"] == 2
    assert_same_tables(got["tables"], local["tables"])
    s = json.loads((tmp_path / "o" / "attacks" / "stream_summary.json").read_text())
    assert s["backend"] == "dask" and set(s["passes"]) == {"map", "count", "reduce"}



def test_per_device_tables_written_as_they_come(rotating, main_result, tmp_path):
    """hold_per_device=False: each per-device table is written as soon as its attack has
    run and is left out of the returned tables; the files and the other tables are the
    same as when they are held."""
    d, _, _ = rotating
    _, _, held = main_result
    got = attack_streaming(d, out_dir=tmp_path / "o", config=dataset_attack_config(d, MAIN_ATTACK_CONFIG, SAMPLES),
                           hold_per_device=False)
    per_device = set(PER_DEVICE_TABLES)
    assert per_device <= set(held["tables"]) and not per_device & set(got["tables"])
    assert_same_tables(got["tables"], {k: v for k, v in held["tables"].items() if k not in per_device})
    for name in PER_DEVICE_TABLES:
        write_table(held["tables"][name], tmp_path / "ref" / name)
        on_disk = pd.read_parquet(tmp_path / "o" / "attacks" / f"{name}.parquet")
        pd.testing.assert_frame_equal(on_disk, pd.read_parquet(tmp_path / "ref" / f"{name}.parquet"), obj=name)
        assert len(on_disk) > 0
        assert read_dataset_id(tmp_path / "o" / "attacks" / f"{name}.parquet") == got["dataset_id"]
    written = json.loads((tmp_path / "o" / "attacks" / "summary.json").read_text())
    assert written == json.loads(json.dumps(summary(held["tables"]), allow_nan=False)) and written["n_devices"] > 0

# ------------------------------------------------------------------ the command
def copy_dataset(src, dst):
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("attacks", "inferred*", ".reidsim-staging-*"))
    return dst


def test_cli_writes_what_the_in_memory_command_writes(rotating, tmp_path, capsys):
    d, _, _ = rotating
    a, b = copy_dataset(d, tmp_path / "mem"), copy_dataset(d, tmp_path / "stream")
    assert cli(["attack", str(a), "--in-memory"]) == 0
    mem_out = capsys.readouterr().out
    assert cli(["attack", str(b)]) == 0
    assert capsys.readouterr().out.replace("stream", "mem") == mem_out
    fa = sorted(str(p.relative_to(a)) for p in a.rglob("*") if p.is_file())
    fb = sorted(str(p.relative_to(b)) for p in b.rglob("*") if p.is_file())
    assert sorted(set(fb) - set(fa)) == ["attacks/stream_summary.json"] and set(fa) <= set(fb)
    for f in fa:
        if f.endswith(".parquet"):  # same rows in the same order, same dataset_id
            pd.testing.assert_frame_equal(pd.read_parquet(a / f), pd.read_parquet(b / f), obj=f)
            assert read_dataset_id(a / f) == read_dataset_id(b / f), f
        else:
            assert (a / f).read_bytes() == (b / f).read_bytes(), f
    s = json.loads((b / "attacks" / "stream_summary.json").read_text())
    man = json.loads((b / "manifest.json").read_text())
    assert s["dataset_id"] == man["dataset_id"] and s["parts"] == len(man["parts"])
    assert s["largest_part_pings"] == max(p["rows"] for p in man["parts"]) and s["inferred_written"]
    assert s["pings"] == man["rows"]["pings"] and s["backend"] == "local"
    assert not [e for e in b.iterdir() if e.name.startswith(".reidsim-staging")]


def test_cli_options_and_errors(rotating, tmp_path, capsys):
    d, _, _ = rotating
    assert cli(["attack", str(d), "--workers", "0"]) == 2
    assert cli(["attack", str(d), "--backend", "spark"]) == 2
    assert cli(["attack", str(tmp_path / "nope")]) == 2
    assert "is not a folder" in capsys.readouterr().err


# ------------------------------------------------------------------ memory
def test_one_part_in_memory_at_a_time(rotating, monkeypatch):
    """Every read of a part is released before the next one: no task ever holds two
    parts (weak references to each part's Traces and its ping arrays, which any view
    kept by a summary would keep alive)."""
    d, _, _ = rotating
    live, reads, most = [], [], [0]
    real = SA.read_release_part

    def reader(directory, part, manifest, **kw):
        alive = [r for r in live if r() is not None]
        most[0] = max(most[0], len(alive) + 1)
        t = real(directory, part, manifest, **kw)
        live[:] = alive + [weakref.ref(t), weakref.ref(t.t_s), weakref.ref(t.x_m), weakref.ref(t.pseudonym)]
        reads.append(part)
        return t

    monkeypatch.setattr(SA, "read_release_part", reader)
    got = attack_streaming(d, config=dataset_attack_config(d, MAIN_ATTACK_CONFIG, SAMPLES), write=False)
    parts = [r["file"] for r in json.loads((d / "manifest.json").read_text())["parts"]]
    assert reads == parts + parts  # the map pass, then the count pass: each part once per pass
    assert most[0] == 1
    assert got["largest_part_pings"] == max(r["pings"] for r in got["per_part"])


def test_truth_persons_and_windows_not_held_past_their_attacks(rotating, monkeypatch):
    """The reduce's truth persons (10 M rows at a million devices) are gone once the
    linkage and the geofence have scored, and no window (the whole release's included)
    is alive when the next one is read: the driver holds one window at a time (weak
    references)."""
    import sim.attacks.run as R

    d, _, _ = rotating
    refs, seen = {"windows": []}, {"persons_at_ttid": None, "alive_before_read": []}
    real_persons, real_ttid, real_read = SA._truth_persons, R.time_to_identification, SA._Windows._read

    def persons(directory):
        t = real_persons(directory)
        refs["persons"] = weakref.ref(t)
        return t

    def read(self, days):
        seen["alive_before_read"].append(sum(r() is not None for r in refs["windows"]))
        t = real_read(self, days)
        refs["windows"].append(weakref.ref(t))
        return t

    def ttid(*a, **kw):
        seen["persons_at_ttid"] = refs["persons"]() is not None
        return real_ttid(*a, **kw)

    monkeypatch.setattr(SA, "_truth_persons", persons)
    monkeypatch.setattr(SA._Windows, "_read", read)
    monkeypatch.setattr(R, "time_to_identification", ttid)
    got = attack_streaming(d, out_dir=d.parent / "held_check",
                           config=dataset_attack_config(d, MAIN_ATTACK_CONFIG, SAMPLES), hold_per_device=False)
    assert got["tables"]["geofence"]["n"].max() > 0 and len(seen["alive_before_read"]) > 3
    assert seen["persons_at_ttid"] is False
    assert set(seen["alive_before_read"]) == {0}


# ------------------------------------------------------------------ bad input
@pytest.fixture
def broken(rotating, tmp_path):
    return copy_dataset(rotating[0], tmp_path / "data")


def test_missing_or_changed_parts_are_refused(broken):
    parts = sorted((broken / "pings").glob("part-*.parquet"))
    parts[1].unlink()
    with pytest.raises(InputError, match="missing part file"):
        attack_streaming(broken)
    assert not (broken / "attacks").exists()


def test_a_changed_part_is_refused(broken):
    p = sorted((broken / "pings").glob("part-*.parquet"))[0]
    t = pq.read_table(p)
    pq.write_table(t.slice(0, t.num_rows - 5), p)
    with pytest.raises(InputError, match="rows|bytes|SHA-256"):
        attack_streaming(broken)
    assert not (broken / "attacks").exists()


def test_a_pseudonym_in_two_parts_is_refused(broken):
    from sim.generate.engine import dataset_id, part_records

    parts = sorted((broken / "pings").glob("part-*.parquet"))
    a = pq.read_table(parts[0]).to_pandas()
    moved = a[a["pseudonym"] == a["pseudonym"].iloc[0]].copy()
    b = pq.read_table(parts[1]).to_pandas()
    b["pseudonym"] = b["pseudonym"].astype(str)
    moved["pseudonym"] = moved["pseudonym"].astype(str)
    moved["t_s"] += 1
    pq.write_table(pa.Table.from_pandas(pd.concat([b, moved], ignore_index=True), preserve_index=False), parts[1])
    man = json.loads((broken / "manifest.json").read_text())
    man["parts"] = part_records(broken / "pings")
    man["dataset_id"] = dataset_id(man)
    (broken / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(InputError, match="more than one part file"):
        attack_streaming(broken, config={"attacks": ("linkage",)})
    assert not (broken / "attacks").exists()
    assert not [e for e in broken.iterdir() if e.name.startswith(".reidsim-staging")]


def test_bad_configuration(rotating, tmp_path):
    d, _, _ = rotating
    with pytest.raises(ConfigError, match="backend"):
        attack_streaming(d, backend="spark")
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match="n_workers"):
            attack_streaming(d, backend="dask", n_workers=bad)
    with pytest.raises(ConfigError, match="unknown attack"):
        attack_streaming(d, config={"attacks": ("nope",)})
    with pytest.raises(ConfigError, match="geofence_polygon"):
        attack_streaming(d, config={"geofence_polygon": "the mall"})
    with pytest.raises(ConfigError, match="picks its own window"):
        attack_streaming(d, config={"geofence_polygon": GATHERING, "geofence_window_s": (0, 1)})
    with pytest.raises(ConfigError, match="n_sample"):
        attack_streaming(d, config={"attacks": ("unicity",), "unicity_n_sample": 0})
    with pytest.raises(ConfigError, match="h_h"):
        attack_streaming(d, config={"attacks": ("unicity",), "unicity_h_h": (1e-9,)})
    with pytest.raises(ConfigError, match="unknown inference parameter"):
        attack_streaming(d, infer_params={"eps": 3})
    with pytest.raises(ConfigError, match="relink_method"):
        attack_streaming(d, config={"relink_period_days": 2.0, "relink_method": "magic"})
    with pytest.raises(ConfigError, match="zone level"):
        attack_streaming(d, config={"levels": ("street",)})
    # every check above came before anything was written into the dataset folder
    assert not (d / "attacks").exists() and not [e for e in d.iterdir() if e.name.startswith(".reidsim-staging")]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="did not write"):
        attack_streaming(d, out_dir=tmp_path / "mine")
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]


def test_gathering_window_is_pick_gatherings(rotating):
    _, sim, _ = rotating
    _, t0, t1 = pick_gathering(sim.release, sim.world)
    man = sim.meta
    assert SA.gathering_window(man["start_s"], man["utc_offset_s"], man["n_days"]) == (t0, t1)
    assert set(ATTACK_NAMES) == {"linkage", "time_to_identification", "ladder", "unicity", "topn", "known_points",
                                 "geofence", "relink"}


def split(release, k, seed=0):
    """``release`` cut into ``k`` random parts of whole traces (as Traces), and the rows."""
    rng = np.random.default_rng(seed)
    part_of = rng.integers(0, k, release.n_traces)
    rows = [np.flatnonzero(part_of == i) for i in range(k)]
    return [release.take(r) for r in rows], rows


@pytest.mark.parametrize("force_fallback", [False, True])
def test_drawn_points_are_the_whole_releases_draws(rotating, monkeypatch, force_fallback):
    """draw_trace_points (per part, no global key space) vs the reference: each sampled
    trace's distinct keys in the whole release's index, drawn with draw_points."""
    from sim.attacks import unicity as U

    _, sim, _ = rotating
    r = sim.release
    if force_fallback:  # the lexsort path taken when a part's key space would overflow
        monkeypatch.setattr(U, "_MAX_KEY", 0)
    sample = U.sample_traces(r, 60, seed=4)
    res = [(250.0, 1.0), (1000.0, 24.0)]
    got = U.draw_trace_points(r, sample, res, 5, seed=4)
    monkeypatch.setattr(U, "_MAX_KEY", 2**62)
    streams = U.trace_streams(r, sample, 4)
    for (v, h), (n_points, cells) in zip(res, got):
        ix, iy, tb = U.point_cells(r, v, h)
        origin = U.key_origin((ix.min(), iy.min(), tb.min()), (ix.max(), iy.max(), tb.max()))
        idx = U.build_index(r, v, h)
        keys = U.cell_keys(cells, origin)
        for s, i in enumerate(sample):
            a, b = idx.pt_offsets[i], idx.pt_offsets[i + 1]
            assert n_points[s] == b - a
            m = min(5, b - a)
            perm = np.empty(b - a, dtype=np.int64)
            U.draw_points(streams[s], b - a, m, perm)
            assert list(keys[s, :m]) == list(idx.pt_keys[a + perm[:m]])
        # and the counts summed over parts are matching_counts of the whole release
        parts, _ = split(r, 3, seed=int(v))
        for p in (1, 3, 5):
            whole = U.matching_counts(idx, sample, streams, p)
            summed = sum(U.count_containing(U.build_index(t, v, h, origin=origin), keys, n_points, p)
                         for t in parts)
            assert np.array_equal(np.minimum(summed, 2), whole), (v, h, p)


def test_known_points_summed_over_parts_are_the_whole_releases(rotating):
    from sim.attacks import known_points as K

    _, sim, _ = rotating
    r = sim.release
    targets = np.sort(np.random.default_rng(1).choice(r.n_traces, 50, replace=False))
    parts, rows = split(r, 4, seed=2)
    origin_of = {}
    for sigma, radius, tol in ((0.0, 50.0, 660), (100.0, 350.0, 60)):
        whole_c, whole_h = K.match_counts(r, targets, m=4, sigma_m=sigma, jitter_s=600.0, radius_m=radius, tol_s=tol,
                                          seed=9)
        ox, oy, ot, m_eff = K.target_observations(r, targets, m=4, sigma_m=sigma, jitter_s=600.0, seed=9)
        origin = origin_of.setdefault(radius, K.grid_origin(K.traces_bounds(r), radius, tol))
        c = np.zeros_like(whole_c)
        h = np.zeros_like(whole_h)
        for t, rw in zip(parts, rows):
            hit_rows = pd.Index(rw).get_indexer(targets)  # the target's row in its own part, else -1
            pc, ph = K.match_observations(t, ox, oy, ot, m_eff, hit_rows, radius_m=radius, tol_s=tol, origin=origin)
            c += pc
            h |= ph
        assert np.array_equal(c, whole_c) and np.array_equal(h, whole_h)
        if sigma == 0:  # exact positions within the time tolerance: the target always survives
            assert (whole_c[:, 0] >= 1).all() and whole_h[:, 0].all()
        else:  # a 60 s tolerance against 600 s of jitter loses targets: the hits must come out equal too
            assert not whole_h.all()


def test_key_spaces_from_extremes_equal_the_whole_releases(rotating):
    """The unicity key origin and the known-points grid taken from the parts' extremes
    are those the whole release gives itself (floor and // are monotone)."""
    from sim.attacks.known_points import grid_origin, traces_bounds
    from sim.attacks.unicity import key_origin, point_cells, resolution_origin

    _, sim, _ = rotating
    r = sim.release
    b = traces_bounds(r)
    for v, h in ((100.0, 1.0), (333.3, 0.25), (2000.0, 24.0)):
        ix, iy, tb = point_cells(r, v, h)
        assert resolution_origin(b, r.start_s, v, h) == key_origin((ix.min(), iy.min(), tb.min()),
                                                                   (ix.max(), iy.max(), tb.max()))
    for radius, tol in ((50.0, 660), (0.5, 0), (650.0, 61)):
        cw = max(radius, 1.0)
        x0, y0, t0, nx, ny, nt = grid_origin(b, radius, tol)
        assert nx == int(np.floor((r.x_m - x0) / cw).max()) + 1 and ny == int(np.floor((r.y_m - y0) / cw).max()) + 1
        assert nt == int(((r.t_s - t0) // tol if tol else r.t_s - t0).max()) + 1


def test_tables_above_csv_max_rows_get_no_csv(rotating, tmp_path, monkeypatch):
    """A table of more than ``CSV_MAX_ROWS`` rows is written as Parquet only, and the CSV
    an earlier run left for it is removed; smaller tables keep their CSV."""
    import sim.core.files as F

    d, sim, _ = rotating
    b = copy_dataset(d, tmp_path / "b")
    assert cli(["attack", str(b)]) == 0
    before = {p.name: pd.read_parquet(p) for p in (b / "attacks").glob("*.parquet")}
    assert (b / "inferred_by_day.csv").exists() and (b / "attacks" / "linkage_per_device.csv").exists()
    limit = sim.release.n_traces  # inferred.parquet has this many rows; inferred_by_day and linkage_per_device more
    monkeypatch.setattr(F, "CSV_MAX_ROWS", limit)
    assert cli(["attack", str(b)]) == 0
    for p in [b / "inferred_by_day.parquet", b / "inferred.parquet", *(b / "attacks").glob("*.parquet")]:
        rows = pq.ParquetFile(p).metadata.num_rows
        assert p.with_suffix(".csv").exists() == (rows <= limit), p.name
    assert not (b / "inferred_by_day.csv").exists() and (b / "inferred.csv").exists()
    assert not (b / "attacks" / "linkage_per_device.csv").exists()
    for name, t in before.items():  # the Parquet tables themselves are unchanged
        pd.testing.assert_frame_equal(pd.read_parquet(b / "attacks" / name), t, obj=name)
    # the in-memory writer follows the same rule
    F.write_table(pd.DataFrame({"a": np.arange(limit + 1)}), tmp_path / "t")
    F.write_table(pd.DataFrame({"a": np.arange(limit)}), tmp_path / "u")
    assert (tmp_path / "t.parquet").exists() and not (tmp_path / "t.csv").exists() and (tmp_path / "u.csv").exists()
