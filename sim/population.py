"""Persons, households, workplaces, devices and the attacker's register.

Households share a home building; employment status and schedule type are drawn per
person; workplaces come from a gravity model with exponential distance decay over job
density; a share of persons carries a device of the broker's panel; the register lists
most residents with their (sometimes wrong) home address and some with their employer.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sim.core.config import PopulationConfig, RegisterConfig
from sim.core.constants import ZONE_LEVELS
from sim.core.errors import ConfigError
from sim.core.rng import TAG_POP, seed_sequence
from sim.world.model import World

SCHEDULES = ("day", "night", "none")
SCHED_DAY, SCHED_NIGHT, SCHED_NONE = 0, 1, 2

# US household-size distribution (ACS 2019, approx.): 1..5+ persons
_HH_SIZES = np.array([1, 2, 3, 4, 5, 6])
_HH_PROBS = np.array([0.28, 0.35, 0.15, 0.13, 0.06, 0.03])


@dataclass
class Population:
    persons: pd.DataFrame
    devices: pd.DataFrame
    register: pd.DataFrame


def make_persons(world: World, n_persons: int, cfg: PopulationConfig, seed: int) -> pd.DataFrame:
    """Persons in households, with home and (for the employed) work buildings.

    Returns the truth ``persons`` table of docs/CONTRACTS.md.
    """
    rng = seed_sequence(seed, TAG_POP, 1)
    b = world.buildings
    res_w = b["residents"].to_numpy()
    # households until n_persons is reached
    n_hh_est = int(n_persons / (_HH_SIZES * _HH_PROBS).sum() * 1.1) + 10
    sizes = rng.choice(_HH_SIZES, size=n_hh_est, p=_HH_PROBS)
    cum = np.cumsum(sizes)
    n_hh = int(np.searchsorted(cum, n_persons) + 1)
    sizes = sizes[:n_hh]
    sizes[-1] -= int(cum[n_hh - 1] - n_persons)
    hh_building = rng.choice(len(b), size=n_hh, p=res_w / res_w.sum())
    hh_building.sort()  # persons ordered by home building: spatial locality
    household_id = np.repeat(np.arange(n_hh, dtype=np.int64), sizes)
    home_b = hh_building[household_id]
    n = len(household_id)
    employed = rng.random(n) < cfg.employment_rate
    night = employed & (rng.random(n) < cfg.night_shift_share)
    schedule = np.where(employed, np.where(night, SCHED_NIGHT, SCHED_DAY), SCHED_NONE)
    work_b = _gravity_workplaces(world, home_b, employed, cfg.commute_decay_km * 1000.0, rng)
    hx = b["x_m"].to_numpy()[home_b]
    hy = b["y_m"].to_numpy()[home_b]
    has = work_b >= 0
    wx = np.where(has, b["x_m"].to_numpy()[np.maximum(work_b, 0)], np.nan)
    wy = np.where(has, b["y_m"].to_numpy()[np.maximum(work_b, 0)], np.nan)
    df = pd.DataFrame({
        "person_id": np.arange(n, dtype=np.int64), "household_id": household_id,
        "home_building_id": home_b.astype(np.int64), "home_x_m": hx, "home_y_m": hy,
    })
    hz = world.building_zones(home_b)
    for lvl in ZONE_LEVELS:
        df[f"home_{lvl}_id"] = hz[f"{lvl}_id"].to_numpy()
    df["work_building_id"] = work_b.astype(np.int64)
    df["work_x_m"] = wx
    df["work_y_m"] = wy
    wz = world.building_zones(work_b)
    for lvl in ZONE_LEVELS:
        df[f"work_{lvl}_id"] = wz[f"{lvl}_id"].to_numpy()
    df["schedule"] = pd.Categorical.from_codes(schedule, categories=list(SCHEDULES))
    return df


def _gravity_workplaces(world, home_b, employed, decay_m, rng):
    """Work building per employed person: P(block c | home block b) ~ jobs_c exp(-d_bc/L),
    then a building within c with probability ~ its jobs."""
    b = world.buildings
    blk = b["block_id"].to_numpy()
    jobs = b["jobs"].to_numpy()
    n_blocks = len(world.zones["block"])
    bjobs = np.bincount(blk, weights=jobs, minlength=n_blocks)
    seeds = world.block_seed_xy
    home_blk = blk[home_b]
    out = np.full(len(home_b), -1, dtype=np.int64)
    # buildings with jobs, grouped by block
    jb = np.flatnonzero(jobs > 0)
    jb = jb[np.argsort(blk[jb], kind="stable")]
    starts = np.searchsorted(blk[jb], np.arange(n_blocks + 1))
    emp_idx = np.flatnonzero(employed)
    order = emp_idx[np.argsort(home_blk[emp_idx], kind="stable")]
    hb_sorted = home_blk[order]
    bounds = np.searchsorted(hb_sorted, np.arange(n_blocks + 1))
    wblk = np.full(len(order), -1, dtype=np.int64)
    for hb in range(n_blocks):
        lo, hi = bounds[hb], bounds[hb + 1]
        if hi == lo:
            continue
        d = np.hypot(seeds[:, 0] - seeds[hb, 0], seeds[:, 1] - seeds[hb, 1])
        p = bjobs * np.exp(-d / decay_m)
        if p.sum() <= 0:
            continue
        cdf = np.cumsum(p)
        cdf /= cdf[-1]
        wblk[lo:hi] = np.minimum(np.searchsorted(cdf, rng.random(hi - lo), side="right"), n_blocks - 1)
    # building inside the chosen block with probability ~ its jobs (one vectorised pass)
    cum = np.concatenate([[0.0], np.cumsum(jobs[jb])])
    lo_c = cum[starts[:-1]]
    tot_c = cum[starts[1:]] - lo_c
    sel = np.flatnonzero(wblk >= 0)
    c = wblk[sel]
    target = lo_c[c] + rng.random(len(sel)) * tot_c[c]
    k = np.searchsorted(cum, target, side="right") - 1
    k = np.clip(k, starts[c], np.maximum(starts[c + 1] - 1, starts[c]))
    ok = tot_c[c] > 0
    out[order[sel[ok]]] = jb[k[ok]]
    return out


def choose_devices(persons: pd.DataFrame, n_devices: int, seed: int) -> pd.DataFrame:
    """The broker's panel: ``n_devices`` persons chosen uniformly without replacement.

    device_idx is dense (0..n-1) in a seeded random order of persons, independent of
    identity; the MAID column is filled by the
    generator (it depends on ID rotation).
    """

    if n_devices > len(persons):
        raise ConfigError(
            f"n_devices={n_devices} exceeds the {len(persons)} persons; lower n_devices or "
            "raise world.residents / lower population.device_share"
        )
    rng = seed_sequence(seed, TAG_POP, 2)
    # device_idx follows a seeded random order of persons, never person_id order: part
    # files hold blocks of devices, so a sorted order would let a pseudonym's part number
    # narrow its owner's register id (a side channel in the release).
    pid = rng.choice(len(persons), size=n_devices, replace=False)
    return pd.DataFrame({"device_idx": np.arange(n_devices, dtype=np.int64), "person_id": pid.astype(np.int64)})


_FIRST = ("Alex Ana Ben Bo Cara Chen Dana Dev Eli Emma Femi Gus Hana Ivan Jo Kai Lea Luis Mara "
          "Mo Nia Omar Pia Raj Rosa Sam Tara Uma Vic Wen Yara Zoe").split()
_LAST = ("Abara Berg Costa Diaz Evans Fischer Garcia Haddad Ito Jones Kim Lopez Moreau Nowak "
         "Okafor Patel Quinn Rossi Silva Tanaka Ueda Varga Wang Xu Yilmaz Zhou").split()


def make_register(persons: pd.DataFrame, world: World, cfg: RegisterConfig, seed: int) -> pd.DataFrame:
    """The attacker's register: people with their home address (and some employers).

    ``coverage`` of persons are listed; ``error_rate`` of those get a wrong home (another
    residential building drawn at random); ``employer_coverage`` of listed employed
    persons have their employer listed.  Zone ids at every level are included.
    """
    rng = seed_sequence(seed, TAG_POP, 3)
    n = len(persons)
    listed = np.flatnonzero(rng.random(n) < cfg.coverage)
    p = persons.iloc[listed]
    home_b = p["home_building_id"].to_numpy().copy()
    wrong = rng.random(len(p)) < cfg.error_rate
    res = np.flatnonzero(world.buildings["residents"].to_numpy() > 0)
    home_b[wrong] = rng.choice(res, size=int(wrong.sum()))
    b = world.buildings
    reg = pd.DataFrame({
        "person_id": p["person_id"].to_numpy(),
        "name": [f"{_FIRST[(i * 7919) % len(_FIRST)]} {_LAST[(i * 104729 // 7) % len(_LAST)]} #{i}" for i in p["person_id"].to_numpy()],
        "home_building_id": home_b,
        "home_x_m": b["x_m"].to_numpy()[home_b], "home_y_m": b["y_m"].to_numpy()[home_b],
    })
    hz = world.building_zones(home_b)
    for lvl in ZONE_LEVELS:
        reg[f"home_{lvl}_id"] = hz[f"{lvl}_id"].to_numpy()
    work_b = p["work_building_id"].to_numpy().copy()
    show = (work_b >= 0) & (rng.random(len(p)) < cfg.employer_coverage)
    work_b = np.where(show, work_b, -1)
    reg["work_building_id"] = work_b
    reg["work_x_m"] = np.where(show, b["x_m"].to_numpy()[np.maximum(work_b, 0)], np.nan)
    reg["work_y_m"] = np.where(show, b["y_m"].to_numpy()[np.maximum(work_b, 0)], np.nan)
    wz = world.building_zones(work_b)
    for lvl in ZONE_LEVELS:
        reg[f"work_{lvl}_id"] = wz[f"{lvl}_id"].to_numpy()
    return reg.reset_index(drop=True)
