"""Where identification is lost: the share of devices left after each condition the
exact (home building, work building) join needs, from all devices to "named", and the
ceilings the register sets.

Unit: the device (truth). A device meets an inference step when any of its pseudonyms
does (rotation gives a device several).  Every share has a Wilson 95 % interval and the
number of devices it rests on.  Truth is read here, never on the attacker's path.

Steps (each requires the previous ones)::

    all_devices          devices with at least one ping in the release
    day_job              the owner has a day-shift job
    listed               the owner is in the register
    home_listed_right    the register's home address is the owner's building
    employer_listed      the register lists the owner's employer (the right building)
    home_inferred_right  an inferred home is the owner's building
    work_inferred_right  an inferred workplace is the owner's work building
    named_exact          the (home, work) building pair matches exactly one register
                         person, the owner

``ceiling_exact`` is the share at ``employer_listed`` (what the exact join could name with
perfect inference); ``ceiling_home`` the share listed with the right home (what any
home-based attacker could name at most).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from sim.core.errors import InputError
from sim.core.lookup import id_positions, key_counts, pair_key, values_at
from sim.core.stats import wilson_ci

STEPS = ("all_devices", "day_job", "listed", "home_listed_right", "employer_listed",
         "home_inferred_right", "work_inferred_right", "named_exact")
LABELS = {
    "all_devices": "all devices",
    "day_job": "owner has a day-shift job",
    "listed": "owner listed in the register",
    "home_listed_right": "register home address right",
    "employer_listed": "register lists the employer",
    "home_inferred_right": "inferred home is the right building",
    "work_inferred_right": "work inferred, and the right building",
    "named_exact": "anonymity set exactly 1 (named)",
}


def _need(df, cols, what):
    miss = [c for c in cols if c not in df.columns]
    if miss:
        raise InputError(f"{what} lacks column(s) {miss}; see docs/CONTRACTS.md.")


def identification_waterfall(inferred: pd.DataFrame, pseudonyms: pd.DataFrame, persons: pd.DataFrame,
                             register: pd.DataFrame, world) -> tuple[pd.DataFrame, dict]:
    """The loss waterfall of the exact building-level join, per device.

    inferred : home/work per pseudonym for one window (``sim.infer`` table).
    pseudonyms, persons : truth tables; register : the attacker's register; world : World.

    Returns ``(table, ceilings)``: one row per step of :data:`STEPS` (step, label,
    value = share of all devices, ci_low, ci_high, n_devices = count meeting it, n = all
    devices) and ``{"ceiling_exact": row, "ceiling_home": row}`` as dicts.
    """
    _need(inferred, ["pseudonym", "home_x_m", "home_y_m", "work_x_m", "work_y_m"], "inferred table")
    _need(pseudonyms, ["pseudonym", "device_idx", "person_id"], "pseudonyms table")
    _need(persons, ["person_id", "schedule", "home_building_id", "work_building_id"], "persons table")
    _need(register, ["person_id", "home_building_id"], "register")
    inf = inferred.merge(pseudonyms.drop_duplicates("pseudonym")[["pseudonym", "device_idx", "person_id"]],
                         on="pseudonym", how="inner")
    hb = world.locate(inf["home_x_m"].to_numpy(), inf["home_y_m"].to_numpy(), "building")
    wb = world.locate(inf["work_x_m"].to_numpy(), inf["work_y_m"].to_numpy(), "building")
    hb = np.where(inf["home_x_m"].notna().to_numpy(), hb, -1)
    wb = np.where(inf["work_x_m"].notna().to_numpy(), wb, -1)
    # rows found by id (first occurrence), never a copy of the 10 M-row persons or register
    p_id, r_id = persons["person_id"].to_numpy(), register["person_id"].to_numpy()
    own = id_positions(p_id, inf["person_id"].to_numpy())
    if np.any(own < 0):
        raise InputError(f"{int((own < 0).sum())} pseudonym(s) map to a person_id missing from the persons "
                         f"table (e.g. {int(inf['person_id'].to_numpy()[own < 0][0])}); use the tables of one run.")
    true_h = persons["home_building_id"].to_numpy()[own]
    true_w = persons["work_building_id"].to_numpy()[own]
    reg_rows = np.flatnonzero(~register["person_id"].duplicated().to_numpy())  # first row per person
    reg_h = register["home_building_id"].to_numpy(np.int64)[reg_rows]
    reg_w = (register["work_building_id"].to_numpy(np.int64)[reg_rows] if "work_building_id" in register.columns
             else np.full(len(reg_rows), -1, dtype=np.int64))
    # anonymity set of the inferred (home, work) building pair in the register
    w_max = max(int(reg_w.max(initial=-1)), int(np.max(wb, initial=-1)))
    set_size = key_counts(pair_key(reg_h, reg_w, w_max, overwrite_h=True)[0], pair_key(hb, wb, w_max)[0])
    rows = pd.DataFrame({
        "device_idx": inf["device_idx"].to_numpy(),
        "home_right": (hb >= 0) & (hb == true_h),
        "work_right": (wb >= 0) & (wb == true_w),
        "pair_unique": set_size == 1,
    })
    dev = rows.groupby("device_idx").agg(home_right=("home_right", "any"), work_right=("work_right", "any"))
    # named: some pseudonym's pair is unique and it is the owner's own listed pair
    present = np.unique(inf["device_idx"].to_numpy())
    d = pd.DataFrame(index=pd.Index(present, name="device_idx"))
    pid = pseudonyms.drop_duplicates("device_idx").set_index("device_idx")["person_id"].reindex(present).to_numpy()
    op = id_positions(p_id, pid)
    if np.any(op < 0):
        raise InputError("the pseudonyms table gives a device two owners, one missing from the persons table; "
                         "use the tables of one run.")
    rp = id_positions(r_id, pid)
    listed = rp >= 0
    r_h = values_at(register["home_building_id"].to_numpy(np.int64), rp, -1)
    r_w = (values_at(register["work_building_id"].to_numpy(np.int64), rp, -1)
           if "work_building_id" in register.columns else np.full(len(pid), -1, dtype=np.int64))
    d["day_job"] = (persons["schedule"].take(op) == "day").to_numpy()
    d["listed"] = listed
    d["home_listed_right"] = listed & (r_h == persons["home_building_id"].to_numpy()[op])
    d["employer_listed"] = listed & (r_w == persons["work_building_id"].to_numpy()[op]) & (r_w >= 0)
    d["home_inferred_right"] = dev["home_right"].reindex(present).to_numpy()
    d["work_inferred_right"] = dev["work_right"].reindex(present).to_numpy()
    rows["named"] = (rows["pair_unique"] & rows["home_right"] & rows["work_right"]).to_numpy()
    d["named_exact"] = rows.groupby("device_idx")["named"].any().reindex(present).to_numpy()
    n = len(present)
    out, keep = [], np.ones(n, dtype=bool)
    for step in STEPS:
        if step != "all_devices":
            keep = keep & d[step].to_numpy()
        k = int(keep.sum())
        lo, hi = wilson_ci(k, n) if n else (np.nan, np.nan)
        out.append({"step": step, "label": LABELS[step], "value": k / n if n else np.nan,
                    "ci_low": float(lo), "ci_high": float(hi), "n_devices": k, "n": n})
    table = pd.DataFrame(out)
    home_ceiling = int((d["listed"] & d["home_listed_right"]).sum())
    lo, hi = wilson_ci(home_ceiling, n) if n else (np.nan, np.nan)
    ceilings = {
        "ceiling_exact": table.set_index("step").loc["employer_listed"].to_dict(),
        "ceiling_home": {"label": "owner listed with the right home address", "value": home_ceiling / n if n else np.nan,
                         "ci_low": float(lo), "ci_high": float(hi), "n_devices": home_ceiling, "n": n},
    }
    return table, ceilings
