"""``load_sample``: a seeded device sample of a release, read part by part."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sim.core.errors import InputError
from sim.release.dataset import load, load_sample, register_names, sample_devices


def _rows(traces):
    """Every ping as a sortable record array (pseudonym, t_s, x, y)."""
    tr = traces.trace_index()
    return sorted(zip(traces.pseudonym[tr].astype(str), traces.t_s.tolist(), traces.x_m.tolist(),
                      traces.y_m.tolist()))


def test_sample_holds_exactly_the_sampled_devices_pings(small_dataset):
    folder, man = small_dataset
    assert len(man["parts"]) >= 3  # the sample is read across several parts
    full = load(folder)
    s = load_sample(folder, 40)
    chosen = sample_devices(full.pseudonyms["device_idx"].to_numpy(), 40, full.scenario.seed)
    assert len(chosen) == 40 and s.meta["sample"] == {"devices": 40, "of": int(full.pseudonyms["device_idx"]
                                                                              .nunique()), "seed": full.scenario.seed}
    want = set(full.pseudonyms.loc[full.pseudonyms["device_idx"].isin(chosen), "pseudonym"].astype(str))
    got = set(s.release.pseudonym.astype(str))
    present = set(full.release.pseudonym[full.release.lengths > 0].astype(str))
    assert got == want & present
    # the same pings as selecting those traces from the whole release
    idx = np.flatnonzero(np.isin(full.release.pseudonym.astype(str), sorted(got)))
    assert _rows(s.release) == _rows(full.release.take(idx))
    # everything but the release is whole; the register without its names, which
    # register_names reads from the file for the persons asked for
    assert len(s.register) == len(full.register) and len(s.persons) == len(full.persons)
    assert list(s.register.columns) == [c for c in full.register.columns if c != "name"]
    for c in s.register.columns:
        np.testing.assert_array_equal(s.register[c].to_numpy(), full.register[c].to_numpy())
    some = full.register["person_id"].to_numpy()[[0, 3, -1]]
    assert register_names(folder, np.append(some, -1)) == {
        int(i): str(n) for i, n in zip(full.register["person_id"], full.register["name"]) if i in set(some)}
    assert register_names(folder, []) == {}
    assert s.release.crs == full.release.crs and s.release.start_s == full.release.start_s
    assert s.release.n_days == full.release.n_days


def test_sample_is_seeded_and_order_free(small_dataset):
    folder, _ = small_dataset
    a, b = load_sample(folder, 25), load_sample(folder, 25)
    assert list(a.release.pseudonym) == list(b.release.pseudonym)
    c = load_sample(folder, 25, seed=1)
    assert list(c.release.pseudonym) != list(a.release.pseudonym)
    dev = np.arange(100)
    assert np.array_equal(sample_devices(dev, 10, 3), sample_devices(dev[::-1].copy(), 10, 3))
    assert np.array_equal(sample_devices(dev, 200, 3), dev)


def test_whole_sample_is_load(small_dataset):
    folder, _ = small_dataset
    full = load(folder)
    for n in (None, 10**6):
        s = load_sample(folder, n)
        assert "sample" not in s.meta
        assert _rows(s.release) == _rows(full.release)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "10"])
def test_bad_sample_size(small_dataset, bad):
    folder, _ = small_dataset
    with pytest.raises(InputError, match="n_devices"):
        load_sample(folder, bad)


def test_sample_truth_tables_and_calibration(small_dataset):
    from sim.metrics.calibration import calibration_stats

    folder, _ = small_dataset
    s = load_sample(folder, 30)
    assert s.devices["device_idx"].nunique() == 30 == len(s.devices)
    assert set(s.pseudonyms["device_idx"]) <= set(s.devices["device_idx"])
    cal = calibration_stats(s)
    assert cal["devices"] == 30
    # the same statistics as a Simulation built by hand from the whole one, restricted
    full = load(folder)
    keep = full.devices["device_idx"].isin(s.devices["device_idx"])
    idx = np.flatnonzero(np.isin(full.release.pseudonym.astype(str), s.release.pseudonym.astype(str)))
    import dataclasses
    manual = dataclasses.replace(full, devices=full.devices[keep].reset_index(drop=True),
                                 release=full.release.take(idx))
    assert calibration_stats(manual) == cal


def test_filtered_part_is_one_chunk_with_only_its_pseudonyms(small_dataset):
    """Each part's kept rows: the same rows as filtering the read table, in one chunk whose
    dictionary holds only the kept pseudonyms (not the read chunks' copies of the part's)."""
    import pyarrow as pa

    from sim.release.dataset import keep_pseudonyms, read_pings_table

    folder, man = small_dataset
    table = read_pings_table(folder / "pings" / man["parts"][0]["file"])
    assert table.column("pseudonym").num_chunks >= 1 and pa.types.is_dictionary(table.schema.field("pseudonym").type)
    names = np.unique(table.column("pseudonym").cast(pa.string()).to_numpy(zero_copy_only=False))
    keep = np.sort(names[::3]).astype(object)
    got = keep_pseudonyms(table, keep)
    want = table.filter(pa.array(np.isin(table.column("pseudonym").cast(pa.string()).to_numpy(zero_copy_only=False),
                                         keep)))
    assert got.num_rows == want.num_rows > 0
    assert got.schema == want.schema
    for c in got.column_names:
        assert got.column(c).num_chunks == 1
        a, b = got.column(c), want.column(c)
        if c == "pseudonym":
            a, b = a.cast(pa.string()), b.cast(pa.string())
        assert a.equals(b), c
    assert sorted(got.column("pseudonym").chunk(0).dictionary.to_pylist()) == sorted(keep.tolist())


def _sampled_folder(folder, man, tmp_path, n, seed=None):
    """What the streamed stage leaves: every part's rows of the sample, and the record."""
    from sim.core.files import write_json
    from sim.release.dataset import (SAMPLE_PINGS_RECORD, device_sample, read_release_part,
                                     sample_pings_record)

    smp = device_sample(folder, n, seed)
    out = tmp_path / "sampled"
    out.mkdir()
    for r in man["parts"]:
        read_release_part(folder, r["file"], man, sample=(smp["names"], out))
    write_json(sample_pings_record(man["dataset_id"], smp), out / SAMPLE_PINGS_RECORD)
    return out


def _same_simulation(a, b):
    for k in ("pseudonym", "offsets", "t_s", "x_m", "y_m", "accuracy_m"):
        np.testing.assert_array_equal(getattr(a.release, k), getattr(b.release, k), err_msg=k)
    assert a.meta["sample"] == b.meta["sample"]
    for t in ("devices", "pseudonyms", "register", "persons"):
        pd.testing.assert_frame_equal(getattr(a, t), getattr(b, t), obj=t)


def test_sample_read_from_the_rows_written_while_streaming(small_dataset, tmp_path, monkeypatch):
    """The sample's rows written part by part as the parts are read (read_release_part
    ``sample``) give the very Simulation load_sample reads from the parts, without reading
    a part; a folder recorded for another sample or release, or missing a part, is not
    used."""
    import json

    import sim.release.dataset as D

    folder, man = small_dataset
    ref = load_sample(folder, 40)
    pre = _sampled_folder(folder, man, tmp_path, 40)
    real = D.keep_pseudonyms
    monkeypatch.setattr(D, "keep_pseudonyms", lambda *a, **k: pytest.fail("a part was read again"))
    _same_simulation(load_sample(folder, 40, sampled_pings=pre), ref)
    monkeypatch.setattr(D, "keep_pseudonyms", real)
    # another sample size or seed: the record does not match, the parts are read
    _same_simulation(load_sample(folder, 30, sampled_pings=pre), load_sample(folder, 30))
    _same_simulation(load_sample(folder, 40, seed=1, sampled_pings=pre), load_sample(folder, 40, seed=1))
    rec = json.loads((pre / D.SAMPLE_PINGS_RECORD).read_text())
    (pre / D.SAMPLE_PINGS_RECORD).write_text(json.dumps({**rec, "dataset_id": "other"}))
    calls = []
    monkeypatch.setattr(D, "keep_pseudonyms", lambda *a, **k: calls.append(1) or real(*a, **k))
    _same_simulation(load_sample(folder, 40, sampled_pings=pre), ref)
    assert len(calls) == len(man["parts"])
    (pre / D.SAMPLE_PINGS_RECORD).write_text(json.dumps(rec))
    (pre / man["parts"][-1]["file"]).unlink()
    calls.clear()
    _same_simulation(load_sample(folder, 40, sampled_pings=pre), ref)
    assert len(calls) == len(man["parts"])
