"""Out-of-core attacks: ``reidsim attack`` part by part, in-process or on Dask.

:func:`attack_streaming` gives exactly the tables of :func:`sim.attacks.run_attacks`
(same names, columns and values) for every attack of ``ATTACK_NAMES``, while no step
holds more than one release part's pings.  A release written by ``reidsim generate``
is a folder of ``pings/part-*.parquet`` files, each holding whole pseudonyms, so every
per-pseudonym quantity can be computed part by part; what needs the whole release is a
small global reduction, done exactly.

Design: two passes over the parts (map, count), each part read by one task at a time,
with reductions in the driver between them
-----------------------------------------------------------------------------------------
1. *Map* (:func:`attack_part`, one task per part): read the part; infer home/work for
   every observation window (``sim.infer.infer_prefixes``, optionally writing the
   part's full tables); the observed span per pseudonym; the pings in the geofence
   window inside the box of a given fence, or, when the fence is to be picked
   (:data:`GATHERING`, as ``sim.pipeline.main.main_attack_config`` does with
   ``pick_gathering``), the gathering's crowds (:func:`gathering_crowds`: the cells,
   side 2 x 400 m, of the pings with accuracy <= 100 m in the window, 12-18 h of the
   first Saturday, with the number of distinct pseudonyms in each); the top-N
   signatures per level with counts; the extremes of x, y and t; and the *sample
   candidates*: the part's K pseudonyms with the smallest seeded uniform of
   ``sim.attacks.unicity.sample_traces`` (K = the larger of the unicity sample and the
   known-points targets), with, for each, the unicity points it would draw
   (``draw_trace_points``: absolute (ix, iy, tb) cells, per trace sorted
   lexicographically, which is the order of the whole release's keys) and its
   known-points observations (``target_observations``).  The driver keeps a running
   merge of the K smallest (uniform, pseudonym) candidates — the whole release's sample,
   because the sample is the K smallest of that order and every part offers its own K
   smallest.
2. *Reduce*: the whole release's key space of every unicity resolution and the
   known-points grid come from the parts' extremes (floor and integer division are
   monotone, so the extreme cells are the cells of the extreme coordinates: the keys and
   grid cells are exactly the whole release's, and the same ConfigError/InputError is
   raised when they do not fit int64).  The top-N signature counts are summed per
   signature.  A picked fence's cell is the busiest of the crowds summed over the parts
   (a pseudonym lies in one part, so the sums are the whole release's; ties: the
   smallest (column, row), as ``np.argmax`` over the sorted cell keys), and its box that
   cell grown by the radius, which holds both the pings the median is taken over and
   every point of the circle.
3. *Count* (:func:`count_part`, one task per part): per unicity resolution, the part's
   posting index keyed in the whole release's key space and, for every sampled trace,
   the number of the part's traces holding all p of its drawn points (capped at 2);
   per noise level of the known-points attack, the part's candidates of every target's
   first 1..m observations on the whole release's grid, and whether the target (in its
   own part) is one.  Summed over the parts (capped again) these are the whole
   release's counts.  For a picked fence the task also collects the box's pings.  The
   seen table of the geofence is ``seen_in_fence`` of the box's pings.

The per-device attacks (linkage, time to identification, the ladder with
relink-then-identify, geofence scoring, re-linking) then run
(:func:`sim.attacks.run.run_device_attacks`, the code ``run_attacks`` runs) on the
concatenated per-part inferred tables, the observed-span and seen tables, the register
and the truth tables, all put in pseudonym order — the whole release's trace order.

Why it is exact: every figure is either per pseudonym (computed in its part with the
whole release's parameters) or a sum, a minimum or a count over pseudonyms, reduced in
a fixed order; sampling and draws are counter-based streams keyed by the pseudonym, not
by position; and rates and bootstrap intervals depend only on the multiset of
per-device values (``sim.core.stats`` sorts before resampling).  Nothing is sampled
beyond what ``run_attacks`` samples (``unicity_n_sample``, ``known_n_targets``: the
same seeded pseudonyms, so the same intervals).  Both backends give identical tables
(tested).

Memory: a task holds one part (its pings, the inference's and one zone level's or one
unicity resolution's postings of the sample's keys).  The driver holds what grows with
the number of pseudonyms, not pings: the observed span (3 columns) and one window's
inferred table trimmed to the 7 columns the per-device attacks read (read from the
parts' inferred files when it is asked for; without an output folder every window is
kept, about 60 B per pseudonym and window), the distinct top-N signatures, the register
(without names and listed work addresses, which no per-device attack reads) and the truth
tables (the persons table only with its zone columns, and only until the linkage and the
geofence have scored), plus K candidates
with their draws and the geofence box's pings; the ladder builds its candidate sets
50,000 pseudonyms at a time.  Those per-pseudonym tables, and the per-device attacks' own
working memory on them, are what still grows with the release (``benchmarks/
bench_scale.py``: at 100,000 devices x 30 days in 2 parts the streaming attack peaked at
4.5 GiB, streaming inference at 4.2 GiB, the whole-release attack at 8.3 GiB; the driver
holds about 0.24 GiB + 0.76 kB per pseudonym above a part).  On Dask the two passes run
on the workers; the reductions and the per-device attacks run in the driver.

Outputs (into the dataset folder, or ``out_dir``), as ``reidsim attack`` wrote them
before: ``attacks/<table>.parquet`` and ``.csv`` with the dataset_id,
``attacks/summary.json``, ``attacks/geofence_meta.json`` (when the geofence ran),
``inferred.parquet``/``.csv`` (the largest window) and ``inferred_by_day.parquet``/
``.csv`` (every window, rows in pseudonym order within each window, as before; only
when they hold at most ``concat_max_rows`` rows, stale ones are removed otherwise),
plus ``attacks/stream_summary.json`` (parts, passes, seconds, largest part, backend).
Nothing is written into the output folder until every table is computed (temporary
per-part files live in a ``.reidsim-staging-*`` folder that a killed run leaves and the
next run removes); each file then moves into place atomically.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import shapely

from sim.attacks._common import check_int, check_levels, check_positive, object_index, observed_span, register_column
from sim.attacks.gathering import (GATHERING_MAX_ACCURACY_M, GATHERING_RADIUS_M, busiest_cell, cell_crowds,
                                   gathering_circle, gathering_window)
from sim.attacks.geofence import check_fence, seen_in_fence
from sim.attacks.known_points import (KNOWN_POINTS_COLUMNS, check_known_points_args, grid_origin, known_points_rows,
                                      match_observations, match_radius, target_observations, traces_bounds)
from sim.attacks.linkage import split_prefixes
from sim.attacks.relink import METHODS
from sim.attacks.run import (AttackConfig, attack_levels, ordered_tables, run_device_attacks, summary,
                             wants_geofence, write_attack_outputs)
from sim.attacks.topn import (TOPN_COLUMNS, check_day_span, check_topn_args, merge_signature_counts,
                              signature_counts, top_locations, topn_rows)
from sim.attacks.unicity import (UNICITY_COLUMNS, build_query_index, cell_keys, check_resolution, check_unicity_args,
                                 count_containing, draw_trace_points, fit_power_law, resolution_origin,
                                 sample_uniforms, unicity_row)
from sim.core.config import Scenario
from sim.core.constants import DAY_S, LEVELS
from sim.core.errors import ConfigError, InputError
from sim.core.memory import peak_rss_mb, release_free_memory
from sim.core.files import clean_stale_staging, drop_stale_csv, new_staging_dir, wants_csv, write_json, write_table
from sim.core.storage import as_path, read_frame, read_schema, read_table, replace, rmtree, write_parquet
from sim.core.traces import Traces, forget_derived
from sim.infer import InferenceParams, infer_prefixes
from sim.pipeline.evaluate import observation_days
from sim.pipeline.stream import CONCAT_MAX_ROWS, claim_out_dir, run_parts, write_inferred_concat
from sim.release.dataset import check_dataset, read_release_part
from sim.world.model import World, load_world_cached

log = logging.getLogger(__name__)

__all__ = ["GATHERING", "OWN_ENTRIES", "attack_part", "attack_streaming", "count_part", "dataset_attack_config",
           "gathering_crowds", "gathering_window"]

#: ``geofence_polygon`` value that asks :func:`attack_streaming` to pick the fence as
#: ``sim.attacks.gathering.pick_gathering`` does (out of core), window included
GATHERING = "gathering"
#: entries :func:`attack_streaming` writes into its output folder
OWN_ENTRIES = ("attacks", "inferred.parquet", "inferred.csv", "inferred_by_day.parquet", "inferred_by_day.csv")
#: the inferred columns the per-device attacks read (linkage: home/work points; re-linking
#: groups: their support); the driver keeps only these of every window
DEVICE_COLUMNS = ("pseudonym", "home_x_m", "home_y_m", "work_x_m", "work_y_m", "home_nights", "work_days")
#: the register columns the per-device attacks read (the driver loads only these: names
#: are the largest column, and nothing of the reduce reads the listed work addresses)
_READ_REGISTER = ("person_id", "age", "home_x_m", "home_y_m") + tuple(
    register_column(side, lv) for side in ("home", "work") for lv in LEVELS)
#: margin (metres) around a picked fence's box, against rounding at the cell edges
_BOX_MARGIN_M = 1.0


# ============================================================================ plans
@dataclass(frozen=True)
class MapPlan:
    """What :func:`attack_part` computes for one part (picklable, sent to every task)."""

    days: tuple = ()                 # inference windows; () = none (inferred tables given)
    infer_params: dict = field(default_factory=dict)
    parts_dir: str | None = None     # folder for the part's full inferred tables (None: not written)
    n_candidates: int | None = 0     # sample candidates per part; 0: none, None: every trace
    seed: int = 0
    resolutions: tuple = ()          # unicity (v_m, h_h) pairs
    p_max: int = 0
    sigmas: tuple = ()               # known-points noise levels
    m_max: int = 0
    jitter_s: float = 0.0
    topn_levels: tuple = ()
    topn_ns: tuple = ()
    topn_by: str = "pings"
    box: tuple | None = None         # (t0, t1, minx, miny, maxx, maxy): the geofence pings kept
    gathering: tuple | None = None   # (t0, t1, cell_m): the gathering's cell crowds counted
    sample: tuple | None = None      # (pseudonyms, folder): their rows of each part written there


@dataclass(frozen=True)
class CountPlan:
    """What :func:`count_part` counts for one part: per unicity resolution (v_m, h_h,
    key origin, the sample's drawn keys, their distinct-point counts, the p values) and
    per known-points noise level (radius, grid origin, observations)."""

    unicity: tuple = ()
    known: tuple = ()
    tol_s: int = 0
    known_targets: np.ndarray | None = None
    box: tuple | None = None         # as MapPlan.box, for a fence picked after the map pass


# ============================================================================ the gathering
def gathering_crowds(traces: Traces, t0: int, t1: int, cell_m: float = 2 * GATHERING_RADIUS_M) -> dict:
    """The gathering's crowds in one part: the cells (``cell_m`` squares) of the pings in
    [t0, t1) with accuracy <= 100 m, with the number of distinct pseudonyms in each
    (``sim.attacks.gathering.cell_crowds``; gx, gy, n_pseudonyms as int64 arrays)."""
    t = traces.t_s
    sel = np.flatnonzero((t >= t0) & (t < t1))
    sel = sel[traces.accuracy_m[sel] <= GATHERING_MAX_ACCURACY_M]
    gx, gy, n = cell_crowds(traces.x_m[sel], traces.y_m[sel], traces.trace_index()[sel], cell_m)
    return {"gx": gx, "gy": gy, "n_pseudonyms": n}


def _busiest_cell(crowds: list) -> tuple[int, int]:
    cat = [np.concatenate([r[k] for r in crowds]) if crowds else np.zeros(0, np.int64)
           for k in ("gx", "gy", "n_pseudonyms")]
    return busiest_cell(*cat)  # the whole release's (a pseudonym lies in one part)


def _gathering_box(cell, cell_m: float, radius_m: float) -> tuple:
    gx, gy = cell
    pad = radius_m + _BOX_MARGIN_M
    return (gx * cell_m - pad, gy * cell_m - pad, (gx + 1) * cell_m + pad, (gy + 1) * cell_m + pad)


def _gathering_polygon(box_pings: pd.DataFrame, cell, cell_m: float, radius_m: float):
    """pick_gathering's circle: around the median of the counted pings of the cell."""
    ok = box_pings["accuracy_m"].to_numpy() <= GATHERING_MAX_ACCURACY_M
    return gathering_circle(box_pings["x_m"].to_numpy(dtype=np.float64)[ok],
                            box_pings["y_m"].to_numpy(dtype=np.float64)[ok], cell, cell_m, radius_m)


# ============================================================================ pass 1
def attack_part(directory, part: str, manifest: dict, plan: MapPlan, world=None) -> dict:
    """Pass 1 for one release part (the unit of work of both backends; a Dask worker runs
    exactly this).  Reads only that part; returns its small per-pseudonym summaries:
    ``span`` (observed span), ``inferred`` ({window: table of :data:`DEVICE_COLUMNS`};
    the full tables go to ``plan.parts_dir``, one row group per window), ``box`` (the
    geofence box's pings, for a box given in ``plan``), ``crowds`` (the gathering's cell
    crowds, :func:`gathering_crowds`), ``topn`` ({(level, N): (signatures, counts, n_short)}),
    ``candidates`` (see :func:`_candidates`), ``bounds`` (x, y, t extremes) and figures.
    ``directory`` and ``plan.parts_dir``: local paths or URLs (the worker opens them).
    """
    t0, c0 = time.perf_counter(), time.process_time()
    traces = read_release_part(directory, part, manifest, sample=plan.sample)
    out = {"part": part, "traces": int(traces.n_traces), "pings": int(traces.n_pings),
           "with_pings": int(np.count_nonzero(traces.lengths)), "span": observed_span(traces),
           "bounds": traces_bounds(traces)}
    if plan.days:
        long = infer_prefixes(traces, days=plan.days, **plan.infer_params)
        if plan.parts_dir is not None and traces.n_traces:
            import pyarrow as pa

            # one row group per window: infer_prefixes gives n_traces rows per window
            write_parquet(pa.Table.from_pandas(long, preserve_index=False),
                          as_path(plan.parts_dir) / part, row_group_size=traces.n_traces)
        if plan.parts_dir is None:  # otherwise the driver reads the windows from the part's file
            out["inferred"] = {int(d): g[list(DEVICE_COLUMNS)].reset_index(drop=True)
                               for d, g in long.groupby("window_days", sort=True)}
        del long
    if plan.box is not None:
        out["box"] = _box_pings(traces, plan.box)
    if plan.gathering is not None:
        out["crowds"] = gathering_crowds(traces, *plan.gathering)
    if plan.topn_levels:
        world = load_world_cached(as_path(directory) / "world") if world is None else world
        out["topn"] = {}
        for lv in plan.topn_levels:
            top, n_places = top_locations(traces, world, lv, n_max=max(plan.topn_ns), by=plan.topn_by)
            for n in plan.topn_ns:
                out["topn"][(lv, n)] = signature_counts(top, n_places, n)
            forget_derived(traces, keep_zones=("block",))  # one level's ping zones at a time (and the blocks)
    if plan.n_candidates != 0:
        out["candidates"] = _candidates(traces, plan)
    del traces
    out["seconds"] = round(time.perf_counter() - t0, 3)
    out["cpu_s"] = round(time.process_time() - c0, 3)
    return out


def _box_pings(traces: Traces, box: tuple) -> pd.DataFrame:
    t0, t1, minx, miny, maxx, maxy = box
    t, x, y = traces.t_s, traces.x_m, traces.y_m
    rows = np.flatnonzero((t >= t0) & (t < t1) & (x >= minx) & (x <= maxx) & (y >= miny) & (y <= maxy))
    tr = np.searchsorted(traces.offsets, rows, side="right") - 1
    return pd.DataFrame({"pseudonym": traces.pseudonym[tr], "t_s": t[rows], "x_m": x[rows], "y_m": y[rows],
                         "accuracy_m": traces.accuracy_m[rows]})


def _candidates(traces: Traces, plan: MapPlan) -> dict:
    """The part's sample candidates: its ``n_candidates`` pseudonyms with the smallest
    sample uniforms, each with its pings, its unicity draws per resolution and its
    known-points observations per noise level (dict of arrays, one row per candidate)."""
    u = sample_uniforms(traces.pseudonym, plan.seed)
    rows = np.argsort(u, kind="stable")
    if plan.n_candidates is not None:
        rows = rows[:plan.n_candidates]
    c = {"u": u[rows], "pseudonym": traces.pseudonym[rows], "pings": traces.lengths[rows].astype(np.int64)}
    if plan.resolutions:
        for i, (n, cells) in enumerate(draw_trace_points(traces, rows, plan.resolutions, plan.p_max, plan.seed)):
            c[f"u{i}_n"], c[f"u{i}_cells"] = n, cells
    for i, sigma in enumerate(plan.sigmas):
        ox, oy, ot, m_eff = target_observations(traces, rows, m=plan.m_max, sigma_m=sigma, jitter_s=plan.jitter_s,
                                                seed=plan.seed)
        c[f"k{i}_ox"], c[f"k{i}_oy"], c[f"k{i}_ot"], c[f"k{i}_m"] = ox, oy, ot, m_eff
    return c


def _merge_candidates(a: dict | None, b: dict, k: int | None) -> dict:
    """The ``k`` smallest (uniform, pseudonym) candidates of ``a`` and ``b`` (all: None)."""
    if a is None:
        c = b
    else:
        c = {key: np.concatenate([a[key], b[key]]) for key in a}
    if not len(c["u"]):
        return c
    _, codes = np.unique(c["pseudonym"], return_inverse=True)
    order = np.lexsort((np.ravel(codes), c["u"]))
    if k is not None:
        order = order[:k]
    return {key: v[order] for key, v in c.items()}


# ============================================================================ pass 2
def count_part(directory, part: str, manifest: dict, plan: CountPlan) -> dict:
    """Pass 2 for one part: unicity match counts of the sampled traces per resolution and
    p (``unicity``: {(resolution index, p): int64 counts}) and known-points candidate
    counts and target hits per noise level (``known``: {index: (counts, hits)}), all in
    the whole release's key spaces (see the module docstring); and ``box``, the pings in
    ``plan.box`` (a fence picked from the map pass's crowds)."""
    t0, c0 = time.perf_counter(), time.process_time()
    traces = read_release_part(directory, part, manifest)
    out = {"part": part, "unicity": {}, "known": {}}
    for i, (v, h, origin, keys, n_points, ps) in enumerate(plan.unicity):
        index = build_query_index(traces, v, h, keys[:, :max(ps)], origin=origin)  # the sample's keys only
        for p in ps:
            out["unicity"][(i, p)] = count_containing(index, keys, n_points, p)
        del index
    if plan.known:
        hit_rows = object_index(traces.pseudonym).get_indexer(object_index(plan.known_targets))
        for i, (radius_m, origin, ox, oy, ot, m_eff) in enumerate(plan.known):
            out["known"][i] = match_observations(traces, ox, oy, ot, m_eff, hit_rows, radius_m=radius_m,
                                                 tol_s=plan.tol_s, origin=origin)
    if plan.box is not None:
        out["box"] = _box_pings(traces, plan.box)
    del traces
    out["seconds"] = round(time.perf_counter() - t0, 3)
    out["cpu_s"] = round(time.process_time() - c0, 3)
    return out


# ============================================================================ configuration
def dataset_attack_config(directory, base: dict, attack_config=None) -> dict:
    """What ``sim.pipeline.main.main_attack_config`` gives for the dataset in
    ``directory``, without loading it: ``base`` (e.g. ``MAIN_ATTACK_CONFIG``), the
    scenario's seed, a geofence picked as ``pick_gathering`` does (:data:`GATHERING`),
    re-linking at the rotation period, then ``attack_config`` on top.  Reads only the
    manifest (after the metadata checks of :func:`check_dataset`)."""
    man = check_dataset(directory, verify_hashes=False)
    scn = Scenario.from_dict(man["scenario"])
    cfg = dict(base)
    cfg["seed"] = scn.seed
    cfg.update(geofence_polygon=GATHERING, geofence_window_s=None)
    if scn.ids.rotation_days:
        cfg["relink_period_days"] = float(scn.ids.rotation_days)
    cfg.update(attack_config or {})
    return cfg


def _sample_size(name: str, value) -> int | None:
    return None if value is None else check_int(name, value, 1)


def _checked(config, backend, n_workers, inferred_by_day, infer_params):
    """Validate everything that can be validated before reading data."""
    if backend not in ("local", "dask"):
        raise ConfigError(f"backend must be 'local' or 'dask', got {backend!r}.")
    if isinstance(n_workers, bool) or not isinstance(n_workers, (int, np.integer)) or n_workers < 1:
        raise ConfigError(f"n_workers must be an integer >= 1, got {n_workers!r}; use e.g. 2 (one per core).")
    if isinstance(config, dict) and isinstance(config.get("geofence_polygon"), str):
        gathering = config["geofence_polygon"] == GATHERING
        if not gathering:
            raise ConfigError(f"geofence_polygon must be a shapely polygon (metres) or {GATHERING!r}, got "
                              f"{config['geofence_polygon']!r}.")
        if config.get("geofence_window_s") is not None:
            raise ConfigError(f"geofence_polygon={GATHERING!r} picks its own window; leave geofence_window_s "
                              "unset (None).")
        cfg = AttackConfig.from_any({**config, "geofence_polygon": None})
        gathering = gathering and "geofence" in cfg.attacks
    else:
        cfg = AttackConfig.from_any(config)
        gathering = False
    if inferred_by_day is not None and infer_params:
        raise ConfigError("infer_params apply only when attack_streaming infers; drop them or inferred_by_day.")
    params = InferenceParams.make(**(infer_params or {})).as_dict() if inferred_by_day is None else {}
    return cfg, gathering, params


def _settings(cfg: AttackConfig) -> dict:
    """The validated settings of the attacks (ConfigError naming a bad value), checked
    before any data is read: the global attacks' parameters, and the levels and
    re-linking settings the per-device attacks would check only at the end."""
    a = cfg.attacks
    st = {}
    check_levels(attack_levels(cfg), None)
    check_levels((cfg.ttid_level, cfg.geofence_level), None)
    if cfg.relink_period_days is not None:
        check_positive("relink_period_days", cfg.relink_period_days)
        if cfg.relink_method not in METHODS:
            raise ConfigError(f"relink_method must be one of {METHODS}, got {cfg.relink_method!r}.")
    if "unicity" in a:
        ps, vs, hs = check_unicity_args(cfg.unicity_p, cfg.unicity_v_m, cfg.unicity_h_h)
        for v in vs:
            for h in hs:
                check_resolution(v, h)
        st["unicity"] = dict(ps=ps, vs=vs, hs=hs, n=_sample_size("n_sample", cfg.unicity_n_sample))
    if "known_points" in a:
        ms, sigmas, jitter_s, tol_s = check_known_points_args(cfg.known_m, cfg.known_sigma_m, cfg.known_jitter_s, None)
        st["known"] = dict(ms=ms, sigmas=sigmas, jitter_s=jitter_s, tol_s=tol_s,
                           radii=[match_radius(s) for s in sigmas],
                           n=_sample_size("n_targets", cfg.known_n_targets))
    if "topn" in a:
        levels, ns = check_topn_args(attack_levels(cfg), cfg.topn_n, cfg.topn_by, None)
        st["topn"] = dict(levels=levels, ns=ns)
    return st


def _map_plan(cfg: AttackConfig, st: dict, *, days, params, parts_dir, box, gathering=None, sample=None) -> MapPlan:
    """What the map pass computes, from the validated settings ``st``."""
    sizes = [st[k]["n"] for k in ("unicity", "known") if k in st]
    k = 0 if not sizes else (None if any(s is None for s in sizes) else max(sizes))
    u, kp, tp = st.get("unicity"), st.get("known"), st.get("topn")
    return MapPlan(
        days=tuple(days), infer_params=params, parts_dir=parts_dir, n_candidates=k, seed=int(cfg.seed),
        resolutions=tuple((v, h) for v in u["vs"] for h in u["hs"]) if u else (), p_max=max(u["ps"]) if u else 0,
        sigmas=tuple(kp["sigmas"]) if kp else (), m_max=max(kp["ms"]) if kp else 0,
        jitter_s=kp["jitter_s"] if kp else 0.0, topn_levels=tuple(tp["levels"]) if tp else (),
        topn_ns=tuple(tp["ns"]) if tp else (), topn_by=cfg.topn_by, box=box, gathering=gathering, sample=sample)


# ============================================================================ driver
def attack_streaming(directory, out_dir=None, config=None, backend: str = "local", scheduler: str | None = None,
                     n_workers: int = 2, infer_params: dict | None = None, verify_hashes: bool | None = None, *,
                     inferred_by_day=None, concat_max_rows: int = CONCAT_MAX_ROWS, write: bool = True,
                     hold_per_device: bool = True, sample_pings=None) -> dict:
    """Run the attacks on a generated release part by part; the tables of
    :func:`sim.attacks.run_attacks`.

    Parameters
    ----------
    directory : a folder written by ``reidsim generate`` (checked with
        :func:`sim.release.dataset.check_dataset` first).
    out_dir : the folder that receives ``attacks/`` and the inferred tables (default the
        dataset folder; another folder must be new, empty or hold only
        :data:`OWN_ENTRIES`).
    config : as ``run_attacks`` (None, a dict or an ``AttackConfig``); a dict may set
        ``geofence_polygon`` to :data:`GATHERING` (window unset) to pick the fence out of
        core as ``pick_gathering`` does.  :func:`dataset_attack_config` builds what
        ``reidsim attack`` runs (the main job's settings).
    backend : ``"local"`` (the parts one after another in this process) or ``"dask"``
        (the same per-part functions on a loopback LocalCluster of ``n_workers``
        single-threaded workers, or on the scheduler at ``scheduler``; workers read parts
        by path or URL, so they must see a local folder at the same path).  ``directory``
        and ``out_dir`` may be URLs (:mod:`sim.core.storage`).
    infer_params : :class:`sim.infer.InferenceParams` fields of the inference.
    verify_hashes : as :func:`check_dataset` (default: hash releases up to 2 GiB).
    inferred_by_day : ``{days: inferred table}`` (or the long table of
        ``sim.infer.infer_prefixes``) already inferred from this release: the map phase
        then skips inference and no inferred table is written.
    concat_max_rows : write ``inferred_by_day.parquet`` and ``inferred.parquet`` only when
        the windows hold at most this many rows in all (0: never); otherwise stale ones
        are removed.
    write : False computes the tables without writing anything.
    hold_per_device : False (with ``write``) writes each per-device table
        (:data:`sim.attacks.run.PER_DEVICE_TABLES`) as soon as its attack has run and
        leaves it out of the returned ``tables``: the later attacks of the reduce do not
        hold it (at a million devices the four hold ~1 GB).  Read them from
        ``OUT/attacks/``.
    sample_pings : ``(pseudonyms, folder)``: the map pass also writes each part's rows of
        those pseudonyms to ``folder/<part>`` (an existing folder;
        ``sim.release.dataset.read_release_part``), so a device sample is read later
        without reading the parts again (``sim.release.dataset.load_sample``).

    Returns
    -------
    dict
        The ``attacks/stream_summary.json`` record (dataset_id, backend, n_workers, parts,
        pings, pseudonyms, largest_part_pings — the most pings any task held —, seconds,
        per-pass and per-part seconds, sample_candidates, inferred_written, geofence,
        driver_peak_rss_mb; on Dask also worker_peak_rss_mb, each worker's peak) plus ``tables`` ({name: DataFrame}, as ``run_attacks``
        returns), ``config`` (the ``AttackConfig`` run, the picked geofence filled in) and
        ``register_profile``.
    """
    t_start = time.perf_counter()
    cfg, gathering, params = _checked(config, backend, n_workers, inferred_by_day, infer_params)
    st = _settings(cfg)
    if inferred_by_day is not None:
        inferred_by_day = split_prefixes(inferred_by_day)
    if wants_geofence(cfg):
        check_fence(cfg.geofence_polygon, *cfg.geofence_window_s)
    d = as_path(directory)
    man = check_dataset(d, verify_hashes=verify_hashes)
    world = World.load(d / "world")
    out = claim_out_dir(d, out_dir, OWN_ENTRIES, "reidsim attack") if write else None
    if out is not None:
        clean_stale_staging(out)
    stage = new_staging_dir(out) if out is not None else None
    try:
        run = _Run(d, man, world, backend, scheduler, int(n_workers), stage,
                   spill=stage is not None and not hold_per_device, sample=sample_pings)
        rec, tables, cfg, inferred = run.attack(cfg, st, gathering, params, inferred_by_day)
        rec["register_profile"] = Scenario.from_dict(man["scenario"]).register.profile
        rec["inferred_written"] = False
        if out is not None:
            rec["inferred_written"] = _write(out, stage, rec, tables, cfg, world, inferred, man["dataset_id"],
                                             concat_max_rows, t_start)
        rec["seconds"] = round(time.perf_counter() - t_start, 3)
        return {**rec, "tables": tables, "config": cfg}
    finally:
        if stage is not None and stage.exists():
            rmtree(stage)


class _Run:
    """One streamed attack run: the dataset, the backend, and the passes."""

    def __init__(self, d: Path, man: dict, world, backend: str, scheduler, n_workers: int, stage,
                 spill: bool = False, sample=None):
        self.d, self.man, self.world, self.backend = d, man, world, backend
        self.sample = None if sample is None else (np.asarray(sample[0], dtype=object), str(sample[1]))
        self.scheduler, self.n_workers, self.stage, self.spill = scheduler, n_workers, stage, spill
        self.parts = [r["file"] for r in man["parts"]]
        self.base = dict(directory=str(d.resolve()), manifest=man)
        self.client = None
        self.rec = {"dataset_id": man["dataset_id"], "backend": backend,
                    "n_workers": n_workers if backend == "dask" else 1, "scheduler": scheduler,
                    "parts": len(self.parts), "passes": {}}

    def run(self, what: str, fn, tasks: list, on_result=None) -> list:
        """One pass: ``fn`` over every part's task, on the backend; its seconds recorded."""
        t = time.perf_counter()
        if self.client is not None and tasks:
            shared = {k: self.client.scatter(v, broadcast=True) for k, v in tasks[0].items()
                      if isinstance(v, (MapPlan, CountPlan))}
            tasks = [{**kw, **shared} for kw in tasks]
        got = run_parts(fn, tasks, self.backend, client=self.client, on_result=on_result)
        self.rec["passes"][what] = {"seconds": round(time.perf_counter() - t, 3)}
        log.info("%s pass: %d part(s) in %.1f s (%s)", what, len(tasks), time.perf_counter() - t, self.backend)
        return got

    def _write_now(self, name: str, table: pd.DataFrame) -> None:
        """A per-device table into the staging folder as soon as its attack has run."""
        write_table(table, self.stage / "attacks" / name, dataset_id=self.man["dataset_id"])

    def attack(self, cfg, st, gathering, params, ibd_given):
        from contextlib import nullcontext

        from sim.generate.engine import dask_client

        ctx = dask_client(self.scheduler, self.n_workers) if self.backend == "dask" else nullcontext()
        with ctx as client:
            self.client = client
            try:
                res = self._attack(cfg, st, gathering, params, ibd_given)
                if client is not None:  # each worker's peak (its whole life: one run's, on a LocalCluster)
                    self.rec["worker_peak_rss_mb"] = sorted(v for v in client.run(peak_rss_mb).values()
                                                            if v is not None)
                return res
            finally:
                self.client = None

    def _attack(self, cfg, st, gathering, params, ibd_given):
        man, parts = self.man, self.parts
        # -------------------------------------------------------------- the geofence's box
        box = cell = gwin = None
        if gathering:  # the map pass counts the crowds; the count pass collects the box's pings
            gwin = gathering_window(man["start_s"], man["utc_offset_s"], man["n_days"])
        elif wants_geofence(cfg):  # given: the map pass collects its box's pings
            t0, t1 = cfg.geofence_window_s
            box = (int(t0), int(t1)) + tuple(float(b) for b in cfg.geofence_polygon.bounds)
        # -------------------------------------------------------------- pass 1: map
        days = observation_days(int(man["n_days"])) if ibd_given is None else ()
        parts_dir = None
        if days and self.stage is not None:
            parts_dir = self.stage / "parts"
            parts_dir.mkdir()
        plan = _map_plan(cfg, st, days=days, params=params, parts_dir=str(parts_dir) if parts_dir else None,
                         box=box, gathering=None if gwin is None else (gwin[0], gwin[1], 2 * GATHERING_RADIUS_M),
                         sample=self.sample)
        merged = {"candidates": None}

        def on_map(i, r):
            c = r.pop("candidates", None)
            if c is not None:  # keep only the K smallest so far: bounded by K, not the release
                merged["candidates"] = _merge_candidates(merged["candidates"], c, plan.n_candidates)
            return r

        local = {"world": self.world} if self.backend == "local" else {}
        maps = self.run("map", attack_part, [dict(self.base, part=p, plan=plan, **local) for p in parts], on_map)
        # -------------------------------------------------------------- reduce
        t_red = time.perf_counter()
        cand = merged["candidates"]
        spans = [r.pop("span") for r in maps]
        span = pd.concat(spans, ignore_index=True) if spans else _empty_span()
        order = np.argsort(span["pseudonym"].to_numpy(dtype=object), kind="stable")
        span = span.iloc[order].reset_index(drop=True)
        dup = span["pseudonym"].duplicated()
        if dup.any():
            raise InputError(
                f"{int(dup.sum())} pseudonym(s) of {str(self.d)!r} have pings in more than one part file, so "
                "the parts cannot be attacked one by one; write the release with each pseudonym in one part "
                "(as `reidsim generate` does) or use sim.attacks.run_attacks(load_release(DIR), ...).")
        n_panel = sum(r["with_pings"] for r in maps)
        bounds = _merge_bounds([r["bounds"] for r in maps])
        cplan = _count_plan(st, cand, bounds, man, plan)
        if gathering:  # the busiest cell of the whole release (a pseudonym lies in one part)
            cell = _busiest_cell([r.pop("crowds") for r in maps])
            box = gwin + _gathering_box(cell, 2 * GATHERING_RADIUS_M, GATHERING_RADIUS_M)
            cplan = dataclasses.replace(cplan, box=box)
        reduce_s = time.perf_counter() - t_red
        # -------------------------------------------------------------- pass 2: count
        counts = self.run("count", count_part, [dict(self.base, part=p, plan=cplan) for p in parts]) \
            if (cplan.unicity or cplan.known or cplan.box is not None) else []
        t_red = time.perf_counter()
        release_free_memory()  # the passes' freed part buffers (local backend) go back before the reduce
        tables = _global_tables(cfg, st, cand, counts, maps, n_panel, bounds, cplan, man)
        # -------------------------------------------------------------- the per-device attacks
        if ibd_given is not None:
            ibd = ibd_given
        elif parts_dir is not None:  # one window in memory at a time, read from the parts' files
            ibd = _Windows(days, parts_dir, [r["part"] for r in maps if r["traces"]], order, span)
        else:
            ibd = _inferred_by_day(maps, order, span)
        seen = None
        if box is not None:
            boxp = pd.concat([r.pop("box") for r in (counts if gathering else maps)], ignore_index=True)
            if gathering:
                poly = _gathering_polygon(boxp, cell, 2 * GATHERING_RADIUS_M, GATHERING_RADIUS_M)
                cfg = dataclasses.replace(cfg, geofence_polygon=poly, geofence_window_s=gwin)
            seen = _seen(boxp, cfg, man)
            self.rec["geofence"] = {"polygon_wkt": shapely.to_wkt(cfg.geofence_polygon),
                                    "t_start_s": int(cfg.geofence_window_s[0]),
                                    "t_end_s": int(cfg.geofence_window_s[1]), "box_pings": len(boxp),
                                    "picked": bool(gathering)}
        for r in maps:
            r.pop("topn", None)
        register, pseudonyms = _truth(self.d)
        # the persons table is read in the call, not named here: run_device_attacks holds
        # the only reference and drops it once the linkage and the geofence have scored
        tables.update(run_device_attacks(span, ibd, register, self.world, pseudonyms, _truth_persons(self.d), cfg,
                                         seen=seen, sink=self._write_now if self.spill else None))
        self.rec["passes"]["reduce"] = {"seconds": round(reduce_s + time.perf_counter() - t_red, 3)}
        cmap = {c["part"]: c for c in counts}
        self.rec.update(
            pings=sum(r["pings"] for r in maps), pseudonyms=len(span),
            largest_part_pings=max((r["pings"] for r in maps), default=0),
            sample_candidates=plan.n_candidates, inferred=bool(days),
            per_part=[{"part": r["part"], "pseudonyms": r["traces"], "pings": r["pings"], "map_seconds": r["seconds"],
                       "map_cpu_s": r["cpu_s"], "count_seconds": cmap.get(r["part"], {}).get("seconds"),
                       "count_cpu_s": cmap.get(r["part"], {}).get("cpu_s")} for r in maps])
        inferred = ({"parts_dir": parts_dir, "days": days, "order": order, "span": span,
                     "part_names": [r["part"] for r in maps if r["traces"]]} if days else None)
        return self.rec, ordered_tables(tables), cfg, inferred


def _empty_span() -> pd.DataFrame:
    return pd.DataFrame({"pseudonym": pd.Series(dtype=object), "first_day": pd.Series(dtype=np.int64),
                         "last_day": pd.Series(dtype=np.int64)})


def _merge_bounds(bounds: list):
    """The whole release's (x_min, x_max, y_min, y_max, t_min, t_max) from the parts'."""
    b = [x for x in bounds if x is not None]
    if not b:
        return None
    return (min(x[0] for x in b), max(x[1] for x in b), min(x[2] for x in b), max(x[3] for x in b),
            min(x[4] for x in b), max(x[5] for x in b))


def _count_plan(st: dict, cand: dict | None, bounds, man, plan: MapPlan) -> CountPlan:
    """The whole release's key spaces (from its extremes) and the targets' keys and
    observations.  Raises the same ConfigError/InputError as the in-memory attacks when
    a key space does not fit int64."""
    uni, known, tol_s, targets = (), (), 0, None
    if bounds is None or cand is None:
        return CountPlan()
    if "unicity" in st:
        n = st["unicity"]["n"]
        take = slice(None) if n is None else slice(0, n)
        items = []
        for i, (v, h) in enumerate(plan.resolutions):
            origin = resolution_origin(bounds, man["start_s"], v, h)
            items.append((v, h, origin, cell_keys(cand[f"u{i}_cells"][take], origin), cand[f"u{i}_n"][take],
                          tuple(st["unicity"]["ps"])))
        uni = tuple(items)
    if "known" in st:
        kp = st["known"]
        tol_s = kp["tol_s"]
        take = slice(None) if kp["n"] is None else slice(0, kp["n"])
        targets = cand["pseudonym"][take]
        known = tuple((r_m, grid_origin(bounds, r_m, tol_s), cand[f"k{i}_ox"][take], cand[f"k{i}_oy"][take],
                       cand[f"k{i}_ot"][take], cand[f"k{i}_m"][take]) for i, r_m in enumerate(kp["radii"]))
    return CountPlan(unicity=uni, known=known, tol_s=tol_s, known_targets=targets)


def _summed(results: list, pick):
    """The sum over parts (in part order) of ``pick(result)`` arrays."""
    tot = None
    for r in results:
        v = pick(r)
        tot = v.astype(np.int64) if tot is None else tot + v
    return tot


def _global_tables(cfg, st, cand, counts, maps, n_panel, bounds, cplan: CountPlan, man) -> dict:
    """unicity (+ power law), topn and known_points from the reduced counts."""
    out = {}
    if "unicity" in st:
        u = st["unicity"]
        rows, i = [], 0
        for v in u["vs"]:
            for h in u["hs"]:
                for p in u["ps"]:
                    c = (np.minimum(_summed(counts, lambda r, k=(i, p): r["unicity"][k]), 2) if cplan.unicity
                         else np.zeros(0, dtype=np.int64))
                    rows.append(unicity_row(c, p, v, h, n_panel, cfg.ci, cfg.seed))
                i += 1
        table = pd.DataFrame(rows, columns=UNICITY_COLUMNS)
        out["unicity"], out["unicity_power_law"] = table, fit_power_law(table)
    if "topn" in st:
        if bounds is not None:
            s0 = int(man["start_s"])
            check_day_span((bounds[5] - s0) // DAY_S - (bounds[4] - s0) // DAY_S + 1)
        rows = []
        for li, lv in enumerate(st["topn"]["levels"]):
            for n in st["topn"]["ns"]:
                got = [r["topn"][(lv, n)] for r in maps]
                _, cnt = merge_signature_counts([(sg, c) for sg, c, _ in got])
                rows += topn_rows(np.repeat(cnt, cnt), level=lv, li=li, n=n, by=cfg.topn_by,
                                  n_short=sum(ns for _, _, ns in got), n_panel=n_panel, ci=cfg.ci, seed=cfg.seed)
        out["topn"] = pd.DataFrame(rows, columns=TOPN_COLUMNS)
    if "known" in st:
        kp = st["known"]
        m_max = max(kp["ms"])
        n_all = 0 if cand is None else len(cand["u"])
        n_targets = n_all if kp["n"] is None else min(kp["n"], n_all)
        lengths = cand["pings"][:n_targets] if cand is not None else np.zeros(0, dtype=np.int64)
        ok = lengths >= 1
        rows = []
        for si, sigma in enumerate(kp["sigmas"]):
            if cplan.known:
                c = _summed(counts, lambda r, k=si: r["known"][k][0])
                hits = _summed(counts, lambda r, k=si: r["known"][k][1]) > 0
            else:
                c = np.zeros((n_targets, m_max), dtype=np.int64)
                hits = np.zeros((n_targets, m_max), dtype=bool)
            r, _ = known_points_rows(lengths[ok], c[ok], hits[ok], ms=kp["ms"], si=si, sigma_m=sigma,
                                     jitter_s=kp["jitter_s"], radius_m=kp["radii"][si], tol_s=kp["tol_s"],
                                     n_targets=n_targets, seed=cfg.seed, ci=cfg.ci)
            rows += r
        out["known_points"] = pd.DataFrame(rows, columns=KNOWN_POINTS_COLUMNS)
    return out


class _Windows(dict):
    """``{days: inferred table}`` (the :data:`DEVICE_COLUMNS`, rows in the whole
    release's pseudonym order) whose tables are read from the parts' inferred files when
    asked for, so the driver holds one window (the last one read) instead of all of them.
    A dict (the per-device attacks accept dicts) whose values live on disk."""

    def __init__(self, days, folder, part_names: list, order: np.ndarray, span: pd.DataFrame):
        super().__init__({int(d): None for d in days})
        self._folder, self._names, self._order = as_path(folder), list(part_names), order
        self._want = span["pseudonym"].to_numpy(dtype=object)
        self._last = (None, None)

    def __getitem__(self, d):
        if d not in self.keys():
            raise KeyError(d)
        if self._last[0] != d:
            self._last = (None, None)  # drop the previous window before reading the next,
            release_free_memory(collect=False)  # and hand its memory back (a window is ~1 M rows)
            self._last = (d, self._read(int(d)))
        return self._last[1]

    def _read(self, d: int) -> pd.DataFrame:
        if not self._names:
            return pd.DataFrame({c: pd.Series(dtype=object if c == "pseudonym" else np.float64)
                                 for c in DEVICE_COLUMNS})
        t = _read_window(self._folder, self._names, self._order, d, list(DEVICE_COLUMNS)).to_pandas()
        # object dtype, kept: a str column makes a million new Python strings at every
        # to_numpy(dtype=object) / Index of the attacks that read the window
        t["pseudonym"] = pd.Series(t["pseudonym"].to_numpy(dtype=object), dtype=object, index=t.index)
        return _in_trace_order(t, self._want)

    def get(self, d, default=None):
        return self[d] if d in self.keys() else default

    def values(self):
        return (self[d] for d in self.keys())

    def items(self):
        return ((d, self[d]) for d in self.keys())


def _in_trace_order(t: pd.DataFrame, want: np.ndarray) -> pd.DataFrame:
    """A window's table (already taken in pseudonym order), sorted by pseudonym when it
    is not one row per trace of ``want``."""
    if not np.array_equal(t["pseudonym"].to_numpy(dtype=object), want):
        t = t.sort_values("pseudonym", kind="stable").reset_index(drop=True)
    return t


def _read_window(folder, part_names: list, order: np.ndarray, d: int, columns=None):
    """Window ``d`` of every part's inferred file (its own row group), in part order,
    then taken in the whole release's pseudonym order: a pyarrow Table."""
    import pyarrow as pa

    return pa.concat_tables([read_table(folder / n, columns=columns, filters=[("window_days", "=", int(d))])
                             for n in part_names]).take(pa.array(order))


def _inferred_by_day(maps: list, order: np.ndarray, span: pd.DataFrame) -> dict:
    """``{days: table}`` in the whole release's trace (pseudonym) order, one window at a
    time (each part's tables of a window are dropped once concatenated)."""
    days = sorted({d for r in maps for d in r.get("inferred", {})})
    want = span["pseudonym"].to_numpy(dtype=object)
    out = {}
    for d in days:
        t = pd.concat([r["inferred"].pop(d) for r in maps], ignore_index=True)
        out[int(d)] = _in_trace_order(t.iloc[order].reset_index(drop=True), want)
    return out


def _seen(box_pings: pd.DataFrame, cfg, man) -> pd.DataFrame:
    """``seen_in_fence`` of the box's pings (a superset of the pings in the fence and
    window, grouped by pseudonym in time order, as in the release)."""
    ps = box_pings["pseudonym"].to_numpy(dtype=object)
    t = box_pings["t_s"].to_numpy(dtype=np.int64)
    uniq, codes = np.unique(ps, return_inverse=True) if len(ps) else (np.zeros(0, dtype=object), np.zeros(0, int))
    codes = np.ravel(codes)
    o = np.lexsort((t, codes))
    offsets = np.zeros(len(uniq) + 1, dtype=np.int64)
    np.cumsum(np.bincount(codes, minlength=len(uniq)), out=offsets[1:])
    tr = Traces(pseudonym=np.asarray(uniq, dtype=object), offsets=offsets, t_s=t[o],
                x_m=box_pings["x_m"].to_numpy(dtype=np.float64)[o], y_m=box_pings["y_m"].to_numpy(dtype=np.float64)[o],
                accuracy_m=box_pings["accuracy_m"].to_numpy(dtype=np.float32)[o], crs=man["crs"],
                utc_offset_s=int(man["utc_offset_s"]), start_s=int(man["start_s"]), n_days=int(man["n_days"]))
    t0, t1 = cfg.geofence_window_s
    return seen_in_fence(tr, cfg.geofence_polygon, t0, t1)


def _truth(d):
    """The register (only :data:`_READ_REGISTER`) and the truth pseudonyms (without the
    advertising ID).  ``d``: a local path or a URL."""
    d = as_path(d)
    register = read_frame(d / "register.parquet", columns=[c for c in read_schema(d / "register.parquet").names
                                                           if c in _READ_REGISTER], low_memory=True)
    pseudonyms = read_frame(d / "truth" / "pseudonyms.parquet",
                            columns=[c for c in read_schema(d / "truth" / "pseudonyms.parquet").names if c != "maid"])
    return register, pseudonyms


def _truth_persons(d):
    """The truth persons' id and zone columns (all the per-device attacks read of them)."""
    d = as_path(d)
    names = read_schema(d / "truth" / "persons.parquet").names
    zone_cols = {register_column(side, lv) for side in ("home", "work") for lv in LEVELS}
    return read_frame(d / "truth" / "persons.parquet",
                      columns=[c for c in names if c == "person_id" or c in zone_cols], low_memory=True)


def _write(out: Path, stage: Path, rec: dict, tables: dict, cfg, world, inferred, did: str, concat_max_rows: int,
           t_start: float) -> bool:
    """Write every output into ``stage``, then move each file into ``out`` atomically.
    Returns whether the inferred tables were written."""
    write_attack_outputs(stage, tables, summary(tables), dataset_id=did)
    if wants_geofence(cfg):  # as sim.pipeline.main.attack_step
        write_json({"polygon_wkt": shapely.to_wkt(cfg.geofence_polygon), "t_start_s": cfg.geofence_window_s[0],
                    "t_end_s": cfg.geofence_window_s[1], "crs": world.crs},
                   stage / "attacks" / "geofence_meta.json")
    names = ("inferred_by_day", "inferred")
    written = False
    if inferred is not None:
        rows = len(inferred["span"]) * len(inferred["days"])
        if 0 < rows <= int(concat_max_rows):
            _write_inferred(stage, inferred, did)
            written = True
    rec["inferred_written"] = written
    rec["seconds"] = round(time.perf_counter() - t_start, 3)
    rec["driver_peak_rss_mb"] = peak_rss_mb()
    write_json(rec, stage / "attacks" / "stream_summary.json")
    (out / "attacks").mkdir(exist_ok=True)
    staged = sorted((stage / "attacks").iterdir())
    with_csv = {f.stem for f in staged if f.suffix == ".csv"}
    for f in staged:
        replace(f, out / "attacks" / f.name)
        if f.suffix == ".parquet" and f.stem not in with_csv:
            drop_stale_csv(out / "attacks" / f.stem)  # this table is above CSV_MAX_ROWS now
    for name in names:
        for ext in (".parquet", ".csv"):
            src, dst = stage / f"{name}{ext}", out / f"{name}{ext}"
            if src.exists():
                replace(src, dst)
            elif inferred is not None and dst.exists():  # stale: from another run of this folder
                dst.unlink()
    return written


def _write_inferred(stage: Path, inferred: dict, did: str) -> None:
    """inferred_by_day (every window) and inferred (the largest), rows of each window in
    the whole release's pseudonym order, read back one part's window at a time."""
    folder, names, order = as_path(inferred["parts_dir"]), inferred["part_names"], inferred["order"]

    def window(d):
        return _read_window(folder, names, order, d)

    days, n = inferred["days"], len(inferred["span"])
    write_inferred_concat((window(d) for d in days), stage / "inferred_by_day", did, csv=wants_csv(n * len(days)))
    write_inferred_concat((window(d) for d in days[-1:]), stage / "inferred", did, csv=wants_csv(n))
