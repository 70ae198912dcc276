"""Run every attack on one simulated release and collect tidy tables.

``run_attacks`` runs them on a release held in memory (``reidsim attack DIR`` runs the
same attacks part by part with ``sim.pipeline.stream_attacks.attack_streaming``, which
reuses :func:`run_device_attacks` and gives the same tables): it returns
``{name: DataFrame}``; :func:`summary` extracts the headline figures as a
JSON-able dict and :func:`write_attack_outputs` writes ``DIR/attacks/<name>.parquet``,
``<name>.csv`` and ``summary.json`` atomically (:mod:`sim.core.files`).

Truth tables (``pseudonyms``, ``persons``) are passed through to the scoring halves
only; the attack halves see the release, the inferred tables, the register and the
world.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sim.core.storage import as_path
from sim.core.errors import ConfigError, InputError
from sim.core.memory import release_free_memory
from sim.core.files import atomic_path, write_table
from sim.core.traces import Traces
from sim.attacks._common import observed_span, register_column, span_table
from sim.core.constants import LEVELS
from sim.attacks.geofence import geofence_score, seen_in_fence
from sim.attacks.known_points import known_points_attack
from sim.attacks.ladder import KS, RUNG_NAMES, check_ks, check_level, check_rungs, ladder_attack
from sim.attacks.linkage import KEYS, linkage_attack, split_prefixes, time_to_identification
from sim.attacks.relink import relink_attack
from sim.attacks.topn import topn_uniqueness
from sim.attacks.unicity import fit_power_law, unicity_attack

log = logging.getLogger(__name__)

ATTACK_NAMES = ("linkage", "time_to_identification", "ladder", "unicity", "topn", "known_points", "geofence",
                "relink")


@dataclass
class AttackConfig:
    """Parameters of :func:`run_attacks` (allowed values checked in ``validate``).

    Geofence runs only when ``geofence_polygon`` (shapely, metres) and the window
    ``geofence_window_s = (t_start_s, t_end_s)`` are given; re-linking (and the ladder's
    relink-then-identify table) only when ``relink_period_days`` (the release's rotation
    period R) is given.  The ladder (:mod:`sim.attacks.ladder`) runs ``ladder_rungs``
    at ``ladder_level`` with ``narrowed_k`` for every k of ``ladder_ks``; its
    relink-then-identify merges pseudonyms whose inferred (home, work) points are
    mutual nearest neighbours across consecutive epochs within
    ``ladder_relink_max_dist_m`` (4-D distance, metres).
    """

    seed: int = 0
    attacks: tuple = ATTACK_NAMES
    levels: tuple | None = None
    keys: tuple = KEYS
    guess: str = "random"
    ci: str = "wilson"
    ttid_level: str = "block"
    ttid_key: str = "home_work"
    unicity_p: tuple = (1, 2, 3, 4, 5)
    unicity_v_m: tuple = (250.0, 500.0, 1000.0, 2000.0)
    unicity_h_h: tuple = (1.0, 4.0, 24.0)
    unicity_n_sample: int | None = 10_000
    topn_n: tuple = (1, 2, 3)
    topn_by: str = "pings"
    known_m: tuple = (1, 2, 3, 4, 5)
    known_sigma_m: tuple = (0.0, 50.0, 200.0)
    known_jitter_s: float = 600.0
    known_n_targets: int | None = 1000
    geofence_polygon: object = None
    geofence_window_s: tuple | None = None
    geofence_level: str = "building"
    geofence_key: str = "home_work"
    relink_period_days: float | None = None
    relink_method: str = "nearest"
    ladder_rungs: tuple = RUNG_NAMES
    ladder_ks: tuple = KS
    ladder_level: str = "building"
    ladder_relink_max_dist_m: float = 500.0

    def validate(self) -> "AttackConfig":
        bad = [a for a in self.attacks if a not in ATTACK_NAMES]
        if bad:
            raise ConfigError(f"unknown attack(s) {bad}; expected a subset of {ATTACK_NAMES}.")
        if self.ttid_key not in KEYS:
            raise ConfigError(f"ttid_key must be one of {KEYS}, got {self.ttid_key!r}.")
        if self.geofence_key not in KEYS:
            raise ConfigError(f"geofence_key must be one of {KEYS}, got {self.geofence_key!r}.")
        check_rungs(self.ladder_rungs)
        check_ks(self.ladder_ks)
        check_level(self.ladder_level)
        if not (isinstance(self.ladder_relink_max_dist_m, (int, float)) and self.ladder_relink_max_dist_m >= 0):
            raise ConfigError(f"ladder_relink_max_dist_m must be a number >= 0 (inf: no limit), got "
                              f"{self.ladder_relink_max_dist_m!r}.")
        return self

    @classmethod
    def from_any(cls, config) -> "AttackConfig":
        if config is None:
            return cls().validate()
        if isinstance(config, cls):
            return config.validate()
        if isinstance(config, dict):
            names = {f.name for f in dataclasses.fields(cls)}
            unknown = sorted(set(config) - names)
            if unknown:
                raise ConfigError(f"unknown attack config key(s) {unknown}; allowed: {sorted(names)}.")
            return cls(**config).validate()
        raise ConfigError(f"config must be None, a dict or an AttackConfig, got {type(config).__name__}.")


#: the tables :func:`run_attacks` can return, in the order it returns them
TABLE_ORDER = ("linkage", "linkage_per_device", "time_to_identification", "time_to_identification_device",
               "time_to_identification_per_device", "ladder", "ladder_per_device", "ladder_relink", "unicity",
               "unicity_power_law", "topn", "known_points", "geofence", "geofence_per_pseudonym", "relink")


#: the per-device tables of :func:`run_device_attacks` (what its ``sink`` receives)
PER_DEVICE_TABLES = ("linkage_per_device", "time_to_identification_per_device", "ladder_per_device",
                     "geofence_per_pseudonym")


def attack_levels(cfg: AttackConfig) -> tuple:
    """The zone levels of the linkage and top-N attacks (default: every level)."""
    return tuple(cfg.levels) if cfg.levels is not None else LEVELS


def wants_geofence(cfg: AttackConfig) -> bool:
    """True when the geofence attack is asked for and has its polygon and window."""
    return "geofence" in cfg.attacks and cfg.geofence_polygon is not None and cfg.geofence_window_s is not None


def ordered_tables(tables: dict) -> dict:
    """``tables`` in :data:`TABLE_ORDER` (then any others, as given)."""
    rank = {name: i for i, name in enumerate(TABLE_ORDER)}
    return dict(sorted(tables.items(), key=lambda kv: rank.get(kv[0], len(rank))))


def run_attacks(
    release: Traces,
    inferred_by_day: dict,
    register: pd.DataFrame,
    world,
    pseudonyms: pd.DataFrame,
    persons: pd.DataFrame | None = None,
    config=None,
) -> dict:
    """Run the configured attacks; return ``{table name: tidy DataFrame}``.

    ``inferred_by_day`` maps days observed -> inferred home/work table (or is the
    long table of ``sim.infer.infer_prefixes``); the largest
    prefix is used for linkage, geofence and re-linking, all of them for the
    time-to-identification curves and the ladder.  Tables: linkage, linkage_per_device,
    time_to_identification (unit "pseudonym"), time_to_identification_device (unit
    "device"), time_to_identification_per_device (one row per pseudonym), ladder,
    ladder_per_device, ladder_relink (only with ``relink_period_days``), unicity,
    unicity_power_law, topn, known_points, geofence, geofence_per_pseudonym, relink.
    The release says which pseudonyms exist in each window (a ping in its first d
    days): the time-to-identification and ladder denominators count only those.

    The per-device attacks need of the release only its observed-span table and the
    geofence's seen table (:func:`run_device_attacks`); unicity, top-N and known points
    need every ping.  ``sim.pipeline.stream_attacks.attack_streaming`` computes the
    same tables part by part.
    """
    cfg = AttackConfig.from_any(config)
    if not isinstance(release, Traces):
        raise InputError(f"release must be a sim.core.traces.Traces, got {type(release).__name__}.")
    seen = None
    if wants_geofence(cfg):
        t0, t1 = cfg.geofence_window_s
        seen = seen_in_fence(release, cfg.geofence_polygon, t0, t1)
    out = run_device_attacks(observed_span(release), inferred_by_day, register, world, pseudonyms, persons, cfg,
                             seen=seen)
    levels = attack_levels(cfg)
    if "unicity" in cfg.attacks:
        u = unicity_attack(release, p_values=cfg.unicity_p, v_values_m=cfg.unicity_v_m, h_values_h=cfg.unicity_h_h,
                    n_sample=cfg.unicity_n_sample, seed=cfg.seed, ci=cfg.ci)
        out["unicity"], out["unicity_power_law"] = u, fit_power_law(u)
    if "topn" in cfg.attacks:
        out["topn"] = topn_uniqueness(release, world, levels=levels, n_values=cfg.topn_n, by=cfg.topn_by,
                                      ci=cfg.ci, seed=cfg.seed)
    if "known_points" in cfg.attacks:
        out["known_points"] = known_points_attack(release, m_values=cfg.known_m, sigma_values_m=cfg.known_sigma_m,
                                                  jitter_s=cfg.known_jitter_s, n_targets=cfg.known_n_targets,
                                                  seed=cfg.seed, ci=cfg.ci)
    return ordered_tables(out)


def run_device_attacks(
    span: pd.DataFrame,
    inferred_by_day,
    register: pd.DataFrame,
    world,
    pseudonyms: pd.DataFrame,
    persons: pd.DataFrame | None = None,
    config=None,
    *,
    seen: pd.DataFrame | None = None,
    sink=None,
) -> dict:
    """The per-device attacks of :func:`run_attacks` — linkage, geofence scoring, time
    to identification, the ladder (and relink-then-identify) and re-linking, run in
    that order (the truth ``persons`` serve only the first two and are dropped after
    them; the tables come back in :data:`TABLE_ORDER`) — from the
    release's observed-span table (``span``: pseudonym, first_day, last_day, as
    :func:`sim.attacks._common.observed_span`) and, for the geofence, the pseudonyms
    seen in the fence (``seen``, :func:`sim.attacks.geofence.seen_in_fence`; required
    when the configuration asks for the geofence).  Neither needs the pings, so a
    release streamed part by part gives them by concatenating its parts' tables (in
    pseudonym order, the release's trace order).  Returns those tables of
    :func:`run_attacks`, in its order.

    ``sink``: when given, ``sink(name, table)`` receives each per-device table
    (:data:`PER_DEVICE_TABLES`) as soon as its attack has run, and the result leaves it
    out — e.g. to write it to disk instead of holding it (a million devices' linkage
    rows are ~0.5 GB) through the attacks that follow.
    """
    cfg = AttackConfig.from_any(config)
    span = span_table(span)
    inferred_by_day = split_prefixes(inferred_by_day)
    last = max(inferred_by_day)  # the whole release's window: asked for where used, not held (a
    # streamed reduce reads it from disk, and holds one window at a time)
    levels = attack_levels(cfg)
    keys = tuple(cfg.keys)
    if "home_work" in keys and not all(register_column("work", lv) in register.columns for lv in levels):
        log.warning("register has no employer columns: running the linkage with key 'home' only")
        keys = tuple(k for k in keys if k != "home_work")
    ttid_key = cfg.ttid_key if cfg.ttid_key in keys else "home"
    geofence_key = cfg.geofence_key if cfg.geofence_key in keys else "home"
    out = {}
    release_free_memory()  # what the caller freed reading its inputs (0.6 GB in the streamed reduce at 1 M)

    def done():  # hand the per-device tables to the sink, then free the attack's working memory
        if sink is not None:
            for name in PER_DEVICE_TABLES:
                if name in out:
                    sink(name, out.pop(name))
        release_free_memory()

    if "linkage" in cfg.attacks:
        per, met = linkage_attack(inferred_by_day[last], register, world, pseudonyms, levels=levels, keys=keys, guess=cfg.guess,
                                  seed=cfg.seed, ci=cfg.ci, persons=persons)
        out["linkage"], out["linkage_per_device"] = met, per
        del per
        done()
    if wants_geofence(cfg):
        if seen is None:
            raise InputError("the geofence attack needs the seen table (sim.attacks.geofence.seen_in_fence of the "
                             "release); pass seen=..., or drop 'geofence' from the attacks.")
        per, met = geofence_score(seen, inferred_by_day[last], register, world, pseudonyms, persons, level=cfg.geofence_level,
                                  key=geofence_key, guess=cfg.guess, seed=cfg.seed, ci=cfg.ci)
        out["geofence"], out["geofence_per_pseudonym"] = met, per
        del per
        done()
    # the truth persons (10 M rows at a million devices) serve only the two scorings above:
    # a caller that hands them over without keeping a reference gets their memory back here
    del persons
    release_free_memory()
    if "time_to_identification" in cfg.attacks:
        curve, per = time_to_identification(inferred_by_day, register, world, pseudonyms, level=cfg.ttid_level,
                                            key=ttid_key, guess=cfg.guess, seed=cfg.seed, ci=cfg.ci, release=span)
        unit = curve["unit"].to_numpy()
        out["time_to_identification"] = curve[unit == "pseudonym"].reset_index(drop=True)
        out["time_to_identification_device"] = curve[unit == "device"].reset_index(drop=True)
        out["time_to_identification_per_device"] = per
        del per
        done()
    if "ladder" in cfg.attacks:
        lkw = dict(release=span, rungs=cfg.ladder_rungs, ks=cfg.ladder_ks, level=cfg.ladder_level, ci=cfg.ci,
                   seed=cfg.seed)
        out["ladder"], out["ladder_per_device"] = ladder_attack(inferred_by_day, register, world, pseudonyms, **lkw)
        if cfg.relink_period_days is not None:
            out["ladder_relink"], _ = ladder_attack(
                inferred_by_day, register, world, pseudonyms, relink_period_days=cfg.relink_period_days,
                relink_method=cfg.relink_method, relink_max_dist_m=cfg.ladder_relink_max_dist_m, **lkw)
        done()
    if "relink" in cfg.attacks and cfg.relink_period_days is not None:
        _, met = relink_attack(span, inferred_by_day[last], pseudonyms, period_days=cfg.relink_period_days,
                               method=cfg.relink_method, world=world, seed=cfg.seed, ci=cfg.ci)
        out["relink"] = met
    return ordered_tables(out)


# ------------------------------------------------------------------------- summary
def _clean(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return None if not math.isfinite(float(v)) else float(v)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    return v


def _records(df: pd.DataFrame, cols) -> list:
    cols = [c for c in cols if c in df.columns]
    return [{c: _clean(r[c]) for c in cols} for r in df[cols].to_dict("records")]


_FIG = ["value", "ci_low", "ci_high", "n"]


def summary(tables: dict) -> dict:
    """Headline figures of :func:`run_attacks` output as a JSON-able dict.

    Keys present only for the tables present: linkage_identified (per level and key),
    linkage_median_set_size, linkage_no_candidate, time_to_identification (per
    pseudonym), time_to_identification_device, ladder and ladder_relink (every row of
    the largest window: rung, level, days, k, metric, unit), unicity (p=4 where swept,
    else all), unicity_exponent, topn_unique, known_points_success, geofence, relink.
    Every figure carries value, ci_low, ci_high, n.
    """
    s = {}
    if "linkage" in tables:
        t = tables["linkage"]
        s["linkage_identified"] = _records(t[t["metric"] == "identified"], ["level", "key"] + _FIG)
        s["linkage_median_set_size"] = _records(t[t["metric"] == "median_set_size"], ["level", "key"] + _FIG)
        s["linkage_wrong_unique"] = _records(t[t["metric"] == "wrong_unique"], ["level", "key"] + _FIG)
        s["linkage_no_candidate"] = _records(t[t["metric"] == "no_candidate"], ["level", "key"] + _FIG)
        nd = t[t["metric"] == "n_devices"]["value"]
        s["n_devices"] = int(nd.iloc[0]) if len(nd) else 0
    if "time_to_identification" in tables:
        s["time_to_identification"] = _records(tables["time_to_identification"], ["days", "level", "key"] + _FIG)
    if "time_to_identification_device" in tables:
        s["time_to_identification_device"] = _records(tables["time_to_identification_device"],
                                                      ["days", "level", "key"] + _FIG)
    for name in ("ladder", "ladder_relink"):
        if name in tables and len(tables[name]):
            t = tables[name]
            s[name] = _records(t[t["days"] == t["days"].max()], ["rung", "level", "days", "k", "metric", "unit"] + _FIG)
    if "unicity" in tables:
        u = tables["unicity"]
        sel = u[u["p"] == 4] if (u["p"] == 4).any() else u
        s["unicity"] = _records(sel, ["p", "v_m", "h_h"] + _FIG)
    if "unicity_power_law" in tables:
        s["unicity_exponent"] = _records(tables["unicity_power_law"], ["p", "exponent", "exponent_se", "n_points"])
    if "topn" in tables:
        t = tables["topn"]
        s["topn_unique"] = _records(t[t["metric"] == "unique"], ["level", "N", "by"] + _FIG)
    if "known_points" in tables:
        t = tables["known_points"]
        s["known_points_success"] = _records(t[t["metric"] == "success"], ["m", "sigma_m"] + _FIG)
    if "geofence" in tables:
        s["geofence"] = _records(tables["geofence"], ["level", "key", "metric"] + _FIG)
    if "relink" in tables:
        s["relink"] = _records(tables["relink"], ["period_days", "method", "metric"] + _FIG)
    return s


def write_attack_outputs(out_dir, tables: dict, summary_dict: dict | None = None, *,
                         dataset_id: str | None = None) -> Path:
    """Write ``out_dir/attacks/<name>.parquet`` and ``.csv`` per table and
    ``out_dir/attacks/summary.json`` (each file atomically, with the same permissions
    as every other output).  The summary is strict JSON (no NaN).  ``dataset_id`` is
    recorded in every table's Parquet metadata.  ``out_dir`` may be a URL
    (:func:`sim.core.storage.as_path`).  Returns the folder."""
    d = as_path(out_dir) / "attacks"
    d.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        if not isinstance(df, pd.DataFrame):
            raise InputError(f"table {name!r} is a {type(df).__name__}, expected a DataFrame.")
        if not isinstance(name, str) or not name or Path(name).name != name or "." in name:
            raise InputError(f"table name {name!r} cannot be a file name; use letters, digits and '_'.")
        write_table(df, d / name, dataset_id=dataset_id)
    sm = summary(tables) if summary_dict is None else summary_dict
    text = json.dumps(sm, indent=2, sort_keys=True, allow_nan=False)
    with atomic_path(d / "summary.json") as tmp:
        Path(tmp).write_text(text)
    return d
