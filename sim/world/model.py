"""The geography: buildings (address points) nested in blocks < tracts < districts.

Two ways to build a :class:`World`:

* :func:`synthetic_world` — a self-contained polycentric metro (dense core and
  sub-centres, density decaying with distance), so nothing needs downloading;
* :func:`world_from_polygons` — any polygon file geopandas reads, used as the tract level,
  with the other levels derived inside it.

All geometry is in metres in a projected CRS (a local equidistant-cylindrical CRS around
the anchor for the synthetic metro; the UTM zone for a real file).  lat/lon only at I/O.

Zone lookup (:meth:`World.locate`) is exact and fast: blocks are Voronoi cells of block
seeds (clipped to their tract for real geographies), so a point's block is its nearest
seed (within its tract), and tracts/districts follow from the nesting.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from scipy.spatial import cKDTree

from sim.core.constants import LEVELS, ZONE_LEVELS
from sim.core.errors import InputError
from sim.core.files import atomic_path
from sim.core.storage import URLPath, as_path, read_frame
from sim.world._kernels import GridIndex
from sim.world.crs import project_from_latlon, project_to_latlon

log = logging.getLogger(__name__)

@dataclass(eq=False)
class World:
    """A geography with nested zone levels.

    Attributes
    ----------
    crs : str
        Projected metric CRS of every ``x_m``/``y_m`` (WKT or PROJ string).
    buildings : DataFrame
        One row per building/address point: building_id (0..n-1), x_m, y_m, block_id,
        tract_id, district_id, residents (expected residents: capacity weight of homes),
        jobs, units (housing units: 1 = a single-household dwelling, 0 = no homes).
    zones : dict of GeoDataFrame
        ``zones[level]`` for block, tract, district: zone_id, population, jobs, parent
        ids, geometry (metres).
    block_seed_xy : (n_blocks, 2) float64
        Seeds whose Voronoi cells are the blocks.
    boundary : shapely geometry
        The study area; points outside locate to -1.
    utc_offset_s : int
        Local time minus UTC (seconds).
    kind : "synthetic" or "polygons".
    """

    crs: str
    buildings: pd.DataFrame
    zones: dict
    block_seed_xy: np.ndarray
    boundary: object
    utc_offset_s: int = 0
    kind: str = "synthetic"
    meta: dict = field(default_factory=dict)

    def __post_init__(self):

        self._bldg_index = GridIndex(self.buildings[["x_m", "y_m"]].to_numpy())
        self._seed_index = GridIndex(self.block_seed_xy)
        self._seed_tree = cKDTree(self.block_seed_xy)
        r = self.meta.get("radius_m") if self.kind == "synthetic" else None
        # the synthetic boundary is a disk (buffered by 2 %): test it arithmetically
        self._disk_r2 = (1.02 * float(r)) ** 2 * (1 - 1e-9) if r else None
        b = self.zones["block"]
        self._block_tract = b["tract_id"].to_numpy(np.int64)
        t = self.zones["tract"]
        self._tract_district = t["district_id"].to_numpy(np.int64)
        shapely.prepare(self.boundary)
        if self.kind == "polygons":
            self._tract_tree = shapely.STRtree(t.geometry.values)

    # ------------------------------------------------------------ sizes
    @property
    def n_buildings(self) -> int:
        return len(self.buildings)

    def n_zones(self, level: str) -> int:
        _check_level(level)
        return self.n_buildings if level == "building" else len(self.zones[level])

    # ------------------------------------------------------------ lookup
    def inside(self, x_m, y_m) -> np.ndarray:
        """Boolean mask of points inside the study area."""
        x = np.asarray(x_m, dtype=np.float64)
        y = np.asarray(y_m, dtype=np.float64)
        ok = np.isfinite(x) & np.isfinite(y)
        if self._disk_r2 is not None:
            with np.errstate(invalid="ignore"):
                return ok & (x * x + y * y < self._disk_r2)
        out = np.zeros(x.shape, dtype=bool)
        out[ok] = shapely.contains_xy(self.boundary, x[ok], y[ok])
        return out

    def locate(self, x_m, y_m, level: str) -> np.ndarray:
        """Zone id (int64) at ``level`` of each point; -1 outside the area or for NaN.

        ``building`` returns the nearest building/address point.
        """
        _check_level(level)
        x = np.asarray(x_m, dtype=np.float64).ravel()
        y = np.asarray(y_m, dtype=np.float64).ravel()
        if x.shape != y.shape:
            raise InputError(f"x_m has {x.shape} values but y_m has {y.shape}")
        ok = self.inside(x, y)
        if ok.all():  # the usual case: no copy of the points
            xs, ys = x, y
        elif not ok.any():
            return np.full(len(x), -1, dtype=np.int64)
        else:
            xs, ys = x[ok], y[ok]
        if level == "building":
            found = self._bldg_index.query(xs, ys)
        else:
            found = self._block_of(xs, ys)
        if xs is x:
            out = found
        else:
            out = np.full(len(x), -1, dtype=np.int64)
            out[ok] = found
        return out if level in ("building", "block") else self.zones_of_blocks(out, level)

    def zones_of_blocks(self, block_id, level: str) -> np.ndarray:
        """Zone id at ``level`` (block, tract or district) of each block id, -1 passing
        through: ``locate(x, y, level)`` from ``locate(x, y, "block")`` without locating
        the points again."""
        _check_level(level)
        if level == "building":
            raise InputError("zones_of_blocks gives block, tract or district ids; a block has many buildings.")
        blk = np.asarray(block_id, dtype=np.int64)
        if level == "block":
            return blk.copy()
        ok = blk >= 0
        tr = np.where(ok, self._block_tract[np.where(ok, blk, 0)], -1)
        if level == "tract":
            return tr.astype(np.int64)
        return np.where(ok, self._tract_district[np.where(ok, tr, 0)], -1).astype(np.int64)

    def locate_all(self, x_m, y_m) -> pd.DataFrame:
        """building_id, block_id, tract_id, district_id of each point (-1 outside)."""
        x = np.asarray(x_m, dtype=np.float64).ravel()
        y = np.asarray(y_m, dtype=np.float64).ravel()
        blk = self.locate(x, y, "block")
        tr, di = self.zones_of_blocks(blk, "tract"), self.zones_of_blocks(blk, "district")
        return pd.DataFrame(
            {"building_id": self.locate(x, y, "building"), "block_id": blk,
             "tract_id": tr, "district_id": di}
        )

    def _block_of(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        if self.kind != "polygons":
            return self._seed_index.query(x, y)
        xy = np.column_stack([x, y])
        # real geography: the tract comes from its polygon, the block is the nearest
        # seed inside that tract (blocks are per-tract Voronoi cells).
        pts = shapely.points(xy)
        pi, ti = self._tract_tree.query(pts, predicate="intersects")
        tract = np.full(len(xy), -1, dtype=np.int64)
        tract[pi[::-1]] = ti[::-1]  # first hit wins on shared edges
        k = min(16, len(self.block_seed_xy))
        _, nn = self._seed_tree.query(xy, k=k)
        nn = nn.reshape(len(xy), k)
        match = self._block_tract[nn] == tract[:, None]
        has = match.any(axis=1)
        out = np.where(has, nn[np.arange(len(xy)), match.argmax(axis=1)], nn[:, 0])
        miss = np.flatnonzero(~has & (tract >= 0))
        for i in miss:  # rare: a tract whose seeds are not among the 16 nearest
            cand = np.flatnonzero(self._block_tract == tract[i])
            d = ((self.block_seed_xy[cand] - xy[i]) ** 2).sum(axis=1)
            out[i] = cand[np.argmin(d)]
        return out.astype(np.int64)

    def building_zones(self, building_id) -> pd.DataFrame:
        """Zone ids at every level of the given building ids (-1 passes through)."""
        b = np.asarray(building_id, dtype=np.int64)
        return pd.DataFrame({"building_id": b, **self.building_zone_ids(b)})

    def building_zone_ids(self, building_id) -> dict:
        """``{"<level>_id": array}`` of :meth:`building_zones` without the table (new
        arrays, -1 passes through)."""
        b = np.asarray(building_id, dtype=np.int64)
        ok = b >= 0
        bi = np.where(ok, b, 0)
        return {f"{lvl}_id": np.where(ok, self.buildings[f"{lvl}_id"].to_numpy(np.int64)[bi], -1)
                for lvl in ZONE_LEVELS}

    # ------------------------------------------------------------ projection
    def to_latlon(self, x_m, y_m):
        """(lat_deg, lon_deg) of projected points (NaN stays NaN)."""
        return project_to_latlon(x_m, y_m, self.crs)

    def from_latlon(self, lat_deg, lon_deg):
        """(x_m, y_m) of WGS84 points."""
        return project_from_latlon(lat_deg, lon_deg, self.crs)

    # ------------------------------------------------------------ I/O
    def save(self, directory) -> None:
        """Write buildings.parquet, block/tract/district GeoParquet and world.json, each
        atomically (``directory`` may be a URL)."""
        d = as_path(directory)
        d.mkdir(parents=True, exist_ok=True)
        with atomic_path(d / "buildings.parquet") as tmp:
            self.buildings.to_parquet(tmp, index=False)
        for lvl in ZONE_LEVELS:
            with atomic_path(d / f"{lvl}.parquet") as tmp:
                self.zones[lvl].to_parquet(tmp, index=False)
        meta = {
            "crs": self.crs, "utc_offset_s": self.utc_offset_s, "kind": self.kind,
            "block_seed_xy": self.block_seed_xy.tolist(),
            "boundary_wkt": shapely.to_wkt(self.boundary), **self.meta,
        }
        with atomic_path(d / "world.json") as tmp:
            Path(tmp).write_text(json.dumps(meta))

    @classmethod
    def load(cls, directory) -> "World":
        """The world saved in ``directory`` (a local folder or a URL)."""
        d = as_path(directory)
        if not (d / "world.json").exists():
            raise InputError(f"{str(d)!r} holds no world.json; pass the world/ folder written by `reidsim generate`.")
        meta = json.loads((d / "world.json").read_text())
        zones = {lvl: read_frame(d / f"{lvl}.parquet", reader=gpd.read_parquet) for lvl in ZONE_LEVELS}
        known = {"crs", "utc_offset_s", "kind", "block_seed_xy", "boundary_wkt"}
        return cls(
            crs=meta["crs"], buildings=read_frame(d / "buildings.parquet"), zones=zones,
            block_seed_xy=np.asarray(meta["block_seed_xy"], dtype=np.float64),
            boundary=shapely.from_wkt(meta["boundary_wkt"]), utc_offset_s=int(meta["utc_offset_s"]),
            kind=meta["kind"], meta={k: v for k, v in meta.items() if k not in known},
        )


_LOADED: dict = {}


def load_world_cached(directory) -> World:
    """``World.load(directory)``, kept for the next call in this process while its
    world.json is unchanged (same path, size and modification time; at a URL: same URL
    and the same world.json bytes, by SHA-256): the per-part tasks of generation,
    defenses and streamed attacks load a world once per worker.  One world is kept at a
    time."""
    if isinstance(as_path(directory), URLPath):
        return _load_world_url(as_path(directory))
    d = Path(directory).resolve()
    try:
        st = (d / "world.json").stat()
    except FileNotFoundError:
        return World.load(d)  # its error message
    key = (str(d), st.st_size, st.st_mtime_ns)
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = World.load(d)
    return _LOADED[key]


def _load_world_url(d: URLPath) -> World:
    try:
        digest = hashlib.sha256((d / "world.json").read_bytes()).hexdigest()
    except FileNotFoundError:
        return World.load(d)  # its error message
    key = (d.url, digest)
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = World.load(d)
    return _LOADED[key]


def _check_level(level):
    if level not in LEVELS:
        raise InputError(f"unknown zone level {level!r}; expected one of {LEVELS}")


