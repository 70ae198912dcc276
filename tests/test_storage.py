"""Datasets at fsspec URLs (sim.core.storage): generate, check, infer, attack and defend
through ``memory://`` (process-local: the local backend and a threaded Dask cluster) and
``file://`` (Dask process workers), compared with the same dataset on a local path."""
from __future__ import annotations

import pickle
import uuid
from pathlib import Path

import fsspec
import pandas as pd
import pyarrow.parquet as pq
import pytest

from sim.core.config import Scenario
from sim.core.errors import InputError
from sim.core.storage import URLPath, as_path, read_frame
from sim.generate import engine
from sim.generate.engine import generate
from sim.pipeline.stream import infer_streaming
from sim.release.dataset import check_dataset, dataset_digest, load, read_release_part

MEM = fsspec.filesystem("memory")


@pytest.fixture(scope="module")
def scn():
    return Scenario().replace(n_devices=300, pings__days=3, seed=11, block_devices=110, world__residents=3000)


@pytest.fixture(scope="module")
def bucket():
    """A fresh memory:// prefix for this module, removed at its end."""
    name = f"reidsim-test-{uuid.uuid4().hex[:8]}"
    yield f"memory://{name}"
    if MEM.exists(f"/{name}"):
        MEM.rm(f"/{name}", recursive=True)


@pytest.fixture(scope="module")
def local_ds(scn, tmp_path_factory):
    d = tmp_path_factory.mktemp("local_ds") / "ds"
    return d, generate(scn, d, progress=False)


@pytest.fixture(scope="module")
def url_ds(scn, bucket):
    url = f"{bucket}/ds"
    return url, generate(scn, url, progress=False)


def _keys(url: str) -> list:
    p = as_path(url)
    return sorted(k[len(p.path) + 1:] for k in p.fsspec.find(p.path)) if p.fsspec.exists(p.path) else []


# ------------------------------------------------------------------ the storage layer
def test_as_path_keeps_local_paths_and_parses_urls(tmp_path):
    assert as_path(str(tmp_path)) == tmp_path and type(as_path(str(tmp_path))) is type(tmp_path)
    u = as_path("memory://b/x/")
    assert isinstance(u, URLPath) and str(u) == "memory://b/x" and u.name == "x"
    c = u / "pings" / "part-00000.parquet"
    assert str(c) == "memory://b/x/pings/part-00000.parquet" and c.stem == "part-00000"
    assert c.parent.parent == u and c.with_suffix(".csv").name == "part-00000.csv"
    assert pickle.loads(pickle.dumps(c)) == c  # workers get the URL and reopen the store
    assert as_path("file:///tmp/x").is_local and not u.is_local


def test_unknown_scheme_and_missing_backend_are_input_errors():
    with pytest.raises(InputError, match="nosuchscheme://"):
        as_path("nosuchscheme://bucket/ds")
    try:
        import s3fs  # noqa: F401
    except ImportError:
        with pytest.raises(InputError, match="s3fs"):
            check_dataset("s3://bucket/ds")
    else:
        pytest.skip("s3fs is installed here: the missing-backend error cannot be seen")


def test_missing_dataset_and_missing_manifest_are_refused(url_ds, bucket):
    with pytest.raises(InputError, match="no such folder"):
        check_dataset(f"{bucket}/nothing-here")
    url, _ = url_ds
    src, dst = as_path(url), as_path(f"{bucket}/no-manifest")
    for k in _keys(url):
        if k != "manifest.json":
            MEM.copy(f"{src.path}/{k}", f"{dst.path}/{k}")
    with pytest.raises(InputError, match="no manifest.json"):
        check_dataset(str(dst))
    with pytest.raises(InputError, match="no manifest.json"):
        infer_streaming(str(dst), out_dir=None)


# ------------------------------------------------------------------ generate
def test_generate_to_url_equals_local(local_ds, url_ds):
    (d, ml), (url, mu) = local_ds, url_ds
    assert mu["parts"] == ml["parts"] and mu["dataset_id"] == ml["dataset_id"] and len(ml["parts"]) == 3
    for rec in ml["parts"]:
        assert (as_path(url) / "pings" / rec["file"]).read_bytes() == (d / "pings" / rec["file"]).read_bytes()
    assert dataset_digest(url) == dataset_digest(d)
    assert check_dataset(url, verify_hashes=True)["dataset_id"] == ml["dataset_id"]
    keys = _keys(url)
    assert not [k for k in keys if ".tmp-" in k or "staging" in k], keys  # nothing left behind
    assert {k.split("/")[0] for k in keys} == {"manifest.json", "pings", "truth", "world", "register.parquet"}
    a, b = load(d), load(url)
    assert a.release.n_pings == b.release.n_pings and a.world.crs == b.world.crs
    pd.testing.assert_frame_equal(a.persons, b.persons)
    pd.testing.assert_frame_equal(a.register, b.register)


def test_generate_dask_threaded_to_memory_url(scn, bucket, local_ds):
    from dask.distributed import LocalCluster

    d, ml = local_ds
    url = f"{bucket}/dask"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        m = generate(scn, url, progress=False, backend="dask", scheduler=cluster.scheduler_address)
    assert m["parts"] == ml["parts"] and dataset_digest(url) == dataset_digest(d)


def test_url_output_rules(scn, bucket, url_ds):
    url, man = url_ds
    with pytest.raises(InputError, match="--overwrite"):
        generate(scn, url, progress=False)
    user = as_path(f"{bucket}/users")
    user.fsspec.pipe_file(f"{user.path}/thesis.txt", b"mine")
    with pytest.raises(InputError, match="not a reidsim folder"):
        generate(scn, str(user), progress=False)
    assert _keys(str(user)) == ["thesis.txt"]
    # overwrite keeps keys that are not reidsim's
    target = f"{bucket}/again"
    generate(scn, target, progress=False)
    as_path(target).fsspec.pipe_file(f"{as_path(target).path}/notes.txt", b"mine")
    m = generate(scn, target, progress=False, overwrite=True)
    assert m["dataset_id"] == man["dataset_id"] and "notes.txt" in _keys(target)
    assert (as_path(target) / "notes.txt").read_bytes() == b"mine"


def test_interrupted_generate_leaves_no_manifest_and_no_final_part(scn, bucket, monkeypatch, url_ds):
    real = engine.generate_block
    calls = []

    def failing(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("killed in the middle")
        return real(*a, **k)

    monkeypatch.setattr(engine, "generate_block", failing)
    target = f"{bucket}/interrupted"
    with pytest.raises(RuntimeError, match="killed"):
        generate(scn, target, progress=False)
    keys = _keys(target)
    assert "manifest.json" not in keys and not [k for k in keys if k.startswith("pings/")], keys
    with pytest.raises(InputError):
        check_dataset(target)
    # over an existing dataset: the old one stays whole (the new one was only staged)
    url, man = url_ds
    calls.clear()
    with pytest.raises(RuntimeError, match="killed"):
        generate(scn, url, progress=False, overwrite=True)
    assert check_dataset(url, verify_hashes=True)["dataset_id"] == man["dataset_id"]


def test_half_written_part_never_reaches_its_final_key(bucket, url_ds, monkeypatch):
    url, man = url_ds
    table = pq.read_table(as_path(url).path + "/pings/part-00000.parquet", filesystem=as_path(url).fs)
    final = as_path(f"{bucket}/half/pings/part-00000.parquet")

    def half(table, where, **kw):  # writes some bytes, then dies
        Path(where).write_bytes(b"PAR1 half a part")
        raise OSError("disk full")

    monkeypatch.setattr(engine.pq, "write_table", half)
    with pytest.raises(OSError, match="disk full"):
        engine.write_pings_part(table, str(final))
    monkeypatch.undo()
    # the upload dies between the temporary key and the move
    fs = final.fsspec

    def no_move(*a, **k):
        raise OSError("connection reset")

    monkeypatch.setattr(fs, "mv", no_move)
    with pytest.raises(OSError, match="connection reset"):
        engine.write_pings_part(table, str(final))
    monkeypatch.undo()
    assert _keys(f"{bucket}/half") == []  # no final key, no temporary key


# ------------------------------------------------------------------ infer and attack from a URL
def _inferred(folder) -> dict:
    f = as_path(folder) / "inferred"
    return {p.name: p.read_bytes() for p in f.iterdir() if p.name != "summary.json"}


def test_infer_from_url_equals_local(local_ds, url_ds, tmp_path, bucket):
    from dask.distributed import LocalCluster

    (d, _), (url, _) = local_ds, url_ds
    a = infer_streaming(d, tmp_path / "local")
    b = infer_streaming(url, tmp_path / "from_url")
    c = infer_streaming(url, f"{bucket}/inferred_out")  # a URL output folder too
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        e = infer_streaming(url, tmp_path / "dask", backend="dask", scheduler=cluster.scheduler_address)
    ref = _inferred(tmp_path / "local")
    assert len(ref) == 6 and _inferred(tmp_path / "from_url") == ref
    assert _inferred(f"{bucket}/inferred_out") == ref and _inferred(tmp_path / "dask") == ref
    assert (as_path(f"{bucket}/inferred_out") / "inferred.parquet").read_bytes() == \
        (tmp_path / "local" / "inferred.parquet").read_bytes()
    assert a["rows"] == b["rows"] == c["rows"] == e["rows"] > 0


def test_attack_parts_from_url_equal_local(local_ds, url_ds, tmp_path, bucket):
    """The per-part attack functions (what Dask workers run) and the truth reads, given
    the URL string, return what they return for the local folder."""
    import numpy as np

    from sim.pipeline import stream_attacks as sa

    (d, man), (url, _) = local_ds, url_ds
    part = man["parts"][0]["file"]
    g0, g1 = sa.gathering_window(man["start_s"], man["utc_offset_s"], man["n_days"])
    import dataclasses

    plan = sa.MapPlan(days=(1, 3), infer_params={}, parts_dir=str(tmp_path), n_candidates=0,
                      topn_levels=("tract",), topn_ns=(2,), box=None, gathering=(g0, g1, 800.0))
    a = sa.attack_part(str(d), part, man, plan)
    b = sa.attack_part(url, part, man, dataclasses.replace(plan, parts_dir=f"{bucket}/parts"))
    assert len(a["crowds"]["n_pseudonyms"]) > 0
    for k in ("gx", "gy", "n_pseudonyms"):
        np.testing.assert_array_equal(a["crowds"][k], b["crowds"][k])
    assert (as_path(f"{bucket}/parts") / part).read_bytes() == (tmp_path / part).read_bytes()
    pd.testing.assert_frame_equal(a["span"], b["span"])
    assert "inferred" not in a and "inferred" not in b  # the driver reads them from the files compared above
    a2 = sa.attack_part(str(d), part, man, dataclasses.replace(plan, parts_dir=None))
    b2 = sa.attack_part(url, part, man, dataclasses.replace(plan, parts_dir=None))
    assert sorted(a2["inferred"]) == [1, 3]
    for w in a2["inferred"]:
        pd.testing.assert_frame_equal(a2["inferred"][w], b2["inferred"][w])
    assert a["topn"].keys() == b["topn"].keys()
    for x, y in zip(sa._truth(d), sa._truth(url)):
        pd.testing.assert_frame_equal(x, y)
    t1, t2 = read_release_part(d, part, man), read_release_part(url, part, man)
    np.testing.assert_array_equal(t1.x_m, t2.x_m)


def test_attack_from_url_equals_local(local_ds, url_ds, bucket, tmp_path):
    """A dataset at a URL, attacked part by part, gives the local run's tables, written
    to a local folder and to a URL alike."""
    from sim.pipeline.main import MAIN_ATTACK_CONFIG
    from sim.pipeline.stream_attacks import attack_streaming, dataset_attack_config

    (d, _), (url, _) = local_ds, url_ds
    a = attack_streaming(d, tmp_path / "a", config=dataset_attack_config(d, MAIN_ATTACK_CONFIG))
    b = attack_streaming(url, tmp_path / "b", config=dataset_attack_config(url, MAIN_ATTACK_CONFIG))
    c = attack_streaming(url, f"{bucket}/attack-out", config=dataset_attack_config(url, MAIN_ATTACK_CONFIG))
    assert a["tables"].keys() == b["tables"].keys() == c["tables"].keys()
    for k in a["tables"]:
        pd.testing.assert_frame_equal(a["tables"][k], b["tables"][k])
        pd.testing.assert_frame_equal(a["tables"][k], c["tables"][k])
    for name in ("linkage", "ladder"):
        pd.testing.assert_frame_equal(read_frame(as_path(f"{bucket}/attack-out/attacks/{name}.parquet")),
                                      pd.read_parquet(tmp_path / "a" / "attacks" / f"{name}.parquet"))
    assert "inferred_by_day.parquet" in [k.split("/")[-1] for k in _keys(f"{bucket}/attack-out")]
    assert not [k for k in _keys(f"{bucket}/attack-out") if "staging" in k]


# ------------------------------------------------------------------ file:// with process workers
def test_file_url_with_dask_process_workers(scn, local_ds, tmp_path):
    d, ml = local_ds
    url = "file://" + str(tmp_path / "ds")
    m = generate(scn, url, progress=False, backend="dask", n_workers=2)
    assert m["parts"] == ml["parts"]
    assert (tmp_path / "ds" / "manifest.json").is_file() and dataset_digest(url) == dataset_digest(d)
    infer_streaming(url, "file://" + str(tmp_path / "inf"), backend="dask", n_workers=2)
    infer_streaming(d, tmp_path / "ref")
    assert _inferred(tmp_path / "inf") == _inferred(tmp_path / "ref")


# ------------------------------------------------------------------ defend, world cache, CLI
def test_defend_url_to_url_equals_local(local_ds, url_ds, tmp_path, bucket):
    from sim.pipeline.defend import defend_streaming

    (d, _), (url, _) = local_ds, url_ds
    steps = ["rotate:period_days=1", "grid:cell_m=500"]
    a = defend_streaming(d, tmp_path / "def", steps)
    b = defend_streaming(url, f"{bucket}/def", steps)
    assert a["parts"] == b["parts"] and a["dataset_id"] == b["dataset_id"]
    assert dataset_digest(f"{bucket}/def") == dataset_digest(tmp_path / "def")


def test_world_cache_keys_a_url_by_its_content(url_ds):
    from sim.world.model import load_world_cached

    url, _ = url_ds
    w = load_world_cached(f"{url}/world")
    assert load_world_cached(f"{url}/world") is w
    assert load_world_cached(as_path(url) / "world") is w


def test_cli_infer_and_validate_a_url(url_ds, tmp_path, capsys):
    from sim.cli import main

    url, _ = url_ds
    assert main(["infer", url, "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "inferred" / "summary.json").is_file()
    assert main(["infer", "nosuchscheme://x/ds"]) == 2
    assert "nosuchscheme" in capsys.readouterr().err


@pytest.mark.parametrize("columns", [None, ["person_id", "home_x_m", "schedule"]])
def test_low_memory_read_gives_the_same_frame(local_ds, url_ds, columns):
    """read_frame(low_memory=True) frees each Arrow column as it converts it: the same
    frame (values, dtypes, column order) as the plain read, locally and through a URL."""
    for d in (local_ds[0], url_ds[0]):
        p = as_path(d) / "truth" / "persons.parquet"
        plain = read_frame(p, columns=columns)
        low = read_frame(p, columns=columns, low_memory=True)
        assert len(plain) > 0 and list(low.columns) == list(plain.columns)
        assert (low.dtypes == plain.dtypes).all()
        pd.testing.assert_frame_equal(low, plain)
