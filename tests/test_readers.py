"""Readers of real pings (sim.release.readers): formats, column detection, times, bad
rows counted (never kept), streaming, projection and local time."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sim.core.errors import ConfigError, CRSError, InputError
from sim.release.readers import (COLUMN_NAMES, detect_columns, detect_format, parse_times, read_pings, utc_offset_at,
                                 utm_crs)
from sim.world.crs import project_from_latlon

REPO = Path(__file__).resolve().parents[1]
GEOLIFE = REPO.parent / "shared" / "data" / "geolife_sample"
needs_geolife = pytest.mark.skipif(not GEOLIFE.is_dir(), reason=f"GeoLife sample not found at {GEOLIFE} "
                                   "(CI clones the repo with ../shared beside it)")


def pings(n_users=3, n=40, seed=0):
    """A clean table: uid, ISO UTC time, lat, lng around Beijing."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        t0 = pd.Timestamp("2008-10-23 02:00:00", tz="UTC") + pd.Timedelta(hours=u)
        for i in range(n):
            rows.append((f"user{u}", t0 + pd.Timedelta(seconds=37 * i), 39.9 + rng.normal(0, 0.01),
                         116.4 + rng.normal(0, 0.01)))
    return pd.DataFrame(rows, columns=["uid", "datetime", "lat", "lng"])


# ============================================================================ basics
def test_frame_roundtrip_projection_and_order():
    df = pings()
    tr, c = read_pings(df.sample(frac=1, random_state=1), tz="Asia/Shanghai")
    assert c["rows_read"] == c["rows_kept"] == len(df) and c["rows_dropped"] == 0
    assert c["crs"] == "EPSG:32650" and c["crs_source"] == "utm_of_centroid"
    assert c["utc_offset_s"] == 8 * 3600 and c["tz_source"] == "given" and not c["tz_offset_varies"]
    assert c["columns"] == {"id": "uid", "time": "datetime", "lat": "lat", "lon": "lng", "accuracy": None}
    assert list(tr.pseudonym) == ["user0", "user1", "user2"] and c["users"] == 3
    d = df[df["uid"] == "user1"].sort_values("datetime")
    a, b = tr.offsets[1], tr.offsets[2]
    exp_t = ((d["datetime"] - pd.Timestamp("1970-01-01", tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy()
    assert tr.t_s[a:b].tolist() == exp_t.tolist()
    x, y = project_from_latlon(d["lat"].to_numpy(), d["lng"].to_numpy(), "EPSG:32650")
    np.testing.assert_allclose(tr.x_m[a:b], x)
    np.testing.assert_allclose(tr.y_m[a:b], y)
    assert np.isnan(tr.accuracy_m).all()
    # local midnight opens day 0
    assert (tr.start_s + tr.utc_offset_s) % 86400 == 0 and tr.t_s.min() - tr.start_s < 86400


@pytest.mark.parametrize("names", [
    ("uid", "datetime", "lat", "lng"), ("user_id", "tracked_at", "latitude", "longitude"),
    ("user", "timestamp", "Lat", "Lon"), ("ID", "time", "LATITUDE", "long"), ("id", "t", "lat_deg", "lon_deg"),
    ("device_id", "timestamp", "lat", "lon"),
])
def test_column_auto_detection(names):
    df = pings().rename(columns=dict(zip(["uid", "datetime", "lat", "lng"], names)))
    tr, c = read_pings(df)
    assert c["columns"]["id"] == names[0] and c["columns"]["time"] == names[1]
    assert c["columns"]["lat"] == names[2] and c["columns"]["lon"] == names[3]
    assert tr.n_pings == len(df)


def test_user_columns_win_over_a_fix_id_column():
    df = pings().rename(columns={"uid": "user_id"})
    df.insert(0, "id", np.arange(len(df)))  # a trackintel frame reset to a column: fix ids
    _, c = read_pings(df)
    assert c["columns"]["id"] == "user_id"


def test_explicit_columns_and_errors():
    df = pings().rename(columns={"uid": "who", "datetime": "when", "lat": "northing_deg", "lng": "easting_deg"})
    with pytest.raises(InputError, match=r"cannot find the id and time and lat and lon column\(s\).*--id COLUMN"):
        read_pings(df)
    tr, c = read_pings(df, id="who", time="when", lat="northing_deg", lon="easting_deg")
    assert tr.n_pings == len(df) and c["columns"]["id"] == "who"
    with pytest.raises(InputError, match="--lat 'nope' is not a column"):
        read_pings(df, id="who", time="when", lat="nope", lon="easting_deg")
    d = detect_columns(["UID", "Timestamp", "Latitude", "Lng", "Accuracy"])
    assert d == {"id": "UID", "time": "Timestamp", "lat": "Latitude", "lon": "Lng", "accuracy": "Accuracy"}
    assert set(COLUMN_NAMES) == {"id", "time", "lat", "lon", "accuracy"}


# ============================================================================ bad rows
def test_bad_rows_are_counted_and_dropped():
    good = pings(n_users=2, n=10)
    bad = pd.DataFrame([
        ("user0", "2008-10-23 05:00:00", np.nan, 116.4),        # missing lat
        (None, "2008-10-23 05:00:01", 39.9, 116.4),             # missing id
        ("  ", "2008-10-23 05:00:02", 39.9, 116.4),             # blank id
        ("user0", None, 39.9, 116.4),                           # missing time
        ("user0", "2008-10-23 05:00:03", 95.0, 116.4),          # lat out of range
        ("user0", "2008-10-23 05:00:04", 39.9, -181.0),         # lon out of range
        ("user0", "2008-10-23 05:00:05", "north", 116.4),       # lat not a number
        ("user0", "2008-10-23 05:00:06", np.inf, 116.4),        # infinite
        ("user0", "yesterday-ish", 39.9, 116.4),                # unparseable time
        ("user0", "1970-01-01 00:00:00", 39.9, 116.4),          # before 1980: a sentinel
        ("user0", "2008-10-23 05:00:07", 39.9, 116.4),          # kept
        ("user0", "2008-10-23 05:00:07.600", 39.91, 116.41),    # same id and second: duplicate
    ], columns=["uid", "datetime", "lat", "lng"])
    df = pd.concat([good.astype({"datetime": str, "lat": object}), bad], ignore_index=True)
    tr, c = read_pings(df)
    assert c["dropped"] == {"malformed": 0, "missing": 4, "bad_coordinates": 4, "bad_time": 2, "duplicate": 1}
    assert c["rows_read"] == len(df) == c["rows_kept"] + c["rows_dropped"]
    assert tr.n_pings == len(good) + 1
    assert np.isfinite(tr.x_m).all()
    # the duplicate kept is the first one in input order
    i = list(tr.pseudonym).index("user0")
    last = tr.offsets[i + 1] - 1
    lat_back = tr.y_m[last]
    _, y0 = project_from_latlon(np.array([39.9]), np.array([116.4]), tr.crs)
    assert abs(lat_back - y0[0]) < 1e-6


def test_accuracy_bad_values_become_unknown():
    df = pings(n_users=1, n=4).assign(accuracy=[10.0, -1.0, np.inf, np.nan])
    tr, c = read_pings(df)
    assert c["columns"]["accuracy"] == "accuracy" and c["has_accuracy"]
    assert c["accuracy_unknown"] == 3 and tr.n_pings == 4
    assert tr.accuracy_m[0] == 10 and np.isnan(tr.accuracy_m[1:]).all()


def test_nothing_usable_is_an_input_error():
    df = pings(n_users=1, n=3).assign(lat=99.0)
    with pytest.raises(InputError, match=r"no usable rows: read 3 row\(s\), dropped \{'bad_coordinates': 3\}"):
        read_pings(df)


# ============================================================================ times
def test_time_formats_agree():
    df = pings(n_users=2, n=5)
    ref, _ = read_pings(df)
    unix = df.assign(datetime=(df["datetime"] - pd.Timestamp("1970-01-01", tz="UTC")) // pd.Timedelta(seconds=1))
    ms = unix.assign(datetime=unix["datetime"] * 1000 + 999)  # fractions of a second are floored
    iso_naive = df.assign(datetime=df["datetime"].dt.tz_localize(None).astype(str))
    iso_aware = df.assign(datetime=df["datetime"].dt.tz_convert("Asia/Shanghai").map(lambda t: t.isoformat()))
    naive_dt = df.assign(datetime=df["datetime"].dt.tz_localize(None).astype("datetime64[ms]"))
    for variant, unit in ((unix, "s"), (ms, "ms"), (iso_naive, "s"), (iso_aware, "s"), (naive_dt, "s")):
        tr, c = read_pings(variant)
        assert tr.t_s.tolist() == ref.t_s.tolist()
        assert c["time_unit"] == unit
    tr, c = read_pings(ms, time_unit="ms")
    assert tr.t_s.tolist() == ref.t_s.tolist()
    with pytest.raises(ConfigError):
        read_pings(ms, time_unit="minutes")


def test_time_of_day_column_is_refused():
    df = pings(n_users=1, n=3)
    df["time"] = df["datetime"].dt.strftime("%H:%M:%S")
    with pytest.raises(InputError, match="times of day without a date"):
        read_pings(df.drop(columns=["datetime"]))


def test_parse_times_reasons():
    t, missing, bad = parse_times(pd.Series(["2008-10-23T10:00:00+08:00", None, "garbage", "1975-01-01"]))
    assert t[0] == 1224727200 and missing.tolist() == [False, True, False, False]
    assert bad.tolist() == [False, False, True, True]


def test_local_time_offset_and_dst():
    # Paris: the data straddle the end of summer time; the offset is the one at the median time
    rows = [("a", pd.Timestamp("2023-10-20 12:00", tz="UTC") + pd.Timedelta(hours=6 * i), 48.85, 2.35)
            for i in range(40)]
    df = pd.DataFrame(rows, columns=["uid", "datetime", "lat", "lng"])
    tr, c = read_pings(df, tz="Europe/Paris")
    med = int(np.median(tr.t_s))
    assert c["utc_offset_s"] == utc_offset_at("Europe/Paris", med) and c["tz_offset_varies"]
    assert utc_offset_at("Europe/Paris", 1690000000) == 7200 and utc_offset_at("Europe/Paris", 1700000000) == 3600
    # no tz: mean solar time of the centroid, rounded to the hour
    _, c2 = read_pings(df)
    assert c2["utc_offset_s"] == 0 and c2["tz_source"] == "longitude"
    _, c3 = read_pings(pings())
    assert c3["utc_offset_s"] == 8 * 3600
    with pytest.raises(ConfigError, match="not a known IANA time zone"):
        read_pings(df, tz="Europe/Atlantis")


def test_utm_zone_and_given_crs():
    assert utm_crs(39.9, 116.4) == "EPSG:32650"
    assert utm_crs(-33.9, 151.2) == "EPSG:32756"
    assert utm_crs(0.0, -180.0) == "EPSG:32601" and utm_crs(10.0, 179.99) == "EPSG:32660"
    assert utm_crs(51.5, -0.1) == "EPSG:32630"
    tr, c = read_pings(pings(), crs="EPSG:3857")
    assert tr.crs == "EPSG:3857" and c["crs_source"] == "given"
    with pytest.raises(CRSError, match="geographic"):
        read_pings(pings(), crs="EPSG:4326")


# ============================================================================ files
def test_csv_chunks_parquet_batches_and_folders(tmp_path):
    df = pings(n_users=4, n=25)
    ref, cref = read_pings(df)
    p = tmp_path / "pings.csv"
    df.to_csv(p, index=False)
    tr, c = read_pings(p, chunk_rows=7)  # streamed in chunks of 7 rows
    assert c["format"] == "csv" and c["files"] == 1
    assert tr.t_s.tolist() == ref.t_s.tolist() and np.allclose(tr.x_m, ref.x_m)
    pq_path = tmp_path / "pings.parquet"
    df.to_parquet(pq_path, row_group_size=9)
    tr2, c2 = read_pings(pq_path, chunk_rows=5)
    assert c2["format"] == "parquet" and tr2.t_s.tolist() == ref.t_s.tolist() and np.allclose(tr2.y_m, ref.y_m)
    folder = tmp_path / "parts"
    folder.mkdir()
    for i, a in enumerate(range(0, len(df), 40)):
        df.iloc[a:a + 40].to_csv(folder / f"part-{i}.csv", index=False)
    tr3, c3 = read_pings(folder)
    assert c3["files"] == 3 and tr3.t_s.tolist() == ref.t_s.tolist()
    assert detect_format(folder) == "csv" and detect_format(pq_path) == "parquet"
    (folder / "x.parquet").write_bytes(b"")
    with pytest.raises(InputError, match="mixes CSV and Parquet"):
        read_pings(folder)
    with pytest.raises(InputError, match="no such file"):
        read_pings(tmp_path / "missing.csv")
    (tmp_path / "notes.xyz").write_text("?")
    with pytest.raises(InputError, match="cannot tell the format"):
        read_pings(tmp_path / "notes.xyz")


def test_csv_ids_keep_leading_zeros(tmp_path):
    df = pings(n_users=2, n=3).assign(uid=lambda d: d["uid"].map({"user0": "007", "user1": "010"}))
    p = tmp_path / "z.csv"
    df.to_csv(p, index=False)
    tr, _ = read_pings(p)
    assert list(tr.pseudonym) == ["007", "010"]


def test_malformed_csv_is_an_input_error(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("uid,datetime,lat,lng\na,2008-10-23 02:00:00,39.9,116.4\nb,2008-10-23 02:00:00,39.9,116.4,9,9\n")
    with pytest.raises(InputError, match="cannot parse CSV"):
        read_pings(p)


# ============================================================================ frames of other libraries
def test_skmob_and_trackintel_frames():
    gpd = pytest.importorskip("geopandas")
    df = pings(n_users=2, n=6)
    ref, _ = read_pings(df)
    # scikit-mobility TrajDataFrame layout: uid, datetime, lat, lng
    tr, c = read_pings(df[["uid", "datetime", "lat", "lng"]])
    assert c["format"] == "skmob" and tr.t_s.tolist() == ref.t_s.tolist()
    # trackintel positionfixes: user_id, tracked_at (tz-aware), geometry; index "id"
    pfs = gpd.GeoDataFrame({"user_id": df["uid"], "tracked_at": df["datetime"]},
                           geometry=gpd.points_from_xy(df["lng"], df["lat"]), crs="EPSG:4326")
    pfs.index.name = "id"
    tr2, c2 = read_pings(pfs)
    assert c2["format"] == "trackintel" and c2["columns"]["lat"] == "geometry"
    assert tr2.t_s.tolist() == ref.t_s.tolist() and np.allclose(tr2.x_m, ref.x_m, atol=1e-6)
    # a projected GeoDataFrame is converted back to degrees first
    tr3, _ = read_pings(pfs.to_crs("EPSG:3857"))
    assert np.allclose(tr3.x_m, ref.x_m, atol=1e-3) and np.allclose(tr3.y_m, ref.y_m, atol=1e-3)


# ============================================================================ GeoLife
def write_plt(path, records):
    header = "Geolife trajectory\nWGS 84\nAltitude is in Feet\nReserved 3\n0,2,255,My Track,0,0,2,8421376\n0\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n".join(records) + "\n")


def test_geolife_synthetic_folder(tmp_path):
    root = tmp_path / "Data"
    write_plt(root / "000" / "Trajectory" / "a.plt", [
        "39.984702,116.318417,0,492,39744.1201851852,2008-10-23,02:53:04",
        "39.984683,116.31845,0,492,39744.1202546296,2008-10-23,02:53:10",
        "39.984683,116.31845,0,492,39744.1202546296,2008-10-23,02:53:10",   # duplicate
        "39.9847,116.3184,0,492,39744.12,2008-13-45,02:53:11",             # bad date
        "1,2,3",                                                            # short line: missing fields
        "39.98,116.31,0,492,39744.12,2008-10-23,02:53:12,extra,fields",     # malformed
    ])
    write_plt(root / "001" / "Trajectory" / "b.plt", ["40.0,116.3,0,100,39745.5,2008-10-24,12:00:00"])
    assert detect_format(root) == "geolife"
    tr, c = read_pings(root, tz="Asia/Shanghai")
    assert list(tr.pseudonym) == ["000", "001"] and c["files"] == 2
    assert c["dropped"] == {"malformed": 1, "missing": 1, "bad_time": 1, "duplicate": 1, "bad_coordinates": 0}
    assert c["rows_read"] == 7 == c["rows_kept"] + c["rows_dropped"]
    assert tr.t_s[0] == pd.Timestamp("2008-10-23 02:53:04", tz="UTC").value // 10**9
    with pytest.raises(ConfigError, match="do not apply to --format geolife"):
        read_pings(root, format="geolife", id="uid")
    with pytest.raises(InputError, match="no GeoLife .plt files"):
        read_pings(tmp_path / "Data" / "000" / "Trajectory", format="geolife")


@needs_geolife
def test_geolife_sample():
    tr, c = read_pings(GEOLIFE, format="geolife", tz="Asia/Shanghai")
    assert c["rows_read"] == 164_531 and c["files"] == 111
    assert c["dropped"]["duplicate"] == 213 and c["rows_kept"] == 164_318 and c["rows_dropped"] == 213
    assert list(tr.pseudonym) == [f"{i:03d}" for i in range(11)]
    assert c["crs"] == "EPSG:32650" and c["utc_offset_s"] == 28800
    assert np.all(np.diff(tr.t_s)[np.diff(tr.trace_index()) == 0] > 0)  # sorted, no duplicate second
