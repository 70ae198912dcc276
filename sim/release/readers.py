"""Readers for real location data: files and frames -> :class:`~sim.core.traces.Traces`
in metres, plus a count of every row dropped (DESIGN.md §8a "Real releases (audit)").

>>> traces, counts = read_pings("pings.csv", tz="Europe/Paris")
>>> counts["rows_kept"], counts["dropped"]

Inputs
------
* **CSV** (``.csv``, ``.csv.gz``, ``.txt``) — read in chunks of ``chunk_rows`` rows;
* **Parquet** (``.parquet``, ``.pq``) — read batch by batch (row groups), never whole;
* a **folder** of CSV or Parquet files (all of one kind, read in name order);
* **GeoLife PLT** (``format="geolife"``) — a folder of user folders
  ``ROOT/<user>/Trajectory/*.plt`` (or ``ROOT/<user>/*.plt``); the user id is the folder
  name.  Each file has 6 header lines, then ``lat, lon, 0, altitude_ft,
  days_since_1899-12-30, YYYY-MM-DD, HH:MM:SS``; times are UTC.  Lines that do not
  parse are counted as ``malformed``;
* a **frame**: a pandas DataFrame or GeoDataFrame, a scikit-mobility ``TrajDataFrame``
  (columns ``uid, datetime, lat, lng``) or a trackintel positionfixes frame (``user_id,
  tracked_at, geometry``).  They are recognised by their columns; neither library is
  imported.  A ``geometry`` column of points is used when there are no lat/lon columns;
  its CRS (a GeoDataFrame's ``.crs``) is converted to WGS84, and a plain column without a
  CRS is taken to hold (lon, lat) degrees.

Columns
-------
Each role (``id``, ``time``, ``lat``, ``lon``, optional ``accuracy``) is the column named
by the argument of that name, else the first column whose name (case-insensitive) is in
:data:`COLUMN_NAMES` in that order — e.g. ``uid``, ``user_id`` and ``user`` come before
``id`` (a trackintel frame reset to a column ``id`` holds *fix* ids, not users).  The
mapping used is returned in ``counts["columns"]``.

Times
-----
* datetimes (any pandas resolution, tz-aware or naive) and ISO strings
  (``2008-10-23 02:53:04``, ``2008-10-23T10:53:04+08:00``); **naive times are UTC** —
  localise local clock times first (``df[c].dt.tz_localize("Europe/Paris")``);
* numbers: Unix time in ``time_unit`` (``"s"``, ``"ms"``, ``"us"``, ``"ns"``); ``"auto"``
  picks it from the magnitude of the first chunk's median (< 1e11 s, < 1e14 ms,
  < 1e17 us, else ns).  Fractions of a second are floored;
* times before 1980-01-01 (the GPS epoch; ``0`` is a common "missing" sentinel) or from
  2100 on are counted as ``bad_time``.

Bad rows (counted in ``counts["dropped"]``, each row under its first reason, then dropped)
------------------------------------------------------------------------------------------
``missing`` (no id, time, lat or lon), ``bad_coordinates`` (not a number, infinite, lat
outside [-90, 90] or lon outside [-180, 180]), ``bad_time`` (unparseable or out of range),
``duplicate`` (a second row with the same id and the same whole second: the first one in
input order is kept), and for GeoLife ``malformed`` (a line that is not a record).  An
accuracy that is negative or not finite is set to unknown (NaN; counted in
``accuracy_unknown``), the row is kept.  Nothing else is changed.

Projection and local time
-------------------------
Positions are projected with pyproj to ``crs`` when given (a projected CRS), else to the
**UTM zone of the data's centroid** (mean latitude, circular mean longitude; zone
``floor((lon + 180) / 6) + 1``, EPSG 326xx north / 327xx south; the Norway/Svalbard
exceptions are not applied).  ``tz`` (an IANA name such as ``Asia/Shanghai``) gives local
time for nights and working hours: the Traces' fixed ``utc_offset_s`` is that zone's
offset **at the median time of the data**.  Daylight saving is not modelled: when the
offset differs across the data (``counts["tz_offset_varies"]``), part of the data has its
nights shifted by the DST difference.  Without ``tz`` the offset is the centroid's mean
solar time rounded to the hour (``round(lon / 15)`` hours) and ``counts["tz_source"]``
says so.
"""
from __future__ import annotations

import datetime as _dt
import logging
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from sim.core.constants import DAY_S
from sim.core.errors import ConfigError, CRSError, InputError
from sim.core.traces import Traces, check_crs, local_midnight
from sim.world.crs import project_from_latlon

log = logging.getLogger(__name__)

__all__ = ["FORMATS", "COLUMN_NAMES", "DROP_REASONS", "read_pings", "frame_to_traces", "detect_columns", "map_roles",
           "normalize_user_ids",
           "detect_format", "utm_crs", "utc_offset_at", "parse_times"]

#: accepted ``format`` values
FORMATS = ("auto", "csv", "parquet", "geolife")
#: column names recognised for each role, in order of preference (compared lower-case)
COLUMN_NAMES = {
    "id": ("uid", "user_id", "userid", "user", "device_id", "device", "pseudonym", "maid", "ad_id", "id"),
    "time": ("datetime", "tracked_at", "timestamp", "time", "t", "t_s", "date_time", "ts"),
    "lat": ("lat", "latitude", "lat_deg"),
    "lon": ("lon", "lng", "long", "longitude", "lon_deg"),
    "accuracy": ("accuracy", "accuracy_m", "horizontal_accuracy", "acc", "hacc"),
}
REQUIRED_ROLES = ("id", "time", "lat", "lon")
#: reasons a row is dropped, in the order they are tested
DROP_REASONS = ("malformed", "missing", "bad_coordinates", "bad_time", "duplicate")
TIME_UNITS = ("auto", "s", "ms", "us", "ns")
_UNIT_SCALE = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}
#: valid times: [1980-01-01, 2100-01-01) UTC
T_MIN_S = 315532800
T_MAX_S = 4102444800
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zip", ".csv.xz", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
GEOLIFE_COLUMNS = ("lat", "lon", "zero", "altitude_ft", "days", "date", "time")
_TIME_OF_DAY = re.compile(r"^\s*\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?\s*$")


# ============================================================================ helpers
def utm_crs(lat_deg: float, lon_deg: float) -> str:
    """``"EPSG:326zz"`` (north) or ``"EPSG:327zz"`` (south): the UTM zone of a point."""
    if not (math.isfinite(lat_deg) and math.isfinite(lon_deg)):
        raise InputError(f"cannot choose a UTM zone for lat={lat_deg}, lon={lon_deg}; pass crs= explicitly.")
    lon = (float(lon_deg) + 180.0) % 360.0 - 180.0
    zone = int(math.floor((lon + 180.0) / 6.0)) % 60 + 1
    return f"EPSG:{(32600 if lat_deg >= 0 else 32700) + zone}"


def _zone(tz: str):
    import zoneinfo

    if not isinstance(tz, str) or not tz.strip():
        raise ConfigError(f"tz must be an IANA time zone name such as 'Europe/Paris' or 'Asia/Shanghai', "
                          f"got {tz!r}.")
    try:
        return zoneinfo.ZoneInfo(tz.strip())
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ConfigError(f"--tz {tz!r} is not a known IANA time zone name; use e.g. 'Europe/Paris', "
                          "'America/New_York' or 'Asia/Shanghai' (python -c \"import zoneinfo; "
                          "print(sorted(zoneinfo.available_timezones()))\" lists them).") from None


def utc_offset_at(tz: str, t_s: int) -> int:
    """Offset (local minus UTC, seconds) of IANA zone ``tz`` at Unix time ``t_s``."""
    zi = _zone(tz)
    when = _dt.datetime.fromtimestamp(int(t_s), tz=_dt.timezone.utc).astimezone(zi)
    return int(when.utcoffset().total_seconds())


def _norm(name) -> str:
    return str(name).strip().lower()


def map_roles(columns, given: dict, names: dict, *, what: str, option) -> dict:
    """Map each role of ``names`` to a column of ``columns``: the column ``given[role]``
    names (exactly, else case-insensitively), else the first column whose lower-case name
    is in ``names[role]`` (in that order) and serves no other role; None when there is
    none.  Named columns are placed before any is detected, so detection never takes
    one; the returned dict lists the named roles first.  An explicit name that is not a
    column raises InputError naming ``what`` (e.g.
    "the input"), the columns present and ``option(role)`` (e.g. "--id")."""
    cols = list(columns)
    by_norm = {}
    for c in cols:
        by_norm.setdefault(_norm(c), c)
    out = {}
    for role in names:
        name = given.get(role)
        if name is None:
            continue
        if name in cols:
            out[role] = name
        elif _norm(name) in by_norm:
            out[role] = by_norm[_norm(name)]
        else:
            raise InputError(
                f"{option(role)} {name!r} is not a column of {what}; its columns are "
                f"{[str(c) for c in cols][:30]}. Pass the right name with {option(role)}.")
    for role in names:
        if role not in out:
            out[role] = next((by_norm[n] for n in names[role] if n in by_norm and by_norm[n] not in out.values()),
                             None)
    return out


def detect_columns(columns, *, id=None, time=None, lat=None, lon=None, accuracy=None,
                   has_geometry: bool = False) -> dict:
    """Map each role to a column of ``columns`` (explicit names win, else
    :data:`COLUMN_NAMES`); lat/lon may be ``None`` when ``has_geometry``.

    Raises InputError naming the missing role, the columns present and the option to pass.
    """
    cols = list(columns)
    out = map_roles(cols, {"id": id, "time": time, "lat": lat, "lon": lon, "accuracy": accuracy}, COLUMN_NAMES,
                    what="the input", option=lambda role: f"--{role}")
    out = {role: out[role] for role in COLUMN_NAMES}
    need = [r for r in REQUIRED_ROLES if out[r] is None and not (has_geometry and r in ("lat", "lon"))]
    if need:
        hint = ", ".join(f"--{r} COLUMN" for r in need)
        raise InputError(
            f"cannot find the {' and '.join(need)} column(s) among {[str(c) for c in cols][:30]}; "
            f"recognised names are {', '.join(f'{r}: {list(COLUMN_NAMES[r])}' for r in need)}. "
            f"Name them with {hint} (Python: id=, time=, lat=, lon=).")
    if has_geometry and (out["lat"] is None) != (out["lon"] is None):
        raise InputError("found only one of the lat/lon columns; pass both --lat and --lon, or neither to use "
                         "the geometry column.")
    return out


def _suffix(p: Path) -> str:
    name = p.name.lower()
    for s in CSV_SUFFIXES + PARQUET_SUFFIXES:
        if name.endswith(s):
            return s
    return p.suffix.lower()


def _geolife_files(root: Path) -> list:
    """[(user_id, path)] of every PLT file under a GeoLife root (or one user folder)."""
    if (root / "Trajectory").is_dir():  # one user's folder
        return [(root.name, f) for f in sorted((root / "Trajectory").glob("*.plt"))]
    out = []
    for u in sorted(d for d in root.iterdir() if d.is_dir()):
        traj = u / "Trajectory"
        files = sorted(traj.glob("*.plt")) if traj.is_dir() else sorted(u.glob("*.plt"))
        out += [(u.name, f) for f in files]
    return out


def detect_format(path) -> str:
    """"csv", "parquet" or "geolife" for a file or folder (InputError if none fits)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"no such file or folder: {str(p)!r}; check the PINGS path.")
    if p.is_file():
        s = _suffix(p)
        if s in CSV_SUFFIXES:
            return "csv"
        if s in PARQUET_SUFFIXES:
            return "parquet"
        if s == ".plt":
            raise InputError(f"{str(p)!r} is one GeoLife .plt file; pass the folder of user folders "
                             "(ROOT/<user>/Trajectory/*.plt) with --format geolife.")
        raise InputError(f"cannot tell the format of {str(p)!r} from its name; pass --format csv or "
                         "--format parquet.")
    if _geolife_files(p):
        return "geolife"
    kinds = {("csv" if _suffix(f) in CSV_SUFFIXES else "parquet") for f in p.iterdir()
             if f.is_file() and _suffix(f) in CSV_SUFFIXES + PARQUET_SUFFIXES}
    if len(kinds) == 1:
        return kinds.pop()
    if not kinds:
        raise InputError(f"folder {str(p)!r} holds no .csv, .parquet or GeoLife .plt files; pass a file, "
                         "a folder of CSV or Parquet files, or a GeoLife root (ROOT/<user>/Trajectory/*.plt).")
    raise InputError(f"folder {str(p)!r} mixes CSV and Parquet files; put one kind per folder or pass one file.")


def _files(p: Path, fmt: str) -> list:
    if p.is_file():
        return [p]
    want = CSV_SUFFIXES if fmt == "csv" else PARQUET_SUFFIXES
    files = sorted(f for f in p.iterdir() if f.is_file() and _suffix(f) in want)
    if not files:
        raise InputError(f"folder {str(p)!r} holds no {fmt} files (names ending {list(want)}).")
    return files


# ============================================================================ times
def parse_times(values, *, time_unit: str = "s"):
    """Unix seconds (int64) of ``values`` and the reason of each failure.

    Returns ``(t_s, missing, bad)``: ``missing`` marks null values, ``bad`` values that
    are present but unparseable, infinite or outside [1980, 2100).  ``time_unit`` applies
    to numbers ("s", "ms", "us", "ns"; resolve "auto" first).  Naive datetimes and strings
    are UTC.
    """
    s = pd.Series(values) if not isinstance(values, pd.Series) else values.reset_index(drop=True)
    n = len(s)
    t = np.zeros(n, dtype=np.int64)
    missing = np.array(s.isna(), dtype=bool)
    bad = np.zeros(n, dtype=bool)
    if pd.api.types.is_bool_dtype(s):
        raise InputError(f"the time column holds booleans (dtype {s.dtype}); point --time at the timestamps.")
    if pd.api.types.is_datetime64_any_dtype(s):
        d = s if getattr(s.dt, "tz", None) is not None else s.dt.tz_localize("UTC")
        ok = ~missing
        if ok.any():
            secs = (d[ok] - pd.Timestamp("1970-01-01", tz="UTC")) // pd.Timedelta(seconds=1)
            t[ok] = secs.to_numpy(dtype=np.int64)
    elif pd.api.types.is_numeric_dtype(s):
        v = s.to_numpy(dtype=np.float64, na_value=np.nan)
        scale = _UNIT_SCALE[time_unit]
        fin = np.isfinite(v)
        bad |= ~fin & ~missing
        ok = fin & ~missing
        if ok.any():
            if s.dtype.kind in "iu":
                t[ok] = np.floor_divide(s.to_numpy()[ok].astype(np.int64), scale)
            else:
                with np.errstate(invalid="ignore", over="ignore"):
                    t[ok] = np.floor(v[ok] / scale).astype(np.int64)
    else:
        txt = s.astype("string")
        missing |= np.asarray(txt.str.strip().fillna("") == "", dtype=bool)
        ok = ~missing
        if ok.any():
            sub = txt[ok]
            first = sub.iloc[0]
            if _TIME_OF_DAY.match(str(first)):
                raise InputError(
                    f"the time column holds times of day without a date (e.g. {first!r}); combine the date "
                    "and time columns first (e.g. df['datetime'] = df['date'] + ' ' + df['time']) or point "
                    "--time at a full timestamp.")
            d = pd.to_datetime(sub, utc=True, errors="coerce", format="ISO8601")
            retry = d.isna().to_numpy()
            if retry.any():  # other layouts, parsed value by value (slow, only for the rest)
                d2 = pd.to_datetime(sub[retry], utc=True, errors="coerce", format="mixed")
                d = d.copy()
                d[retry] = d2
            good = d.notna().to_numpy()
            idx = np.flatnonzero(ok)
            bad[idx[~good]] = True
            if good.any():
                secs = (d[good] - pd.Timestamp("1970-01-01", tz="UTC")) // pd.Timedelta(seconds=1)
                t[idx[good]] = secs.to_numpy(dtype=np.int64)
    bad |= ~missing & ~bad & ((t < T_MIN_S) | (t >= T_MAX_S))
    return t, missing, bad


def _auto_unit(values) -> str:
    s = pd.Series(values)
    if not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
        return "s"
    v = np.abs(s.to_numpy(dtype=np.float64, na_value=np.nan))
    v = v[np.isfinite(v)]
    if not len(v):
        return "s"
    m = float(np.median(v))
    return "s" if m < 1e11 else "ms" if m < 1e14 else "us" if m < 1e17 else "ns"


def normalize_user_ids(values) -> pd.Series:
    """User ids as stripped strings (pandas ``string``; missing/blank -> <NA>), the names
    of the traces: integers stored as floats (a column with gaps) lose their ``.0``.  The
    register's user column is read the same way, so its ids match the traces'."""
    s = pd.Series(values).reset_index(drop=True)
    if pd.api.types.is_float_dtype(s):
        v = s.to_numpy(dtype=np.float64, na_value=np.nan)
        fin = np.isfinite(v)
        if fin.any() and np.all(np.mod(v[fin], 1) == 0):
            s = pd.Series(pd.array(np.where(fin, v, 0).astype(np.int64), dtype="Int64")).mask(~fin)
    out = s.astype("string").str.strip()
    return out.mask(out == "")


# ============================================================================ collector
class _Collector:
    """Cleans chunks and accumulates compact arrays (id code, t_s, lat, lon, accuracy)."""

    def __init__(self, time_unit: str):
        if time_unit not in TIME_UNITS:
            raise ConfigError(f"time_unit must be one of {TIME_UNITS}, got {time_unit!r}.")
        self.time_unit = time_unit
        self.ids: dict = {}
        self.parts = {"code": [], "t": [], "lat": [], "lon": [], "acc": []}
        self.counts = {"rows_read": 0, **{r: 0 for r in DROP_REASONS}, "accuracy_unknown": 0}
        self.has_accuracy = False

    def add(self, ids, times, lat, lon, acc=None) -> None:
        n = len(ids)
        self.counts["rows_read"] += n
        if n == 0:
            return
        ids = pd.Series(ids).reset_index(drop=True)
        id_missing = np.array(ids.isna(), dtype=bool)
        if ids.dtype == object or pd.api.types.is_string_dtype(ids):
            id_missing |= np.asarray(ids.astype("string").str.strip().fillna("") == "", dtype=bool)
        lat_s = pd.Series(lat).reset_index(drop=True)
        lon_s = pd.Series(lon).reset_index(drop=True)
        la_miss = np.array(lat_s.isna(), dtype=bool)
        lo_miss = np.array(lon_s.isna(), dtype=bool)
        la = pd.to_numeric(lat_s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        lo = pd.to_numeric(lon_s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        if self.time_unit == "auto":
            self.time_unit = _auto_unit(times)
        t, t_miss, t_bad = parse_times(pd.Series(times).reset_index(drop=True), time_unit=self.time_unit)
        missing = id_missing | la_miss | lo_miss | t_miss
        with np.errstate(invalid="ignore"):
            bad_xy = ~missing & ~(np.isfinite(la) & np.isfinite(lo) & (np.abs(la) <= 90) & (np.abs(lo) <= 180))
        bad_t = ~missing & ~bad_xy & t_bad
        keep = ~(missing | bad_xy | bad_t)
        self.counts["missing"] += int(missing.sum())
        self.counts["bad_coordinates"] += int(bad_xy.sum())
        self.counts["bad_time"] += int(bad_t.sum())
        if not keep.any():
            return
        codes, uniq = pd.factorize(normalize_user_ids(ids[keep]))
        table = self.ids
        gmap = np.fromiter((table.setdefault(u, len(table)) for u in uniq), dtype=np.int64, count=len(uniq))
        self.parts["code"].append(gmap[codes])
        self.parts["t"].append(t[keep])
        self.parts["lat"].append(la[keep])
        self.parts["lon"].append(lo[keep])
        if acc is not None:
            self.has_accuracy = True
            a = pd.to_numeric(pd.Series(acc).reset_index(drop=True), errors="coerce").to_numpy(
                dtype=np.float64, na_value=np.nan)[keep]
            with np.errstate(invalid="ignore"):
                unk = ~(np.isfinite(a) & (a >= 0))
            self.counts["accuracy_unknown"] += int(unk.sum())
            a[unk] = np.nan
            self.parts["acc"].append(a.astype(np.float32))
        else:
            self.parts["acc"].append(np.full(int(keep.sum()), np.nan, dtype=np.float32))

    def arrays(self):
        cat = {k: (np.concatenate(v) if v else np.zeros(0, dtype=np.float32 if k == "acc" else
                                                           (np.int64 if k in ("code", "t") else np.float64)))
               for k, v in self.parts.items()}
        names = np.empty(len(self.ids), dtype=object)
        for name, code in self.ids.items():
            names[code] = name
        return names, cat


def _finish(col: _Collector, *, tz, crs, source: dict) -> tuple:
    """Dedupe, project, choose the offset and build the Traces; returns (Traces, counts)."""
    names, a = col.arrays()
    counts = dict(col.counts)
    code, t, lat, lon, acc = a["code"], a["t"], a["lat"], a["lon"], a["acc"]
    if len(t) == 0:
        dropped = {r: counts[r] for r in DROP_REASONS if counts[r]}
        raise InputError(
            f"no usable rows: read {counts['rows_read']:,} row(s), dropped {dropped or 'none'}; check the column "
            "mapping (--id/--time/--lat/--lon), the time format and that lat/lon are degrees (not projected "
            "or swapped).")
    # names in sorted order (trace order of the Traces)
    order_names = np.argsort(names.astype(str), kind="stable")
    rank = np.empty(len(names), dtype=np.int64)
    rank[order_names] = np.arange(len(names))
    code = rank[code]
    names = names[order_names]
    order = np.lexsort((t, code))  # stable: equal (id, t) keep input order
    code, t, lat, lon, acc = code[order], t[order], lat[order], lon[order], acc[order]
    dup = np.zeros(len(t), dtype=bool)
    if len(t) > 1:
        dup[1:] = (code[1:] == code[:-1]) & (t[1:] == t[:-1])
    counts["duplicate"] = int(dup.sum())
    if dup.any():
        keep = ~dup
        code, t, lat, lon, acc = code[keep], t[keep], lat[keep], lon[keep], acc[keep]
    # CRS
    clat = float(np.mean(lat))
    clon = float(np.degrees(np.arctan2(np.mean(np.sin(np.radians(lon))), np.mean(np.cos(np.radians(lon))))))
    if crs is None:
        crs_used, crs_source = utm_crs(clat, clon), "utm_of_centroid"
    else:
        crs_used, crs_source = check_crs(crs), "given"
    try:
        x, y = project_from_latlon(lat, lon, crs_used)
    except Exception as exc:  # pyproj raises several types
        raise CRSError(f"cannot project lat/lon to {crs_used!r} ({exc}); pass a projected CRS pyproj knows "
                       "with --crs (e.g. EPSG:32633) or omit it for the UTM zone of the data.") from None
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise CRSError(f"projecting to {crs_used!r} gave non-finite positions (data outside the CRS's area of "
                       "use?); pass a suitable --crs or omit it for the UTM zone of the data.")
    # local time
    t_med = int(np.median(t))
    if tz is not None:
        off = utc_offset_at(tz, t_med)
        lo_q, hi_q = np.percentile(t, [0.5, 99.5]).astype(np.int64)
        varies = len({utc_offset_at(tz, int(v)) for v in (t.min(), lo_q, t_med, hi_q, t.max())}) > 1
        tz_source = "given"
    else:
        off = int(round(clon / 15.0)) * 3600
        off = max(min(off, 14 * 3600), -12 * 3600)
        varies = False
        tz_source = "longitude"
    n_tr = len(names)
    cnt = np.bincount(code, minlength=n_tr)
    present = cnt > 0
    if not present.all():  # ids whose rows were all duplicates cannot exist, but stay safe
        remap = np.cumsum(present) - 1
        code, names, cnt = remap[code], names[present], cnt[present]
    offsets = np.zeros(len(names) + 1, dtype=np.int64)
    np.cumsum(cnt, out=offsets[1:])
    start_s = local_midnight(int(t.min()), off)
    n_days = int((int(t.max()) - start_s) // DAY_S + 1)
    traces = Traces(pseudonym=np.asarray(names, dtype=object), offsets=offsets, t_s=t.astype(np.int64),
                    x_m=x, y_m=y, accuracy_m=acc.astype(np.float32), crs=crs_used, utc_offset_s=int(off),
                    start_s=int(start_s), n_days=n_days,
                    meta={"source": "audit_reader", "format": source.get("format")}).validate()
    counts.update(
        rows_kept=int(len(t)), dropped={r: int(counts.pop(r)) for r in DROP_REASONS},
        users=int(len(names)), crs=crs_used, crs_source=crs_source, tz=tz, tz_source=tz_source,
        utc_offset_s=int(off), tz_offset_varies=bool(varies), time_unit=col.time_unit,
        has_accuracy=bool(col.has_accuracy), **source)
    counts["rows_dropped"] = int(sum(counts["dropped"].values()))
    return traces, counts


# ============================================================================ sources
def _feed_frame(col: _Collector, df: pd.DataFrame, m: dict, chunk_rows: int) -> None:
    geo = None
    if m["lat"] is None:  # geometry column of points
        geo = _geometry_column(df)
        if geo is None:
            raise InputError("no lat/lon columns and no geometry column; pass --lat and --lon.")
    for a in range(0, len(df), chunk_rows):
        part = df.iloc[a:a + chunk_rows]
        if geo is not None:
            lat, lon = _geometry_latlon(part, geo, getattr(df, "crs", None))
        else:
            lat, lon = part[m["lat"]], part[m["lon"]]
        col.add(part[m["id"]], part[m["time"]], lat, lon,
                part[m["accuracy"]] if m.get("accuracy") is not None else None)


def _geometry_column(df):
    """Name of the frame's point-geometry column (a GeoDataFrame's active one, else
    "geometry"), or None."""
    name = getattr(df, "_geometry_column_name", None)  # GeoDataFrame (duck-typed)
    if isinstance(name, str) and name in df.columns:
        return name
    return "geometry" if "geometry" in df.columns else None


def _geometry_latlon(df, gcol, crs):
    import shapely

    g = np.asarray(df[gcol].to_numpy(), dtype=object)
    n = len(g)
    isnull = np.array([v is None or (isinstance(v, float) and math.isnan(v)) for v in g], dtype=bool)
    x = np.full(n, np.nan)
    y = np.full(n, np.nan)
    ok = ~isnull
    if ok.any():
        try:
            geoms = g[ok]
            types = shapely.get_type_id(geoms)
        except Exception:  # shapely raises TypeError or its own errors for non-geometries
            raise InputError(f"column {gcol!r} does not hold shapely geometries; pass --lat and --lon.") from None
        pt = types == 0
        xs = np.full(len(geoms), np.inf)
        ys = np.full(len(geoms), np.inf)  # non-points: bad coordinates
        xs[pt] = shapely.get_x(geoms[pt])
        ys[pt] = shapely.get_y(geoms[pt])
        x[ok], y[ok] = xs, ys
    if crs is not None:
        import pyproj

        c = pyproj.CRS.from_user_input(crs)
        if not c.is_geographic or c.to_epsg() != 4326:
            fin = np.isfinite(x) & np.isfinite(y)
            if fin.any():
                lo, la = pyproj.Transformer.from_crs(c, "EPSG:4326", always_xy=True).transform(x[fin], y[fin])
                x[fin], y[fin] = lo, la
    return pd.Series(y), pd.Series(x)


def _read_csv(col, files, names_kw, chunk_rows):
    cols = pd.read_csv(files[0], nrows=0).columns
    m = detect_columns(cols, **names_kw)
    use = [c for c in (m["id"], m["time"], m["lat"], m["lon"], m.get("accuracy")) if c is not None]
    for f in files:
        head = pd.read_csv(f, nrows=0).columns
        miss = [c for c in use if c not in head]
        if miss:
            raise InputError(f"{str(f)!r} lacks column(s) {miss} that {str(files[0])!r} has; all files of a "
                             "folder must share the column names.")
        try:
            # every column is read (no usecols): a line with too many fields must be an error, not cut
            for chunk in pd.read_csv(f, dtype={m["id"]: "string"}, chunksize=chunk_rows):
                col.add(chunk[m["id"]], chunk[m["time"]], chunk[m["lat"]], chunk[m["lon"]],
                        chunk[m["accuracy"]] if m.get("accuracy") is not None else None)
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
            raise InputError(f"cannot parse CSV {str(f)!r}: {str(exc).splitlines()[0]}; fix or remove the "
                             "malformed line(s) (each record must have as many fields as the header).") from None
    return m


def _read_parquet(col, files, names_kw, chunk_rows):
    import pyarrow.parquet as pq

    try:
        first = pq.ParquetFile(files[0])
    except Exception as exc:
        raise InputError(f"cannot read Parquet {str(files[0])!r}: {exc}") from None
    m = detect_columns(first.schema_arrow.names, **names_kw)
    use = [c for c in (m["id"], m["time"], m["lat"], m["lon"], m.get("accuracy")) if c is not None]
    for f in files:
        try:
            pf = pq.ParquetFile(f)
            miss = [c for c in use if c not in pf.schema_arrow.names]
            if miss:
                raise InputError(f"{str(f)!r} lacks column(s) {miss}; all files of a folder must share the "
                                 "column names.")
            for batch in pf.iter_batches(batch_size=chunk_rows, columns=use):
                chunk = batch.to_pandas()
                col.add(chunk[m["id"]], chunk[m["time"]], chunk[m["lat"]], chunk[m["lon"]],
                        chunk[m["accuracy"]] if m.get("accuracy") is not None else None)
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"cannot read Parquet {str(f)!r}: {exc}") from None
    return m


def _read_plt(path: Path) -> tuple[pd.DataFrame, int]:
    """One PLT file: its records and the number of malformed lines."""
    raw = path.read_bytes()
    lines = [ln for ln in raw.splitlines()[6:] if ln.strip()]
    if not lines:
        return pd.DataFrame(columns=list(GEOLIFE_COLUMNS)), 0
    import io

    df = pd.read_csv(io.BytesIO(b"\n".join(lines)), header=None, names=list(GEOLIFE_COLUMNS),
                     dtype={"date": "string", "time": "string"}, on_bad_lines="skip", engine="c")
    malformed = len(lines) - len(df)
    return df, malformed


def _read_geolife(col, root: Path):
    files = _geolife_files(root)
    if not files:
        raise InputError(f"no GeoLife .plt files under {str(root)!r}; expected ROOT/<user>/Trajectory/*.plt "
                         "(the folder 'Data' of the GeoLife release).")
    by_user: dict = {}
    for uid, f in files:
        by_user.setdefault(uid, []).append(f)
    for uid, fs in by_user.items():
        frames = []
        for f in fs:
            df, bad = _read_plt(f)
            col.counts["malformed"] += bad
            col.counts["rows_read"] += bad
            frames.append(df)
        df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        when = df["date"].str.strip() + " " + df["time"].str.strip()
        times = pd.to_datetime(when, format="%Y-%m-%d %H:%M:%S", utc=True, errors="coerce")
        if times.isna().any():  # unparseable stamps stay text: parse_times counts them as bad_time
            times = times.astype(object).where(times.notna(), when.astype(object))
        col.add(pd.Series(np.full(len(df), uid, dtype=object)), times, df["lat"], df["lon"])
    return len(files), len(by_user)


# ============================================================================ public
def frame_to_traces(df, *, id=None, time=None, lat=None, lon=None, accuracy=None, tz=None, crs=None,
                    time_unit: str = "auto", chunk_rows: int = 1_000_000):
    """:func:`read_pings` for a DataFrame (pandas, GeoPandas, scikit-mobility, trackintel)."""
    return read_pings(df, id=id, time=time, lat=lat, lon=lon, accuracy=accuracy, tz=tz, crs=crs,
                      time_unit=time_unit, chunk_rows=chunk_rows)


def read_pings(source, *, format: str = "auto", id=None, time=None, lat=None, lon=None, accuracy=None,
               tz=None, crs=None, time_unit: str = "auto", chunk_rows: int = 1_000_000):
    """Read real pings into a :class:`~sim.core.traces.Traces` in metres.

    Parameters
    ----------
    source : path (file or folder) or DataFrame
        See the module docstring for the formats and frames accepted.
    format : "auto", "csv", "parquet" or "geolife"
        ``auto`` decides from the file names (a folder of user folders with ``.plt`` files
        is GeoLife).  Ignored for frames.
    id, time, lat, lon, accuracy : str, optional
        Column names; default: detected (:data:`COLUMN_NAMES`).
    tz : str, optional
        IANA time zone of the data's local time (nights, working hours).
    crs : str, optional
        Projected CRS of the output; default: UTM zone of the data's centroid.
    time_unit : "auto", "s", "ms", "us" or "ns"
        Unit of numeric times.
    chunk_rows : int
        Rows per CSV chunk / Parquet batch / frame slice.

    Returns
    -------
    (Traces, counts)
        ``counts``: rows_read, rows_kept, rows_dropped, dropped {malformed, missing,
        bad_coordinates, bad_time, duplicate}, accuracy_unknown, users, columns (the
        mapping used), format, files, crs, crs_source, tz, tz_source, utc_offset_s,
        tz_offset_varies, time_unit, has_accuracy.  ``rows_read == rows_kept +
        rows_dropped``.
    """
    if format not in FORMATS:
        raise ConfigError(f"--format must be one of {FORMATS}, got {format!r}.")
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, (int, np.integer)) or chunk_rows < 1:
        raise ConfigError(f"chunk_rows must be an integer >= 1, got {chunk_rows!r}.")
    if tz is not None:
        _zone(tz)  # validate before reading anything
    if crs is not None:
        check_crs(crs)
    col = _Collector(time_unit)
    names_kw = dict(id=id, time=time, lat=lat, lon=lon, accuracy=accuracy)
    if isinstance(source, pd.DataFrame):
        m = detect_columns(source.columns, has_geometry=_geometry_column(source) is not None, **names_kw)
        kind = ("trackintel" if {"user_id", "tracked_at"} <= set(map(_norm, source.columns))
                else "skmob" if {"uid", "datetime", "lat", "lng"} <= set(map(_norm, source.columns)) else "frame")
        _feed_frame(col, source, m, int(chunk_rows))
        src = {"format": kind, "files": 0, "columns": {k: (str(v) if v is not None else None) for k, v in m.items()}}
        if m["lat"] is None:
            src["columns"].update(lat="geometry", lon="geometry")
        return _finish(col, tz=tz, crs=crs, source=src)
    if not isinstance(source, (str, Path)):
        raise InputError(f"source must be a path or a pandas DataFrame, got {type(source).__name__}.")
    p = Path(source)
    fmt = detect_format(p) if format == "auto" else format
    if not p.exists():
        raise InputError(f"no such file or folder: {str(p)!r}; check the PINGS path.")
    if fmt == "geolife":
        if not p.is_dir():
            raise InputError(f"--format geolife needs a folder (ROOT/<user>/Trajectory/*.plt), got the file {str(p)!r}.")
        if any(v is not None for v in names_kw.values()):
            raise ConfigError("--id/--time/--lat/--lon/--accuracy do not apply to --format geolife (its columns "
                              "are fixed and the user id is the folder name); drop them.")
        n_files, _ = _read_geolife(col, p)
        src = {"format": "geolife", "files": n_files,
               "columns": {"id": "<folder name>", "time": "date + time (UTC)", "lat": "lat", "lon": "lon",
                           "accuracy": None}}
        return _finish(col, tz=tz, crs=crs, source=src)
    files = _files(p, fmt)
    reader = _read_csv if fmt == "csv" else _read_parquet
    m = reader(col, files, names_kw, int(chunk_rows))
    src = {"format": fmt, "files": len(files), "columns": {k: (str(v) if v is not None else None)
                                                            for k, v in m.items()}}
    return _finish(col, tz=tz, crs=crs, source=src)
