"""The data holder's own register for ``reidsim audit --register``: people with a home
address (and optionally an employer's address and an age), read from CSV, Parquet or a
DataFrame and projected to the audit's metric CRS.

>>> reg, counts = read_register("people.csv", crs="EPSG:32650")
>>> counts["rows_kept"], counts["dropped"]

File format (docs/CONTRACTS.md, "Register file")
-------------------------------------------------
One row per person.  Each role is the column named by the argument of that name, else
the first column whose name (case-insensitive, spaces trimmed) is in
:data:`REGISTER_COLUMN_NAMES`:

* ``name`` (required) — the person's name; checked to be present, then dropped: the
  returned frame never holds a name, only their count;
* ``home_lat``, ``home_lon`` (required) — WGS84 degrees of the listed home;
* ``work_lat``, ``work_lon`` (optional, both or neither) — the listed employer's address;
  empty = no employer listed;
* ``age`` (optional) — whole years; the ladder's ``home_adults`` rung keeps ages >= 18
  (a missing age counts as adult);
* ``user`` (optional, never detected: name it) — the ping file's user id of that person,
  when the data holder knows it (consenting study participants).  It is ground truth,
  used only to *score* the linkage.

Bad rows (counted in ``counts["dropped"]`` under their first reason, then dropped)
-----------------------------------------------------------------------------------
``missing_name`` (empty name), ``missing_home`` (an empty home latitude or longitude),
``bad_home`` (not a number, infinite, |lat| > 90 or |lon| > 180).  Kept rows with an
unusable value are changed, and counted: a work position that is only half given, not a
number or out of range becomes "no employer listed" (``bad_work``); an age that is not a
non-negative number becomes missing (``bad_age``); a user id already given to an earlier
row is removed from the later row (``duplicate_user``: a phone has one owner).

Kept rows get ``person_id`` 0, 1, ... in file order.  Positions are projected to ``crs``
with :func:`sim.world.crs.project_from_latlon`, as the ping reader does.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from sim.core.errors import CRSError, InputError
from sim.core.traces import check_crs
from sim.release.readers import CSV_SUFFIXES, PARQUET_SUFFIXES, map_roles, normalize_user_ids
from sim.world.crs import project_from_latlon

log = logging.getLogger(__name__)

__all__ = ["read_register", "peek_register", "register_columns", "check_register_frame", "normalize_user_ids",
           "REGISTER_COLUMN_NAMES", "REGISTER_ROLES", "REGISTER_OPTIONS", "REGISTER_DROP_REASONS",
           "REGISTER_FRAME_COLUMNS"]

#: column names recognised for each role, in order of preference (compared lower-case)
REGISTER_COLUMN_NAMES = {
    "name": ("name", "full_name", "person", "person_name"),
    "home_lat": ("home_lat", "home_latitude", "lat", "latitude"),
    "home_lon": ("home_lon", "home_lng", "home_longitude", "lon", "lng", "longitude"),
    "work_lat": ("work_lat", "work_latitude"),
    "work_lon": ("work_lon", "work_lng", "work_longitude"),
    "age": ("age",),
    "user": (),  # never detected: ground truth only when the data holder names it
}
REGISTER_ROLES = tuple(REGISTER_COLUMN_NAMES)
REQUIRED_REGISTER_ROLES = ("name", "home_lat", "home_lon")
#: the command-line option of each role
REGISTER_OPTIONS = {r: "--register-" + r.replace("_", "-") for r in REGISTER_ROLES}
#: reasons a register row is dropped, in the order they are tested
REGISTER_DROP_REASONS = ("missing_name", "missing_home", "bad_home")
#: columns of the frame :func:`read_register` returns (``age``/``user`` only when given)
REGISTER_FRAME_COLUMNS = ("person_id", "home_x_m", "home_y_m", "work_x_m", "work_y_m", "age", "user")


def register_columns(columns, *, name=None, home_lat=None, home_lon=None, work_lat=None, work_lon=None,
                     age=None, user=None) -> dict:
    """Map each register role to a column of ``columns`` (explicit names win, else
    :data:`REGISTER_COLUMN_NAMES`); optional roles not found map to None.

    Raises InputError naming the role, the columns present and the option to pass.
    """
    cols = list(columns)
    shown = [str(c) for c in cols][:30]
    given = dict(name=name, home_lat=home_lat, home_lon=home_lon, work_lat=work_lat, work_lon=work_lon,
                 age=age, user=user)
    out = map_roles(cols, given, REGISTER_COLUMN_NAMES, what="the register", option=lambda role: REGISTER_OPTIONS[role])
    need = [r for r in REQUIRED_REGISTER_ROLES if out[r] is None]
    if need:
        raise InputError(
            f"cannot find the register's {' and '.join(need)} column(s) among {shown}; recognised names are "
            + "; ".join(f"{r}: {list(REGISTER_COLUMN_NAMES[r])}" for r in need)
            + f". Name them with {', '.join(REGISTER_OPTIONS[r] + ' COLUMN' for r in need)} "
              f"(Python: {', '.join(r + '=' for r in need)}).")
    if (out["work_lat"] is None) != (out["work_lon"] is None):
        have, miss = ("work_lat", "work_lon") if out["work_lat"] is not None else ("work_lon", "work_lat")
        raise InputError(f"the register has a {have} column ({out[have]!r}) but no {miss} column among {shown}; "
                         f"name it with {REGISTER_OPTIONS[miss]} COLUMN, or pass neither for a register "
                         "without employers.")
    used = [c for c in out.values() if c is not None]
    if len(set(used)) != len(used):
        raise InputError(f"one register column serves two roles ({out}); name each role's own column.")
    return out


def _register_format(p: Path) -> str:
    name = p.name.lower()
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    raise InputError(f"cannot tell the format of the register file {str(p)!r} from its name; expected a CSV "
                     f"({', '.join(CSV_SUFFIXES)}) or Parquet ({', '.join(PARQUET_SUFFIXES)}) file.")


def _first_line(exc) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else repr(exc)


def _header(source) -> tuple[list, str]:
    """(column names, format) of a register path or frame, reading no data rows."""
    if isinstance(source, pd.DataFrame):
        return list(source.columns), "frame"
    if not isinstance(source, (str, Path)):
        raise InputError(f"the register must be a CSV or Parquet path or a pandas DataFrame, got "
                         f"{type(source).__name__}.")
    p = Path(source)
    if not p.is_file():
        raise InputError(f"no such register file: {str(p)!r}; check the --register path.")
    fmt = _register_format(p)
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return list(pq.ParquetFile(p).schema_arrow.names), fmt
        return list(pd.read_csv(p, nrows=0).columns), fmt
    except Exception as exc:  # pandas and pyarrow raise many types
        raise InputError(f"cannot read the register file {str(p)!r}: {_first_line(exc)}; expected a "
                         f"{fmt.upper()} file with a header row.") from None


def peek_register(source, **columns) -> dict:
    """The column mapping of a register path or frame (:func:`register_columns`), reading
    only its header: checks the file and its columns before any long work."""
    cols, _ = _header(source)
    return register_columns(cols, **columns)


def _load(source, fmt: str, m: dict) -> pd.DataFrame:
    use = list(dict.fromkeys(c for c in m.values() if c is not None))
    if fmt == "frame":
        return source[use].reset_index(drop=True)
    p = Path(source)
    try:
        if fmt == "parquet":
            return pd.read_parquet(p, columns=use)
        # text read as text: user ids keep their form ("007"), numbers are parsed below; every
        # column is read (no usecols): a line with too many fields must be an error, not cut
        return pd.read_csv(p, dtype="string")[use]
    except Exception as exc:
        raise InputError(f"cannot read the register file {str(p)!r}: {_first_line(exc)}; fix or remove the "
                         "malformed line(s).") from None


def _numbers(s: pd.Series):
    """(values as float64, missing mask): missing = NA or blank text; unparseable -> NaN."""
    s = s.reset_index(drop=True)
    miss = np.array(s.isna(), dtype=bool)
    if s.dtype == object or pd.api.types.is_string_dtype(s):
        txt = s.astype("string").str.strip()
        miss |= np.asarray(txt.fillna("") == "", dtype=bool)
    v = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return v, miss


def _valid_latlon(lat, lon):
    with np.errstate(invalid="ignore"):
        return np.isfinite(lat) & np.isfinite(lon) & (np.abs(lat) <= 90) & (np.abs(lon) <= 180)


def read_register(source, *, crs, name=None, home_lat=None, home_lon=None, work_lat=None, work_lon=None,
                  age=None, user=None) -> tuple[pd.DataFrame, dict]:
    """Read a register of people (CSV/Parquet path or DataFrame) and project it to ``crs``.

    Parameters
    ----------
    source : path or DataFrame
        See the module docstring for the columns.
    crs : str
        Projected CRS of the output (metres) — the audited traces' ``crs``.
    name, home_lat, home_lon, work_lat, work_lon, age : str, optional
        Column names; default: detected (:data:`REGISTER_COLUMN_NAMES`).
    user : str, optional
        Column holding the ping-file user id of each person (ground truth for scoring).

    Returns
    -------
    (DataFrame, counts)
        The frame: ``person_id`` (0..n-1 in file order of the kept rows), ``home_x_m``,
        ``home_y_m``, ``work_x_m``, ``work_y_m`` (metres in ``crs``; NaN = no employer
        listed), ``age`` (float years, NaN unknown; only with an age column) and
        ``user`` (pandas string, <NA> unknown; only with ``user``).  No name.
        ``counts``: rows_read, rows_kept, rows_dropped, dropped {missing_name,
        missing_home, bad_home}, bad_work, with_work, bad_age, with_age, users_given,
        duplicate_user, columns (role -> column), format, crs.
        ``rows_read == rows_kept + rows_dropped``.
    """
    crs = check_crs(crs)
    cols, fmt = _header(source)
    m = register_columns(cols, name=name, home_lat=home_lat, home_lon=home_lon, work_lat=work_lat,
                         work_lon=work_lon, age=age, user=user)
    df = _load(source, fmt, m)
    n = len(df)
    counts = {"rows_read": int(n)}

    # the names: present or not, then gone
    names = df[m["name"]].reset_index(drop=True)
    missing_name = np.array(names.isna(), dtype=bool)
    if names.dtype == object or pd.api.types.is_string_dtype(names):
        missing_name |= np.asarray(names.astype("string").str.strip().fillna("") == "", dtype=bool)
    del names
    df = df.drop(columns=[m["name"]])

    lat, lat_miss = _numbers(df[m["home_lat"]])
    lon, lon_miss = _numbers(df[m["home_lon"]])
    missing_home = ~missing_name & (lat_miss | lon_miss)
    bad_home = ~missing_name & ~missing_home & ~_valid_latlon(lat, lon)
    keep = ~(missing_name | missing_home | bad_home)
    dropped = {"missing_name": int(missing_name.sum()), "missing_home": int(missing_home.sum()),
               "bad_home": int(bad_home.sum())}
    k = int(keep.sum())
    counts.update(rows_kept=k, rows_dropped=int(n - k), dropped=dropped)
    if k == 0:
        raise InputError(f"no usable register rows: read {n:,} row(s), dropped {dropped}; check the column "
                         f"mapping ({', '.join(f'{r} = {c}' for r, c in m.items() if c is not None)}) and that "
                         "positions are WGS84 degrees (not projected or swapped).")
    lat, lon = lat[keep], lon[keep]

    if m["work_lat"] is not None:
        wlat, wlat_miss = _numbers(df[m["work_lat"]])
        wlon, wlon_miss = _numbers(df[m["work_lon"]])
        wlat, wlon, wlat_miss, wlon_miss = wlat[keep], wlon[keep], wlat_miss[keep], wlon_miss[keep]
        none = wlat_miss & wlon_miss
        has_w = ~none & ~wlat_miss & ~wlon_miss & _valid_latlon(wlat, wlon)
        counts["bad_work"] = int((~none & ~has_w).sum())
    else:
        wlat = wlon = np.full(k, np.nan)
        has_w = np.zeros(k, dtype=bool)
        counts["bad_work"] = 0
    counts["with_work"] = int(has_w.sum())

    out = pd.DataFrame({"person_id": np.arange(k, dtype=np.int64)})
    try:
        x, y = project_from_latlon(np.r_[lat, wlat[has_w]], np.r_[lon, wlon[has_w]], crs)
    except Exception as exc:  # pyproj raises several types
        raise CRSError(f"cannot project the register's positions to {crs!r} ({exc}); pass a projected CRS "
                       "pyproj knows with --crs.") from None
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise CRSError(f"projecting the register to {crs!r} gave non-finite positions (addresses outside the "
                       "CRS's area of use?); check the register's coordinates or pass a suitable --crs.")
    out["home_x_m"], out["home_y_m"] = x[:k], y[:k]
    wx = np.full(k, np.nan)
    wy = np.full(k, np.nan)
    wx[has_w], wy[has_w] = x[k:], y[k:]
    out["work_x_m"], out["work_y_m"] = wx, wy

    if m["age"] is not None:
        a, a_miss = _numbers(df[m["age"]])
        a = a[keep]
        a_miss = a_miss[keep]
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(a) & (a >= 0)
        counts["bad_age"] = int((~a_miss & ~ok).sum())
        out["age"] = np.where(ok, a, np.nan)
        counts["with_age"] = int(ok.sum())
    else:
        counts["bad_age"] = 0
        counts["with_age"] = 0

    if m["user"] is not None:
        u = normalize_user_ids(df[m["user"]])[keep].reset_index(drop=True)
        dup = u.notna() & u.duplicated(keep="first")
        counts["duplicate_user"] = int(dup.sum())
        out["user"] = u.mask(dup)
        counts["users_given"] = int(out["user"].notna().sum())
    else:
        counts["duplicate_user"] = 0
        counts["users_given"] = 0

    counts.update(columns={r: (str(c) if c is not None else None) for r, c in m.items()}, format=fmt, crs=crs)
    return out, counts


def check_register_frame(register: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The projected register an audit links to, checked: ``(frame, rows_without_home)``.

    Needs ``person_id`` (unique integers) and ``home_x_m``, ``home_y_m`` (metres);
    ``work_x_m``/``work_y_m`` (NaN = no employer), ``age`` and ``user`` are optional
    (:func:`read_register` makes such a frame).  Rows without a finite home are dropped
    and counted; only the columns of :data:`REGISTER_FRAME_COLUMNS` are kept.
    """
    if not isinstance(register, pd.DataFrame):
        raise InputError(f"register must be a pandas DataFrame (from sim.release.register_file.read_register), "
                         f"got {type(register).__name__}.")
    need = ["person_id", "home_x_m", "home_y_m"]
    miss = [c for c in need if c not in register.columns]
    if miss:
        raise InputError(f"the register frame lacks column(s) {miss}; it has "
                         f"{[str(c) for c in register.columns][:30]}. "
                         "Read the register with sim.release.register_file.read_register(path, crs=traces.crs), "
                         "which projects lat/lon to metres and numbers the persons.")
    if ("work_x_m" in register.columns) != ("work_y_m" in register.columns):
        raise InputError("the register frame has only one of work_x_m, work_y_m; give both or neither.")
    pid = pd.to_numeric(register["person_id"], errors="coerce")
    if pid.isna().any() or not np.all(np.mod(pid.to_numpy(dtype=np.float64), 1) == 0):
        raise InputError("the register's person_id must be whole numbers; use read_register, which numbers the "
                         "persons 0, 1, ... in file order.")
    if (pid < 0).any():
        raise InputError("the register's person_id must be >= 0 (read_register numbers the persons 0, 1, ...).")
    if pid.duplicated().any():
        raise InputError(f"the register lists {int(pid.duplicated().sum())} person_id(s) twice; expected one row "
                         "per person.")
    out = pd.DataFrame({"person_id": pid.to_numpy(dtype=np.int64)})
    for c in ("home_x_m", "home_y_m", "work_x_m", "work_y_m"):
        out[c] = (pd.to_numeric(register[c], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
                  if c in register.columns else np.nan)
    bad_w = ~(np.isfinite(out["work_x_m"]) & np.isfinite(out["work_y_m"]))
    out.loc[bad_w, ["work_x_m", "work_y_m"]] = np.nan
    if "age" in register.columns:
        a = pd.to_numeric(register["age"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            out["age"] = np.where(a >= 0, a, np.nan)
    if "user" in register.columns:
        u = normalize_user_ids(register["user"])
        if (u.notna() & u.duplicated(keep="first")).any():
            raise InputError(f"{int((u.notna() & u.duplicated(keep='first')).sum())} user id(s) of the register's "
                             "user column appear on more than one row; a phone has one owner (read_register "
                             "keeps the first and counts the others).")
        out["user"] = u.to_numpy()
        out["user"] = out["user"].astype("string")
    home = np.isfinite(out["home_x_m"].to_numpy()) & np.isfinite(out["home_y_m"].to_numpy())
    dropped = int((~home).sum())
    if dropped:
        log.warning("register: %d row(s) without a finite home position dropped", dropped)
        out = out[home].reset_index(drop=True)
    if out.empty:
        raise InputError("the register holds no person with a home position; nothing to link to.")
    return out, dropped
