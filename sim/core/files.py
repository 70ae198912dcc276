"""Atomic file writing: data already at a path is never corrupted or lost.

Every output of reidsim goes through :func:`atomic_path` (write to a temporary sibling,
rename on success), and tables through :func:`write_table` (Parquet and CSV side by side).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from sim.core.errors import ConfigError, InputError
from sim.core.storage import URLPath, as_path, is_url, read_schema, rmtree, upload
from sim.core.storage import replace as _replace


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary sibling path; rename it onto ``path`` only on success.

    Data already at ``path`` is never corrupted: a failure leaves it untouched and
    removes the temporary file.  For a URL (:class:`~sim.core.storage.URLPath`) the
    temporary file is local and is uploaded on success to a temporary key, then moved
    onto the final key (:func:`sim.core.storage.upload`).
    """
    if is_url(path):
        path = as_path(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", suffix=path.suffix)
        os.close(fd)
        try:
            yield Path(tmp)
            upload(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


#: Parquet metadata key under which a derived table records the dataset it came from
DATASET_ID_KEY = b"reidsim.dataset_id"


#: tables of more rows than this get no CSV copy (the Parquet file is the table): at a
#: million devices the per-device tables run to 10 million rows, whose CSV nobody opens
#: in a spreadsheet and which took longer to write than the attacks that made them
CSV_MAX_ROWS = 1_000_000


def wants_csv(rows: int) -> bool:
    """Whether a table of ``rows`` rows gets a CSV copy (:data:`CSV_MAX_ROWS`)."""
    return int(rows) <= CSV_MAX_ROWS


def drop_stale_csv(path_stem) -> None:
    """Remove ``path_stem``.csv (a copy of an earlier, smaller table of that name)."""
    p = as_path(path_stem).with_suffix(".csv")
    if p.exists():
        p.unlink()


#: rows per slice converted to Arrow when writing a large table (pyarrow's default row
#: group size, so the file's row groups are the same as one whole-table write's)
WRITE_SLICE_ROWS = 1024 * 1024


def write_table(df: pd.DataFrame, path_stem: Path, *, dataset_id: str | None = None) -> None:
    """Write ``df`` as Parquet and, up to :data:`CSV_MAX_ROWS` rows, CSV next to each
    other, atomically (a larger table's stale CSV is removed).  ``dataset_id`` (the
    manifest's) is stored in the Parquet metadata (:func:`read_dataset_id`).  A table
    of more than :data:`WRITE_SLICE_ROWS` rows is converted to Arrow one row group at a
    time, so writing it never holds a second whole copy (8 M-row per-device tables at a
    million devices)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path_stem = as_path(path_stem)
    path_stem.parent.mkdir(parents=True, exist_ok=True)

    def arrow(frame, schema=None):
        t = pa.Table.from_pandas(frame, preserve_index=False, schema=schema)
        if dataset_id is not None and schema is None:
            t = t.replace_schema_metadata({**(t.schema.metadata or {}), DATASET_ID_KEY: str(dataset_id).encode()})
        return t

    with atomic_path(path_stem.with_suffix(".parquet")) as tmp:
        if len(df) <= WRITE_SLICE_ROWS:
            pq.write_table(arrow(df), tmp)
        else:
            first = arrow(df.iloc[:WRITE_SLICE_ROWS])
            with pq.ParquetWriter(tmp, first.schema) as w:
                w.write_table(first, row_group_size=WRITE_SLICE_ROWS)
                del first
                for a in range(WRITE_SLICE_ROWS, len(df), WRITE_SLICE_ROWS):
                    w.write_table(arrow(df.iloc[a:a + WRITE_SLICE_ROWS], w.schema), row_group_size=WRITE_SLICE_ROWS)
    if not wants_csv(len(df)):
        drop_stale_csv(path_stem)
        return
    with atomic_path(path_stem.with_suffix(".csv")) as tmp:
        df.to_csv(tmp, index=False)


def read_dataset_id(path) -> str | None:
    """The dataset_id a Parquet table written by :func:`write_table` records (or None)."""
    md = read_schema(as_path(path)).metadata or {}
    v = md.get(DATASET_ID_KEY)
    return None if v is None else v.decode()


def write_json(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=2, default=_json_default, allow_nan=True))


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)



# ------------------------------------------------------------------ output folders
#: Entries reidsim writes into an output folder (a dataset, or a run's derived outputs).
#: Only these are ever replaced or removed; anything else in the folder is the user's.
DATASET_ENTRIES = ("world", "truth", "pings", "register.parquet", "manifest.json")
DERIVED_ENTRIES = ("calibration.json", "inferred", "inferred.parquet", "inferred.csv", "inferred_by_day.parquet",
                   "inferred_by_day.csv", "attacks", "defenses", "figures", "report.html", "report.md",
                   "run.json")
#: Prefix of reidsim's staging folders inside an output folder (left behind only by a kill).
STAGING_PREFIX = ".reidsim-staging-"


def read_marker(path) -> dict | None:
    """The JSON object in the file ``path``, or None when it is missing, unreadable or
    not a JSON object (a marker file saying who wrote a folder)."""
    p = as_path(path)
    if not p.is_file():
        return None
    try:
        d = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def is_reidsim_folder(path) -> bool:
    """True when ``path`` holds a manifest.json written by reidsim (its own folder)."""
    man = read_marker(as_path(path) / "manifest.json")
    return man is not None and "reidsim_version" in man and "scenario" in man


def check_output_path(path, option: str = "--out") -> Path:
    """Refuse an output path that is empty, a file, or cannot be created or written,
    without creating or changing anything (:class:`~sim.core.errors.ConfigError`
    naming the problem and the fix).  Returns it as a Path."""
    if path is None or not str(path).strip():
        raise ConfigError(f"{option} is empty; give an output folder, e.g. {option} reidsim-out "
                          f"(or {option} . for the current folder).")
    p = as_path(path)
    if isinstance(p, URLPath):  # permissions are the store's business: its first write says
        if p.is_file():
            raise ConfigError(f"{option} {str(p)!r} is an existing file (object), not a folder; choose "
                              "another URL.")
        return p
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{option} {str(p)!r} is an existing file, not a folder; choose another "
                          "path or remove the file.")
    anc = p.absolute()
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise ConfigError(f"{option} {str(p)!r} cannot be created: {str(anc)!r} is a file, not a folder; "
                          "choose another path.")
    if not os.access(anc, os.W_OK | os.X_OK):
        what = "folder" if anc == p.absolute() else "parent folder"
        raise ConfigError(f"{option} {str(p)!r} is not writable: no write permission on the {what} "
                          f"{str(anc)!r}; choose a folder you can write to or fix its permissions.")
    return p


def claim_output_dir(path, *, overwrite: bool = False, option: str = "--out") -> Path:
    """Check that reidsim may write into ``path``, create it, and return it as a Path.

    Allowed: a folder that does not exist yet, an empty folder, or a folder reidsim wrote
    (its manifest.json says so) when ``overwrite`` is true.  Everything else raises
    (:func:`check_output_path`, then :class:`~sim.core.errors.InputError` for a folder
    that is not reidsim's or an existing dataset without ``overwrite``) before anything
    is written: reidsim never removes a file it did not write.  Staging folders that an
    interrupted run left are removed, and only in a folder that is empty apart from them
    or reidsim's own.  ``path`` may be a URL (returned as a
    :class:`~sim.core.storage.URLPath`); the same rules hold for its keys.
    """
    p = check_output_path(path, option)
    if p.is_dir():
        entries = [e for e in p.iterdir() if not is_staging_name(e.name)]
        if entries and not is_reidsim_folder(p):
            ours = sorted(e.name for e in entries if e.name in DATASET_ENTRIES + DERIVED_ENTRIES)
            what = (f"it has {', '.join(ours)} but no reidsim manifest.json" if ours
                    else f"it holds {len(entries)} entr{'y' if len(entries) == 1 else 'ies'} "
                         f"(e.g. {sorted(e.name for e in entries)[0]!r})")
            raise InputError(
                f"{option} {str(p)!r} is not empty and is not a reidsim folder ({what}); reidsim "
                f"writes only into a new or empty folder, or one it wrote. Choose another {option}.")
        if entries and not overwrite:
            raise InputError(
                f"{option} {str(p)!r} already holds a reidsim dataset; pass --overwrite "
                "(overwrite=True) to replace it, or choose another folder.")
        clean_stale_staging(p)
    p.mkdir(parents=True, exist_ok=True)
    return p


#: names of staging entries: this version's, and the two patterns older versions used
_STAGING_NAME = re.compile(rf"^({re.escape(STAGING_PREFIX)}.+|\.staging-[0-9a-f]{{8}}|\.old-[0-9a-f]{{8}}-.+)$")


def is_staging_name(name: str) -> bool:
    """True for the name of a staging entry reidsim makes (and only then)."""
    return bool(_STAGING_NAME.match(name))


def clean_stale_staging(path) -> list:
    """Remove staging entries an interrupted reidsim run left in ``path``; returns names."""
    gone = []
    for e in as_path(path).iterdir():
        if is_staging_name(e.name):
            rmtree(e)
            gone.append(e.name)
    return gone


def new_staging_dir(path) -> Path:
    """A fresh staging folder inside ``path`` (moved into place by :func:`commit_staged`)."""
    st = as_path(path) / f"{STAGING_PREFIX}{uuid.uuid4().hex[:8]}"
    st.mkdir(parents=True)
    return st


def commit_staged(stage: Path, out: Path, *, marker: str, remove=()) -> None:
    """Move every entry of ``stage`` into ``out``, replacing older ones.

    ``marker`` (e.g. manifest.json, run.json) is removed from ``out`` first and moved in
    last, so a crash in between leaves a folder without it — refused by every reader —
    rather than a silently mixed one.  ``remove`` names reidsim entries of ``out`` that
    are stale after this commit (outputs derived from a replaced dataset); they go too.

    At a URL (:class:`~sim.core.storage.URLPath`) the same order holds, key by key: an
    entry's old keys are removed and its staged keys moved in (copied and deleted on an
    object store), the marker last.
    """
    (out / marker).unlink(missing_ok=True)
    for name in remove:
        rmtree(out / name)
    for entry in sorted(stage.iterdir(), key=lambda p: p.name == marker):
        dst = out / entry.name
        if isinstance(dst, URLPath) or not dst.exists():
            _replace(entry, dst)  # at a URL: the old keys go, then the staged ones move in
        else:  # swap through a trash name, so dst is never missing
            trash = out / f"{STAGING_PREFIX}old-{uuid.uuid4().hex[:8]}-{entry.name}"
            os.replace(dst, trash)
            os.replace(entry, dst)
            rmtree(trash)
    if isinstance(stage, URLPath):
        rmtree(stage)
    else:
        stage.rmdir()


def file_sha256(path, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file's bytes (local or URL), read in chunks."""
    h = hashlib.sha256()
    with (path.open("rb") if isinstance(path, URLPath) else open(path, "rb")) as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()
