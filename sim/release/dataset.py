"""Reading a generated dataset folder: the broker's release (pings Parquet) as
:class:`~sim.core.traces.Traces`, its manifest, its content digest, and the whole folder
(world, truth, register) as a :class:`Simulation`.

Every reader takes a local folder or a URL (``s3://bucket/ds``, ``file:///data/ds``,
``memory://ds``, ...; :func:`sim.core.storage.as_path`)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sim.core.config import Scenario
from sim.core.constants import DAY_S
from sim.core.errors import InputError
from sim.core.files import file_sha256
from sim.core.jit import jit
from sim.core.memory import release_free_memory
from sim.core.storage import URLPath, as_path, parquet_file, read_frame, read_schema, read_table
from sim.generate.engine import parquet_t_range, dataset_id
from sim.core.traces import Traces, local_midnight
from sim.world.crs import project_from_latlon
from sim.world.model import World


# ---------------------------------------------------------------------- releases
def to_unix_seconds(values) -> "np.ndarray":
    """Convert datetimes (any pandas resolution, naive = UTC) to int64 Unix seconds.

    pandas 3 parses timestamps at microsecond resolution, so ``astype('int64') // 10**9``
    would be wrong; this converts explicitly.
    """
    import numpy as np
    import pandas as pd

    s = pd.to_datetime(pd.Series(values), utc=True)
    return ((s - pd.Timestamp("1970-01-01", tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(np.int64)


def read_pings_table(path, columns=None):
    """Read a pings Parquet dataset (folder of parts or one file) as a pyarrow Table,
    with pseudonyms kept dictionary-encoded.  Raises InputError for missing or malformed
    data."""
    import pyarrow as pa

    p = as_path(path)
    if not p.exists():
        raise InputError(f"no pings at {str(p)!r}; run `reidsim generate --out DIR` first or check the path.")
    try:
        table = read_table(p, columns=columns, read_dictionary=["pseudonym"])
    except Exception as e:
        raise InputError(f"could not read pings Parquet at {str(p)!r}: {e}") from e
    need = {"pseudonym", "t_s", "lat_deg", "lon_deg"}
    missing = need - set(table.column_names)
    if missing:
        raise InputError(
            f"pings at {str(p)!r} lack column(s) {sorted(missing)}; expected pseudonym, t_s, lat_deg, "
            "lon_deg[, accuracy_m]."
        )
    if not pa.types.is_integer(table.schema.field("t_s").type):
        raise InputError(f"t_s must be integer Unix seconds, got {table.schema.field('t_s').type}.")
    return table


@jit
def _bad_coordinates(lat, lon):  # pragma: no cover - numba
    """``(count, first row)`` of the points with NaN or out-of-range lat/lon (first -1)."""
    n, first = 0, -1
    for i in range(len(lat)):
        if not (abs(lat[i]) <= 90.0 and abs(lon[i]) <= 180.0):  # NaN fails both
            if n == 0:
                first = i
            n += 1
    return n, first


@jit
def _scan_canonical(codes, t):  # pragma: no cover - numba
    """One pass over rows in (pseudonym code, time) order or not: ``(canonical,
    duplicates, first)`` — whether codes never decrease and times never decrease within a
    code, and the rows whose next row has the same code and time (their number, and the
    first of them, -1 if none)."""
    ok, n_dup, first = True, 0, -1
    for i in range(len(codes) - 1):
        if codes[i + 1] < codes[i]:
            ok = False
        elif codes[i + 1] == codes[i]:
            if t[i + 1] < t[i]:
                ok = False
            elif t[i + 1] == t[i]:
                if n_dup == 0:
                    first = i
                n_dup += 1
    return ok, n_dup, first


def release_to_traces(table, world_crs: str, utc_offset_s: int, start_s=None, n_days=None,
                      duplicates: str = "error"):
    """Turn a pings table (pseudonym, t_s, lat_deg, lon_deg[, accuracy_m]) into ``Traces``
    projected to ``world_crs``.

    Checks: no nulls; lat in [-90, 90], lon in [-180, 180]; every pseudonym's pings
    sorted by time (they are re-sorted if not, with a warning); ``duplicates='error'``
    rejects two pings of one pseudonym at the same second ('keep' allows them).
    """
    import logging

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    log = logging.getLogger(__name__)
    missing = {"pseudonym", "t_s", "lat_deg", "lon_deg"} - set(table.column_names)
    if missing:
        raise InputError(
            f"pings table lacks column(s) {sorted(missing)}; expected pseudonym, t_s, lat_deg, "
            "lon_deg[, accuracy_m]."
        )
    for c in ("pseudonym", "t_s", "lat_deg", "lon_deg"):
        if table.column(c).null_count:
            raise InputError(f"column {c} has {table.column(c).null_count} missing values; drop those rows.")
    lat = np.asarray(table.column("lat_deg").to_numpy(), dtype=np.float64)
    lon = np.asarray(table.column("lon_deg").to_numpy(), dtype=np.float64)
    n_bad, i = _bad_coordinates(lat, lon)
    if n_bad:
        raise InputError(
            f"{n_bad} ping(s) have NaN or out-of-range coordinates (first at row {i}: "
            f"lat={lat[i]}, lon={lon[i]}); lat must be in [-90, 90] and lon in [-180, 180] degrees. "
            "Drop those rows, or check that lat/lon are not swapped or projected."
        )
    ps = table.column("pseudonym")
    if not pa.types.is_dictionary(ps.type):
        ps = pc.dictionary_encode(ps)
    ps = ps.combine_chunks() if hasattr(ps, "combine_chunks") else ps
    dictionary = ps.dictionary.to_numpy(zero_copy_only=False).astype(object)
    codes = ps.indices.to_numpy().astype(np.int64)
    # unify: equal strings may appear under several dictionary codes across parts
    uniq, inv = np.unique(dictionary, return_inverse=True)
    codes = inv[codes]
    t = table.column("t_s").to_numpy().astype(np.int64)
    acc = (table.column("accuracy_m").to_numpy().astype(np.float32) if "accuracy_m" in table.column_names
           else np.full(len(t), np.nan, np.float32))
    n = len(t)
    # canonical order: traces sorted by pseudonym, each trace's rows by time.  Parts of a
    # generated dataset hold whole traces, so usually only runs need reordering (cheap).
    canonical, n_dup, i_dup = _scan_canonical(codes, t) if n else (True, 0, -1)
    if not canonical:
        same = np.diff(codes) == 0
        run_start = np.concatenate([[0], np.flatnonzero(~same) + 1])
        run_code = codes[run_start]
        dt = np.diff(t)
        time_ok = not np.any(same & (dt < 0))
        if time_ok and len(np.unique(run_code)) == len(run_code):
            run_len = np.diff(np.concatenate([run_start, [n]]))
            ro = np.argsort(run_code, kind="stable")
            lens = run_len[ro]
            dst = np.zeros(len(ro) + 1, dtype=np.int64)
            np.cumsum(lens, out=dst[1:])
            tr = np.repeat(np.arange(len(ro)), lens)
            order = run_start[ro][tr] + (np.arange(n) - dst[tr])
        else:
            if not time_ok:
                log.warning("pings of some pseudonyms are not sorted by t_s; sorting them")
            order = np.lexsort((t, codes))
        codes, t, lat, lon, acc = codes[order], t[order], lat[order], lon[order], acc[order]
        _, n_dup, i_dup = _scan_canonical(codes, t)
    if n > 1 and duplicates == "error":
        if n_dup:
            i = i_dup
            raise InputError(
                f"{n_dup} duplicate timestamp(s) within a pseudonym (first: {uniq[codes[i]]!r} at "
                f"t_s={t[i]}); de-duplicate the release (e.g. drop_duplicates on pseudonym, t_s) or pass "
                "duplicates='keep' if repeated timestamps are intended (e.g. after temporal coarsening)."
            )
    counts = np.bincount(codes, minlength=len(uniq))
    present = counts > 0
    remap = np.cumsum(present) - 1
    codes = remap[codes]
    uniq = uniq[present]
    counts = counts[present]
    offsets = np.zeros(len(uniq) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])

    x, y = project_from_latlon(lat, lon, world_crs)
    if start_s is None:
        start_s = local_midnight(int(t.min()), utc_offset_s) if n else 0
    if n_days is None:
        n_days = int((int(t.max()) - start_s) // DAY_S + 1) if n else 1
    return Traces(pseudonym=uniq, offsets=offsets, t_s=t, x_m=np.asarray(x, np.float64),
                  y_m=np.asarray(y, np.float64), accuracy_m=acc, crs=world_crs,
                  utc_offset_s=int(utc_offset_s), start_s=int(start_s), n_days=int(n_days)).validate()


def read_manifest(directory) -> dict:
    """The parsed manifest.json of a generated folder (InputError if absent or broken)."""
    p = as_path(directory) / "manifest.json"
    if not p.exists():
        raise InputError(
            f"{str(directory)!r} has no manifest.json; pass a folder written by `reidsim generate`."
        )
    try:
        man = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{str(p)!r} is not valid JSON ({e}); regenerate the dataset.") from e
    if not isinstance(man, dict):
        raise InputError(f"{str(p)!r} is not a JSON object; regenerate the dataset.")
    return man


#: manifest keys every reader needs
MANIFEST_KEYS = ("reidsim_version", "scenario", "crs", "utc_offset_s", "start_s", "n_days", "rows",
                 "parts", "dataset_id")
#: hash every part on load when the release is at most this large (bytes); above it only
#: row counts, sizes and time ranges are checked (``check_dataset(..., verify_hashes=True)``
#: and ``reidsim validate`` always hash)
HASH_ON_LOAD_MAX_BYTES = 2 * 1024**3
#: slack (seconds) allowed around the window for pings' t_s (GPS clocks, trips past midnight)
T_SLACK_S = 2 * DAY_S


def duplicate_policy(manifest: dict) -> str:
    """``duplicates`` argument of :func:`release_to_traces` for a dataset: ``"keep"`` when
    its manifest says a pseudonym may have two pings at one second (a defended release
    after time coarsening, ``duplicate_times``), else ``"error"``."""
    return "keep" if manifest.get("duplicate_times") else "error"


def check_dataset(directory, *, verify_hashes: bool | None = None) -> dict:
    """Check a generated folder before anything reads it; returns its manifest.

    Checks, each with an :class:`~sim.core.errors.InputError` naming what is wrong and
    the fix: the manifest parses and has every key readers need; ``world/world.json``
    parses; the truth tables and register exist and hold the manifest's row counts;
    the pings part files are exactly those the manifest lists, each with its recorded
    rows and size (and SHA-256 when ``verify_hashes``; by default when the release is at
    most :data:`HASH_ON_LOAD_MAX_BYTES`); ``t_s`` is integer Unix seconds inside the
    manifest's window (``start_s`` .. ``start_s + n_days`` days, with
    :data:`T_SLACK_S` of slack), which catches milliseconds and a wrong ``n_days``; and
    ``dataset_id`` matches the parts.
    Only Parquet metadata is read, except for hashing.  ``directory`` may be a URL; a
    folder without ``manifest.json`` (e.g. a write still in progress or interrupted) is
    refused.
    """
    d = as_path(directory)
    if not d.is_dir():
        what = "holds nothing (no such folder)" if isinstance(d, URLPath) else "is not a folder"
        raise InputError(f"{str(d)!r} {what}; pass a folder written by `reidsim generate`.")
    man = read_manifest(d)
    fix = "regenerate it with `reidsim generate --out DIR --overwrite`"
    missing = [k for k in MANIFEST_KEYS if k not in man]
    if missing:
        raise InputError(f"{str(d / 'manifest.json')!r} lacks {missing}: the dataset was written by an "
                         f"older reidsim or edited by hand; {fix}.")
    try:
        start_s, n_days = int(man["start_s"]), int(man["n_days"])
        int(man["utc_offset_s"])
    except (TypeError, ValueError) as e:
        raise InputError(f"manifest.json has a non-integer start_s/n_days/utc_offset_s ({e}); {fix}.") from e
    if n_days < 1:
        raise InputError(f"manifest.json says n_days={n_days}; it must be >= 1; {fix}.")
    wj = d / "world" / "world.json"
    try:
        json.loads(wj.read_text())
    except FileNotFoundError:
        raise InputError(f"{str(wj)!r} is missing; {fix}.") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{str(wj)!r} is corrupt ({e}); {fix}.") from e
    rows = man["rows"] if isinstance(man["rows"], dict) else {}
    for rel, key in (("truth/persons.parquet", "persons"), ("truth/devices.parquet", "devices"),
                     ("truth/pseudonyms.parquet", None), ("register.parquet", "register")):
        n = _parquet_rows(d / rel, fix)
        if key is not None and key in rows and n != int(rows[key]):
            raise InputError(f"{str(d / rel)!r} has {n} rows but the manifest says {rows[key]}; {fix}.")
    parts = man["parts"]
    on_disk = sorted(f.name for f in (d / "pings").glob("*.parquet")) if (d / "pings").is_dir() else []
    listed = [r["file"] for r in parts]
    if sorted(listed) != on_disk:
        gone = sorted(set(listed) - set(on_disk))
        extra = sorted(set(on_disk) - set(listed))
        raise InputError(
            f"the pings of {str(d)!r} do not match the manifest: "
            + (f"missing part file(s) {gone[:5]}" if gone else "")
            + ("; " if gone and extra else "")
            + (f"unlisted part file(s) {extra[:5]}" if extra else "")
            + f"; the release is incomplete or mixed; {fix}.")
    total = sum(int(r["bytes"]) for r in parts)
    if verify_hashes is None:
        verify_hashes = total <= HASH_ON_LOAD_MAX_BYTES
    lo_ok, hi_ok = start_s - T_SLACK_S, start_s + n_days * DAY_S + T_SLACK_S
    for rec in parts:
        f = d / "pings" / rec["file"]
        if f.stat().st_size != int(rec["bytes"]):
            raise InputError(f"{str(f)!r} has {f.stat().st_size} bytes, the manifest recorded {rec['bytes']}: "
                             f"the file was changed or truncated; {fix}.")
        try:
            md = parquet_file(f).metadata
        except Exception as e:
            raise InputError(f"{str(f)!r} is not a readable Parquet file ({e}); {fix}.") from e
        if md.num_rows != int(rec["rows"]):
            raise InputError(f"{str(f)!r} has {md.num_rows} rows, the manifest recorded {rec['rows']}; {fix}.")
        names = [md.schema.column(i).name for i in range(md.num_columns)]
        for c in ("pseudonym", "t_s", "lat_deg", "lon_deg"):
            if c not in names:
                raise InputError(f"{str(f)!r} lacks column {c!r}; {fix}.")
        lo, hi = parquet_t_range(md)
        if lo is not None and (lo < lo_ok or hi > hi_ok):
            unit = (" — the values look like milliseconds; convert t_s to Unix seconds"
                    if hi > 1e11 else "")
            raise InputError(
                f"{str(f)!r} has t_s from {lo} to {hi}, outside the manifest's window "
                f"{start_s}..{start_s + n_days * DAY_S} (start_s + n_days={n_days} days){unit}; "
                f"the manifest's start_s/n_days do not describe the data; {fix}.")
        if verify_hashes and file_sha256(f) != rec["sha256"]:
            raise InputError(f"{str(f)!r} does not match its SHA-256 in the manifest: the file was "
                             f"changed; {fix}.")
    if dataset_id(man) != man["dataset_id"]:
        raise InputError(f"manifest.json's dataset_id does not match its parts; {fix}.")
    return man


def _parquet_rows(path, fix: str) -> int:
    if not path.exists():
        raise InputError(f"{str(path)!r} is missing; {fix}.")
    try:
        return int(parquet_file(path).metadata.num_rows)
    except Exception as e:
        raise InputError(f"{str(path)!r} is not a readable Parquet file ({e}); {fix}.") from e


def check_derived(directory, recorded_id, what: str) -> None:
    """Refuse a derived output (``what``) whose recorded dataset_id is not the folder's."""
    man = read_manifest(directory)
    if recorded_id != man.get("dataset_id"):
        raise InputError(
            f"{what} in {str(directory)!r} was computed from another dataset (dataset_id "
            f"{recorded_id!r}, the folder's is {man.get('dataset_id')!r}); re-run `reidsim run` "
            "(or `reidsim attack`) on this folder.")


def dataset_digest(directory) -> str:
    """SHA-256 of the release's content in canonical (pseudonym, t_s) order.

    Independent of how rows are split into part files, so it identifies a dataset
    across block sizes, thread counts and backends.
    """
    import hashlib

    import numpy as np

    table = read_pings_table(as_path(directory) / "pings")
    ps = table.column("pseudonym").combine_chunks()
    names = ps.dictionary.to_numpy(zero_copy_only=False).astype(object)[ps.indices.to_numpy()]
    t = table.column("t_s").to_numpy()
    order = np.lexsort((t, names.astype(str)))
    h = hashlib.sha256()
    h.update("\n".join(names[order]).encode())
    for c in ("t_s", "lat_deg", "lon_deg", "accuracy_m"):
        h.update(np.ascontiguousarray(table.column(c).to_numpy()[order]).tobytes())
    return h.hexdigest()
@dataclass
class Simulation:
    """Everything about one scenario: the attacker's view and the truth.

    release : Traces — the broker's release projected to ``world.crs`` (attacker view).
    register : DataFrame — the attacker's auxiliary register.
    world : World — the geography (public).
    persons, devices, pseudonyms : DataFrames — ground truth, only for scoring.
    """

    scenario: Scenario
    world: World
    persons: pd.DataFrame
    devices: pd.DataFrame
    pseudonyms: pd.DataFrame
    register: pd.DataFrame
    release: Traces
    meta: dict = field(default_factory=dict)


def load(directory, *, verify_hashes: bool | None = None) -> Simulation:
    """Load a folder written by ``reidsim generate`` as a :class:`Simulation`, after
    :func:`check_dataset`."""
    d = as_path(directory)
    man = check_dataset(d, verify_hashes=verify_hashes)
    world = World.load(d / "world")
    table = read_pings_table(d / "pings")
    release = release_to_traces(table, world.crs, man["utc_offset_s"], start_s=man["start_s"],
                                n_days=man["n_days"], duplicates=duplicate_policy(man))
    truth = d / "truth"
    for f in ("persons", "devices", "pseudonyms"):
        if not (truth / f"{f}.parquet").exists():
            raise InputError(f"{str(truth / (f + '.parquet'))!r} is missing; regenerate the dataset.")
    return Simulation(
        scenario=Scenario.from_dict(man["scenario"]), world=world,
        persons=read_frame(truth / "persons.parquet"),
        devices=read_frame(truth / "devices.parquet"),
        pseudonyms=read_frame(truth / "pseudonyms.parquet"),
        register=read_frame(d / "register.parquet"), release=release, meta=man,
    )


def load_release(directory, *, verify_hashes: bool | None = None) -> Traces:
    """Only the attacker's view of a generated folder: the release as Traces, after
    :func:`check_dataset`."""
    d = as_path(directory)
    man = check_dataset(d, verify_hashes=verify_hashes)
    world = World.load(d / "world")
    return release_to_traces(read_pings_table(d / "pings"), world.crs, man["utc_offset_s"],
                             start_s=man["start_s"], n_days=man["n_days"], duplicates=duplicate_policy(man))


# ------------------------------------------------------------------ part by part
def read_release_part(directory, part: str, manifest: dict, *, sample=None) -> Traces:
    """One part file of a checked release (``part``: a file name the manifest lists) as
    Traces, projected with the manifest's ``crs`` and carrying its ``utc_offset_s``,
    ``start_s`` and ``n_days``.

    Only that part is read, so memory is bounded by the part, not the release.  The
    caller has run :func:`check_dataset` (which returned ``manifest``); a dataset written
    by ``reidsim generate`` holds every pseudonym in exactly one part (parts are device
    blocks), so the traces of a part are whole traces.

    ``sample``: ``(names, folder)`` also writes the part's rows of the pseudonyms
    ``names`` (:func:`keep_pseudonyms`) to ``folder/<part>``, for :func:`load_sample` to
    read instead of the whole part (see :func:`sample_pings_record`).
    """
    listed = [r["file"] for r in manifest.get("parts", [])]
    if part not in listed:
        raise InputError(f"{part!r} is not a part file of {str(directory)!r} (its manifest lists "
                         f"{listed[:3]}{'...' if len(listed) > 3 else ''}); pass a listed part.")
    table = read_pings_table(as_path(directory) / "pings" / part)
    if sample is not None:
        from sim.core.storage import write_parquet

        names, folder = sample
        write_parquet(keep_pseudonyms(table, names), as_path(folder) / part)
    return release_to_traces(table, manifest["crs"], manifest["utc_offset_s"], start_s=manifest["start_s"],
                             n_days=manifest["n_days"], duplicates=duplicate_policy(manifest))


def keep_pseudonyms(table, keep_names: np.ndarray):
    """Rows of a pings table whose pseudonym is in ``keep_names`` (sorted object array),
    decided on each chunk's dictionary by an Arrow hash lookup (no decoding of the whole
    column; a dictionary shared by consecutive chunks is looked up once)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    value_set = pa.array(np.asarray(keep_names, dtype=object).astype(str), type=pa.string())
    col = table.column("pseudonym")
    masks = []
    last_dict, last_keep = None, None
    for chunk in col.chunks:
        if pa.types.is_dictionary(chunk.type):
            d = chunk.dictionary
            if last_dict is None or not (d is last_dict or d.equals(last_dict)):
                last_dict = d
                last_keep = pc.is_in(d.cast(pa.string()), value_set=value_set).to_numpy(zero_copy_only=False)
            idx = chunk.indices.to_numpy(zero_copy_only=False)
            masks.append(last_keep[idx] if len(idx) else np.zeros(0, dtype=bool))
        else:
            masks.append(pc.is_in(chunk.cast(pa.string()), value_set=value_set).to_numpy(zero_copy_only=False))
    mask = np.concatenate(masks) if masks else np.zeros(0, dtype=bool)
    out = table.filter(pa.array(mask))
    # the kept rows in one chunk whose dictionary holds only their pseudonyms: filtered
    # chunks keep their read dictionaries, each a copy of the part's (at 1 M devices, 40
    # parts sampled to 2 % kept 1.7 GB of Arrow memory, against 0.35 GB for the rows)
    i = out.schema.get_field_index("pseudonym")
    if pa.types.is_dictionary(out.schema.field(i).type):
        ps = pc.dictionary_encode(out.column(i).cast(pa.string()).combine_chunks())
        out = out.set_column(i, "pseudonym", ps.cast(out.schema.field(i).type))
    return out.combine_chunks()


#: device sample of the figures that need pings in memory on a large release (calibration,
#: the report's maps, the main job's context figures and defenses); at or below it, all
DEFAULT_SAMPLE_DEVICES = 20_000


def sample_devices(device_idx, n_devices: int, seed: int) -> np.ndarray:
    """A seeded random sample of ``n_devices`` of the distinct ``device_idx`` values
    (sorted), independent of the input's order (stream ``SUB_CONTEXT_SAMPLE``)."""
    from sim.core.rng import SUB_CONTEXT_SAMPLE, TAG_ATTACK, seed_sequence

    dev = np.unique(np.asarray(device_idx, dtype=np.int64))
    if n_devices >= len(dev):
        return dev
    rng = seed_sequence(seed, TAG_ATTACK, SUB_CONTEXT_SAMPLE)
    return np.sort(rng.choice(dev, size=int(n_devices), replace=False))


def device_sample(directory, n_devices: int | None, seed: int | None = None, *, pseudonyms=None) -> dict | None:
    """The device sample :func:`load_sample` takes: ``{"chosen": device_idx (sorted),
    "names": their pseudonyms (sorted object array), "n_all": devices in the release,
    "seed": seed}``, or None when ``n_devices`` is None or covers every device.  Reads
    the truth pseudonyms (unless given as ``pseudonyms``) and the manifest's scenario
    (``seed`` defaults to its seed)."""
    d = as_path(directory)
    pseud = read_frame(d / "truth" / "pseudonyms.parquet", columns=["pseudonym", "device_idx"]) \
        if pseudonyms is None else pseudonyms
    n_all = int(pseud["device_idx"].nunique())
    if n_devices is None or n_devices >= n_all:
        return None
    if seed is None:
        man = json.loads((d / "manifest.json").read_text())
        seed = Scenario.from_dict(man["scenario"]).seed
    chosen = sample_devices(pseud["device_idx"].to_numpy(), int(n_devices), int(seed))
    names = np.sort(pseud.loc[pseud["device_idx"].isin(chosen), "pseudonym"].astype(str).to_numpy(dtype=object))
    return {"chosen": chosen, "names": names, "n_all": n_all, "seed": int(seed)}


#: file in a folder of sampled pings (:func:`read_release_part` ``sample``) that says
#: which release and sample they are
SAMPLE_PINGS_RECORD = "sample.json"


def sample_pings_record(dataset_id: str, sample: dict) -> dict:
    """What a folder of sampled pings must record for :func:`load_sample` to read it:
    the dataset_id, the sample's device count and seed, and a digest of its pseudonyms."""
    import hashlib

    digest = hashlib.sha256("\n".join(str(n) for n in sample["names"]).encode()).hexdigest()
    return {"dataset_id": dataset_id, "devices": int(len(sample["chosen"])), "seed": int(sample["seed"]),
            "names_sha256": digest}


def _sampled_pings_ok(folder, man: dict, sample: dict) -> bool:
    """Whether ``folder`` holds the sampled rows of every part for this release and sample."""
    if folder is None:
        return False
    f = as_path(folder)
    try:
        rec = json.loads((f / SAMPLE_PINGS_RECORD).read_text())
    except (OSError, ValueError):
        return False
    return (rec == sample_pings_record(man["dataset_id"], sample)
            and all((f / r["file"]).exists() for r in man["parts"]))


def released_devices(directory) -> int:
    """The devices with at least one pseudonym in the release — what :func:`load_sample`
    samples from (reads one column of the truth pseudonyms)."""
    pseud = read_frame(as_path(directory) / "truth" / "pseudonyms.parquet", columns=["device_idx"])
    return int(pseud["device_idx"].nunique())


def load_sample(directory, n_devices: int | None, *, seed: int | None = None,
                verify_hashes: bool | None = None, sampled_pings=None) -> Simulation:
    """Like :func:`load`, but the release holds only the pings of a seeded random sample
    of ``n_devices`` devices (every pseudonym of each), read part by part so memory is
    one part plus the sample, never the whole release.

    ``None`` or at least the number of devices gives exactly :func:`load`'s Simulation.
    The ``devices`` and ``pseudonyms`` truth tables hold the sampled devices only (their
    ``device_idx`` values unchanged); ``persons`` and the register stay whole (the
    attacker's register does not shrink with the sample; it is read without its ``name``
    column, see :func:`register_names`).  ``seed`` defaults to the scenario's.  ``meta["sample"]``
    records ``devices``, ``of`` (devices in the release) and ``seed``; on the whole
    release it is absent.

    ``sampled_pings``: a folder the sample's rows of every part were written to while
    the parts were read for something else (:func:`read_release_part` ``sample``, with
    :func:`sample_pings_record` in its ``sample.json``); read instead of the parts when
    its record matches this release and sample (the same rows, so the same Simulation),
    ignored otherwise.
    """
    import pyarrow as pa

    d = as_path(directory)
    if n_devices is not None and (isinstance(n_devices, bool) or not isinstance(n_devices, (int, np.integer))
                                  or n_devices < 1):
        raise InputError(f"n_devices must be a whole number >= 1 or None (all devices), got {n_devices!r}.")
    man = check_dataset(d, verify_hashes=verify_hashes)
    truth = d / "truth"
    for f in ("persons", "devices", "pseudonyms"):
        if not (truth / f"{f}.parquet").exists():
            raise InputError(f"{str(truth / (f + '.parquet'))!r} is missing; regenerate the dataset.")
    scn = Scenario.from_dict(man["scenario"])
    pseud = read_frame(truth / "pseudonyms.parquet")
    sample = device_sample(d, n_devices, scn.seed if seed is None else int(seed), pseudonyms=pseud)
    if sample is None:
        return load(d, verify_hashes=False)
    chosen, names, n_all, seed = sample["chosen"], sample["names"], sample["n_all"], sample["seed"]
    world = World.load(d / "world")
    pre = _sampled_pings_ok(sampled_pings, man, sample)
    tables = []
    for i, r in enumerate(man["parts"]):
        t = (read_pings_table(as_path(sampled_pings) / r["file"]) if pre
             else keep_pseudonyms(read_pings_table(d / "pings" / r["file"]), names))
        if t.num_rows or (i == len(man["parts"]) - 1 and not tables):  # the schema, when nothing is sampled
            tables.append(t)
        del t
        release_free_memory(collect=False)  # the part's read buffers, before the next part is read
    table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
    release = release_to_traces(table, world.crs, man["utc_offset_s"], start_s=man["start_s"],
                                n_days=man["n_days"], duplicates=duplicate_policy(man))
    meta = {**man, "sample": {"devices": int(len(chosen)), "of": n_all, "seed": seed}}
    devices = read_frame(truth / "devices.parquet")
    devices = devices[devices["device_idx"].isin(chosen)].reset_index(drop=True)
    pseud = pseud[pseud["device_idx"].isin(chosen)].reset_index(drop=True)
    release_free_memory()
    persons = read_frame(truth / "persons.parquet", low_memory=True)
    release_free_memory(collect=False)  # each large table's read buffers, before the next read
    # without the names (170 MiB at 7 M rows): nothing on the sample's path reads them, and
    # the report reads the one name it shows from the file (register_names)
    cols = [c for c in read_schema(d / "register.parquet").names if c != "name"]
    register = read_frame(d / "register.parquet", columns=cols, low_memory=True)
    release_free_memory(collect=False)
    return Simulation(scenario=scn, world=world, persons=persons, devices=devices, pseudonyms=pseud,
                      register=register, release=release, meta=meta)


def register_names(directory, person_ids) -> dict:
    """``{person_id: name}`` of the listed persons ``person_ids``, read from the run's
    ``register.parquet`` (only those rows: a filter on person_id); empty when the file
    has no names."""
    p = as_path(directory) / "register.parquet"
    ids = sorted({int(i) for i in np.asarray(person_ids).ravel() if int(i) >= 0})
    if not ids or not p.exists() or "name" not in read_schema(p).names:
        return {}
    t = read_table(p, columns=["person_id", "name"], filters=[("person_id", "in", ids)])
    return {int(k): str(v) for k, v in zip(t.column("person_id").to_pylist(), t.column("name").to_pylist())}


def iter_release_parts(directory, *, verify_hashes: bool | None = None):
    """Iterate a generated release part by part: yields ``(part_name, Traces)`` in the
    manifest's part order, after :func:`check_dataset` (:func:`read_release_part` for
    each part).  Peak memory is one part's, never the whole release's."""
    d = as_path(directory)
    man = check_dataset(d, verify_hashes=verify_hashes)
    for rec in man["parts"]:
        yield rec["file"], read_release_part(d, rec["file"], man)
