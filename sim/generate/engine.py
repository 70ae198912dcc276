"""Generate the broker's release: world → population → pings, streamed in blocks.

:func:`generate_block` runs the numba kernels for a contiguous range of global device
indices and returns that block's pings (sorted by pseudonym, then time) plus its
pseudonym history; :func:`generate` drives all blocks (in-process or on Dask), writes
each block's Parquet part while the next block is computed, and writes truth, register,
world and manifest.  Output content depends only on the scenario (seed included), never
on ``block_devices``, the thread count or the backend.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import platform
import time
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from sim import __version__
from sim.generate import _kernels as K
from sim.core.config import Scenario
from sim.core.errors import ConfigError
from sim.core.files import (
    DERIVED_ENTRIES,
    atomic_path,
    claim_output_dir,
    commit_staged,
    file_sha256,
    new_staging_dir,
)
from sim.core.lookup import rows_by_id
from sim.core.storage import as_path, parquet_file, rmtree
from sim.population import SCHEDULES, building_gps_bias, choose_devices, make_persons, make_register
from sim.generate.pseudonyms import maid_bytes, pseudonyms_of
from sim.world.build import build_world
from sim.world.model import World, load_world_cached

log = logging.getLogger(__name__)

# Relative ping intensity per local hour (phones ping less while people sleep, more at
# commute and evening peaks).  Calibrated by eye to published diurnal app-usage curves.
HOURLY_WEIGHTS = np.array([
    0.25, 0.18, 0.15, 0.15, 0.18, 0.30, 0.60, 0.90, 1.00, 1.00, 1.00, 1.00,
    1.10, 1.00, 1.00, 1.00, 1.00, 1.10, 1.20, 1.30, 1.30, 1.20, 0.90, 0.50,
])

PINGS_SCHEMA = pa.schema([
    ("pseudonym", pa.dictionary(pa.int32(), pa.string())),
    ("t_s", pa.int64()),
    ("lat_deg", pa.float64()),
    ("lon_deg", pa.float64()),
    ("accuracy_m", pa.float32()),
])

# EPR (Song et al. 2010) and jump-length constants
EPR_RHO, EPR_GAMMA = 0.6, 0.21
JUMP_R0_M, JUMP_ALPHA = 300.0, 0.55
WEEKEND_RATE_FACTOR = 0.9


def hour_cdf() -> np.ndarray:
    w = HOURLY_WEIGHTS / HOURLY_WEIGHTS.sum()
    c = np.cumsum(w)
    c[-1] = 1.0
    return c


def kernel_params(scn: Scenario, world: World) -> np.ndarray:
    g = scn.pings
    p = np.zeros(K.N_PARAMS)
    p[K.P_MEDIAN_RATE] = g.median_pings_per_day
    p[K.P_RATE_SIGMA] = g.rate_sigma
    p[K.P_MAX_RATE] = g.max_pings_per_day
    p[K.P_SILENT] = g.silent_day_prob
    p[K.P_SESSION] = g.pings_per_session
    p[K.P_GAP] = g.session_gap_s
    p[K.P_GPS_MED] = g.gps_median_accuracy_m
    p[K.P_COARSE_SHARE] = g.coarse_fix_share
    p[K.P_COARSE_MED] = g.coarse_median_accuracy_m
    p[K.P_SPEED] = g.travel_speed_kmh
    p[K.P_OVERHEAD] = g.trip_overhead_min
    p[K.P_RADIUS] = _radius_m(world)
    p[K.P_RHO] = EPR_RHO
    p[K.P_GAMMA] = EPR_GAMMA
    p[K.P_JUMP_R0] = JUMP_R0_M
    p[K.P_JUMP_ALPHA] = JUMP_ALPHA
    p[K.P_WEEKEND_RATE] = WEEKEND_RATE_FACTOR
    cx, cy = world.meta.get("centre_xy", (0.0, 0.0))
    p[K.P_CX] = cx
    p[K.P_CY] = cy
    return p


def _radius_m(world: World) -> float:
    """Radius (m) of the disk around the world's centre that exploration stays inside."""
    if "radius_m" in world.meta:
        return float(world.meta["radius_m"])
    cx, cy = world.meta.get("centre_xy", (0.0, 0.0))
    b = world.buildings
    return float(np.hypot(b.x_m - cx, b.y_m - cy).max())


@dataclass
class DeviceInputs:
    """Per-device kernel inputs (global device order)."""

    sched: np.ndarray
    hx: np.ndarray
    hy: np.ndarray
    wx: np.ndarray
    wy: np.ndarray

    @classmethod
    def from_tables(cls, persons: pd.DataFrame, devices: pd.DataFrame,
                    building_bias: np.ndarray | None = None) -> "DeviceInputs":
        """Kernel inputs of the devices' owners.

        ``building_bias``: (n_buildings, 2) metres added to the home and work position
        of every person by building (:func:`sim.population.building_gps_bias`: indoor
        fixes are biased per building); None = the address points themselves.  The
        truth tables keep the address points.
        """
        p = rows_by_id(persons, "person_id", devices["person_id"].to_numpy(),
                       ["schedule", "home_x_m", "home_y_m", "work_x_m", "work_y_m"]
                       + (["home_building_id", "work_building_id"] if building_bias is not None else []),
                       what="persons table")
        sched = pd.Categorical(p["schedule"], categories=list(SCHEDULES)).codes.astype(np.int64)
        hx, hy = p["home_x_m"].to_numpy(np.float64), p["home_y_m"].to_numpy(np.float64)
        wx, wy = p["work_x_m"].to_numpy(np.float64), p["work_y_m"].to_numpy(np.float64)
        if building_bias is not None:
            hb = p["home_building_id"].to_numpy(np.int64)
            wb = p["work_building_id"].to_numpy(np.int64)
            hx, hy = hx + building_bias[hb, 0], hy + building_bias[hb, 1]
            wok = wb >= 0  # no work: NaN stays NaN
            wx = np.where(wok, wx + building_bias[np.maximum(wb, 0), 0], wx)
            wy = np.where(wok, wy + building_bias[np.maximum(wb, 0), 1], wy)
        return cls(sched=sched, hx=hx, hy=hy, wx=wx, wy=wy)

    def slice(self, a, b) -> "DeviceInputs":
        return DeviceInputs(*(np.ascontiguousarray(getattr(self, f)[a:b]) for f in ("sched", "hx", "hy", "wx", "wy")))


# ---------------------------------------------------------------- one block
@dataclass
class Block:
    """One block's output: pings sorted by (pseudonym, t_s) and its pseudonym history."""

    pings: pa.Table
    history: pd.DataFrame  # pseudonym, device_idx, epoch, maid, first_day, last_day, n_pings
    device_pings: np.ndarray  # pings per device of the block


class BlockBuffers:
    """Arrays that :func:`generate` reuses from block to block.

    A block's arrays are tens of MB, and memory touched for the first time costs a page
    fault and a zeroed page per 4 kB, more than the kernels' own work on it.  The kernel
    outputs are reused at every block; the published columns alternate between two
    sets, because a block's table is still being written while the next block is made.
    So a pings table made with these buffers stays valid until the block after next is
    made with them.
    """

    def __init__(self):
        self._arrays: dict = {}
        self.turn = 0

    def get(self, name: str, n: int, dtype) -> np.ndarray:
        """``n`` uninitialised elements of the buffer ``name`` (grown by 25 % when short)."""
        a = self._arrays.get(name)
        if a is None or len(a) < n or a.dtype != np.dtype(dtype):
            a = np.empty(n + n // 4, dtype=dtype)
            self._arrays[name] = a
        return a[:n]

    def next_turn(self) -> int:
        """Switch to the other set of published columns; returns its number (0 or 1)."""
        self.turn ^= 1
        return self.turn


def _empty(buffers: BlockBuffers | None, name: str, n: int, dtype) -> np.ndarray:
    return np.empty(n, dtype=dtype) if buffers is None else buffers.get(name, n, dtype)


def simulate_block(scn: Scenario, inputs: DeviceInputs, g0: int, g1: int, params: np.ndarray,
                   buffers: BlockBuffers | None = None):
    """Run the kernels for devices g0..g1-1.  Returns (offsets, t_s, x_m, y_m, accuracy_m)
    with rows sorted by (device, time) and t_s in Unix seconds UTC.

    With ``buffers`` the four ping arrays are views of reused buffers, overwritten by
    the next call."""
    n_dev = g1 - g0
    wd0 = int(_dt.date.fromisoformat(scn.pings.start_date).weekday())
    cdf = hour_cdf()
    sub = inputs.slice(g0, g1)
    counts = K.count_pings(scn.seed, g0, n_dev, scn.pings.days, wd0, params)
    offsets = np.zeros(n_dev + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    n = int(offsets[-1])
    t = _empty(buffers, "t", n, np.int64)
    x = _empty(buffers, "x", n, np.float64)
    y = _empty(buffers, "y", n, np.float64)
    acc = _empty(buffers, "acc", n, np.float32)
    written = K.fill_pings(scn.seed, g0, offsets, scn.pings.days, wd0, sub.sched, sub.hx, sub.hy,
                           sub.wx, sub.wy, params, cdf, t, x, y, acc)
    if not np.array_equal(written, counts):  # pragma: no cover - kernel invariant
        raise RuntimeError("ping kernel wrote a different number of pings than counted")
    t += scn.start_s
    return offsets, t, x, y, acc


def generate_block(scn: Scenario, world: World, inputs: DeviceInputs, g0: int, g1: int,
                   params: np.ndarray | None = None, buffers: BlockBuffers | None = None) -> Block:
    """Pings of devices g0..g1-1 as the broker publishes them (sorted by pseudonym, time).

    ``buffers`` (:class:`BlockBuffers`): reuse arrays across calls; the returned table then
    stays valid until the call after next with the same buffers."""
    params = kernel_params(scn, world) if params is None else params
    offsets, t, x, y, acc = simulate_block(scn, inputs, g0, g1, params, buffers)
    n_dev = g1 - g0
    days = scn.pings.days
    ep = K.epochs_by_day(scn.seed, g0, n_dev, days, scn.ids.rotation_days, scn.ids.daily_reset_prob)
    # (device, epoch) pairs with their pseudonyms
    n_ep = ep[:, -1].astype(np.int64) + 1
    pair_off = np.zeros(n_dev + 1, dtype=np.int64)
    np.cumsum(n_ep, out=pair_off[1:])
    pair_dev = np.repeat(np.arange(n_dev), n_ep)
    pair_epoch = np.arange(int(pair_off[-1])) - pair_off[pair_dev]
    maid_ascii = maid_bytes(scn.seed, g0 + pair_dev, pair_epoch)
    pseud = np.array(pseudonyms_of(maid_ascii, scn.ids.salt), dtype=object)
    # day span of each pair
    d_idx = np.arange(days)
    first_day = np.empty(len(pair_dev), dtype=np.int64)
    last_day = np.empty(len(pair_dev), dtype=np.int64)
    flat = ep + pair_off[:-1, None]  # pair id of every device-day
    first_day[:] = days
    last_day[:] = -1
    np.minimum.at(first_day, flat.ravel(), np.tile(d_idx, n_dev))
    np.maximum.at(last_day, flat.ravel(), np.tile(d_idx, n_dev))
    pair_n = K.pair_counts(offsets, t, scn.start_s, ep, pair_off)
    # sort pairs by pseudonym; pings of a pair are contiguous and time-sorted
    rank_order = np.argsort(pseud, kind="stable")
    pair_start = np.zeros(len(pair_dev) + 1, dtype=np.int64)
    np.cumsum(pair_n, out=pair_start[1:])
    keep_pairs = rank_order[pair_n[rank_order] > 0]
    dst = np.zeros(len(keep_pairs) + 1, dtype=np.int64)
    np.cumsum(pair_n[keep_pairs], out=dst[1:])
    n = int(dst[-1])
    turn = "" if buffers is None else f"_{buffers.next_turn()}"
    t_o, x_o = _empty(buffers, "t_s" + turn, n, np.int64), _empty(buffers, "lat" + turn, n, np.float64)
    y_o, acc_o = _empty(buffers, "lon" + turn, n, np.float64), _empty(buffers, "acc_m" + turn, n, np.float32)
    codes = _empty(buffers, "code" + turn, n, np.int32)
    K.gather_runs(pair_start[keep_pairs], dst, t, x, y, acc, t_o, x_o, y_o, acc_o, codes)
    del t, x, y, acc
    lat, lon = to_latlon_inplace(world, x_o, y_o)
    table = pings_table(codes, pseud[keep_pairs].tolist(), t_o, lat, lon, acc_o)
    hist = pd.DataFrame({
        "pseudonym": pseud, "device_idx": (g0 + pair_dev).astype(np.int64),
        "epoch": pair_epoch.astype(np.int64), "maid": maid_ascii.astype("U36").tolist(),
        "first_day": first_day, "last_day": last_day, "n_pings": pair_n.astype(np.int64),
    })
    return Block(pings=table, history=hist, device_pings=np.diff(offsets))


def pings_table(codes, names, t_s, lat_deg, lon_deg, accuracy_m) -> pa.Table:
    """A pings table of :data:`PINGS_SCHEMA`: row i belongs to pseudonym ``names[codes[i]]``
    (int32 codes into the list of names), at ``t_s`` (int64 Unix seconds), ``lat_deg``,
    ``lon_deg`` (float64 WGS84 degrees) and ``accuracy_m`` (float32 metres)."""
    dict_arr = pa.DictionaryArray.from_arrays(pa.array(codes, type=pa.int32()), pa.array(names, type=pa.string()))
    return pa.Table.from_arrays([dict_arr, pa.array(t_s), pa.array(lat_deg), pa.array(lon_deg), pa.array(accuracy_m)],
                                schema=PINGS_SCHEMA)


#: rows projected at a time by :func:`to_latlon_inplace` (its temporaries stay in cache)
PROJECT_CHUNK = 1 << 16


def to_latlon_inplace(world: World, x_m: np.ndarray, y_m: np.ndarray):
    """``world.to_latlon(x_m, y_m)`` written over the inputs: returns (lat_deg, lon_deg)
    as the arrays ``x_m`` and ``y_m`` now hold them.

    The projection is element by element, so projecting :data:`PROJECT_CHUNK` rows at a
    time gives the same values, without allocating its temporaries for every ping."""
    for a in range(0, len(x_m), PROJECT_CHUNK):
        b = a + PROJECT_CHUNK
        lat, lon = world.to_latlon(x_m[a:b], y_m[a:b])
        x_m[a:b] = lat
        y_m[a:b] = lon
    return x_m, y_m


def write_pings_part(table: pa.Table, path) -> dict:
    """Write one part file atomically (zstd; dictionary-encoded pseudonyms) to ``path``
    (local or URL: :func:`sim.core.files.atomic_path`).  Returns its
    :func:`part_record`, taken from the written bytes before they move into place."""
    path = as_path(path)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", use_byte_stream_split=["lat_deg", "lon_deg", "accuracy_m"],
                       row_group_size=1 << 20)
        rec = part_record(tmp, name=path.name)
    return rec


def _block_task(scn_dict, world_dir, inputs, g0, g1, part_path):
    """Dask task: generate one block and write its part (the world is read once per worker).

    ``inputs`` holds only this block's devices (rows g0..g1-1); ``world_dir`` and
    ``part_path`` are local paths or URLs (str), which the worker opens itself.  Returns
    the block's pseudonym history, pings per device and the part's record."""
    scn = Scenario.from_dict(scn_dict)
    world = load_world_cached(world_dir)
    blk = generate_block(scn, world, _Offset(inputs, g0), g0, g1)
    rec = write_pings_part(blk.pings, part_path)
    return blk.history, blk.device_pings, rec


class _Offset:
    """A block's DeviceInputs addressed by global device index (slice(g0, g1) works)."""

    def __init__(self, inputs, g0):
        self.inputs, self.g0 = inputs, g0

    def slice(self, a, b):
        return self.inputs.slice(a - self.g0, b - self.g0)


# ---------------------------------------------------------------- driver
@dataclass
class Synthesis:
    """World, population and panel of a scenario (everything before the pings).

    ``register`` is a ``concurrent.futures.Future`` of the table when :func:`synthesize`
    built it in the background."""

    scenario: Scenario
    world: World
    persons: pd.DataFrame
    devices: pd.DataFrame
    register: pd.DataFrame | Future
    inputs: DeviceInputs


def synthesize(scn: Scenario, *, background: Executor | None = None,
               on_world: Callable[[World], None] | None = None,
               on_persons: Callable[[pd.DataFrame], None] | None = None) -> Synthesis:
    """Build world, persons, panel devices and the register for a scenario.

    background : an executor to build the register on (the pings do not need it);
        ``register`` is then a Future of the table.
    on_world, on_persons : called with the world and the persons table as soon as each
        exists (:func:`generate` starts writing them while the rest is built).
    """
    scn.validate()
    world = build_world(scn.world, scn.seed, residents=scn.residents)
    if on_world is not None:
        on_world(world)
    persons = make_persons(world, scn.residents, scn.population, scn.seed)
    if on_persons is not None:
        on_persons(persons)
    if background is None:
        register = make_register(persons, world, scn.register, scn.seed)
    else:
        register = background.submit(make_register, persons, world, scn.register, scn.seed)
    devices = choose_devices(persons, scn.devices, scn.seed)
    return Synthesis(scn, world, persons, devices, register, panel_inputs(scn, world, persons, devices))


def panel_inputs(scn: Scenario, world: World, persons: pd.DataFrame, devices: pd.DataFrame) -> DeviceInputs:
    """Kernel inputs of the panel's devices, home and work shifted by the per-building
    indoor GPS bias (:func:`sim.population.building_gps_bias`)."""
    bias = building_gps_bias(world.n_buildings, scn.pings.indoor_bias_median_m, scn.pings.indoor_bias_sigma,
                             scn.seed)
    return DeviceInputs.from_tables(persons, devices, bias)


def generate(scn: Scenario, out_dir, *, progress: bool = True, backend: str = "local",
             scheduler: str | None = None, n_workers: int = 2, overwrite: bool = False) -> dict:
    """Generate a scenario's full dataset into ``out_dir``; returns the manifest.

    Writes ``pings/part-*.parquet`` (the release), ``truth/{persons,devices,pseudonyms}
    .parquet``, ``register.parquet``, ``world/`` and ``manifest.json``.  Everything is
    first written to a staging folder inside ``out_dir`` and moved into place at the
    end, so an interrupted run never damages a dataset already there.

    ``out_dir`` may be a URL (``s3://bucket/ds``, ``file:///data/ds``, ...): the staging
    folder is then a key prefix inside it, every file goes to a temporary key and is
    moved to its final key, and ``manifest.json`` — the commit marker readers require —
    is written last (:mod:`sim.core.storage`).  Dask workers write their parts there
    themselves.

    backend : "local" (numba threads in-process) or "dask" (a LocalCluster of
        ``n_workers`` single-threaded workers, or the scheduler at ``scheduler``).
    overwrite : replace a reidsim dataset already in ``out_dir``.  Without it such a
        folder is refused; a folder that is neither empty nor reidsim's is always refused
        (see :func:`sim.core.files.claim_output_dir`).  Replacing a dataset also removes
        the outputs derived from the old one (inferred tables, attacks, report, run.json).

    The manifest records every part file (rows, bytes, SHA-256, t_s range) and a
    ``dataset_id`` over them, which derived outputs carry and readers check
    (:func:`sim.release.dataset.check_dataset`).

    Files are written by two background threads while this one computes: the ping
    parts (each while the next block is made) and the world, truth tables and register
    (built there, as nothing else needs it).  ``timings_s`` in the manifest: seconds
    until the devices' kernel inputs exist ("synthesize") and from then until the last
    part is written ("pings"); the rest of ``seconds`` is the wait for the truth tables.
    """
    from tqdm.auto import tqdm

    if backend not in ("local", "dask"):
        raise ConfigError(f"backend must be 'local' or 'dask', got {backend!r}")
    if int(n_workers) < 1:
        raise ConfigError(f"n_workers must be >= 1, got {n_workers}; use --workers 2 (one per core).")
    scn = scn.validate()
    t_start = time.perf_counter()
    out = claim_output_dir(out_dir, overwrite=overwrite)
    stage = new_staging_dir(out)
    try:
        (stage / "pings").mkdir()
        (stage / "truth").mkdir()
        # Two background threads: one writes the ping parts while this thread runs the
        # kernels for the next block; the other writes the world and truth tables and
        # builds the register (nothing else needs it).  Parquet encoding, compression
        # and hashing release the GIL.  At most one part waits to be written, so memory
        # stays bounded by two blocks, and a failed write stops the loop at the next
        # block.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="reidsim-parts") as writer, \
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="reidsim-tables") as tables:
            tables.submit(_prefetch)  # imports and numba start-up, during the world build
            side = []
            syn = synthesize(
                scn, background=tables,
                on_world=lambda w: side.append(tables.submit(w.save, stage / "world")),
                on_persons=lambda p: side.append(
                    tables.submit(_write_frame, p, stage / "truth" / "persons.parquet")),
            )
            world, devices, inputs = syn.world, syn.devices, syn.inputs
            register_rows = tables.submit(_write_register, syn.register, stage / "register.parquet")
            n_persons = len(syn.persons)
            # the persons (10 M rows at a million devices) and the register are needed only
            # by their background writes: without this reference each is freed once written
            # instead of being held through the pings (about 1.3 GB together at 10 M)
            del syn
            side.append(register_rows)
            # the truth tables and the register are written before the first block runs:
            # their writes hold the tables and their Arrow copies (about 1.2 GB at 10 M
            # persons), and the first blocks on top of them made the stage's peak (4.06
            # GiB at a million devices; the blocks alone stay near 2.8 GiB)
            for f in side:
                f.result()
            t_synth = time.perf_counter() - t_start
            n_dev = len(devices)
            B = int(scn.block_devices)
            blocks = [(g0, min(g0 + B, n_dev)) for g0 in range(0, n_dev, B)]
            histories, dev_pings, parts = [], [], None
            bar = tqdm(total=n_dev, desc="generate", unit="dev", disable=not progress)
            if backend == "local":
                params = kernel_params(scn, world)
                parts, pending, buffers = [], None, BlockBuffers()
                for bi, (g0, g1) in enumerate(blocks):
                    # part bi-1 may still be being written from the other set of buffers;
                    # part bi-2, whose set this block reuses, was waited for last time
                    blk = generate_block(scn, world, inputs, g0, g1, params, buffers)
                    if pending is not None:
                        parts.append(pending.result())
                    pending = writer.submit(_write_part, blk.pings, stage / "pings" / f"part-{bi:05d}.parquet")
                    histories.append(blk.history)
                    dev_pings.append(blk.device_pings)
                    del blk
                    bar.update(g1 - g0)
                if pending is not None:
                    parts.append(pending.result())
            else:
                side[0].result()  # workers read the world from disk
                results = _run_dask(scn, inputs, blocks, stage, scheduler, n_workers, bar)
                parts = []
                for h, dp, rec in results:
                    histories.append(h)
                    dev_pings.append(dp)
                    parts.append(rec)
            bar.close()
            t_pings = time.perf_counter() - t_start - t_synth
            hist = pd.concat(histories, ignore_index=True)
            hist.insert(2, "person_id", devices["person_id"].to_numpy()[hist["device_idx"].to_numpy()])
            devices = devices.copy()
            devices["maid"] = hist.loc[hist["epoch"] == 0].sort_values("device_idx")["maid"].to_numpy()
            rates = K.device_rates(scn.seed, 0, n_dev, kernel_params(scn, world))
            devices["pings_per_day"] = rates[:, 0]
            devices["silent_day_prob"] = rates[:, 1]
            devices["n_pings"] = np.concatenate(dev_pings) if dev_pings else np.zeros(0, np.int64)
            side.append(tables.submit(_write_frame, devices, stage / "truth" / "devices.parquet"))
            side.append(tables.submit(_write_frame, hist, stage / "truth" / "pseudonyms.parquet"))
            for f in side:
                f.result()
            n_register = register_rows.result()
        n_pings = int(hist["n_pings"].sum())
        manifest = {
            "reidsim_version": __version__,
            "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "scenario": scn.to_dict(),
            "config_hash": scn.config_hash(),
            "seed": scn.seed,
            "crs": world.crs,
            "utc_offset_s": scn.utc_offset_s,
            "start_s": scn.start_s,
            "n_days": scn.pings.days,
            "rows": {
                "pings": n_pings, "pseudonyms": int((hist["n_pings"] > 0).sum()),
                "devices": n_dev, "persons": n_persons, "register": n_register,
            },
            "backend": backend,
            "seconds": round(time.perf_counter() - t_start, 3),
            "timings_s": {"synthesize": round(t_synth, 3), "pings": round(t_pings, 3)},
            "block_devices": int(scn.block_devices), "blocks": len(blocks),
            "versions": package_versions(),
        }
        return commit_dataset(stage, out, manifest, parts)
    finally:
        if stage.exists():
            rmtree(stage)


def part_record(path, name: str | None = None) -> dict:
    """A part file's record: name (``name``, default the file's), rows, bytes, SHA-256
    and the t_s range (from the Parquet metadata).  ``path``: local or URL."""
    f = as_path(path)
    md = parquet_file(f).metadata
    lo, hi = parquet_t_range(md)
    return {"file": f.name if name is None else name, "rows": int(md.num_rows), "bytes": f.stat().st_size,
            "sha256": file_sha256(f), "t_s_min": lo, "t_s_max": hi}


def part_records(pings_dir) -> list:
    """One :func:`part_record` per part file, in file-name order."""
    return [part_record(f) for f in sorted(as_path(pings_dir).glob("part-*.parquet"), key=lambda f: f.name)]


def _write_part(table: pa.Table, path) -> dict:
    """Write one part (:func:`write_pings_part`) and return its :func:`part_record`."""
    return write_pings_part(table, path)


def _write_frame(df: pd.DataFrame, path) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def _write_register(register: Future, path) -> int:
    """Write the register once its (background) build is done; return its row count.
    Queued on the same one-thread executor after the build, so the wait never blocks."""
    table = register.result()
    _write_frame(table, path)
    return len(table)


def _prefetch() -> None:
    """Start-up work the world build would otherwise wait for: import scikit-learn's
    k-means and start numba (its first kernel call loads the compiler).  Run on a
    background thread while the main thread samples the world; a failure here is left
    to surface where the real call happens."""
    import importlib

    with contextlib.suppress(Exception):
        K.device_rates(0, 0, 0, np.zeros(K.N_PARAMS))
    with contextlib.suppress(Exception):
        importlib.import_module("sklearn.cluster")


def parquet_t_range(md) -> tuple:
    """(min, max) of column t_s over a Parquet file's row groups (None when empty)."""
    names = [md.schema.column(i).name for i in range(md.num_columns)]
    if "t_s" not in names or md.num_rows == 0:
        return None, None
    j = names.index("t_s")
    lo = hi = None
    for r in range(md.num_row_groups):
        st = md.row_group(r).column(j).statistics
        if st is None or not st.has_min_max:
            return None, None
        lo = st.min if lo is None else min(lo, st.min)
        hi = st.max if hi is None else max(hi, st.max)
    return (None if lo is None else int(lo)), (None if hi is None else int(hi))


def commit_dataset(stage: Path, out: Path, manifest: dict, parts=None) -> dict:
    """Finish a staged dataset: record its parts (``parts``, else a scan of
    ``stage/pings``) and ``dataset_id`` in ``manifest``, write manifest.json and move the
    stage into ``out`` (manifest last; outputs derived from a replaced dataset removed).
    Returns the manifest."""
    manifest["parts"] = part_records(stage / "pings") if parts is None else sorted(parts, key=lambda r: r["file"])
    manifest["dataset_id"] = dataset_id(manifest)
    (stage / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))  # a URL: atomically
    commit_staged(stage, out, marker="manifest.json", remove=DERIVED_ENTRIES)
    return manifest


def dataset_id(manifest: dict) -> str:
    """16 hex digits identifying a dataset: SHA-256 over its config hash and the SHA-256
    of every part file.  Derived outputs record it; readers refuse a mismatch."""
    h = hashlib.sha256(str(manifest.get("config_hash", "")).encode())
    for rec in manifest.get("parts", []):
        h.update(f"{rec['file']}:{rec['sha256']}".encode())
    return h.hexdigest()[:16]


def local_cluster(n_workers: int):
    """A Dask LocalCluster of ``n_workers`` single-threaded worker processes, listening
    on the loopback interface only and without a dashboard.

    ``dashboard_address=None`` alone is not enough: the scheduler still serves HTTP on
    its default port 8787 (on every interface), so the scheduler's HTTP server is put
    on a random loopback port with the dashboard off.
    """
    from dask.distributed import LocalCluster

    return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                        dashboard_address=None,
                        scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
                        env={"NUMBA_NUM_THREADS": "1"})


@contextlib.contextmanager
def dask_client(scheduler: str | None, n_workers: int):
    """A Dask ``Client`` of the scheduler at ``scheduler``, or of a :func:`local_cluster`
    of ``n_workers`` workers (closed with the client on exit)."""
    from dask.distributed import Client

    cluster = None if scheduler else local_cluster(n_workers)
    client = Client(scheduler) if scheduler else Client(cluster)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _run_dask(scn, inputs, blocks, stage, scheduler, n_workers, bar):
    from dask.distributed import as_completed

    with dask_client(scheduler, n_workers) as client:
        world_dir = str((stage / "world").resolve())
        sd = scn.to_dict()
        futs = {}
        for bi, (g0, g1) in enumerate(blocks):
            f = client.submit(_block_task, sd, world_dir, inputs.slice(g0, g1), g0, g1, str(stage / "pings" / f"part-{bi:05d}.parquet"), pure=False)
            futs[f] = bi
        results = [None] * len(blocks)
        for f in as_completed(futs):
            bi = futs[f]
            results[bi] = f.result()
            g0, g1 = blocks[bi]
            bar.update(g1 - g0)
        return results


def package_versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for p in ("numpy", "numba", "pandas", "pyarrow", "scipy", "scikit-learn", "geopandas", "shapely", "dask"):
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:  # pragma: no cover
            out[p] = None
    return out
