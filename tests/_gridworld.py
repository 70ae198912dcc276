"""A tiny stand-in World for the attack tests: nested square grids.

Zones at each level are the cells of a square grid whose cell size divides the next
level's (so the levels nest exactly).  Zone ids are ``row * n_cols + col`` at each
level; points outside ``[0, width_m) x [0, height_m)`` are -1.  One building sits at
the centre of every building cell.  Only what docs/CONTRACTS.md promises for World is
offered: ``LEVELS``, ``locate``, ``locate_all``, ``buildings``, ``crs``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

LEVELS = ("building", "block", "tract", "district")


class GridWorld:
    def __init__(self, width_m=6400.0, height_m=6400.0, cell_m=(50.0, 200.0, 800.0, 3200.0)):
        if len(cell_m) != len(LEVELS):
            raise ValueError("one cell size per level")
        for a, b in zip(cell_m[:-1], cell_m[1:]):
            if b % a:
                raise ValueError("cell sizes must nest (each divides the next)")
        self.width_m = float(width_m)
        self.height_m = float(height_m)
        self.cell_m = dict(zip(LEVELS, map(float, cell_m)))
        self.LEVELS = LEVELS
        self.crs = "LOCAL_CS[test]"
        s = self.cell_m["building"]
        nx, ny = int(width_m // s), int(height_m // s)
        cx = (np.arange(nx) + 0.5) * s
        cy = (np.arange(ny) + 0.5) * s
        xx, yy = np.meshgrid(cx, cy)
        x, y = xx.ravel(), yy.ravel()
        self.buildings = pd.DataFrame(
            {
                "building_id": self.locate(x, y, "building"),
                "x_m": x,
                "y_m": y,
                "block_id": self.locate(x, y, "block"),
                "tract_id": self.locate(x, y, "tract"),
                "district_id": self.locate(x, y, "district"),
                "residents": 0,
                "jobs": 0,
            }
        )

    def n_cols(self, level):
        return int(np.ceil(self.width_m / self.cell_m[level]))

    def locate(self, x_m, y_m, level):
        if level not in self.cell_m:
            raise ValueError(f"unknown level {level!r}; expected one of {LEVELS}")
        x = np.asarray(x_m, dtype=np.float64)
        y = np.asarray(y_m, dtype=np.float64)
        s = self.cell_m[level]
        inside = np.isfinite(x) & np.isfinite(y) & (x >= 0) & (y >= 0) & (x < self.width_m) & (y < self.height_m)
        with np.errstate(invalid="ignore"):
            ix = np.floor(np.where(inside, x, 0.0) / s).astype(np.int64)
            iy = np.floor(np.where(inside, y, 0.0) / s).astype(np.int64)
        return np.where(inside, iy * self.n_cols(level) + ix, -1).astype(np.int64)

    def locate_all(self, x_m, y_m):
        return pd.DataFrame({f"{lv}_id": self.locate(x_m, y_m, lv) for lv in LEVELS})

    def building_at(self, x_m, y_m):
        """Centre of the building cell containing (x, y)."""
        s = self.cell_m["building"]
        return (np.floor(np.asarray(x_m) / s) + 0.5) * s, (np.floor(np.asarray(y_m) / s) + 0.5) * s


def register_from_points(world, person_id, home_xy, work_xy=None, names=None):
    """A register table (CONTRACTS.md columns) for persons at the given home/work points."""
    person_id = np.asarray(person_id)
    hx, hy = (np.asarray(a, dtype=np.float64) for a in home_xy)
    out = {"person_id": person_id, "name": names if names is not None else [f"p{p}" for p in person_id]}
    hb = world.locate(hx, hy, "building")
    out.update(home_building_id=hb, home_x_m=hx, home_y_m=hy)
    for lv in LEVELS[1:]:
        out[f"home_{lv}_id"] = world.locate(hx, hy, lv)
    if work_xy is not None:
        wx, wy = (np.asarray(a, dtype=np.float64) for a in work_xy)
        out.update(work_building_id=world.locate(wx, wy, "building"), work_x_m=wx, work_y_m=wy)
        for lv in LEVELS[1:]:
            out[f"work_{lv}_id"] = world.locate(wx, wy, lv)
    return pd.DataFrame(out)


def make_population(world, n_persons=60, n_days=7, seed=0, pings_per_day=12, work_share=0.8,
                    rotation_days=None, start_s=1_700_006_400):
    """A small synthetic population living in ``world`` (numpy only, for tests).

    Each person owns one device; pings fall at home at night and at work on daytime
    hours (others at random points), with a few metres of noise.  With
    ``rotation_days`` the published pseudonym changes every R days.

    Returns dict with persons, register, pseudonyms (truth), release (Traces) and
    ``inferred`` = a perfect home/work inference table (true points, NaN work for the
    unemployed).
    """
    from sim.core.traces import Traces

    rng = np.random.default_rng(seed)
    b = world.buildings
    hb = rng.integers(0, len(b), n_persons)
    wb = np.where(rng.random(n_persons) < work_share, rng.integers(0, len(b), n_persons), -1)
    hx, hy = b["x_m"].to_numpy()[hb], b["y_m"].to_numpy()[hb]
    wx = np.where(wb >= 0, b["x_m"].to_numpy()[np.maximum(wb, 0)], np.nan)
    wy = np.where(wb >= 0, b["y_m"].to_numpy()[np.maximum(wb, 0)], np.nan)
    pid = np.arange(100, 100 + n_persons)
    rows = []
    for d in range(n_days):
        k = pings_per_day
        dev = np.repeat(np.arange(n_persons), k)
        hour = rng.uniform(0, 24, n_persons * k)
        t = start_s + d * 86400 + (hour * 3600).astype(np.int64)
        at_home = (hour < 7) | (hour >= 20)
        at_work = (~at_home) & (hour >= 9) & (hour < 17) & (wb[dev] >= 0) & (rng.random(len(dev)) < 0.8)
        x = rng.uniform(0, world.width_m, len(dev))
        y = rng.uniform(0, world.height_m, len(dev))
        x = np.where(at_home, hx[dev], np.where(at_work, wx[dev], x)) + rng.normal(0, 3, len(dev))
        y = np.where(at_home, hy[dev], np.where(at_work, wy[dev], y)) + rng.normal(0, 3, len(dev))
        x = np.clip(x, 0, world.width_m - 1e-6)
        y = np.clip(y, 0, world.height_m - 1e-6)
        rows.append(pd.DataFrame({"device": dev, "t_s": t, "x_m": x, "y_m": y, "day": d}))
    pings = pd.concat(rows, ignore_index=True)
    epoch = pings["day"] // rotation_days if rotation_days else 0
    pings["pseudonym"] = "ps" + pings["device"].astype(str).str.zfill(4) + "_" + pd.Series(epoch, index=pings.index).astype(str)
    release = Traces.from_frame(pings, crs=world.crs, start_s=start_s, n_days=n_days)
    ps = pings.groupby("pseudonym", sort=True).agg(device_idx=("device", "first"), first_day=("day", "min"),
                                                 last_day=("day", "max")).reset_index()
    ps["person_id"] = pid[ps["device_idx"]]
    ps["epoch"] = ps["first_day"] // rotation_days if rotation_days else 0
    ps["maid"] = "m" + ps["device_idx"].astype(str)
    persons = pd.DataFrame({"person_id": pid, "household_id": pid, "home_building_id": world.locate(hx, hy, "building"),
                            "home_x_m": hx, "home_y_m": hy})
    for lv in LEVELS[1:]:
        persons[f"home_{lv}_id"] = world.locate(hx, hy, lv)
    register = register_from_points(world, pid, (hx, hy), (wx, wy))
    inferred = pd.DataFrame({"pseudonym": ps["pseudonym"], "home_x_m": hx[ps["device_idx"]], "home_y_m": hy[ps["device_idx"]],
                             "work_x_m": wx[ps["device_idx"]], "work_y_m": wy[ps["device_idx"]]})
    return dict(persons=persons, register=register, pseudonyms=ps, release=release, inferred=inferred,
                home_xy=(hx, hy), work_xy=(wx, wy), person_id=pid)
