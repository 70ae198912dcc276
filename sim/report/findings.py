"""Citable figures: one real-world story per named scenario, a plain-English key finding
with a stable figure id, and everything needed to cite and reproduce it.

A named scenario's results (``benchmarks/results/scenario_<name>.json``, written by
``benchmarks/run_all.py``) hold every figure with its 95 % interval and n.  Here they
become sentences ("After one week of pings, N % of devices (95 % CI …) could be narrowed
to five or fewer named people"), a citation (``reidsim cite FIGURE_ID``) and a list of the
figures that moved beyond their interval between two runs.

A figure id is ``<scenario>.<metric>``, e.g. ``broker_sdk.narrowed_to_5_after_7_days``;
it is stable across versions (a metric that is renamed keeps its old id as an alias in
:data:`ALIASES`).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from sim import __version__
from sim.core.errors import InputError
from sim.core.fmt import pct, pct_range

#: metric id -> plain label (the appendix of BENCHMARKS.md)
LABELS = {
    "named_after_{d}_days": "devices named uniquely and correctly after {d} days",
    "narrowed_to_5_after_{d}_days": "devices narrowed to 5 or fewer people (owner among them) after {d} days",
    "ceiling_home": "owner listed in the register with the right home address (ceiling)",
    "ceiling_exact": "... and employer listed too (ceiling of the exact home + work join)",
    "exact_join_identified_after_{d}_days": "pseudonyms identified by the exact home + work join after {d} days",
    "linkage_identified_{key}_{level}": "identified by the {key} join at {level} level",
    "median_anonymity_set_{key}_{level}": "median anonymity set of the {key} pair at {level} level (people)",
    "unicity_p{p}_{v}m_{h}h": "unique from {p} random points at {v} m and {h} h",
    "unicity_p{p}_extrapolated_to_{n}_residents": "unique from {p} points, extrapolated to {n} residents",
    "known_points_m{m}_sigma{s}m": "target's trace singled out by {m} known posts with {s} m error",
    "geofence_{metric}_{key}_{level}": "geofence: {metric} ({key}, {level})",
    "relink_{metric}": "re-linking rotated IDs: {metric}",
}

#: old figure id -> current one
ALIASES = {}


@dataclass(frozen=True)
class Story:
    """The real-world story a named scenario stands for.

    title : one line; description : what it represents, in plain words;
    calibrated_to : the public figures it is calibrated to;
    metric, days : the key finding's figure (``metric`` with ``{d}`` filled by ``days``);
    template : the sentence, with ``{days_words}``, ``{value}``, ``{ci}``, ``{n}``.
    """

    title: str
    description: str
    calibrated_to: str
    metric: str
    days: int | None
    template: str


_NARROWED = ("After {days_words} of pings, {value} of devices (95 % CI {ci}; n = {n}) could be narrowed to "
             "five or fewer named people, the owner among them.")
_NAMED = ("After {days_words} of pings, {value} of devices (95 % CI {ci}; n = {n}) were named: the attacker "
          "was left with exactly one person, the right one.")

STORIES = {
    "broker_sdk": Story(
        "A commercial telemetry feed sold to government buyers",
        "Phone location pings from apps' advertising SDKs, keyed by hashed advertising IDs and sold in bulk "
        "as \"anonymous\"; agencies have bought such feeds to find people without a warrant.",
        "about 17 signals per device-day (Gravy/Venntel), a long tail of heavy devices; 10 % of residents in "
        "the panel (SafeGraph ~10 %)",
        "narrowed_to_5_after_{d}_days", 7, _NARROWED),
    "newspaper_investigation": Story(
        "A newspaper follows the pings home",
        "Reporters given a large ping data set picked devices seen at sensitive places and followed their "
        "pings home to name the people.",
        "New York Times 2019: 50+ billion pings from 12+ million phones over several months; here six weeks "
        "of a broker-style feed",
        "named_after_{d}_days", 42, _NAMED),
    "sparse_checkins": Story(
        "An electronic-monitoring check-in app",
        "An app that reports the phone's location only when its user checks in, about twice on an active "
        "day, with many silent days.",
        "check-in apps report location at log-ins and check-ins only; 2 pings on an active day and 35 % "
        "silent days are assumptions",
        "named_after_{d}_days", 14, _NAMED),
    "social_media_fusion": Story(
        "An all-in-one tool fusing pings with public social-media posts",
        "An analyst knows a few geotagged, timestamped public posts of a target and looks for the one "
        "pseudonym whose pings match them all, then follows it home.",
        "the same broker-style feed; posts placed with a 100 m Gaussian error and timed to within 10 minutes "
        "(assumptions)",
        "known_points_m2_sigma100m", None,
        "For {value} of targets (95 % CI {ci}; n = {n}), two public posts placed within about 100 m were "
        "enough to single out a target's pseudonymous trace among all devices (a pseudonym singled out can then be "
        "followed home, as in the ladder)."),
    "rotating_ids": Story(
        "A data set whose seller says it \"doesn't include identity\"",
        "The seller salts the hash and rotates every device's advertising ID weekly, and sells no names; the "
        "attacker counts a device as named when any of its weekly pseudonyms is.",
        "same feed as broker_sdk; salted SHA-256, a new ID every 7 days",
        "named_after_{d}_days", 14, _NAMED),
}


def _days_words(d):
    return {1: "one day", 7: "one week", 14: "two weeks", 28: "four weeks", 42: "six weeks"}.get(
        int(d), f"{int(d)} days")


def figure_label(metric: str) -> str:
    """The plain label of a metric id (falls back to the id with spaces)."""
    import re

    kinds = {"key": "home_work|home", "level": "building|block|tract|district", "metric": ".+?"}
    for pattern, label in LABELS.items():
        rx = "^" + re.sub(r"\\\{(\w+)\\\}", lambda g: f"(?P<{g.group(1)}>{kinds.get(g.group(1), '[0-9.]+')})",
                          re.escape(pattern)) + "$"
        m = re.match(rx, metric)
        if m:
            return label.format(**m.groupdict()).replace(" after 1 days", " after 1 day")
    return metric.replace("_", " ")


def load_results(results_dir) -> dict:
    """``{scenario: result dict}`` of every ``scenario_*.json`` in ``results_dir``."""
    d = Path(results_dir)
    if not d.is_dir():
        raise InputError(f"no benchmark results folder at {str(d)!r}; run `python benchmarks/run_all.py` from "
                         "a clone of the repository, or pass --results DIR.")
    out = {}
    for f in sorted(d.glob("scenario_*.json")):
        try:
            r = json.loads(f.read_text())
        except ValueError as e:
            raise InputError(f"{str(f)!r} is not valid JSON ({e}); re-run benchmarks/run_all.py.") from e
        out[r.get("scenario", f.stem.removeprefix("scenario_"))] = r
    return out


def key_finding(result: dict) -> dict | None:
    """The key finding of one scenario result: figure_id, sentence, figure (value, ci,
    n), title, description, calibrated_to, assumptions, file, seed, version; None when
    the scenario has no story or the figure is missing."""
    name = result.get("scenario")
    story = STORIES.get(name)
    if story is None:
        return None
    days = story.days
    if days is not None:
        have = sorted(int(k.split("_after_")[1].split("_")[0]) for k in result.get("figures", {})
                      if k.startswith(story.metric.split("{d}")[0]) and "_after_" in k)
        if days not in have and have:
            days = have[-1]
    metric = story.metric.format(d=days) if days is not None else story.metric
    f = result.get("figures", {}).get(metric)
    if f is None:
        return None
    sentence = story.template.format(days_words=_days_words(days) if days else "", value=pct(f["value"]),
                                     ci=pct_range(f["ci_low"], f["ci_high"]), n=f"{int(f['n']):,}")
    return {"figure_id": f"{name}.{metric}", "metric": metric, "sentence": sentence, "figure": f,
            "title": story.title, "description": story.description, "calibrated_to": story.calibrated_to,
            "assumptions": assumptions_words(result), "file": result.get("file"), "seed": result.get("seed"),
            "config_hash": result.get("config_hash"), "version": result.get("reidsim_version", __version__),
            "chart": result.get("chart")}


def assumptions_words(result: dict) -> str:
    """The assumptions behind a scenario's figures, in words (from its recorded config)."""
    s = result.get("scenario_config") or {}
    reg, g, pop = s.get("register", {}), s.get("pings", {}), s.get("population", {})
    ids = s.get("ids", {})

    def share(v):
        return "per profile" if v is None else f"{100 * float(v):g} %"

    rot = f"IDs rotated every {ids['rotation_days']} days" if ids.get("rotation_days") else "IDs never rotated"
    return (f"register {reg.get('profile', 'people_search')!r} listing {share(reg.get('coverage'))} of adults "
            f"with their home address and the employer of {share(reg.get('employer_coverage'))} of listed "
            f"workers (assumptions); {s.get('n_devices') or 'a 10 % panel of'} devices of "
            f"{s.get('world', {}).get('residents', 'n/a'):,} residents; median {g.get('median_pings_per_day')} pings "
            f"per device-day over {g.get('days')} days; {rot}; smartphones from age "
            f"{pop.get('min_device_age', 13)}. Every parameter with its range and source: the assumption ledger "
            "(sim.core.ledger) and the report of `reidsim run`.")


def reproduce_command(result: dict) -> str:
    return f"python benchmarks/run_all.py --only scenarios --scenario {result.get('scenario')}"


def cite(figure_id: str, results_dir) -> str:
    """The text ``reidsim cite`` prints: sentence, interval, how to reproduce, and a
    BibTeX and a CSL-JSON entry for this version of the software."""
    figure_id = ALIASES.get(figure_id, figure_id)
    if "." not in figure_id:
        raise InputError(f"figure id {figure_id!r} must be <scenario>.<metric>, e.g. "
                         "broker_sdk.narrowed_to_5_after_7_days; see the key findings in BENCHMARKS.md.")
    name, metric = figure_id.split(".", 1)
    results = load_results(results_dir)
    if name not in results:
        raise InputError(f"no scenario {name!r} in {str(results_dir)!r}; known: {sorted(results)}.")
    r = results[name]
    f = r.get("figures", {}).get(metric)
    if f is None:
        close = sorted(k for k in r.get("figures", {}) if k.split("_")[0] == metric.split("_")[0])[:8]
        raise InputError(f"scenario {name!r} has no figure {metric!r}" + (f"; similar: {close}" if close else "")
                         + "; the key findings in BENCHMARKS.md list the cited ones.")
    kf = key_finding(r)
    sentence = kf["sentence"] if kf and kf["metric"] == metric else (
        f"{figure_label(metric).capitalize()}: {pct(f['value'])} (95 % CI {pct_range(f['ci_low'], f['ci_high'])}; "
        f"n = {int(f['n']):,})." if _is_share(f) else f"{figure_label(metric).capitalize()}: {f['value']:,.0f}.")
    version = r.get("reidsim_version", __version__)
    when = (r.get("machine") or {}).get("when_utc", "")[:10]
    year = when[:4] or "2026"
    bib = (f"@software{{reidsim_{version.replace('.', '_')},\n"
           f"  title = {{reidsim: how quickly do anonymized location pings become identifiable people?}},\n"
           f"  version = {{{version}}},\n  year = {{{year}}},\n"
           f"  note = {{Figure {figure_id}, scenario {r.get('file')}, seed {r.get('seed')}, "
           f"config hash {r.get('config_hash')}}}\n}}")
    csl = json.dumps({"type": "software", "title": "reidsim", "version": version,
                      "issued": {"date-parts": [[int(year)]]},
                      "note": f"Figure {figure_id}; scenario {r.get('file')}; seed {r.get('seed')}"})
    lines = [sentence, "",
             f"Figure: {figure_id} — {figure_label(metric)}",
             f"Value: {_value_text(f)}",
             f"Scenario: {r.get('file')} (seed {r.get('seed')}, config hash {r.get('config_hash')}), "
             f"{r.get('devices', 0):,} devices, {r.get('days')} days; reidsim {version}; run {when or 'n/a'}",
             f"Assumptions: {assumptions_words(r)}",
             f"Reproduce: {reproduce_command(r)}",
             "", "BibTeX:", bib, "", "CSL-JSON:", csl]
    return "\n".join(lines)


def _is_share(f):
    return all(math.isfinite(float(f.get(k, math.nan))) for k in ("ci_low", "ci_high")) and 0 <= f["value"] <= 1


def _value_text(f):
    if _is_share(f):
        return f"{pct(f['value'])} (95 % CI {pct_range(f['ci_low'], f['ci_high'])}; n = {int(f['n']):,})"
    return f"{f['value']:,.4g} (n = {int(f['n']):,})"


def moved_figures(old: dict, new: dict) -> list[dict]:
    """Figures of ``new`` that moved beyond the interval of ``old`` (or vice versa), and
    figures (or whole scenarios) present in only one: ``[{figure_id, old, new, why}]``.
    ``old`` and ``new`` map scenario -> result dict."""
    out = []
    for name in sorted(set(old) | set(new)):
        if name not in old or name not in new:
            out.append({"figure_id": name, "old": None, "new": None,
                        "why": "new scenario" if name not in old else "scenario removed"})
            continue
        fo = (old.get(name) or {}).get("figures", {})
        fn = (new.get(name) or {}).get("figures", {})
        for metric in sorted(set(fo) | set(fn)):
            a, b = fo.get(metric), fn.get(metric)
            fid = f"{name}.{metric}"
            if a is None or b is None:
                out.append({"figure_id": fid, "old": a and a["value"], "new": b and b["value"],
                            "why": "new figure" if a is None else "figure removed"})
                continue
            if not _is_share(a) or not _is_share(b):
                if a["value"] != b["value"]:
                    out.append({"figure_id": fid, "old": a["value"], "new": b["value"], "why": "count changed"})
                continue
            if not (a["ci_low"] <= b["value"] <= a["ci_high"]) or not (b["ci_low"] <= a["value"] <= b["ci_high"]):
                out.append({"figure_id": fid, "old": a["value"], "new": b["value"],
                            "why": "outside the other run's 95 % interval"})
    return out
