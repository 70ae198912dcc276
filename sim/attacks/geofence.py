"""Geofence area search → follow home → link to a person.

An attacker buys "all devices seen at <a clinic / rally / place of worship> between
t0 and t1", follows each pseudonym to its inferred home and links it to the register.

* A ping is *in the fence* if its point lies strictly inside ``polygon`` (shapely
  ``contains_xy``: points exactly on the boundary are out; buffer the polygon for a
  tolerance) and ``t_start_s <= t_s < t_end_s`` (start inclusive, end exclusive).
* The pseudonyms with at least one such ping are *seen*.  Their inferred homes (a
  pseudonym absent from ``inferred`` has an unknown home) go through
  :func:`sim.attacks.linkage.link_devices` at ``level`` with ``key``.
* *Linked* = anonymity-set size 1; *linked_correct* = linked to the true owner.
  With ``persons`` (truth), *home_zone_correct* = the inferred home lies in the owner's
  true home zone at ``level``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import shapely

from sim.core.errors import InputError
from sim.core.lookup import id_positions, values_at
from sim.core.traces import Traces
from sim.attacks._common import METRIC_COLUMNS, count_row, rate_row, register_column, require_columns
from sim.attacks.linkage import INFERRED_COLUMNS, link_devices, score_links


def check_fence(polygon, t_start_s: int, t_end_s: int) -> None:
    """InputError unless ``polygon`` is a non-empty areal shapely geometry and the window
    is non-empty."""
    if not isinstance(polygon, shapely.Geometry) or polygon.is_empty or polygon.area <= 0:
        raise InputError(
            f"polygon must be a non-empty shapely Polygon/MultiPolygon in the release CRS (metres), got {polygon!r}."
        )
    if not int(t_end_s) > int(t_start_s):
        raise InputError(f"time window must have t_end_s > t_start_s, got [{t_start_s}, {t_end_s}).")


def seen_in_fence(traces: Traces, polygon, t_start_s: int, t_end_s: int) -> pd.DataFrame:
    """Pseudonyms with a ping inside ``polygon`` (metres) during [t_start_s, t_end_s).

    Returns DataFrame pseudonym, n_pings_in_fence, first_t_s (sorted by pseudonym order
    in the release).
    """
    if not isinstance(traces, Traces):
        raise InputError(f"traces must be a sim.core.traces.Traces, got {type(traces).__name__}.")
    check_fence(polygon, t_start_s, t_end_s)
    minx, miny, maxx, maxy = polygon.bounds
    t = traces.t_s
    cand = (t >= t_start_s) & (t < t_end_s) & (traces.x_m >= minx) & (traces.x_m <= maxx) & (traces.y_m >= miny) & (traces.y_m <= maxy)
    rows = np.flatnonzero(cand)
    inside = shapely.contains_xy(polygon, traces.x_m[rows], traces.y_m[rows])
    rows = rows[inside]
    tr = np.searchsorted(traces.offsets, rows, side="right") - 1
    u, first, cnt = np.unique(tr, return_index=True, return_counts=True)
    return pd.DataFrame({"pseudonym": traces.pseudonym[u], "n_pings_in_fence": cnt, "first_t_s": t[rows[first]]})


def geofence_attack(
    traces: Traces,
    polygon,
    t_start_s: int,
    t_end_s: int,
    inferred: pd.DataFrame,
    register: pd.DataFrame,
    world,
    pseudonyms: pd.DataFrame,
    persons: pd.DataFrame | None = None,
    *,
    level: str = "building",
    key: str = "home",
    guess: str = "random",
    seed: int = 0,
    ci: str = "wilson",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Area search, follow home, link; scored against truth.

    Returns ``(per_pseudonym, metrics)``.  per_pseudonym: the seen pseudonyms with
    n_pings_in_fence, home_x_m, home_y_m, set_size, status, guess_person_id,
    true_person_id, linked, linked_correct (and home_zone_correct with ``persons``).
    metrics (tidy, columns level, key, metric, value, ci_low, ci_high, n): n_seen
    (count), home_known, linked, linked_correct, wrong_link (linked to someone else),
    home_zone_correct — shares of the seen pseudonyms.
    """
    seen = seen_in_fence(traces, polygon, t_start_s, t_end_s)
    return geofence_score(seen, inferred, register, world, pseudonyms, persons, level=level, key=key, guess=guess,
                          seed=seed, ci=ci)


def geofence_score(
    seen: pd.DataFrame,
    inferred: pd.DataFrame,
    register: pd.DataFrame,
    world,
    pseudonyms: pd.DataFrame,
    persons: pd.DataFrame | None = None,
    *,
    level: str = "building",
    key: str = "home",
    guess: str = "random",
    seed: int = 0,
    ci: str = "wilson",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The follow-home-and-link half of :func:`geofence_attack`, from the ``seen`` table
    of :func:`seen_in_fence` (which a streamed release builds part by part: every
    pseudonym lies in one part).  Same returns as :func:`geofence_attack`."""
    require_columns(seen, ["pseudonym", "n_pings_in_fence", "first_t_s"], "seen table",
                    "Build it with sim.attacks.geofence.seen_in_fence.")
    require_columns(inferred, INFERRED_COLUMNS, "inferred table", "Pass the output of sim.infer.infer_home_work.")
    inf = seen[["pseudonym"]].merge(inferred[INFERRED_COLUMNS], on="pseudonym", how="left")
    links = link_devices(inf, register, world, levels=(level,), keys=(key,), guess=guess, seed=seed)
    scored = score_links(links, pseudonyms)
    per = seen.merge(inf, on="pseudonym").merge(
        scored[["pseudonym", "status", "set_size", "guess_person_id", "true_person_id", "unique", "identified", "wrong_unique"]],
        on="pseudonym",
    ).rename(columns={"unique": "linked", "identified": "linked_correct", "wrong_unique": "wrong_link"})
    n = len(per)
    p = dict(level=level, key=key)
    rows = [count_row("n_seen", n, n, **p)]
    home_known = np.isfinite(per["home_x_m"].to_numpy(dtype=float))
    rows.append(rate_row("home_known", home_known, ci, seed, (1,), **p))
    for m in ("linked", "linked_correct", "wrong_link"):
        rows.append(rate_row(m, per[m].to_numpy(dtype=bool), ci, seed, (2,), **p))
    if persons is not None:
        col = register_column("home", level)
        require_columns(persons, ["person_id", col], "persons (truth)")
        tp = id_positions(persons["person_id"].to_numpy(), per["true_person_id"].to_numpy())
        tz = values_at(persons[col].to_numpy(), tp, -1)
        hz = scored.set_index("pseudonym").loc[per["pseudonym"], "home_zone"].to_numpy()
        per["home_zone_correct"] = (hz >= 0) & (hz == tz)
        rows.append(rate_row("home_zone_correct", per["home_zone_correct"].to_numpy(), ci, seed, (3,), **p))
    metrics = pd.DataFrame(rows, columns=["level", "key"] + METRIC_COLUMNS)
    return per, metrics
