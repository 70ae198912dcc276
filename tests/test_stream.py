"""Streaming (part by part) inference: equal to whole-release inference row for row, the
same on Dask as in-process, atomic (an interrupted run leaves no partial ``inferred/``),
and bounded in memory by the largest part."""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sim.core.errors import InputError
from sim.core.files import read_dataset_id
from sim.infer import infer_home_work
from sim.release.dataset import iter_release_parts, load_release
from sim.pipeline import stream
from sim.pipeline.stream import infer_streaming, read_inferred


def by_pseudonym(df):
    return df.sort_values("pseudonym", kind="stable").reset_index(drop=True)


def staging(d):
    return [e.name for e in d.iterdir() if e.name.startswith(".")]


@pytest.fixture
def copy(small_dataset, tmp_path):
    d = tmp_path / "data"
    shutil.copytree(small_dataset[0], d)
    return d


def test_iter_release_parts_follows_the_manifest(small_dataset):
    d, man = small_dataset
    got = list(iter_release_parts(d))
    assert [name for name, _ in got] == [r["file"] for r in man["parts"]] and len(got) >= 4
    whole = load_release(d)
    assert sum(t.n_traces for _, t in got) == whole.n_traces
    assert sum(t.n_pings for _, t in got) == whole.n_pings
    for _, t in got:
        assert (t.crs, t.start_s, t.n_days, t.utc_offset_s) == (whole.crs, whole.start_s, whole.n_days,
                                                                 whole.utc_offset_s)


def test_streaming_equals_whole_release_row_for_row(small_dataset, tmp_path):
    d, man = small_dataset
    s = infer_streaming(d, out_dir=tmp_path / "o")
    whole = by_pseudonym(infer_home_work(load_release(d)))
    got = read_inferred(tmp_path / "o")
    pd.testing.assert_frame_equal(by_pseudonym(got), whole)
    # the concatenated table holds the same rows (part order), with the dataset recorded
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "o" / "inferred.parquet"), got)
    assert read_dataset_id(tmp_path / "o" / "inferred.parquet") == man["dataset_id"]
    assert s["rows"] == len(whole) and s["parts"] == len(man["parts"])
    assert s["known_home"] == int(whole["home_x_m"].notna().sum())
    assert s["pings"] == man["rows"]["pings"]
    for rec in man["parts"]:
        stem = rec["file"].removesuffix(".parquet")
        f = tmp_path / "o" / "inferred" / f"{stem}.parquet"
        assert read_dataset_id(f) == man["dataset_id"] and (f.with_suffix(".csv")).exists()
    summary = json.loads((tmp_path / "o" / "inferred" / "summary.json").read_text())
    assert summary["dataset_id"] == man["dataset_id"] and len(summary["per_part"]) == len(man["parts"])
    assert not staging(tmp_path / "o")


def test_streaming_with_a_prefix_and_parameters(small_dataset, tmp_path):
    d, _ = small_dataset
    s = infer_streaming(d, out_dir=tmp_path / "o", days=3, infer_params={"eps_m": 60.0, "min_samples": 2},
                        concat_max_rows=0)
    whole = by_pseudonym(infer_home_work(load_release(d).prefix(3), eps_m=60.0, min_samples=2))
    pd.testing.assert_frame_equal(by_pseudonym(read_inferred(tmp_path / "o")), whole)
    assert s["window_days"] == 3 and s["inferred_file"] is None
    assert not (tmp_path / "o" / "inferred.parquet").exists()


def test_dask_equals_local(small_dataset, tmp_path):
    d, man = small_dataset
    infer_streaming(d, out_dir=tmp_path / "local")
    s = infer_streaming(d, out_dir=tmp_path / "dask", backend="dask", n_workers=2)
    assert s["backend"] == "dask"
    for rec in man["parts"]:
        stem = rec["file"].removesuffix(".parquet")
        a = pq.read_table(tmp_path / "local" / "inferred" / f"{stem}.parquet")
        b = pq.read_table(tmp_path / "dask" / "inferred" / f"{stem}.parquet")
        assert a.equals(b, check_metadata=True), stem
    for f in ("inferred.parquet", "inferred.csv"):
        assert (tmp_path / "local" / f).read_bytes() == (tmp_path / "dask" / f).read_bytes()


def test_cli_infer_writes_both_layouts(copy, capsys):
    from sim.cli import main

    assert main(["infer", str(copy)]) == 0
    out = capsys.readouterr().out
    assert "part(s), local) ->" in out and "inferred.parquet" in out
    did = json.loads((copy / "manifest.json").read_text())["dataset_id"]
    assert read_dataset_id(copy / "inferred.parquet") == did
    pd.testing.assert_frame_equal(by_pseudonym(pd.read_parquet(copy / "inferred.parquet")),
                                  by_pseudonym(infer_home_work(load_release(copy))))
    assert len(list((copy / "inferred").glob("part-*.parquet"))) == len(list((copy / "pings").glob("*.parquet")))


def test_large_output_skips_the_concatenation_and_removes_a_stale_one(copy):
    infer_streaming(copy)
    assert (copy / "inferred.parquet").exists()
    s = infer_streaming(copy, concat_max_rows=10)  # "large": more rows than that
    assert s["inferred_file"] is None
    assert not (copy / "inferred.parquet").exists() and not (copy / "inferred.csv").exists()
    assert (copy / "inferred" / "summary.json").exists() and not staging(copy)


def test_concatenation_above_the_csv_limit_removes_a_stale_csv(copy, monkeypatch):
    """inferred.parquet of more rows than CSV_MAX_ROWS gets no CSV, and the CSV an earlier
    run left is removed with it (the folder never holds a CSV that disagrees)."""
    import sim.core.files as F

    infer_streaming(copy)
    assert (copy / "inferred.csv").exists()
    before = pd.read_parquet(copy / "inferred.parquet")
    monkeypatch.setattr(F, "CSV_MAX_ROWS", len(before) - 1)
    infer_streaming(copy)
    assert not (copy / "inferred.csv").exists() and not staging(copy)
    pd.testing.assert_frame_equal(pd.read_parquet(copy / "inferred.parquet"), before)


class Boom(KeyboardInterrupt):
    pass


def test_interrupted_run_leaves_no_partial_folder(copy, monkeypatch):
    real = stream.infer_part
    calls = []

    def flaky(**kw):
        calls.append(kw["part"])
        if len(calls) == 3:  # two parts already written to the staging folder
            raise Boom()
        return real(**kw)

    monkeypatch.setattr(stream, "infer_part", flaky)
    with pytest.raises(Boom):
        infer_streaming(copy)
    assert not (copy / "inferred").exists() and not (copy / "inferred.parquet").exists()
    assert not staging(copy)
    # with an earlier complete result, the interrupted run leaves it untouched
    monkeypatch.setattr(stream, "infer_part", real)
    infer_streaming(copy, days=2)
    before = {p.name: p.read_bytes() for p in (copy / "inferred").iterdir()}
    calls.clear()
    monkeypatch.setattr(stream, "infer_part", flaky)
    with pytest.raises(Boom):
        infer_streaming(copy)
    assert {p.name: p.read_bytes() for p in (copy / "inferred").iterdir()} == before
    assert set(pd.read_parquet(copy / "inferred.parquet")["window_days"]) == {2}
    assert not staging(copy)


def test_killed_run_leaves_only_staging_which_the_next_run_removes(copy):
    code = textwrap.dedent(f"""
        import os, signal
        from sim.pipeline import stream
        real, n = stream.infer_part, []
        def dying(**kw):
            n.append(1)
            if len(n) == 3:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(**kw)
        stream.infer_part = dying
        stream.infer_streaming({str(copy)!r})
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode != 0
    assert not (copy / "inferred").exists() and not (copy / "inferred.parquet").exists()
    assert staging(copy)  # the kill left its staging folder (with two parts) behind
    infer_streaming(copy)
    assert (copy / "inferred" / "summary.json").exists() and not staging(copy)


def test_a_pseudonym_in_two_parts_is_refused(copy):
    from sim.generate.engine import dataset_id, part_records

    parts = sorted((copy / "pings").glob("part-*.parquet"))
    a = pq.read_table(parts[0])
    first = a.column("pseudonym").combine_chunks().dictionary[0].as_py()
    rows = a.to_pandas()
    moved = rows[rows["pseudonym"] == first].copy()
    b = pq.read_table(parts[1]).to_pandas()
    b["pseudonym"] = b["pseudonym"].astype(str)
    moved["pseudonym"] = moved["pseudonym"].astype(str)
    moved["t_s"] += 1  # no duplicate timestamps with itself
    both = pd.concat([b, moved], ignore_index=True)
    pq.write_table(pa.Table.from_pandas(both, preserve_index=False), parts[1])
    man = json.loads((copy / "manifest.json").read_text())
    man["parts"] = part_records(copy / "pings")
    man["dataset_id"] = dataset_id(man)
    (copy / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(InputError, match="more than one part file"):
        infer_streaming(copy)
    assert not (copy / "inferred").exists() and not staging(copy)


def test_bad_arguments_and_foreign_out_dir(small_dataset, tmp_path):
    from sim.core.errors import ConfigError

    d, _ = small_dataset
    with pytest.raises(ConfigError, match="backend"):
        infer_streaming(d, out_dir=tmp_path / "o", backend="spark")
    with pytest.raises(ConfigError, match="days"):
        infer_streaming(d, out_dir=tmp_path / "o", days=0)
    with pytest.raises(ConfigError, match="unknown inference parameter"):
        infer_streaming(d, out_dir=tmp_path / "o", infer_params={"eps": 3})
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="did not write"):
        infer_streaming(d, out_dir=tmp_path / "mine")
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]
    with pytest.raises(InputError, match="is not a folder"):
        infer_streaming(tmp_path / "nope")


# ------------------------------------------------------------------ memory
MEM_CHILD = """
import json, resource, sys
mode, d, out = sys.argv[1], sys.argv[2], sys.argv[3]
from sim.release.dataset import check_dataset, load_release, read_release_part
from sim.infer import infer_home_work
from sim.pipeline.stream import infer_streaming
man = check_dataset(d)
if mode == "part":      # the largest part alone: what one step of streaming must hold
    big = max(man["parts"], key=lambda r: r["rows"])["file"]
    infer_home_work(read_release_part(d, big, man))
elif mode == "stream":
    infer_streaming(d, out_dir=out)
elif mode == "whole":
    infer_home_work(load_release(d))
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent (pytest)
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")]
rss = int(hwm[0].split()[1]) / 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"rss_mb": rss}))
"""


@pytest.mark.slow
def test_peak_memory_is_bounded_by_the_largest_part(tmp_path):
    """Peak RSS above the import baseline: streaming over 10 parts stays within 3x of
    inferring the largest part alone, while loading the whole release needs far more."""
    from sim.cli import main

    d = tmp_path / "d"
    assert main(["generate", "--devices", "20000", "--days", "7", "--block-devices", "2000", "--seed", "1",
                 "--out", str(d), "-q"]) == 0

    def peak(mode):
        env = dict(os.environ, NUMBA_NUM_THREADS="2")
        p = subprocess.run([sys.executable, "-c", MEM_CHILD, mode, str(d), str(tmp_path / f"o-{mode}")],
                           capture_output=True, text=True, env=env, timeout=600)
        assert p.returncode == 0, p.stderr[-2000:]
        return json.loads(p.stdout.strip().splitlines()[-1])["rss_mb"]

    base, part, streamed, whole = (peak(m) for m in ("imports", "part", "stream", "whole"))
    part_mb, stream_mb, whole_mb = part - base, streamed - base, whole - base
    assert stream_mb < 3 * part_mb, (base, part, streamed, whole)
    assert whole_mb > 2 * stream_mb, (base, part, streamed, whole)  # the data really is bigger than a part
