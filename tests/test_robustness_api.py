"""Bad inputs at public boundaries give typed errors with actionable messages, and long
computations stay bounded and interruptible.

Covers ``sim.attacks.skmob.privacy_risk`` (instance limit, absurd parameters, malformed
tables, chunked kernel calls), ``traces_to_skmob_frame`` (lat/lng always degrees) and
``Traces.from_frame`` / ``Traces.validate`` (CRS, window, column types).
"""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

from sim.attacks import skmob as S
from sim.core.errors import ConfigError, CRSError, InputError
from sim.core.traces import Traces
from sim.world.crs import local_crs, project_from_latlon

UTM = "EPSG:32631"


# ======================================================================== skmob
def _identical(n_users=20, n_records=40):
    """Every user has n_records records at the same place and time: the worst case
    (every instance matches every user, so no enumeration stops early)."""
    return pd.DataFrame({"uid": np.repeat(np.arange(n_users), n_records),
                         "datetime": pd.Timestamp("2020-01-01 08:00"), "lat": 45.0, "lng": 7.0})


def _random_df(seed, n_users=40, n_places=6, max_records=9):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        for _ in range(rng.integers(1, max_records + 1)):
            p = int(rng.integers(0, n_places))
            t = pd.Timestamp("2011-02-01") + pd.Timedelta(hours=int(rng.integers(0, 72)))
            rows.append((f"u{u:03d}", t, 43.0 + 0.01 * p, 10.0 + 0.02 * (p % 2)))
    return pd.DataFrame(rows, columns=["uid", "datetime", "lat", "lng"])


def test_too_many_instances_is_refused_up_front():
    df = _identical()
    t = time.perf_counter()
    with pytest.raises(ConfigError) as e:
        S.privacy_risk(df, "location", knowledge_length=10)
    assert time.perf_counter() - t < 5.0  # refused, not computed
    msg = str(e.value)
    total = 20 * math.comb(40, 10)
    assert f"{total:,}" in msg and f"{math.comb(40, 10):,}" in msg
    assert f"max_instances={S.MAX_INSTANCES:,}" in msg
    for fix in ("smaller knowledge_length", "targets=", "raise max_instances"):
        assert fix in msg


def test_instance_limit_counts_targets_and_can_be_raised_or_lowered():
    df = _identical(n_users=20, n_records=12)       # C(12, 3) = 220 instances per user
    with pytest.raises(ConfigError, match=r"4,400 background-knowledge instances"):
        S.privacy_risk(df, "location", knowledge_length=3, max_instances=4_399)
    r = S.privacy_risk(df, "location", knowledge_length=3, max_instances=4_400)
    np.testing.assert_allclose(r["risk"], 1 / 20)
    # fewer targets -> fewer instances
    r = S.privacy_risk(df, "location", knowledge_length=3, max_instances=440, targets=[0, 1])
    assert r["uid"].tolist() == [0, 1]
    assert len(S.privacy_risk(df, "location", knowledge_length=3, max_instances=None)) == 20
    # unique_location counts distinct locations (1 per user here), home_work one instance
    S.privacy_risk(df, "unique_location", knowledge_length=3, max_instances=20)
    S.privacy_risk(df, "home_work", max_instances=20)


@pytest.mark.parametrize("bad", [0, 1, True, 2.5, "a lot", None])
def test_bad_max_instances(bad):
    if bad == 1 and not isinstance(bad, bool):
        with pytest.raises(ConfigError, match="above max_instances=1"):
            S.privacy_risk(_identical(2, 2), "location", knowledge_length=1, max_instances=bad)
        return
    if bad is None:
        S.privacy_risk(_identical(2, 2), "location", knowledge_length=1, max_instances=bad)
        return
    with pytest.raises(ConfigError, match="max_instances must be an integer >= 1 or None"):
        S.privacy_risk(_identical(2, 2), "location", max_instances=bad)


def test_instance_counts_are_exact_binomials():
    n = np.array([0, 1, 2, 5, 40, 40, 7, 1000])
    for k in (1, 2, 3, 10, 10**6):
        got = S._instance_counts(n, k)
        want = [math.comb(v, min(k, v)) if v else 0 for v in n.tolist()]
        assert got.tolist() == [float(w) for w in want]
    assert np.isinf(S._instance_counts(np.array([100_000]), 50_000))[0]


@pytest.mark.parametrize("k", [2**63, 2**64 + 1, -(2**63), 0, -1, 10**7, 2.0, 2.5, float("nan"),
                               float("inf"), "3", None, True, np.float64(2), [2]])
def test_absurd_knowledge_length_is_a_config_error(k):
    with pytest.raises(ConfigError, match=r"knowledge_length must be an integer in \[1, 1,000,000\], got"):
        S.privacy_risk(_identical(3, 3), "location", knowledge_length=k)


def test_large_knowledge_length_means_all_records():
    df = _random_df(3, n_users=15)
    most = int(df.groupby("uid").size().max())
    a = S.privacy_risk(df, "location", knowledge_length=most)
    b = S.privacy_risk(df, "location", knowledge_length=S.MAX_KNOWLEDGE_LENGTH)
    c = S.privacy_risk(df, "location", knowledge_length=np.int64(S.MAX_KNOWLEDGE_LENGTH))
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(a, c)


@pytest.mark.parametrize("kw,match", [
    (dict(attack="probability"), "attack must be one of"),
    (dict(attack=["location"]), "attack must be one of"),
    (dict(time_precision="Week"), "time_precision must be one of"),
    (dict(tolerance=float("nan")), r"tolerance must be a number in \[0, 1\]"),
    (dict(tolerance="0.5"), r"tolerance must be a number in \[0, 1\]"),
    (dict(tolerance=True), r"tolerance must be a number in \[0, 1\]"),
    (dict(compat=None), "compat must be one of"),
    (dict(targets="u001"), "targets must be a list of uids"),
])
def test_bad_parameters_are_config_errors(kw, match):
    args = dict(attack="location")
    args.update(kw)
    with pytest.raises(ConfigError, match=match):
        S.privacy_risk(_random_df(0, n_users=3), args.pop("attack"), **args)


def test_dict_instead_of_frame_is_an_input_error():
    d = {"uid": [1, 2], "datetime": ["2020-01-01", "2020-01-02"], "lat": [1.0, 1.0], "lng": [2.0, 2.0]}
    with pytest.raises(InputError, match=r"df must be a pandas DataFrame .* got dict; wrap it, e\.g\. pd\.DataFrame"):
        S.privacy_risk(d, "location")


@pytest.mark.parametrize("col", ["lat", "lng"])
def test_string_coordinates_are_an_input_error(col):
    df = _random_df(0, n_users=3)
    df[col] = df[col].astype(str)
    with pytest.raises(InputError, match=rf"column {col} must hold numbers \(degrees\), got dtype .*pd\.to_numeric"):
        S.privacy_risk(df, "location")


@pytest.mark.filterwarnings("ignore:Could not infer format")
def test_unparseable_datetimes_are_an_input_error():
    df = _random_df(0, n_users=3)
    df["datetime"] = df["datetime"].dt.strftime("%Y-%m-%d %H:%M:%S")
    df.loc[2, "datetime"] = "the 32nd of Brumaire"
    with pytest.raises(InputError, match=r"column datetime has values pandas cannot parse as dates "
                                         r"\(e\.g\. 'the 32nd of Brumaire'\).*pd\.to_datetime"):
        S.privacy_risk(df, "location")
    df["datetime"] = "2020-13-45 25:00"
    with pytest.raises(InputError, match="column datetime"):
        S.privacy_risk(df, "location_time")


def test_missing_values_name_the_column():
    df = _random_df(0, n_users=3)
    df.loc[1, "lng"] = np.nan
    with pytest.raises(InputError, match=r"\['lng'\] contain missing values.*dropna"):
        S.privacy_risk(df, "location")


ATTACK_CASES = [("location", dict(knowledge_length=3)), ("location_sequence", dict(knowledge_length=3)),
                ("location_time", dict(knowledge_length=2, time_precision="Day")),
                ("unique_location", dict(knowledge_length=2)), ("frequency", dict(knowledge_length=2, tolerance=0.5)),
                ("home_work", {})]


@pytest.mark.parametrize("serial_below", [S._SERIAL_BELOW, 0])
@pytest.mark.parametrize("attack,kw", ATTACK_CASES)
def test_chunked_equals_unchunked(monkeypatch, attack, kw, serial_below):
    df = _random_df(11, n_users=60)
    monkeypatch.setattr(S, "_SERIAL_BELOW", serial_below)
    monkeypatch.setattr(S, "_CHUNK_SECONDS", 0.0)  # no adaptive growth: calls of _CHUNK_INSTANCES
    calls = {"whole": [], "resume": []}
    for name, kind in (("_risk_serial", "whole"), ("_risk_kernel", "whole"),
                       ("_resume_serial", "resume"), ("_resume_kernel", "resume")):
        fn = getattr(S, name)
        monkeypatch.setattr(S, name, lambda *a, _fn=fn, _k=kind: (calls[_k].append(len(a[0])), _fn(*a))[1])

    def run(chunk, **extra):
        for v in calls.values():
            v.clear()
        monkeypatch.setattr(S, "_CHUNK_INSTANCES", chunk)
        return S.privacy_risk(df, attack, **kw, **extra)

    whole = run(10**18)
    assert calls == {"whole": [60], "resume": []}     # one call: the unchunked computation
    for chunk in (1, 5, 37):
        got = run(chunk)
        n_calls = len(calls["whole"]) + len(calls["resume"])
        assert n_calls > 1
        if attack != "home_work" and chunk == 1:        # home_work: one instance per user
            assert calls["resume"], "users with more than a chunk of instances are enumerated in slices"
        pd.testing.assert_frame_equal(whole, got)
        targets = sorted(df["uid"].unique())[5:50:3]
        sub = run(chunk, targets=targets)
        pd.testing.assert_frame_equal(sub.reset_index(drop=True),
                                      whole[whole["uid"].isin(targets)].reset_index(drop=True))


def test_chunked_equals_unchunked_in_the_worst_case(monkeypatch):
    # identical users: no user's enumeration stops early, every slice boundary is crossed
    df = _identical(n_users=7, n_records=11)
    whole = S.privacy_risk(df, "location_sequence", knowledge_length=4)
    monkeypatch.setattr(S, "_CHUNK_INSTANCES", 13)
    monkeypatch.setattr(S, "_CHUNK_SECONDS", 0.0)
    pd.testing.assert_frame_equal(whole, S.privacy_risk(df, "location_sequence", knowledge_length=4))
    np.testing.assert_allclose(whole["risk"], 1 / 7)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT delivery to a child is POSIX")
def test_ctrl_c_interrupts_a_long_computation():
    # the child takes Ctrl-C as a terminal's process does, even when this test runs under
    # a shell that started it in the background (which sets SIGINT to "ignore", and an
    # ignored signal is inherited: the child would then never see it)
    code = textwrap.dedent("""
        import signal, sys, numpy as np, pandas as pd
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from sim.attacks import skmob as S
        df = pd.DataFrame({"uid": np.repeat(np.arange(20), 40), "datetime": pd.Timestamp("2020-01-01"),
                           "lat": 1.0, "lng": 2.0})
        S.privacy_risk(df.iloc[:30], "location", knowledge_length=2)  # load the compiled kernels
        print("go", flush=True)
        S.privacy_risk(df, "location", knowledge_length=6, max_instances=None)  # 76.8 M instances
        print("finished", flush=True)
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert p.stdout.readline().strip() == "go"
        time.sleep(0.5)
        t = time.perf_counter()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
        waited = time.perf_counter() - t
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert "finished" not in out
    assert p.returncode != 0 and "KeyboardInterrupt" in err
    assert waited < 15, f"Ctrl-C took {waited:.1f} s to take effect"


# ================================================================ skmob frame
def _traces(crs, lat0=41.88, lon0=-87.63):
    lat = lat0 + np.array([0.0, 0.001, 0.002, 0.0])
    lon = lon0 + np.array([0.0, 0.001, -0.002, 0.0])
    if crs == "local":
        crs = local_crs(lat0, lon0)
    x, y = project_from_latlon(lat, lon, crs) if not crs.startswith("LOCAL_CS") else (lon * 1e3, lat * 1e3)
    df = pd.DataFrame({"pseudonym": ["a", "a", "b", "b"], "t_s": [0, 60, 120, 180], "x_m": x, "y_m": y})
    return Traces.from_frame(df, crs=crs), lat, lon


@pytest.mark.parametrize("crs", ["local", "EPSG:32616"])
def test_skmob_frame_without_world_is_in_degrees(crs):
    tr, lat, lon = _traces(crs)
    f = S.traces_to_skmob_frame(tr)
    assert list(f.columns) == ["uid", "datetime", "lat", "lng"]
    np.testing.assert_allclose(f["lat"], lat, atol=1e-7)
    np.testing.assert_allclose(f["lng"], lon, atol=1e-7)
    assert len(S.privacy_risk(f, "location", knowledge_length=1)) == 2


def test_skmob_frame_uses_the_world_when_given():
    tr, lat, lon = _traces("local")

    class FakeWorld:
        def to_latlon(self, x, y):
            return np.full(len(x), 10.0), np.full(len(x), 20.0)

    f = S.traces_to_skmob_frame(tr, FakeWorld())
    assert f["lat"].tolist() == [10.0] * 4 and f["lng"].tolist() == [20.0] * 4


def test_skmob_frame_refuses_metres_it_cannot_convert():
    tr, _, _ = _traces('LOCAL_CS["grid"]')
    with pytest.raises(CRSError, match=r"cannot convert positions from traces\.crs=.*to lat/lng degrees.*pass world="):
        S.traces_to_skmob_frame(tr)


def test_skmob_frame_bad_inputs():
    tr, _, _ = _traces("local")
    with pytest.raises(InputError, match=r"traces must be a sim\.core\.traces\.Traces, got DataFrame"):
        S.traces_to_skmob_frame(tr.to_frame())
    for bad in (0, -5, float("nan"), "100"):
        with pytest.raises(ConfigError, match="cell_m must be a finite number of metres > 0"):
            S.traces_to_skmob_frame(tr, cell_m=bad)
    f = S.traces_to_skmob_frame(tr, cell_m=1000.0)
    assert f[["lat", "lng"]].drop_duplicates().shape[0] <= 2


# ====================================================================== Traces
def _ping_frame():
    return pd.DataFrame({"pseudonym": ["b", "a", "a", "b"], "t_s": [100_000, 90_000, 200_000, 86_400 * 3],
                         "x_m": [1.0, 2.0, 3.0, 4.0], "y_m": [5.0, 6.0, 7.0, 8.0]})


def test_valid_frames_still_work():
    for crs in (UTM, local_crs(41.88, -87.63), 'LOCAL_CS["bench"]', "LOCAL_CS[bench]"):
        tr = Traces.from_frame(_ping_frame(), crs=crs)
        assert tr.n_traces == 2 and tr.n_days == 3 and tr.start_s == 86_400
    tr = Traces.from_frame(_ping_frame(), crs=UTM, start_s=0, n_days=np.int64(5), utc_offset_s=np.int32(3600))
    assert (tr.start_s, tr.n_days, tr.utc_offset_s) == (0, 5, 3600)
    assert Traces.from_frame(_ping_frame(), crs=UTM, n_days=5.0).n_days == 5   # integral float
    assert Traces.from_frame(_ping_frame().iloc[:0], crs=UTM).n_traces == 0
    df = _ping_frame().assign(x_m=[1, 2, 3, 4], accuracy_m=np.float32(10))  # integer metres are fine
    assert Traces.from_frame(df, crs=UTM).x_m.dtype == np.float64
    assert tr.replace(n_days=2).n_days == 2


@pytest.mark.parametrize("crs,match", [
    (None, r"traces\.crs is None; .*pass the projected \(metric\) CRS"),
    ("not a crs", r"traces\.crs='not a crs' is not a CRS pyproj understands"),
    ("", r"traces\.crs='' is not a CRS pyproj understands"),
    ("EPSG:4326", r"traces\.crs='EPSG:4326' is geographic \(degrees\), but x_m/y_m are metres"),
    ("EPSG:4978", r"is geocentric"),
    (32631, r"traces\.crs must be a string, got int"),
])
def test_bad_crs_is_a_crs_error(crs, match):
    with pytest.raises(CRSError, match=match):
        Traces.from_frame(_ping_frame(), crs=crs)
    tr = Traces.from_frame(_ping_frame(), crs=UTM)
    with pytest.raises(CRSError, match=match):
        tr.replace(crs=crs)
    direct = Traces(**{**{k: getattr(tr, k) for k in tr.__dataclass_fields__}, "crs": crs})
    with pytest.raises(CRSError, match=match):
        direct.validate()


@pytest.mark.parametrize("n_days,match", [
    (0, r"n_days must be in \[1, 10000000\], got 0\. Omit it"),
    (-3, r"n_days must be in \[1, 10000000\], got -3\. Omit it"),
    (2.5, r"n_days must be an integer, got float 2\.5"),
    ("3", r"n_days must be an integer, got str '3'"),
    (float("nan"), r"n_days must be an integer, got float nan"),
    (2**63, r"n_days must be in \[1, 10000000\]"),
])
def test_bad_n_days(n_days, match):
    with pytest.raises(InputError, match=match):
        Traces.from_frame(_ping_frame(), crs=UTM, n_days=n_days)
    tr = Traces.from_frame(_ping_frame(), crs=UTM)
    with pytest.raises(InputError, match=match.split(r"\. Omit")[0]):
        tr.replace(n_days=n_days)


def test_start_after_last_ping():
    with pytest.raises(InputError, match=r"start_s=1000000 is after the last ping \(t_s max 259200\).*"
                                         r"n_days would be negative.*omit start_s"):
        Traces.from_frame(_ping_frame(), crs=UTM, start_s=1_000_000)
    with pytest.raises(InputError, match="after the last ping"):
        Traces.from_frame(_ping_frame(), crs=UTM, start_s=1_000_000, n_days=3)
    with pytest.raises(InputError, match="start_s must be an integer"):
        Traces.from_frame(_ping_frame(), crs=UTM, start_s="midnight")
    with pytest.raises(InputError, match=r"start_s must be in \["):
        Traces.from_frame(_ping_frame(), crs=UTM, start_s=2**63)


@pytest.mark.parametrize("off", [86_400, -86_400, 10**12, 1.5, "UTC+1"])
def test_bad_utc_offset(off):
    with pytest.raises(InputError, match=r"utc_offset_s must be .*local time minus UTC in seconds"):
        Traces.from_frame(_ping_frame(), crs=UTM, utc_offset_s=off)


@pytest.mark.parametrize("col", ["x_m", "y_m", "accuracy_m"])
def test_string_coordinates(col):
    df = _ping_frame().assign(accuracy_m=10.0)
    df[col] = df[col].astype(str)
    with pytest.raises(InputError, match=rf"column {col} must hold numbers \(metres.*got dtype .*pd\.to_numeric"):
        Traces.from_frame(df, crs=UTM)
    df[col] = ["1.0", "nope", "2", "3"]
    with pytest.raises(InputError, match=rf"column {col} must hold numbers"):
        Traces.from_frame(df, crs=UTM)


def test_string_coordinates_in_a_direct_traces():
    tr = Traces.from_frame(_ping_frame(), crs=UTM)
    with pytest.raises(InputError, match=r"x_m must hold numbers in metres, got dtype"):
        tr.replace(x_m=np.array(["1", "2", "3", "4"], dtype=object))
    with pytest.raises(InputError, match=r"t_s must hold integers \(Unix seconds\)"):
        tr.replace(t_s=tr.t_s.astype(float))


@pytest.mark.parametrize("t", [
    ["2020-01-01", "not a date", "2020-01-02", "2020-01-03"],
    ["1577836800", "1577836900", "1577837000", "x"],
    pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-03", "2020-01-04"]),
    [1.5e9, 1.6e9, 1.7e9, 1.8e9],
])
def test_unparseable_or_non_integer_times(t):
    df = _ping_frame().assign(t_s=t)
    with pytest.raises(InputError, match=r"t_s must be integer Unix seconds, got dtype .*first value.*"
                                         r"sim\.release\.dataset\.to_unix_seconds"):
        Traces.from_frame(df, crs=UTM)


@pytest.mark.parametrize("data", [
    {"pseudonym": ["a"], "t_s": [0], "x_m": [0.0], "y_m": [0.0]},
    [("a", 0, 0.0, 0.0)],
    None,
])
def test_not_a_frame(data):
    with pytest.raises(InputError, match=r"Traces\.from_frame needs a pandas DataFrame, got \w+; wrap it"):
        Traces.from_frame(data, crs=UTM)


def test_errors_are_value_errors_with_their_class():
    # callers catching ValueError keep working; CRSError is an InputError
    with pytest.raises(ValueError):
        Traces.from_frame(_ping_frame(), crs="not a crs")
    assert issubclass(CRSError, InputError)
