"""Out-of-core home/work inference: the release part by part, in-process or on Dask.

A release written by ``reidsim generate`` is a folder of ``pings/part-*.parquet`` files,
each holding whole pseudonyms (parts are blocks of devices; a pseudonym belongs to one
device).  Inference is per pseudonym, so inferring every part on its own gives exactly
the rows of inferring the whole release at once (:func:`sim.infer.infer_home_work` of
:func:`sim.release.dataset.load_release`), while peak memory is bounded by the largest
part rather than the release.

:func:`infer_streaming` writes, into ``OUT`` (the dataset folder by default)::

    inferred/part-XXXXX.parquet (+ .csv)   one table per release part (same number),
                                           rows sorted by pseudonym, dataset_id recorded
    inferred/summary.json                  dataset_id, parts, rows, window, parameters
    inferred.parquet (+ .csv)              all parts concatenated in part order, when the
                                           total is at most ``concat_max_rows`` rows

Everything is written to a staging folder first and committed at the end (the
``inferred`` folder moves in whole), so an interrupted run leaves no partial
``inferred/`` and does not touch earlier outputs; a killed run leaves only a
``.reidsim-staging-*`` folder, which the next run removes.

Backends: ``"local"`` infers the parts one after another in this process (the kernel
uses numba threads); ``"dask"`` runs the same per-part function (:func:`infer_part`) on
a Dask LocalCluster (:func:`sim.generate.engine.local_cluster`, loopback only) or the
scheduler at ``scheduler``; each worker reads its part and writes its own output file by
path or URL.  With a local folder the workers must see it at the same path; with a URL
(``s3://...``, ``gs://...``, ``file://...``; :mod:`sim.core.storage`) each worker opens
it itself, so a cluster on other machines needs no shared disk (the dataset and the
output folder may each be local or a URL).  Both backends give identical tables.

The attacks stream too (:mod:`sim.pipeline.stream_attacks`, ``reidsim attack``), on the
same per-part runner (:func:`run_parts`); the main job ``reidsim run`` still loads the
whole release into memory.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from sim.generate.engine import dask_client
from sim.core.errors import ConfigError, InputError
from sim.core.memory import release_free_memory
from sim.core.files import (
    DATASET_ID_KEY,
    atomic_path,
    check_output_path,
    clean_stale_staging,
    commit_staged,
    is_staging_name,
    new_staging_dir,
    read_dataset_id,
    wants_csv,
    write_json,
    write_table,
)
from sim.core.storage import as_path, read_frame, read_table, rmtree
from sim.infer import INFERRED_COLUMNS, InferenceParams, infer_home_work
from sim.release.dataset import check_dataset, read_manifest, read_release_part

log = logging.getLogger(__name__)

__all__ = ["CONCAT_MAX_ROWS", "INFERRED_DIR", "call_released", "claim_out_dir", "infer_part", "infer_streaming",
           "inferred_schema", "read_inferred", "run_parts", "write_inferred_concat"]

#: name of the folder of per-part inferred tables
INFERRED_DIR = "inferred"
#: ``inferred.parquet`` (all parts in one table) is written when the total is at most this
#: many rows (pseudonyms); above it only the per-part tables are
CONCAT_MAX_ROWS = 5_000_000
#: entries :func:`infer_streaming` writes into its output folder
OWN_ENTRIES = (INFERRED_DIR, "inferred.parquet", "inferred.csv")

_FLOAT_COLS = ("home_x_m", "home_y_m", "home_lat_deg", "home_lon_deg", "work_x_m", "work_y_m",
               "work_lat_deg", "work_lon_deg")


def inferred_schema():
    """The Arrow schema of an inferred table (:data:`sim.infer.INFERRED_COLUMNS`)."""
    import pyarrow as pa

    return pa.schema([(c, pa.string() if c == "pseudonym" else pa.float64() if c in _FLOAT_COLS
                       else pa.int64()) for c in INFERRED_COLUMNS])


_schema = inferred_schema


# ------------------------------------------------------------------ one part
def infer_part(directory, part: str, out_stem, manifest: dict, days=None, params=None) -> dict:
    """Infer home/work for one release part and write it to ``out_stem`` (.parquet and
    .csv, via :func:`sim.core.files.write_table` with the manifest's dataset_id).

    The unit of work of both backends (a Dask worker runs exactly this).  Returns the
    part's figures: rows, pings read, pings in the window, known homes/works, window
    days, wall and CPU seconds, and the sorted 64-bit hashes of its pseudonyms (used to
    check that no pseudonym spans two parts).
    """
    t0, c0 = time.perf_counter(), time.process_time()
    traces = read_release_part(directory, part, manifest)
    pings = int(traces.n_pings)
    if days is not None:
        traces = traces.prefix(days)
    inf = infer_home_work(traces, **(params or {}))
    write_table(inf, as_path(out_stem), dataset_id=manifest["dataset_id"])
    hashes = np.unique(pd.util.hash_array(np.asarray(traces.pseudonym, dtype=object)).astype(np.uint64))
    out = {
        "part": part, "rows": len(inf), "pings": pings, "pings_in_window": int(traces.n_pings),
        "known_home": int(inf["home_x_m"].notna().sum()), "known_work": int(inf["work_x_m"].notna().sum()),
        "window_days": int(traces.n_days), "seconds": round(time.perf_counter() - t0, 3),
        "cpu_s": round(time.process_time() - c0, 3), "pseudonym_hashes": hashes,
    }
    del traces, inf
    return out


# ------------------------------------------------------------------ driver
def infer_streaming(directory, out_dir=None, days=None, backend: str = "local", scheduler: str | None = None,
                    n_workers: int = 2, infer_params: dict | None = None, *,
                    concat_max_rows: int = CONCAT_MAX_ROWS, verify_hashes: bool | None = None) -> dict:
    """Infer home and work of every pseudonym of a generated release, part by part.

    Parameters
    ----------
    directory : a folder written by ``reidsim generate`` (checked with
        :func:`sim.release.dataset.check_dataset` first); a local path or a URL.
    out_dir : the folder that receives ``inferred/`` (and ``inferred.parquet``); default
        the dataset folder.  Another folder must be new, empty, or hold only these
        entries.  A local path or a URL.
    days : use only the first ``days`` days of the window (``Traces.prefix``), > 0.
    backend : ``"local"`` (in-process, part after part) or ``"dask"``.
    scheduler : a Dask scheduler address; default a LocalCluster of ``n_workers``
        single-threaded workers on the loopback interface.
    infer_params : keyword arguments of :func:`sim.infer.infer_home_work`
        (:class:`sim.infer.InferenceParams` fields).
    concat_max_rows : also write ``inferred.parquet``/``.csv`` (all parts, in part
        order, streamed part by part) when the total is at most this many rows; 0 never.
        Otherwise stale ``inferred.parquet``/``.csv`` in ``out_dir`` are removed.
    verify_hashes : as :func:`check_dataset` (default: hash parts when the release is
        at most 2 GiB).

    Returns
    -------
    dict
        dataset_id, backend, parts, rows, pings, pings_in_window, known_home,
        known_work, window_days, seconds, largest_part_pings, inferred_dir,
        inferred_file (None when not written), params and ``per_part`` (one record per
        part: rows, pings, seconds, cpu_s, ...).  The same record (without the
        per-part hashes) is written to ``inferred/summary.json``.

    Rows equal ``infer_home_work(load_release(directory))`` (or of its ``prefix(days)``)
    row for row once both are sorted by pseudonym: each part's table is sorted by
    pseudonym, the parts follow the manifest's order.
    """
    t0 = time.perf_counter()
    if backend not in ("local", "dask"):
        raise ConfigError(f"backend must be 'local' or 'dask', got {backend!r}.")
    if isinstance(n_workers, bool) or not isinstance(n_workers, (int, np.integer)) or n_workers < 1:
        raise ConfigError(f"n_workers must be an integer >= 1, got {n_workers!r}; use e.g. 2 (one per core).")
    if days is not None:
        try:
            days = float(days)
        except (TypeError, ValueError):
            days = math.nan
        if not math.isfinite(days) or days <= 0:
            raise ConfigError("days must be a finite number of days > 0 (e.g. 7 or 0.5), or None for the "
                              "whole window.")
    params = InferenceParams.make(**(infer_params or {})).as_dict()
    d = as_path(directory)
    man = check_dataset(d, verify_hashes=verify_hashes)
    did = man["dataset_id"]
    out = _claim(d, out_dir)
    clean_stale_staging(out)
    stage = new_staging_dir(out)
    try:
        (stage / INFERRED_DIR).mkdir()
        parts = [r["file"] for r in man["parts"]]  # tasks name paths or URLs as str
        tasks = [dict(directory=str(d.resolve()), part=p, out_stem=str((stage / INFERRED_DIR / Path(p).stem).resolve()),
                      manifest=man, days=days, params=params) for p in parts]
        if backend == "local":
            results = []
            for kw in tasks:
                results.append(call_released(infer_part, **kw))
                log.info("inferred %s: %d pseudonyms in %.1f s", kw["part"], results[-1]["rows"],
                         results[-1]["seconds"])
        else:
            results = _run_dask(tasks, scheduler, int(n_workers))
        _check_disjoint(d, results)
        for r in results:
            r.pop("pseudonym_hashes", None)
        rows = sum(r["rows"] for r in results)
        concat = rows <= int(concat_max_rows) and int(concat_max_rows) > 0
        if concat:
            _concatenate(stage / INFERRED_DIR, [Path(p).stem for p in parts], stage / "inferred", did,
                         csv=wants_csv(rows))
        window = (results[0]["window_days"] if results else
                  int(math.ceil(min(days, man["n_days"]))) if days is not None else int(man["n_days"]))
        summary = {
            "dataset_id": did, "backend": backend, "n_workers": int(n_workers) if backend == "dask" else 1,
            "scheduler": scheduler, "parts": len(parts), "rows": rows,
            "pings": sum(r["pings"] for r in results),
            "pings_in_window": sum(r["pings_in_window"] for r in results),
            "known_home": sum(r["known_home"] for r in results),
            "known_work": sum(r["known_work"] for r in results),
            "days": days, "window_days": window,
            "largest_part_pings": max((r["pings"] for r in results), default=0),
            "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items()},
            "inferred_dir": str(out / INFERRED_DIR),
            "inferred_file": str(out / "inferred.parquet") if concat else None,
            "per_part": results,
        }
        summary["seconds"] = round(time.perf_counter() - t0, 3)
        write_json(summary, stage / INFERRED_DIR / "summary.json")
        # the old inferred.parquet/.csv go; the staged ones (if any) move in
        commit_staged(stage, out, marker="inferred.parquet", remove=("inferred.parquet", "inferred.csv"))
        summary["seconds"] = round(time.perf_counter() - t0, 3)
        return summary
    finally:
        if stage.exists():
            rmtree(stage)


def _claim(dataset, out_dir):
    """The output folder: the dataset's own, or one that is new, empty or only ours."""
    return claim_out_dir(dataset, out_dir, OWN_ENTRIES, "streaming inference")


def claim_out_dir(dataset, out_dir, own_entries, what: str):
    """The output folder of a streaming stage (``what``): the dataset's own folder when
    ``out_dir`` is None or it, else a folder that is new, empty or holds only
    ``own_entries`` (and staging folders); created.  InputError otherwise.  Either may
    be a local path or a URL (a Path or :class:`~sim.core.storage.URLPath` is returned)."""
    if out_dir is None or as_path(out_dir).resolve() == as_path(dataset).resolve():
        return as_path(dataset)
    out = check_output_path(out_dir, "out_dir")
    if out.is_dir():
        other = sorted(e.name for e in out.iterdir() if e.name not in own_entries and not is_staging_name(e.name))
        if other:
            raise InputError(f"out_dir {str(out)!r} holds {other[:3]}, which {what} did not write; "
                             f"choose a new or empty folder (it writes only {', '.join(own_entries)}).")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _check_disjoint(directory, results: list) -> None:
    """Refuse a release where a pseudonym has pings in two parts (per-part inference
    would then differ from whole-release inference)."""
    hashes = [r["pseudonym_hashes"] for r in results if len(r["pseudonym_hashes"])]
    if len(hashes) < 2:
        return
    allh = np.concatenate(hashes)
    n_dup = len(allh) - len(np.unique(allh))
    if n_dup:
        raise InputError(
            f"{n_dup} pseudonym(s) of {str(directory)!r} have pings in more than one part file, so the "
            "parts cannot be inferred one by one; write the release with each pseudonym in one part "
            "(as `reidsim generate` does) or use sim.infer.infer_home_work(load_release(DIR)).")


def _concatenate(part_dir, stems: list, stem, did: str, csv: bool = True) -> None:
    """``stem``.parquet (and .csv): the part tables in order, streamed one part at a time."""
    write_inferred_concat((read_table(part_dir / f"{s}.parquet") for s in stems), stem, did, csv=csv)


def write_inferred_concat(tables, stem, did: str, csv: bool = True) -> int:
    """Write the inferred tables ``tables`` (an iterable of Arrow tables, consumed one at
    a time) one after the other as ``stem``.parquet and, with ``csv``, ``stem``.csv (a
    local path or a URL), each atomically, with the dataset_id ``did`` in the Parquet
    metadata.  Returns the rows written."""
    import contextlib

    import pyarrow.parquet as pq

    stem = as_path(stem)
    schema = inferred_schema().with_metadata({DATASET_ID_KEY: str(did).encode()})
    rows = 0
    with contextlib.ExitStack() as files:
        w = files.enter_context(pq.ParquetWriter(files.enter_context(atomic_path(stem.with_suffix(".parquet"))), schema))
        fcsv = (files.enter_context(open(files.enter_context(atomic_path(stem.with_suffix(".csv"))), "w", newline=""))
                if csv else None)
        i = -1
        for i, t in enumerate(tables):
            t = t.select(list(INFERRED_COLUMNS)).cast(inferred_schema())
            w.write_table(t.replace_schema_metadata(schema.metadata))
            if fcsv is not None:
                t.to_pandas().to_csv(fcsv, index=False, header=(i == 0))
            rows += t.num_rows
        if i < 0 and fcsv is not None:
            inferred_schema().empty_table().to_pandas().to_csv(fcsv, index=False)
    return rows


def call_released(fn, /, **kw):
    """``fn(**kw)``, then the memory it freed handed back to the system
    (:func:`sim.core.memory.release_free_memory` without a collection).  Per-part tasks
    free their part's buffers as they return, after anything they could release
    themselves: without this the process kept them (at 200,000 devices in parts of
    25,000, 1.9 GB resident between parts instead of 0.5 GB, and every later part's
    peak that much higher)."""
    try:
        return fn(**kw)
    finally:
        release_free_memory(collect=False)


def run_parts(fn, tasks: list, backend: str, scheduler=None, n_workers: int = 2, client=None, on_result=None) -> list:
    """Run ``fn(**task)`` for every task: in this process one after another (``"local"``)
    or on Dask (``client``, or a :func:`sim.generate.engine.dask_client` of ``scheduler``
    / ``n_workers`` opened for the call).  ``on_result(i, result)`` is called as each
    result arrives (in task order locally, in completion order on Dask) and its return
    value kept; returns the kept values in task order.  Each task runs through
    :func:`call_released`, in this process and on the workers alike."""
    keep = (lambda i, r: r) if on_result is None else on_result
    if backend == "local":
        return [keep(i, call_released(fn, **kw)) for i, kw in enumerate(tasks)]
    if client is None:
        with dask_client(scheduler, n_workers) as c:
            return run_parts(fn, tasks, backend, client=c, on_result=on_result)
    from dask.distributed import as_completed

    futs = {client.submit(call_released, fn, pure=False, **kw): i for i, kw in enumerate(tasks)}
    results = [None] * len(tasks)
    for f in as_completed(futs):
        i = futs.pop(f)
        results[i] = keep(i, f.result())
        f.release()
    return results


def _run_dask(tasks: list, scheduler, n_workers: int) -> list:
    return run_parts(infer_part, tasks, "dask", scheduler, n_workers)


# ------------------------------------------------------------------ reading back
def read_inferred(directory, *, columns=None) -> pd.DataFrame:
    """All per-part inferred tables of ``directory/inferred/`` as one DataFrame (in part
    order; in memory, so for small releases or a column subset).  Refuses tables of
    another dataset or a folder whose summary does not list them."""
    import json

    d = as_path(directory)
    folder = d / INFERRED_DIR
    sp = folder / "summary.json"
    if not sp.is_file():
        raise InputError(f"{str(folder)!r} has no summary.json; run `reidsim infer {d}` first.")
    summary = json.loads(sp.read_text())
    man = read_manifest(d) if (d / "manifest.json").exists() else {"dataset_id": summary["dataset_id"]}
    if summary["dataset_id"] != man.get("dataset_id"):
        raise InputError(f"{str(folder)!r} was computed from another dataset; re-run `reidsim infer {d}`.")
    frames = []
    for rec in summary["per_part"]:
        p = folder / f"{Path(rec['part']).stem}.parquet"
        if read_dataset_id(p) != summary["dataset_id"]:
            raise InputError(f"{str(p)!r} was computed from another dataset; re-run `reidsim infer {d}`.")
        frames.append(read_frame(p, columns=columns))
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in (columns or INFERRED_COLUMNS)})
    return pd.concat(frames, ignore_index=True)
