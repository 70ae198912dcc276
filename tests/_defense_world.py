"""A tiny stand-in World for the defense/utility tests, plus small synthetic releases.

Nested square grids (docs/CONTRACTS.md interface): buildings are the centres of
``building_m`` squares, blocks group 4 x 4 buildings, tracts 2 x 2 blocks, districts
2 x 2 tracts.  Zone ids are dense, row-major within each level; points outside the
square [0, extent_m) x [0, extent_m) locate to -1.
"""
from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from sim.core.constants import DAY_S
from sim.core.traces import Traces

LEVELS = ("building", "block", "tract", "district")


class GridWorld:
    LEVELS = LEVELS

    def __init__(self, building_m: float = 100.0, n_buildings_side: int = 32,
                 crs: str = "EPSG:32631", utc_offset_s: int = 0):
        self.crs = crs
        self.utc_offset_s = utc_offset_s
        self.building_m = float(building_m)
        self.extent_m = building_m * n_buildings_side
        self.size_m = {"building": building_m, "block": 4 * building_m,
                       "tract": 8 * building_m, "district": 16 * building_m}
        self.n_side = {lvl: int(round(self.extent_m / s)) for lvl, s in self.size_m.items()}
        n = self.n_side["building"]
        iy, ix = np.divmod(np.arange(n * n), n)
        bx = (ix + 0.5) * building_m
        by = (iy + 0.5) * building_m
        self.buildings = pd.DataFrame({
            "building_id": np.arange(n * n, dtype=np.int64), "x_m": bx, "y_m": by,
            **{f"{lvl}_id": self.locate(bx, by, lvl) for lvl in LEVELS[1:]},
            "residents": np.ones(n * n, dtype=np.int64), "jobs": np.ones(n * n, dtype=np.int64),
        })
        self.zones = {}
        for lvl in LEVELS[1:]:
            m = self.n_side[lvl]
            s = self.size_m[lvl]
            zy, zx = np.divmod(np.arange(m * m), m)
            geom = shapely.box(zx * s, zy * s, (zx + 1) * s, (zy + 1) * s)
            cx, cy = (zx + 0.5) * s, (zy + 0.5) * s
            df = pd.DataFrame({"zone_id": np.arange(m * m, dtype=np.int64),
                               "population": np.zeros(m * m, np.int64),
                               "jobs": np.zeros(m * m, np.int64)})
            for parent in LEVELS[LEVELS.index(lvl) + 1:]:
                df[f"{parent}_id"] = self.locate(cx, cy, parent)
            self.zones[lvl] = gpd.GeoDataFrame(df, geometry=geom, crs=crs)

    def locate(self, x_m, y_m, level):
        x = np.asarray(x_m, dtype=np.float64)
        y = np.asarray(y_m, dtype=np.float64)
        s = self.size_m[level]
        m = self.n_side[level]
        ix = np.floor(x / s)
        iy = np.floor(y / s)
        ok = (ix >= 0) & (ix < m) & (iy >= 0) & (iy < m) & np.isfinite(x) & np.isfinite(y)
        out = np.full(x.shape, -1, dtype=np.int64)
        out[ok] = (iy[ok] * m + ix[ok]).astype(np.int64)
        return out

    def centroid(self, zone_id, level):
        m = self.n_side[level]
        s = self.size_m[level]
        iy, ix = np.divmod(np.asarray(zone_id), m)
        return (ix + 0.5) * s, (iy + 0.5) * s


def make_release(seed=0, n_traces=40, n_days=3, per_day=20, world=None, start_s=1_699_920_000,
                 utc_offset_s=0, jitter_m=40.0):
    """A small release: each trace sleeps near home (22-7 h) and spends the day near work.

    Returns (traces, home_x_m, home_y_m, maid).  Homes/work are uniform over the world;
    pings are ``per_day`` random times a day (some days silent) with Gaussian jitter.
    """
    world = world or GridWorld()
    rng = np.random.default_rng(seed)
    ext = world.extent_m
    hx, hy = rng.uniform(0.05 * ext, 0.95 * ext, (2, n_traces))
    wx, wy = rng.uniform(0.05 * ext, 0.95 * ext, (2, n_traces))
    rows = []
    for i in range(n_traces):
        for d in range(n_days):
            k = rng.poisson(per_day) if rng.random() > 0.1 else 0
            sod = np.sort(rng.integers(0, DAY_S, k))
            h = sod / 3600.0
            at_home = (h < 7) | (h >= 22) | (rng.random(k) < 0.2)
            x = np.where(at_home, hx[i], wx[i]) + rng.normal(0, jitter_m, k)
            y = np.where(at_home, hy[i], wy[i]) + rng.normal(0, jitter_m, k)
            rows.append(pd.DataFrame({"pseudonym": f"p{i:04d}", "t_s": start_s + d * DAY_S + sod,
                                      "x_m": x, "y_m": y,
                                      "accuracy_m": np.full(k, 10.0, np.float32)}))
    df = pd.concat(rows, ignore_index=True)
    # keep every trace (even an all-silent one) and in index order
    tr = Traces.from_frame(df, crs=world.crs, utc_offset_s=utc_offset_s, start_s=start_s,
                           n_days=n_days)
    idx = np.array([int(p[1:]) for p in tr.pseudonym])
    maid = np.array([f"maid-{i:04d}-{seed}" for i in range(n_traces)], dtype=object)
    return tr, hx[idx], hy[idx], maid[idx]


def concat_traces(parts):
    """Concatenate Traces (same crs/window) in the given order."""
    first = parts[0]
    lens = np.concatenate([p.lengths for p in parts])
    off = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(lens, out=off[1:])
    cat = lambda f: np.concatenate([getattr(p, f) for p in parts])
    return Traces(pseudonym=cat("pseudonym"), offsets=off, t_s=cat("t_s"), x_m=cat("x_m"),
                  y_m=cat("y_m"), accuracy_m=cat("accuracy_m"), crs=first.crs,
                  utc_offset_s=first.utc_offset_s, start_s=first.start_s, n_days=first.n_days)
