"""The classroom page: prepare the data of one scenario for a self-contained lesson page.

:func:`classroom_data` runs the attacker on a simulated city and keeps only what the page
shows (``sim.report.classroom.classroom_html`` turns it into one HTML file):

* the city, simplified: block outlines (with their population density), district borders,
  and the buildings inside the two map views;
* one *demo device* — its pings day by day, its inferred home and work from the first
  ``d`` days for every ``d`` (``sim.infer`` on each day prefix), and the register's
  candidates for it on every day (the ``hierarchical`` rung of the attacker ladder at
  building level, :func:`sim.attacks.ladder.ladder_sets`);
* the same device under three defenses of :data:`sim.release.defenses.REGISTRY`
  (coarsening = ``grid``, noise = ``planar_laplace``, rotation = ``rotate``): its
  published pings and its candidates per day;
* a geofence around a gathering (:func:`sim.attacks.gathering.pick_gathering`) with the
  counts of :func:`sim.attacks.geofence.geofence_attack` and the trails of a seeded
  sample of attendees from the fence to the next morning.

Everything is precomputed here; the page only displays it.  :func:`write_classroom` is
the function behind ``reidsim classroom``.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import shapely

from sim import __version__
from sim.attacks._common import observed_span
from sim.attacks.gathering import pick_gathering
from sim.attacks.geofence import geofence_attack
from sim.attacks.ladder import ladder_candidates, ladder_sets
from sim.core.config import Scenario
from sim.core.constants import DAY_S
from sim.core.errors import ConfigError, InputError
from sim.core.files import atomic_path
from sim.core.rng import SUB_CLASSROOM, TAG_ATTACK, seed_sequence
from sim.core.traces import Traces, weekday_of_day
from sim.infer import InferenceParams
from sim.pipeline.api import simulate
from sim.pipeline.evaluate import broker_context, infer_by_day
from sim.release.defenses import apply_defense
from sim.report.classroom import classroom_html

log = logging.getLogger(__name__)

#: the classroom scale when no scenario file is given: a small city that simulates in
#: seconds (the notebook 05 defaults)
CLASSROOM_DEVICES = 1500
CLASSROOM_RADIUS_KM = 5.0
#: the rung and zone level of the candidate list the page shows
STORY_RUNG = "hierarchical"
STORY_LEVEL = "building"
#: the defenses of the page's toggle: (key, name in the registry, parameters, label)
CLASSROOM_DEFENSES = (
    ("grid", "grid", {"cell_m": 1000.0}, "Blur: every position moved to the centre of its 1 km square"),
    ("planar_laplace", "planar_laplace", {"eps_per_m": 2.0 / 500.0},
     "Noise: every position moved in a random direction, about 500 m on average"),
    ("rotate", "rotate", {"period_days": 1}, "New code every day: the pseudonym changes at midnight"),
)
#: attendees of the gathering whose trails the page draws (a seeded sample)
ATTENDEES = 30
#: the gathering's fence radius (metres)
FENCE_RADIUS_M = 500.0
#: trail points with a reported accuracy above this (metres) are left out
TRAIL_MAX_ACCURACY_M = 100.0
#: at most this many trail points per attendee (evenly thinned)
TRAIL_POINTS = 120
#: names listed per day (the count is always exact)
NAMES_SHOWN = 60
#: buildings drawn at most (a seeded sample beyond it; the story's buildings always)
MAX_BUILDINGS = 15_000
#: the page should stay below TARGET_BYTES; it is refused above MAX_BYTES
TARGET_BYTES = 3 * 1024**2
MAX_BYTES = 10 * 1024**2


# ------------------------------------------------------------------ scenario
def classroom_scenario(config=None, *, devices: int | None = None, seed: int | None = None) -> Scenario:
    """The scenario of a classroom page.

    ``config`` (a Scenario, dict or TOML path) is used as it is, with ``devices`` and
    ``seed`` on top.  Without it: the classroom scale, :data:`CLASSROOM_DEVICES` devices
    (or ``devices``) in a city of radius :data:`CLASSROOM_RADIUS_KM` km whose residents
    are ``devices / device_share``.
    """
    if config is None:
        base = Scenario()
        n = CLASSROOM_DEVICES if devices is None else int(devices)
        if n < 1:
            raise ConfigError(f"devices must be >= 1, got {devices}; use e.g. --devices {CLASSROOM_DEVICES}.")
        ov = {"n_devices": n, "world__radius_km": CLASSROOM_RADIUS_KM,
              "world__residents": max(100, int(math.ceil(n / base.population.device_share)))}
    else:
        base = Scenario.from_any(config)
        ov = {} if devices is None else {"n_devices": int(devices)}
    if seed is not None:
        ov["seed"] = int(seed)
    return base.replace(**ov) if ov else base.validate()


# ------------------------------------------------------------------ helpers
def _xy(x, y) -> list:
    """[x, y] rounded to whole metres (plain ints for JSON)."""
    return [int(round(float(x))), int(round(float(y)))]


def short_code(pseudonym) -> str:
    """The first 12 characters of a pseudonym and an ellipsis (how the page shows codes)."""
    return str(pseudonym)[:12] + "…"


def _candidates(inferred: pd.DataFrame, register: pd.DataFrame, world) -> dict:
    """``{pseudonym: candidate register rows (sorted array) or None}`` by the story rung;
    None = no home inferred yet (anyone in the register could be the owner)."""
    sets = ladder_sets(inferred, register, world, rungs=(STORY_RUNG,), level=STORY_LEVEL)
    cand = ladder_candidates(sets)
    row_of = pd.Index(register["person_id"].to_numpy())
    cand = cand.assign(row=row_of.get_indexer(cand["person_id"].to_numpy()))
    groups = {p: np.sort(g.to_numpy()) for p, g in cand.groupby("pseudonym", sort=False)["row"]}
    known = np.isfinite(inferred["home_x_m"].to_numpy(dtype=np.float64)) & \
        np.isfinite(inferred["home_y_m"].to_numpy(dtype=np.float64))
    empty = np.zeros(0, dtype=np.int64)
    return {p: (groups.get(p, empty) if k else None)
            for p, k in zip(inferred["pseudonym"].to_numpy(dtype=object), known)}


def _nested(seq) -> bool:
    """Every set a subset of the one before (None = everyone)."""
    prev = None
    for s in seq:
        if s is None:
            if prev is not None:
                return False
            continue
        if prev is not None and not np.isin(s, prev).all():
            return False
        prev = s
    return True


def pick_demo_device(per_day: list, owner_row: dict, seed: int, prefer=()):
    """The pseudonym the page follows, or None when no pseudonym fits.

    ``per_day[d - 1]`` is the :func:`_candidates` of the first ``d`` days; ``owner_row``
    maps a pseudonym to its owner's register row (-1 when the owner is not listed).
    The story must work, so the choice is among the pseudonyms that end *named* (the
    last day's candidate set is exactly the owner) with candidate sets nested from day
    to day (the list only shrinks).  Preferred, in turn while any is left: those with a
    visible middle step (a day where the home is known and several people still fit),
    then each set of ``prefer``.  Among them the choice is seeded
    (``seed_sequence(seed, TAG_ATTACK, SUB_CLASSROOM, 0)`` over the sorted pseudonyms),
    so the same seed and scenario give the same device.
    """
    last = per_day[-1]
    named = [p for p, s in last.items() if s is not None and len(s) == 1 and s[0] == owner_row.get(p, -1)]
    pool = sorted((p for p in named if _nested([day.get(p) for day in per_day])), key=str)
    if not pool:
        return None
    steps = {p for p in pool if any(day.get(p) is not None and len(day[p]) > 1 for day in per_day)}
    for want in (steps, *prefer):
        narrower = [p for p in pool if p in want]
        if narrower:
            pool = narrower
    rng = seed_sequence(seed, TAG_ATTACK, SUB_CLASSROOM, 0)
    return pool[int(rng.integers(len(pool)))]


def _story_preferences(rel: Traces, ibd: dict, per_day: list, register, world) -> tuple:
    """Sets of pseudonyms that make a clearer lesson, most important first: the last
    name comes from the workplace (home, then work narrows the list); the phone has
    pings on day 1 (the map is not empty at the start); the name needs at least 3 days;
    the home is not known after day 1 (the list starts with everyone)."""
    days = sorted(ibd)
    last = ibd[days[-1]].set_index("pseudonym")
    named_last = [p for p, s in per_day[-1].items() if s is not None and len(s) == 1]
    by_work = set()
    for p in named_last:
        r = last.loc[p]
        if not np.isfinite(r["work_x_m"]):
            continue
        why = _explain(register, world, (r["home_x_m"], r["home_y_m"]), (r["work_x_m"], r["work_y_m"]),
                       per_day[-1][p])
        if why["case"] == "works_there":
            by_work.add(p)
    first = rel.t_s[np.minimum(rel.offsets[:-1], max(rel.n_pings - 1, 0))] if rel.n_pings else np.zeros(0)
    day1 = {p for p, n, t in zip(rel.pseudonym, rel.lengths, first) if n and t < rel.start_s + DAY_S}
    slow = {p for p in named_last if all(len(day[p]) != 1 for day in per_day[:2] if day.get(p) is not None)}
    unknown_first = {p for p in named_last if per_day[0].get(p) is None}
    return by_work, day1, slow, unknown_first


def _explain(register: pd.DataFrame, world, home, work, rows) -> dict:
    """Why the candidate list is what it is, in numbers for the page's text."""
    if home is None:
        return {"case": "no_home"}
    hb = int(world.locate([home[0]], [home[1]], STORY_LEVEL)[0])
    res = register[register["home_building_id"].to_numpy() == hb] if hb >= 0 else register.iloc[:0]
    out = {"home_building": hb, "n_home": int(len(res))}
    wb = int(world.locate([work[0]], [work[1]], STORY_LEVEL)[0]) if work is not None else -1
    out["work_building"] = wb
    wcol = res["work_building_id"].to_numpy() if "work_building_id" in res.columns else np.full(len(res), -1)
    out["n_work"] = int(((wcol == wb) & (wb >= 0)).sum())
    out["n_unlisted"] = int((wcol < 0).sum())
    n = len(rows)
    if n == 0:
        out["case"] = "nobody"
    elif out["n_work"] and n == out["n_work"]:
        out["case"] = "works_there"
    elif n == out["n_home"]:
        out["case"] = "lives_there"
    else:
        out["case"] = "no_job_listed"
    return out


def _day_pings(traces: Traces, start_s: int, n_days: int, code=None) -> list:
    """Per local day: [[x, y, minute of the day(, pseudonym number)], ...]."""
    days = [[] for _ in range(n_days)]
    d = (traces.t_s - start_s) // DAY_S
    minute = ((traces.t_s - start_s) % DAY_S) // 60
    for i in np.flatnonzero((d >= 0) & (d < n_days)):
        p = _xy(traces.x_m[i], traces.y_m[i]) + [int(minute[i])]
        if code is not None:
            p.append(int(code[i]))
        days[int(d[i])].append(p)
    return days


def _story(traces: Traces, owner_person: int, simulation, days, infer_params) -> list:
    """Per day of one device's (possibly defended, possibly several) traces: the best
    pseudonym's inferred home and work and its candidate names."""
    reg = simulation.register
    names = reg["name"].astype(str).to_numpy() if "name" in reg.columns else reg["person_id"].astype(str).to_numpy()
    owner_rows = np.flatnonzero(reg["person_id"].to_numpy() == owner_person)
    owner_row = int(owner_rows[0]) if len(owner_rows) else -1
    ibd = infer_by_day(traces, days=days, **infer_params)
    span = observed_span(traces)  # the traces with a ping; the others never exist
    first_day = np.full(traces.n_traces, np.iinfo(np.int64).max)
    first_day[pd.Index(traces.pseudonym).get_indexer(span["pseudonym"])] = span["first_day"].to_numpy(np.int64)
    code_of = {p: i for i, p in enumerate(traces.pseudonym)}
    out = []
    for d in days:
        inf = ibd[d].set_index("pseudonym")
        cands = _candidates(ibd[d], reg, simulation.world)
        best, best_key = None, None
        for p, s in cands.items():
            if first_day[code_of[p]] >= d:
                continue  # the pseudonym does not exist yet
            # the attacker's best answer (no truth used): the smallest non-empty set, then
            # a known home with nobody listed there, then no home; ties: first pseudonym
            key = (2 if s is None else (1 if len(s) == 0 else 0), 0 if s is None else len(s), code_of[p])
            if best_key is None or key < best_key:
                best, best_key = p, key
        rec = {"day": int(d), "pseudonym": None, "home": None, "work": None, "count": int(len(reg)),
               "names": [], "owner_in": True, "named": False, "wrong": False, "why": {"case": "no_home"}}
        if best is not None:
            r = inf.loc[best]
            rec["pseudonym"] = int(code_of[best])
            s = cands[best]
            if s is not None:
                home = _xy(r["home_x_m"], r["home_y_m"])
                work = _xy(r["work_x_m"], r["work_y_m"]) if np.isfinite(r["work_x_m"]) else None
                rec.update(home=home + [int(r["home_nights"])],
                           work=None if work is None else work + [int(r["work_days"])],
                           count=int(len(s)), names=[names[j] for j in s[:NAMES_SHOWN]],
                           owner_in=bool(owner_row in s), named=bool(len(s) == 1 and s[0] == owner_row),
                           wrong=bool(len(s) == 1 and s[0] != owner_row),
                           why=_explain(reg, simulation.world, home, work, s))
        out.append(rec)
    return out


def _view_box(xs, ys, pad=0.15, min_span=1500.0) -> list:
    """[x0, y0, x1, y1] around the points (robust to a few far GPS outliers)."""
    xs, ys = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    ok = np.isfinite(xs) & np.isfinite(ys)
    xs, ys = xs[ok], ys[ok]
    if len(xs) > 20:
        x0, x1 = np.quantile(xs, [0.01, 0.99])
        y0, y1 = np.quantile(ys, [0.01, 0.99])
    else:
        x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    span = max(x1 - x0, y1 - y0, min_span) * (1 + 2 * pad)
    return [int(cx - span / 2), int(cy - span / 2), int(cx + span / 2), int(cy + span / 2)]


def _rings(geom, tol: float) -> list:
    """Exterior rings of a (multi)polygon, simplified, as [[x, y], ...] lists."""
    g = shapely.simplify(geom, tol, preserve_topology=True)
    parts = getattr(g, "geoms", [g])
    return [[_xy(x, y) for x, y in np.asarray(p.exterior.coords)[:-1]] for p in parts
            if not p.is_empty and hasattr(p, "exterior")]


def _city(world, boxes: list, keep_buildings, seed: int) -> dict:
    """Simplified geometry: blocks (outline, people per km²), districts, the study area
    and the buildings inside ``boxes``."""
    radius = float(world.meta.get("radius_m") or 0.0)
    tol = max(10.0, radius / 500.0)
    blocks = []
    z = world.zones["block"]
    area = z.geometry.area.to_numpy()
    pop = z["population"].to_numpy(dtype=np.float64) if "population" in z.columns else np.zeros(len(z))
    for geom, a, p in zip(z.geometry.values, area, pop):
        for ring in _rings(geom, tol):
            blocks.append({"ring": ring, "density": int(round(p / max(a, 1.0) * 1e6))})
    districts = [ring for geom in world.zones["district"].geometry.values for ring in _rings(geom, 2 * tol)]
    b = world.buildings
    x, y = b["x_m"].to_numpy(), b["y_m"].to_numpy()
    inside = np.zeros(len(b), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        inside |= (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
    idx = np.flatnonzero(inside)
    must = np.intersect1d(np.asarray(sorted(keep_buildings), dtype=np.int64), np.arange(len(b)))
    if len(idx) > MAX_BUILDINGS:
        rng = seed_sequence(seed, TAG_ATTACK, SUB_CLASSROOM, 2)
        idx = np.sort(rng.choice(idx, size=MAX_BUILDINGS, replace=False))
    idx = np.union1d(idx, must)
    units = b["units"].to_numpy() if "units" in b.columns else np.ones(len(b))
    jobs = b["jobs"].to_numpy() if "jobs" in b.columns else np.zeros(len(b))
    buildings = [_xy(x[i], y[i]) + [1 if units[i] > 0 else 0, 1 if jobs[i] > 0 else 0] for i in idx]
    bounds = world.boundary.bounds
    return {"radius_m": int(radius), "bounds": [int(v) for v in bounds], "blocks": blocks,
            "districts": districts, "boundary": _rings(world.boundary, 2 * tol), "buildings": buildings}


def _gathering(simulation, inferred: pd.DataFrame, seed: int) -> dict:
    """The geofence view: the fence, its window, the attack's counts and a seeded sample
    of attendees' trails from the start of the gathering to the next morning."""
    rel, world, reg = simulation.release, simulation.world, simulation.register
    poly, t0, t1 = pick_gathering(rel, world, radius_m=FENCE_RADIUS_M)
    per, _ = geofence_attack(rel, poly, t0, t1, inferred, reg, world, simulation.pseudonyms,
                             simulation.persons, level=STORY_LEVEL, key="home_work", seed=seed)
    home_known = np.isfinite(per["home_x_m"].to_numpy(dtype=np.float64))
    hx = per["home_x_m"].to_numpy(dtype=np.float64)
    hy = per["home_y_m"].to_numpy(dtype=np.float64)
    lives_in = home_known & shapely.contains_xy(poly, np.where(home_known, hx, 0.0), np.where(home_known, hy, 0.0))
    linked_ok = per["linked_correct"].to_numpy(dtype=bool)
    wrong = per["wrong_link"].to_numpy(dtype=bool)
    right_home = per["home_zone_correct"].to_numpy(dtype=bool) if "home_zone_correct" in per else home_known
    day = int((t0 - rel.start_s) // DAY_S)
    t_end = rel.start_s + (day + 1) * DAY_S + 8 * 3600  # the next morning, 08:00
    # the sample on the map: mostly visitors (their trails lead somewhere), a few residents
    rng = seed_sequence(seed, TAG_ATTACK, SUB_CLASSROOM, 1)
    visitors = np.flatnonzero(home_known & ~lives_in)
    others = np.flatnonzero(~(home_known & ~lives_in))
    n_res = min(len(others), ATTENDEES // 5)
    n_vis = min(len(visitors), ATTENDEES - n_res)
    pick = np.sort(np.concatenate([rng.choice(visitors, size=n_vis, replace=False),
                                   rng.choice(others, size=n_res, replace=False)]).astype(np.int64))
    code_of = pd.Index(rel.pseudonym)
    names = dict(zip(reg["person_id"].to_numpy(), reg["name"].astype(str))) if "name" in reg.columns else {}
    attendees = []
    for i in pick:
        r = per.iloc[int(i)]
        k = int(code_of.get_loc(r["pseudonym"]))
        a, b = rel.offsets[k], rel.offsets[k + 1]
        t = rel.t_s[a:b]
        # from its first ping in the fence to the next morning; precise fixes only (as the
        # fence itself): a few Wi-Fi/cell fixes hundreds of metres off would draw spikes
        ok = (t >= int(r["first_t_s"])) & (t < t_end) & ~(rel.accuracy_m[a:b] > TRAIL_MAX_ACCURACY_M)
        sel = np.flatnonzero(ok) + a
        if len(sel) > TRAIL_POINTS:
            sel = sel[np.linspace(0, len(sel) - 1, TRAIL_POINTS).round().astype(int)]
        trail = [_xy(rel.x_m[j], rel.y_m[j]) + [int((rel.t_s[j] - t0) // 60)] for j in sel]
        guess = r.get("guess_person_id")
        attendees.append({
            "code": short_code(r["pseudonym"]), "trail": trail,
            "home": _xy(r["home_x_m"], r["home_y_m"]) if home_known[i] else None,
            "lives_inside": bool(lives_in[i]), "named": bool(linked_ok[i]), "wrong": bool(wrong[i]),
            "name": names.get(int(guess)) if (linked_ok[i] or wrong[i]) and pd.notna(guess) else None,
        })
    c = poly.centroid
    return {
        "fence": {"centre": _xy(c.x, c.y), "radius_m": int(FENCE_RADIUS_M),
                  "ring": [_xy(x, y) for x, y in np.asarray(poly.exterior.coords)[:-1]]},
        "day": day, "weekday": int(weekday_of_day(rel.start_s, rel.utc_offset_s, [day])[0]),
        "start_min": int((t0 - rel.start_s - day * DAY_S) // 60), "end_min": int((t1 - t0) // 60),
        "trail_end_min": int((t_end - t0) // 60),
        "n_seen": int(len(per)), "n_home": int(home_known.sum()), "n_right_home": int(right_home.sum()),
        "n_lives_inside": int(lives_in.sum()), "n_visitors": int((home_known & ~lives_in).sum()),
        "n_named": int(linked_ok.sum()), "n_wrong": int(wrong.sum()),
        "n_shown_visitors": int(n_vis), "attendees": attendees,
    }


# ------------------------------------------------------------------ the data
def classroom_data(simulation, *, infer_params: dict | None = None) -> dict:
    """Everything the classroom page shows, as plain JSON values (see the module docstring).

    The demo device is chosen by :func:`pick_demo_device` (seeded by the scenario's seed)
    among the pseudonyms named by the end, so the story on the page works; if none is,
    the page follows a pseudonym with a known home and says it stays unnamed.
    """
    scn, rel, reg, world = simulation.scenario, simulation.release, simulation.register, simulation.world
    seed = int(scn.seed)
    params = InferenceParams.make(**(infer_params or {})).as_dict()
    n_days = int(rel.n_days)
    days = list(range(1, n_days + 1))
    if rel.n_traces == 0:
        raise InputError("the release has no pings; raise --devices or the ping rate of the scenario.")
    if len(reg) == 0:
        raise InputError("the register is empty; raise register.coverage in the scenario.")
    ibd = infer_by_day(rel, days=days, **params)
    per_day = [_candidates(ibd[d], reg, world) for d in days]
    ps = simulation.pseudonyms.drop_duplicates("pseudonym").set_index("pseudonym")
    reg_row = pd.Series(np.arange(len(reg)), index=reg["person_id"].to_numpy())
    owner_person = ps["person_id"]
    owner_row = {p: int(reg_row.get(owner_person.get(p), -1)) for p in per_day[-1]}
    demo = pick_demo_device(per_day, owner_row, seed,
                            prefer=_story_preferences(rel, ibd, per_day, reg, world))
    story_named = demo is not None
    if demo is None:  # no story device: follow a seeded pseudonym with a known home instead
        known = sorted((p for p, s in per_day[-1].items() if s is not None), key=str) or sorted(per_day[-1], key=str)
        demo = known[int(seed_sequence(seed, TAG_ATTACK, SUB_CLASSROOM, 0).integers(len(known)))]
    k = int(np.flatnonzero(rel.pseudonym == demo)[0])
    sub = rel.take([k])
    person = int(owner_person.loc[demo])

    variants = {}
    ctx = broker_context(simulation, sub)
    for key, name, prm, label in (("none", None, {}, "As sold today: no protection"),) + CLASSROOM_DEFENSES:
        if name is None:
            out = sub
        else:
            out, _ = apply_defense(name, sub, ctx, **prm)
        code = out.trace_index()
        variants[key] = {
            "label": label, "defense": name, "params": {k2: float(v) for k2, v in prm.items()},
            "codes": [short_code(p) for p in out.pseudonym],
            "pings": _day_pings(out, rel.start_s, n_days, code),
            "days": _story(out, person, simulation, days, params),
        }
    story = variants["none"]["days"]
    named_day = next((r["day"] for r in story if r["named"]), None)
    if story_named and not story[-1]["named"]:  # the device alone must tell the same story
        log.warning("the demo device %s is named in the whole release but not on its own", demo)
    story_named = bool(story[-1]["named"])

    places = [r["home"] for r in story if r["home"]] + [r["work"] for r in story if r["work"]]
    box1 = _view_box(np.r_[sub.x_m, [h[0] for h in places]], np.r_[sub.y_m, [h[1] for h in places]])
    gathering = _gathering(simulation, ibd[n_days], seed)
    pts = [p for a in gathering["attendees"] for p in a["trail"]] + \
          [a["home"] for a in gathering["attendees"] if a["home"]] + gathering["fence"]["ring"]
    box2 = _view_box([p[0] for p in pts], [p[1] for p in pts], pad=0.08, min_span=2000.0)
    keep = {r["why"].get("home_building", -1) for v in variants.values() for r in v["days"]} | \
        {r["why"].get("work_building", -1) for v in variants.values() for r in v["days"]}
    city = _city(world, [box1, box2], {b for b in keep if b >= 0}, seed)

    start_local = rel.start_s + rel.utc_offset_s
    return {
        "reidsim_version": __version__,
        "scenario": {"seed": seed, "residents": int(scn.residents), "devices": int(rel.n_traces),
                     "days": n_days, "register_size": int(len(reg)), "config_hash": scn.config_hash(),
                     "register_profile": str(scn.register.profile),
                     "start_date": pd.Timestamp(start_local, unit="s").strftime("%Y-%m-%d")},
        "inference": {"night_start_h": params["night_start_h"], "night_end_h": params["night_end_h"],
                      "work_start_h": params["work_start_h"], "work_end_h": params["work_end_h"]},
        "weekdays": [int(w) for w in weekday_of_day(rel.start_s, rel.utc_offset_s, np.arange(n_days))],
        "city": city,
        "device": {"code": short_code(demo), "n_pings": int(sub.n_pings), "story_named": bool(story_named),
                   "named_day": named_day, "owner_name": reg["name"].iloc[owner_row[demo]]
                   if story_named and "name" in reg.columns else None,
                   "rung": STORY_RUNG, "level": STORY_LEVEL, "view": box1},
        "variants": variants,
        "gathering": {**gathering, "view": box2},
    }


# ------------------------------------------------------------------ writing
def check_page_path(out, overwrite: bool = False) -> Path:
    """Refuse an output path that is empty, a folder, inside a path that is a file, or an
    existing file without ``overwrite`` (ConfigError naming the fix).  Creates nothing."""
    if out is None or not str(out).strip():
        raise ConfigError("--out is empty; give the page's file name, e.g. --out lesson.html.")
    p = Path(out)
    if p.is_dir():
        raise ConfigError(f"--out {str(p)!r} is a folder; give a file name, e.g. --out {p / 'lesson.html'}.")
    if p.exists() and not overwrite:
        raise ConfigError(f"{str(p)!r} already exists; reidsim never replaces your files. Choose another "
                          "--out, or pass --overwrite to replace it.")
    parent = p.parent if str(p.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise ConfigError(f"cannot write {str(p)!r}: {str(parent)!r} is a file, not a folder.")
    return p


def write_classroom(out, *, simulation=None, scenario=None, overwrite: bool = False,
                    infer_params: dict | None = None) -> dict:
    """Write the classroom page to the file ``out``; returns ``{"path", "bytes", "device",
    "named_day", "story_named"}``.

    ``simulation`` (a :class:`~sim.release.dataset.Simulation`, e.g. from
    ``sim.api.simulate``) is used as it is; otherwise ``scenario`` (anything
    :func:`classroom_scenario` takes; default: the classroom scale) is simulated in
    memory.  An existing ``out`` is replaced only with ``overwrite=True`` and the file is
    written atomically; a page over :data:`MAX_BYTES` is refused (ConfigError).
    """
    path = check_page_path(out, overwrite)
    if simulation is None:
        scn = scenario if isinstance(scenario, Scenario) else classroom_scenario(scenario)
        simulation = simulate(config=scn)
    data = classroom_data(simulation, infer_params=infer_params)
    page = classroom_html(data).encode("utf-8")
    if len(page) > MAX_BYTES:
        raise ConfigError(f"the classroom page would be {len(page) / 1024**2:.1f} MB, over the "
                          f"{MAX_BYTES // 1024**2} MB limit; use a smaller scenario (fewer days or residents).")
    if len(page) > TARGET_BYTES:
        log.warning("the classroom page is %.1f MB (target < %d MB)", len(page) / 1024**2, TARGET_BYTES // 1024**2)
    check_page_path(path, overwrite)  # a file may have appeared meanwhile
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(page)
    return {"path": str(path), "bytes": len(page), "device": data["device"]["code"],
            "named_day": data["device"]["named_day"], "story_named": data["device"]["story_named"],
            "days": data["scenario"]["days"]}
