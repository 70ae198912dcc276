"""Defend a generated release part by part: a new dataset folder holding the defended pings.

A broker's safeguard (:mod:`sim.release.defenses`) is a function of each trace alone:
its random draws are keyed by the trace's pseudonym (or MAID) and the ping's rank, and
traces merged by a pseudonym change share a MAID, i.e. a device, i.e. a part.  So
defending every part of a release on its own gives exactly the traces of defending the
whole release at once, while memory is bounded by the largest part.

:func:`defend_streaming` writes ``OUT`` as a complete dataset that every reader and
every streaming stage (``reidsim infer``, ``reidsim attack``) accepts::

    pings/part-XXXXX.parquet   the defended pings of each source part (same numbering;
                               positions back in WGS84 degrees, rows by pseudonym, time)
    truth/pseudonyms.parquet   one row per published pseudonym: pseudonym,
                               source_pseudonym, epoch, first_day, last_day, n_pings and
                               the source's device_idx, person_id, maid (the defense's
                               mapping joined with the source truth); without a pseudonym
                               change, the source table with n_pings recounted
    truth/persons.parquet, truth/devices.parquet, register.parquet, world/
                               copied from the source
    manifest.json              the source's, with the new parts, rows and dataset_id,
                               plus ``defenses`` (the steps), ``source_dataset_id`` and
                               ``duplicate_times: true`` when a pseudonym has two
                               pings at one second (time coarsening; readers keep them)

Only trace defenses can stream this way.  Aggregate defenses (``aggregate_k``,
``aggregate_dp``) publish a count table, not pings, and are refused here (evaluate them
with ``reidsim run`` or :func:`sim.pipeline.evaluate.evaluate_defense`).

Positions are written as degrees and read back in metres, so a defended position
differs from the in-memory defense's by the float64 round trip of the projection
(below a micrometre); pseudonyms, times and accuracies are identical (tested).

Backends: ``"local"`` defends the parts one after another in this process; ``"dask"``
runs the same per-part function (:func:`defend_part`) on a LocalCluster (loopback only)
or the scheduler at ``scheduler``.  Workers read the source part and write their output
part by path or URL: with local folders they must see both at the same path; either
folder may be a URL (``s3://...``, ``file://...``; :mod:`sim.core.storage`), which each
worker opens itself.  Both backends write byte-identical part files.  Everything is staged and committed at the end (marker
``manifest.json`` last), so an interrupted run leaves ``OUT`` as it was.
"""
from __future__ import annotations

import datetime as _dt
import logging
import time

import numpy as np
import pandas as pd

from sim import __version__
from sim.core.errors import ConfigError, InputError
from sim.core.files import atomic_path, claim_output_dir, new_staging_dir
from sim.core.lookup import id_positions, values_at
from sim.core.storage import as_path, copy_file, copy_tree, read_frame, read_table, rmtree
from sim.core.traces import Traces
from sim.generate.engine import commit_dataset, pings_table, write_pings_part
from sim.pipeline.stream import run_parts
from sim.release.dataset import check_dataset, read_release_part
from sim.release.defenses import REGISTRY, BrokerContext, apply_defenses, parse_defense_spec, validate_defense
from sim.world.crs import project_to_latlon
from sim.world.model import load_world_cached

log = logging.getLogger(__name__)

__all__ = ["defend_streaming", "defend_part", "check_steps", "traces_to_pings_table"]

#: name of the broker-context table staged for the workers (removed before the commit)
CONTEXT_FILE = "broker_context.parquet"


def check_steps(steps) -> list:
    """Validate ``steps`` (a list of ``(name, params)`` or ``"name:param=value"``
    strings): every name known, every parameter valid, no aggregate defense.  Returns
    the normalised ``[(name, params), ...]``."""
    out = []
    for s in steps or ():
        name, params = parse_defense_spec(s) if isinstance(s, str) else (s[0], dict(s[1]))
        if name not in REGISTRY:
            raise ConfigError(f"unknown defense {name!r}; known: {sorted(REGISTRY)}.")
        if REGISTRY[name].output == "table":
            raise ConfigError(
                f"{name!r} publishes a count table, not pings, so it cannot produce a release to defend part by "
                "part; evaluate it with `reidsim run` or sim.pipeline.evaluate.evaluate_defense.")
        _, params = validate_defense(name, dict(params))
        out.append((name, dict(params)))
    if not out:
        raise ConfigError("no defense given; pass at least one, e.g. --defense grid:cell_m=500.")
    return out


def traces_to_pings_table(traces: Traces, crs: str):
    """A pings table (:data:`sim.generate.engine.PINGS_SCHEMA`) of ``traces``: positions
    back to WGS84 degrees, rows in trace order then time."""
    lat, lon = project_to_latlon(traces.x_m, traces.y_m, crs)
    names = np.asarray(traces.pseudonym, dtype=object).astype(str).tolist()
    return pings_table(traces.trace_index().astype(np.int32), names, np.asarray(traces.t_s, dtype=np.int64),
                       np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64),
                       np.asarray(traces.accuracy_m, dtype=np.float32))


def _part_context(traces: Traces, ctx_path: str, seed: int, world) -> BrokerContext:
    """The broker's context (MAID, true home) of a part's traces, read from the staged
    context table with a filter on the part's pseudonyms."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    names = np.asarray(traces.pseudonym, dtype=object).astype(str)
    tab = read_table(as_path(ctx_path), filters=ds.field("pseudonym").isin(pa.array(names, type=pa.string())))
    df = tab.to_pandas().drop_duplicates("pseudonym").set_index("pseudonym")
    pos = df.index.get_indexer(pd.Index(names, dtype=object))
    if (pos < 0).any():
        raise InputError(f"pseudonym {names[np.flatnonzero(pos < 0)[0]]!r} of the release is not in the truth "
                         "pseudonyms table; the dataset is inconsistent — regenerate it.")
    rows = df.iloc[pos]
    return BrokerContext(rows["maid"].astype(str).to_numpy(dtype=object), rows["home_x_m"].to_numpy(np.float64),
                         rows["home_y_m"].to_numpy(np.float64), seed, world)


def defend_part(directory, part: str, manifest: dict, steps, ctx_path: str, out_path: str, seed: int,
                world_dir: str | None = None) -> dict:
    """Defend one release part and write it to ``out_path`` (the unit of work of both
    backends; paths or URLs).  Returns the part's figures, its part ``record``
    (:func:`sim.generate.engine.part_record`) and its pseudonym table: ``mapping`` (the
    defense's, when pseudonyms changed) or ``counts`` (pseudonym, n_pings)."""
    t0, c0 = time.perf_counter(), time.process_time()
    traces = read_release_part(directory, part, manifest)
    world = load_world_cached(world_dir) if world_dir and any(REGISTRY[n].needs_world for n, _ in steps) else None
    ctx = _part_context(traces, ctx_path, seed, world)
    out, mapping, _ = apply_defenses(traces, ctx, steps)
    rec = write_pings_part(traces_to_pings_table(out, manifest["crs"]), out_path)
    same = np.diff(out.t_s) == 0
    if len(same):
        same &= np.diff(out.trace_index()) == 0
    res = {"part": part, "pings_in": int(traces.n_pings), "pings_out": int(out.n_pings),
           "duplicate_times": int(np.count_nonzero(same)),
           "traces_in": int(np.count_nonzero(traces.lengths)), "traces_out": int(np.count_nonzero(out.lengths)),
           "seconds": round(time.perf_counter() - t0, 3), "cpu_s": round(time.process_time() - c0, 3),
           "record": rec}
    if mapping is not None:
        res["mapping"] = mapping.reset_index(drop=True)
    else:
        res["counts"] = pd.DataFrame({"pseudonym": np.asarray(out.pseudonym, dtype=object),
                                      "n_pings": out.lengths.astype(np.int64)})
    return res


def _truth_pseudonyms(source: pd.DataFrame, results: list, changed: bool) -> pd.DataFrame:
    if changed:
        mapping = pd.concat([r["mapping"] for r in results], ignore_index=True)
        src = source.drop_duplicates("pseudonym").rename(columns={"pseudonym": "source_pseudonym"})
        keep = [c for c in ("source_pseudonym", "device_idx", "person_id", "maid") if c in src.columns]
        t = mapping.merge(src[keep], on="source_pseudonym", how="left")
        if t["device_idx"].isna().any():
            raise InputError("the defense's mapping names source pseudonyms missing from the truth table.")
        return t.sort_values("pseudonym", kind="stable").reset_index(drop=True)
    counts = pd.concat([r["counts"] for r in results], ignore_index=True).set_index("pseudonym")["n_pings"]
    t = source.copy()
    t["n_pings"] = counts.reindex(t["pseudonym"]).fillna(0).to_numpy(np.int64)
    return t


def defend_streaming(directory, out_dir, defenses, *, backend: str = "local", scheduler: str | None = None,
                     n_workers: int = 2, overwrite: bool = False, seed: int | None = None,
                     verify_hashes: bool | None = None) -> dict:
    """Apply ``defenses`` to a generated release part by part; write the defended dataset.

    Parameters
    ----------
    directory : a folder written by ``reidsim generate`` (checked first).
    out_dir : the new dataset folder: new, empty, or a reidsim dataset (replaced only
        with ``overwrite``); never the source folder.
    defenses : list of ``"name:param=value,..."`` strings or ``(name, params)`` pairs,
        applied in order (trace defenses only; :func:`check_steps`).
    backend, scheduler, n_workers : as :func:`sim.pipeline.stream.infer_streaming`.
    seed : root seed of the defenses' draws; default the scenario's.

    Returns the new manifest (``defenses``, ``source_dataset_id``, ``per_part`` figures).
    """
    t_start = time.perf_counter()
    if backend not in ("local", "dask"):
        raise ConfigError(f"backend must be 'local' or 'dask', got {backend!r}.")
    if isinstance(n_workers, bool) or not isinstance(n_workers, (int, np.integer)) or n_workers < 1:
        raise ConfigError(f"n_workers must be an integer >= 1, got {n_workers!r}; use e.g. 2 (one per core).")
    steps = check_steps(defenses)
    src = as_path(directory)
    man = check_dataset(src, verify_hashes=verify_hashes)
    if as_path(out_dir).resolve() == src.resolve():
        raise InputError(f"--out {str(out_dir)!r} is the source dataset; write the defended release to another "
                         "folder (the source stays as it is).")
    seed = int(man["scenario"].get("seed", 0)) if seed is None else int(seed)
    out = claim_output_dir(out_dir, overwrite=overwrite)
    stage = new_staging_dir(out)
    try:
        pseud = read_frame(src / "truth" / "pseudonyms.parquet")
        persons = read_frame(src / "truth" / "persons.parquet", columns=["person_id", "home_x_m", "home_y_m"])
        pos = id_positions(persons["person_id"].to_numpy(), pseud["person_id"].to_numpy())
        ctx = pd.DataFrame({"pseudonym": pseud["pseudonym"].astype(str), "maid": pseud["maid"].astype(str),
                            "home_x_m": values_at(persons["home_x_m"].to_numpy(np.float64), pos, np.nan),
                            "home_y_m": values_at(persons["home_y_m"].to_numpy(np.float64), pos, np.nan)})
        del persons
        ctx_path = stage / CONTEXT_FILE
        with atomic_path(ctx_path) as tmp:
            ctx.to_parquet(tmp, index=False)
        del ctx
        (stage / "pings").mkdir()
        world_dir = str((src / "world").resolve())
        tasks = [dict(directory=str(src.resolve()), part=r["file"], manifest=man, steps=steps,
                      ctx_path=str(ctx_path.resolve()), out_path=str((stage / "pings" / r["file"]).resolve()),
                      seed=seed, world_dir=world_dir) for r in man["parts"]]
        results = run_parts(defend_part, tasks, backend, scheduler, int(n_workers))
        ctx_path.unlink()
        changed = any("mapping" in r for r in results)
        truth = _truth_pseudonyms(pseud, results, changed)
        (stage / "truth").mkdir()
        with atomic_path(stage / "truth" / "pseudonyms.parquet") as tmp:
            truth.to_parquet(tmp, index=False)
        for f in ("persons.parquet", "devices.parquet"):
            copy_file(src / "truth" / f, stage / "truth" / f)
        copy_file(src / "register.parquet", stage / "register.parquet")
        copy_tree(src / "world", stage / "world")
        per_part = [{k: v for k, v in r.items() if k not in ("mapping", "counts", "record")} for r in results]
        manifest = {k: v for k, v in man.items() if k not in ("parts", "dataset_id", "seconds", "timings_s")}
        manifest.update(
            created_utc=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            reidsim_version=__version__,
            defenses=[{"name": n, "params": p} for n, p in steps], defense_seed=seed,
            source_dataset_id=man["dataset_id"], backend=backend,
            rows={**man["rows"], "pings": sum(r["pings_out"] for r in results),
                  "pseudonyms": sum(r["traces_out"] for r in results)},
            per_part=per_part)
        if any(r["duplicate_times"] for r in results):  # e.g. time_round: readers keep them
            manifest["duplicate_times"] = True
        manifest["seconds"] = round(time.perf_counter() - t_start, 3)
        return commit_dataset(stage, out, manifest, [r["record"] for r in results])
    finally:
        if stage.exists():
            rmtree(stage)
