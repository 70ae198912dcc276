"""sim.release.dataset: atomic writes (also of a whole generate), reading releases and turning them
into Traces (every input error), manifests and the dataset digest."""
from __future__ import annotations

import datetime as dt
import json
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import sim.generate.engine as G
from sim.core.errors import InputError
from sim.core.files import atomic_path
from sim.release.dataset import dataset_digest, read_manifest, read_pings_table, release_to_traces, to_unix_seconds
from sim.world.crs import local_crs

CRS = local_crs(41.88, -87.63)


# ------------------------------------------------------------------ atomic_path
def test_atomic_path_replaces_only_on_success(tmp_path):
    p = tmp_path / "sub" / "f.txt"
    with atomic_path(p) as tmp:
        assert tmp.parent == p.parent and tmp != p
        tmp.write_text("one")
        assert not p.exists()
    assert p.read_text() == "one"
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            tmp.write_text("two, half-written")
            raise RuntimeError("crash")
    assert p.read_text() == "one"
    assert sorted(x.name for x in p.parent.iterdir()) == ["f.txt"]


# ------------------------------------------------------------------ interrupted generate
def _snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_interrupted_generate_leaves_the_old_dataset_intact(small_scenario, tmp_path, monkeypatch):
    out = tmp_path / "ds"
    G.generate(small_scenario, out, progress=False)
    before_digest = dataset_digest(out)
    before = _snapshot(out)
    real = G.write_pings_part
    calls = []

    def failing(table, path):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full (simulated)")
        real(table, path)

    monkeypatch.setattr(G, "write_pings_part", failing)
    with pytest.raises(OSError, match="simulated"):
        G.generate(small_scenario.replace(seed=6), out, progress=False, overwrite=True)
    assert len(calls) == 2
    assert dataset_digest(out) == before_digest
    assert _snapshot(out) == before  # every file byte-identical (manifest, truth, world too)
    assert _leftovers(out) == []


def test_regenerate_replaces_the_dataset_without_stale_parts(small_scenario, tmp_path):
    out = tmp_path / "ds"
    G.generate(small_scenario.replace(block_devices=50), out, progress=False)
    assert len(list((out / "pings").glob("part-*"))) == 6
    scn = small_scenario.replace(seed=9, block_devices=1000)
    G.generate(scn, out, progress=False, overwrite=True)
    assert len(list((out / "pings").glob("part-*"))) == 1
    G.generate(scn, tmp_path / "fresh", progress=False)
    assert dataset_digest(out) == dataset_digest(tmp_path / "fresh")
    assert read_manifest(out)["seed"] == 9
    assert _leftovers(out) == []


def test_generate_failing_before_any_part_cleans_up(small_scenario, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("world failed")

    monkeypatch.setattr(G, "synthesize", boom)
    with pytest.raises(RuntimeError):
        G.generate(small_scenario, tmp_path / "new", progress=False)
    assert list((tmp_path / "new").iterdir()) == []


# ------------------------------------------------------------------ release_to_traces
def _table(n_traces=4, per=5, seed=0, dictionary=False):
    rng = np.random.default_rng(seed)
    names = [f"{i:064x}" for i in rng.integers(0, 2**60, n_traces)]
    ps = np.repeat(names, per)
    t = 1_709_532_000 + np.tile(np.arange(per) * 600, n_traces) + np.repeat(np.arange(n_traces), per)
    lat = 41.88 + rng.normal(0, 0.02, len(t))
    lon = -87.63 + rng.normal(0, 0.02, len(t))
    acc = rng.uniform(3, 50, len(t)).astype(np.float32)
    tab = pa.table({"pseudonym": ps, "t_s": t, "lat_deg": lat, "lon_deg": lon, "accuracy_m": acc})
    if dictionary:
        tab = tab.set_column(0, "pseudonym", tab.column("pseudonym").dictionary_encode())
    return tab


def _same_traces(a, b):
    assert np.array_equal(a.pseudonym, b.pseudonym)
    assert np.array_equal(a.offsets, b.offsets)
    for c in ("t_s", "x_m", "y_m", "accuracy_m"):
        assert np.array_equal(getattr(a, c), getattr(b, c)), c


def test_release_to_traces_projects_and_groups():
    from sim.world.crs import project_from_latlon

    tab = _table()
    tr = release_to_traces(tab, CRS, -21600, start_s=1_709_532_000, n_days=3)
    assert tr.n_traces == 4 and tr.n_pings == 20
    assert list(tr.pseudonym) == sorted(set(tab.column("pseudonym").to_pylist()))
    df = tab.to_pandas().sort_values(["pseudonym", "t_s"])
    x, y = project_from_latlon(df["lat_deg"].to_numpy(), df["lon_deg"].to_numpy(), CRS)
    np.testing.assert_allclose(tr.x_m, x, atol=1e-6)
    np.testing.assert_allclose(tr.y_m, y, atol=1e-6)
    assert np.array_equal(tr.t_s, df["t_s"].to_numpy())
    assert (tr.crs, tr.utc_offset_s, tr.start_s, tr.n_days) == (CRS, -21600, 1_709_532_000, 3)
    # defaults: the window starts at the local midnight before the first ping
    tr2 = release_to_traces(tab, CRS, -21600)
    first = int(tab.column("t_s").to_numpy().min())
    assert tr2.start_s <= first < tr2.start_s + 86400
    assert (tr2.start_s - 21600) % 86400 == 0  # local midnight at UTC-6
    assert tr2.n_days == (int(tab.column("t_s").to_numpy().max()) - tr2.start_s) // 86400 + 1


def test_unsorted_input_gets_sorted():
    tab = _table(n_traces=6, per=7)
    ref = release_to_traces(tab, CRS, 0)
    rng = np.random.default_rng(1)
    for _ in range(3):
        shuffled = tab.take(pa.array(rng.permutation(tab.num_rows)))
        _same_traces(release_to_traces(shuffled, CRS, 0), ref)
    # traces in reverse pseudonym order but each time-sorted (the cheap path)
    inv = np.unique(tab.column("pseudonym").to_pylist(), return_inverse=True)[1]
    rev = tab.take(pa.array(np.lexsort((tab.column("t_s").to_numpy(), -inv))))
    assert rev.column("pseudonym")[0].as_py() == max(tab.column("pseudonym").to_pylist())
    _same_traces(release_to_traces(rev, CRS, 0), ref)


def test_dictionary_and_multi_chunk_pseudonyms():
    tab = _table(n_traces=6, per=3)
    ref = release_to_traces(tab, CRS, 0)
    _same_traces(release_to_traces(_table(n_traces=6, per=3, dictionary=True), CRS, 0), ref)
    # two parts with their own dictionaries (as when reading a folder of parts)
    a, b = tab.slice(0, 9), tab.slice(9)
    enc = lambda t: t.set_column(0, "pseudonym", t.column("pseudonym").dictionary_encode())  # noqa: E731
    both = pa.concat_tables([enc(a), enc(b)])
    assert both.column("pseudonym").num_chunks == 2
    _same_traces(release_to_traces(both, CRS, 0), ref)


def test_accuracy_column_is_optional():
    tab = _table().drop_columns(["accuracy_m"])
    tr = release_to_traces(tab, CRS, 0)
    assert np.isnan(tr.accuracy_m).all() and tr.n_pings == 20


def _with(tab, col, i, value):
    arr = tab.column(col).to_numpy().copy()
    arr[i] = value
    return tab.set_column(tab.column_names.index(col), col, pa.array(arr))


@pytest.mark.parametrize("col,value", [("lat_deg", np.nan), ("lon_deg", np.nan), ("lat_deg", 90.5),
                                       ("lat_deg", -91.0), ("lon_deg", 180.01), ("lon_deg", -200.0),
                                       ("lat_deg", np.inf), ("lon_deg", 4_600_000.0)])
def test_bad_coordinates_are_rejected(col, value):
    with pytest.raises(InputError, match="lat") as ei:
        release_to_traces(_with(_table(), col, 7, value), CRS, 0)
    assert "row 7" in str(ei.value)


@pytest.mark.parametrize("lat", [90.0, -90.0])
def test_coordinate_bounds_are_inclusive(lat):
    tab = _with(_with(_table(), "lat_deg", 3, lat), "lon_deg", 3, 180.0)
    assert release_to_traces(tab, "EPSG:4087", 0).n_pings == 20


def test_null_values_are_rejected():
    tab = _table()
    for col in ("pseudonym", "t_s", "lat_deg", "lon_deg"):
        vals = tab.column(col).to_pylist()
        vals[4] = None
        bad = tab.set_column(tab.column_names.index(col), col, pa.array(vals, type=tab.schema.field(col).type))
        with pytest.raises(InputError, match=col):
            release_to_traces(bad, CRS, 0)


def test_duplicate_timestamps_within_a_pseudonym():
    tab = _table()
    t = tab.column("t_s").to_numpy().copy()
    t[1] = t[0]  # same pseudonym, same second, different position
    dup = tab.set_column(1, "t_s", pa.array(t))
    with pytest.raises(InputError, match="duplicate"):
        release_to_traces(dup, CRS, 0)
    tr = release_to_traces(dup, CRS, 0, duplicates="keep")
    assert tr.n_pings == 20
    # the same second in two different pseudonyms is fine
    t = tab.column("t_s").to_numpy().copy()
    t[5] = t[0]
    assert release_to_traces(tab.set_column(1, "t_s", pa.array(t)), CRS, 0).n_pings == 20


@pytest.mark.parametrize("col", ["pseudonym", "t_s", "lat_deg", "lon_deg"])
def test_missing_column_is_an_input_error(col):
    with pytest.raises(InputError, match=col):
        release_to_traces(_table().drop_columns([col]), CRS, 0)


def test_empty_release():
    tr = release_to_traces(_table().slice(0, 0), CRS, 0, start_s=0, n_days=1)
    assert tr.n_traces == 0 and tr.n_pings == 0


# ------------------------------------------------------------------ reading
def test_read_pings_table_errors(tmp_path):
    with pytest.raises(InputError, match="generate"):
        read_pings_table(tmp_path / "nothing")
    pq.write_table(_table().drop_columns(["lon_deg"]), tmp_path / "nolon.parquet")
    with pytest.raises(InputError, match="lon_deg"):
        read_pings_table(tmp_path / "nolon.parquet")
    bad_t = _table()
    bad_t = bad_t.set_column(1, "t_s", pa.array(bad_t.column("t_s").to_numpy().astype(float)))
    pq.write_table(bad_t, tmp_path / "float_t.parquet")
    with pytest.raises(InputError, match="t_s"):
        read_pings_table(tmp_path / "float_t.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(InputError, match="could not read"):
        read_pings_table(tmp_path / "junk.parquet")


def test_read_pings_table_keeps_dictionary(small_dataset):
    t = read_pings_table(small_dataset[0] / "pings")
    assert pa.types.is_dictionary(t.schema.field("pseudonym").type)
    assert t.num_rows == small_dataset[1]["rows"]["pings"]


def test_read_manifest_errors(tmp_path):
    with pytest.raises(InputError, match="manifest.json"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(InputError, match="JSON"):
        read_manifest(tmp_path)


def test_load_errors_and_load_release(small_dataset, tmp_path):
    from sim.api import load, load_release

    _same_traces(load_release(small_dataset[0]), load(small_dataset[0]).release)
    copy = tmp_path / "copy"
    shutil.copytree(small_dataset[0], copy)
    (copy / "truth" / "devices.parquet").unlink()
    with pytest.raises(InputError, match="devices.parquet"):
        load(copy)


# ------------------------------------------------------------------ dataset digest
def _write_parts(tab, folder, cuts):
    (folder / "pings").mkdir(parents=True)
    edges = [0, *cuts, tab.num_rows]
    for k, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        pq.write_table(tab.slice(a, b - a), folder / "pings" / f"part-{k:05d}.parquet")


def test_digest_ignores_part_layout_but_sees_every_value(tmp_path):
    tab = _table(n_traces=5, per=4)
    _write_parts(tab, tmp_path / "a", [])
    _write_parts(tab, tmp_path / "b", [4, 8, 16])
    shuffled = tab.take(pa.array(np.random.default_rng(0).permutation(tab.num_rows)))
    _write_parts(shuffled, tmp_path / "c", [10])
    ref = dataset_digest(tmp_path / "a")
    assert dataset_digest(tmp_path / "b") == ref
    assert dataset_digest(tmp_path / "c") == ref
    changed = set()
    for k, (col, value) in enumerate([("lat_deg", 41.0), ("lon_deg", -87.0), ("t_s", 1), ("accuracy_m", 1.5)]):
        t2 = _with(tab, col, 3, value)
        _write_parts(t2, tmp_path / f"m{k}", [])
        changed.add(dataset_digest(tmp_path / f"m{k}"))
    names = tab.column("pseudonym").to_pylist()
    names[3] = "f" * 64
    _write_parts(tab.set_column(0, "pseudonym", pa.array(names)), tmp_path / "p", [])
    changed.add(dataset_digest(tmp_path / "p"))
    assert len(changed) == 5 and ref not in changed


# ------------------------------------------------------------------ timestamps
@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_to_unix_seconds_any_resolution(unit):
    when = [dt.datetime(2024, 3, 4, 6, 0, 1), dt.datetime(1999, 12, 31, 23, 59, 59), dt.datetime(2038, 1, 19, 3, 14, 8)]
    want = [int(w.replace(tzinfo=dt.timezone.utc).timestamp()) for w in when]
    s = pd.Series(pd.to_datetime(when)).astype(f"datetime64[{unit}]")
    assert to_unix_seconds(s).tolist() == want
    aware = s.dt.tz_localize("UTC").dt.tz_convert("America/Chicago")
    assert to_unix_seconds(aware).tolist() == want
    assert to_unix_seconds([w.isoformat() for w in when]).tolist() == want
    assert to_unix_seconds(s).dtype == np.int64


def test_manifest_is_valid_json_with_versions(small_dataset):
    man = json.loads((small_dataset[0] / "manifest.json").read_text())
    assert {"numpy", "numba", "pandas", "pyarrow"} <= set(man["versions"])
    from sim.core.config import Scenario

    scn = Scenario.from_dict(man["scenario"])
    assert (man["start_s"], man["utc_offset_s"], man["n_days"]) == (scn.start_s, scn.utc_offset_s, scn.pings.days)
    assert man["config_hash"] == scn.config_hash()


def test_large_tables_are_written_a_row_group_at_a_time(tmp_path, monkeypatch):
    """write_table converts a table of more than WRITE_SLICE_ROWS rows slice by slice:
    the file reads back as the same frame (categorical, str, int, bool and float columns,
    a slice whose str and float values are all missing), with the dataset id and row
    groups of WRITE_SLICE_ROWS rows, the same frame and metadata as a whole-table write."""
    import sim.core.files as F

    n = 23
    df = pd.DataFrame({
        "pseudonym": pd.Categorical.from_codes(np.arange(n) % 5, categories=[f"p{i}" for i in range(5)]),
        "level": np.array(["building", "block"] * 11 + ["tract"], dtype=object),
        "note": [None] * 10 + ["x"] * 13,
        "size": np.arange(n, dtype=np.int64) - 3,
        "ok": np.arange(n) % 3 == 0,
        "share": np.r_[np.full(10, np.nan), np.linspace(0, 1, 13)],
    })
    F.write_table(df, tmp_path / "whole", dataset_id="abc")
    monkeypatch.setattr(F, "WRITE_SLICE_ROWS", 5)
    F.write_table(df, tmp_path / "sliced", dataset_id="abc")
    whole, sliced = pd.read_parquet(tmp_path / "whole.parquet"), pd.read_parquet(tmp_path / "sliced.parquet")
    pd.testing.assert_frame_equal(sliced, whole)
    pd.testing.assert_frame_equal(sliced, df, check_dtype=False)
    assert list(sliced.dtypes.astype(str)) == list(whole.dtypes.astype(str))
    meta = pq.ParquetFile(tmp_path / "sliced.parquet").metadata
    assert meta.num_row_groups == 5 and [meta.row_group(i).num_rows for i in range(5)] == [5, 5, 5, 5, 3]
    assert F.read_dataset_id(tmp_path / "sliced.parquet") == "abc"
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


@pytest.mark.parametrize("seed", range(4))
def test_release_scans_equal_their_numpy_definitions(seed):
    """The one-pass checks of release_to_traces against the numpy expressions they
    replace: bad coordinates (NaN, inf, out of range) and, for rows in any order,
    whether they are canonical and which rows repeat their successor's code and time."""
    from sim.release.dataset import _bad_coordinates, _scan_canonical

    rng = np.random.default_rng(seed)
    n = 300
    lat, lon = rng.uniform(-95, 95, n), rng.uniform(-185, 185, n)
    lat[rng.random(n) < 0.05] = np.nan
    lon[rng.random(n) < 0.05] = np.inf
    bad = ~(np.isfinite(lat) & np.isfinite(lon)) | (np.abs(lat) > 90) | (np.abs(lon) > 180)
    assert _bad_coordinates(lat, lon) == (int(bad.sum()), int(np.flatnonzero(bad)[0]))
    assert _bad_coordinates(lat[~bad], lon[~bad]) == (0, -1)
    codes = np.sort(rng.integers(0, 20, n))
    t = rng.integers(0, 30, n)
    t = t[np.lexsort((t, codes))]
    for c, tt in ((codes, np.sort(t)), (codes, t), (rng.permutation(codes), t)):
        same = np.diff(c) == 0
        canonical = bool(np.all(np.diff(c) >= 0) and not np.any(same & (np.diff(tt) < 0)))
        dup = same & (np.diff(tt) == 0)
        want = (canonical, int(dup.sum()), int(np.flatnonzero(dup)[0]) if dup.any() else -1)
        assert _scan_canonical(c.astype(np.int64), tt.astype(np.int64)) == want
