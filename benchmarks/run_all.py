"""One command for the cited figures: named scenarios + the speed benchmarks → BENCHMARKS.md.

    python benchmarks/run_all.py              # everything (about 15-25 min on 2 cores)
    python benchmarks/run_all.py --quick      # smaller scenarios, quick speed runs
    python benchmarks/run_all.py --only scenarios   # or: speed
    python benchmarks/run_all.py --from-results     # rebuild BENCHMARKS.md from saved JSON

Each named scenario (benchmarks/scenarios/*.toml, fixed seeds) is generated, attacked and
summarised into ``benchmarks/results/scenario_<name>.json``: headline privacy figures
with 95 % confidence intervals and the number of devices each rests on, plus machine,
versions and the config hash, so any figure can be cited and re-run.  The speed
benchmarks (bench_generate, bench_infer, bench_attacks, bench_skmob) are run as
separate processes and their JSON results summarised in the same BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import RESULTS, machine, save  # noqa: E402

from sim import __version__  # noqa: E402
from sim.report.findings import figure_label, key_finding, moved_figures  # noqa: E402

SPEED = {
    "generate": ("bench_generate.py", ["--quick"], "generate"),
    "infer": ("bench_infer.py", [], "infer"),
    "attacks": ("bench_attacks.py", ["--quick"], "attacks"),
    "skmob": ("bench_skmob.py", [], "skmob"),
}


def scenario_figures(path: Path, quick: bool) -> dict:
    from sim.api import simulate
    from sim.core.config import Scenario
    from sim.pipeline.evaluate import evaluate_release
    from sim.attacks.gathering import pick_gathering
    from sim.attacks.panel import unicity_vs_panel_size
    from sim.metrics.waterfall import identification_waterfall
    from sim.pipeline.main import HEADLINE_K, MAIN_ATTACK_CONFIG, PANEL_UNICITY, ladder_headline, strongest_set_rung

    scn = Scenario.from_toml(path)
    if quick:
        scn = scn.replace(n_devices=3000, world__residents=30000)
    t0 = time.perf_counter()
    sim = simulate(config=scn)
    cfg = dict(MAIN_ATTACK_CONFIG)
    cfg.update(seed=scn.seed, unicity_p=(2, 4), unicity_v_m=(500.0,), unicity_h_h=(1.0,),
               known_m=(2, 4), known_sigma_m=(0.0, 100.0))
    poly, g0, g1 = pick_gathering(sim.release, sim.world)
    cfg.update(geofence_polygon=poly, geofence_window_s=(g0, g1))
    if scn.ids.rotation_days:
        cfg["relink_period_days"] = float(scn.ids.rotation_days)
    ev = evaluate_release(sim.release, sim, attack_config=cfg)
    T = ev.tables
    fig = {}

    def put(name, row, **extra):
        fig[name] = {"value": float(row["value"]), "ci_low": float(row["ci_low"]),
                     "ci_high": float(row["ci_high"]), "n": int(row["n"]), **extra}

    # the headline (as in the main job): strongest candidate-set rung of the ladder, per device
    rung = strongest_set_rung(T["ladder"])
    h = ladder_headline(T["ladder"], rung)
    for d in sorted(set(h["days"]) & {1, 7, 14} | {int(h["days"].max())}):
        for metric, name, words in (("named", "named", "named uniquely and correctly"),
                                    (f"narrowed_{HEADLINE_K}", f"narrowed_to_{HEADLINE_K}",
                                     f"narrowed to {HEADLINE_K} or fewer people, owner among them")):
            put(f"{name}_after_{int(d)}_days", h[(h["days"] == d) & (h["metric"] == metric)].iloc[0],
                definition=f"devices {words} by the ladder's {rung!r} rung (register {scn.register.profile})")
    curve = h.pivot_table(index="days", columns="metric", values=["value", "ci_low", "ci_high"])
    curve_rows = [{"days": int(d), **{f"{m}_{c}": float(curve.loc[d, (c, m)]) for c in ("value", "ci_low", "ci_high")
                                      for m in curve.columns.get_level_values(1).unique()}} for d in curve.index]
    last = max(ev.inferred_by_day)
    _, ceil = identification_waterfall(ev.inferred_by_day[last], sim.pseudonyms, sim.persons, sim.register,
                                       sim.world)
    for key in ("ceiling_home", "ceiling_exact"):
        put(key, ceil[key], definition=ceil[key]["label"])
    up = unicity_vs_panel_size(sim.release, seed=scn.seed, target_sizes=[scn.residents], **PANEL_UNICITY)
    for _, r in up[(up["metric"] == "unicity") & (up["kind"] == "extrapolated")].iterrows():
        put(f"unicity_p{PANEL_UNICITY['p']}_extrapolated_to_{int(r['n_panel'])}_residents", r,
            definition="fitted unicity-vs-panel-size model (cf. Farzanehfar et al. 2021) at every resident")
    tt = T["time_to_identification"]
    for d in sorted(set(tt["days"]) & {1, 2, 3, 7, 14} | {int(tt["days"].max())}):
        put(f"exact_join_identified_after_{int(d)}_days", tt[tt["days"] == d].iloc[0],
            definition="per pseudonym: unique & correct register match of inferred (home, work) buildings")
    lk = T["linkage"]
    for lvl in ("building", "block", "tract"):
        for key in ("home", "home_work"):
            r = lk[(lk["metric"] == "identified") & (lk["level"] == lvl) & (lk["key"] == key)]
            if len(r):
                put(f"linkage_identified_{key}_{lvl}", r.iloc[0])
            r = lk[(lk["metric"] == "median_set_size") & (lk["level"] == lvl) & (lk["key"] == key)]
            if len(r):
                put(f"median_anonymity_set_{key}_{lvl}", r.iloc[0])
    u = T["unicity"]
    for _, r in u.iterrows():
        put(f"unicity_p{int(r['p'])}_{int(r['v_m'])}m_{r['h_h']:g}h", r)
    kp = T["known_points"]
    for _, r in kp[kp["metric"] == "success"].iterrows():
        put(f"known_points_m{int(r['m'])}_sigma{int(r['sigma_m'])}m", r)
    if "geofence" in T:
        g = T["geofence"]
        for _, r in g.iterrows():
            put(f"geofence_{r['metric']}_{r['key']}_{r['level']}", r)
    if "relink" in T:
        for _, r in T["relink"].iterrows():
            put(f"relink_{r['metric']}", r)
    return {"scenario": scn.name, "file": str(path.relative_to(HERE.parent)), "config_hash": scn.config_hash(),
            "seed": scn.seed, "devices": len(sim.devices), "pings": sim.release.n_pings,
            "days": scn.pings.days, "quick": quick, "seconds": round(time.perf_counter() - t0, 1),
            "figures": fig, "machine": machine(), "scenario_config": scn.to_dict(), "curve": curve_rows,
            "rung": rung, "reidsim_version": __version__}


def scenario_chart(result: dict) -> str:
    """benchmarks/results/<scenario>.png: named and narrowed to 5 against days observed,
    with 95 % intervals; returns its path relative to the repository."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    c = result["curve"]
    fig = Figure(figsize=(5.5, 3.4), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    d = [r["days"] for r in c]
    for m, label, colour in (("named", "named uniquely and correctly", "#C44E52"),
                             ("narrowed_5", "narrowed to 5 or fewer people", "#4C72B0")):
        if f"{m}_value" not in c[0]:
            continue
        v = [100 * r[f"{m}_value"] for r in c]
        ax.plot(d, v, marker="o", ms=3, color=colour, label=label)
        ax.fill_between(d, [100 * r[f"{m}_ci_low"] for r in c], [100 * r[f"{m}_ci_high"] for r in c],
                        color=colour, alpha=0.2, lw=0)
    ax.yaxis.set_major_formatter(PercentFormatter(100, decimals=0))
    ax.set_ylim(0, 100)
    ax.set(xlabel="days of pings observed", ylabel="share of devices",
           title=f"{result['scenario']}: who the pings point to (95 % CI)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left")
    path = RESULTS / f"{result['scenario']}.png"
    fig.savefig(path)
    return str(path.relative_to(HERE.parent))


def run_speed(name: str, quick: bool) -> dict | None:
    script, args, result = SPEED[name]
    if not (HERE / script).exists():
        return None
    t = time.perf_counter()
    p = subprocess.run([sys.executable, str(HERE / script), *args], cwd=HERE, capture_output=True, text=True)
    ok = p.returncode == 0
    res = RESULTS / f"{result}{'_quick' if '--quick' in args and (RESULTS / (result + '_quick.json')).exists() else ''}.json"
    out = {"script": script, "args": args, "ok": ok, "seconds": round(time.perf_counter() - t, 1),
           "result_file": str(res.relative_to(HERE.parent)) if res.exists() else None}
    if not ok:
        out["stderr_tail"] = p.stderr[-2000:]
    return out


def _pct(v: float) -> str:
    v = 100 * v
    return f"{v:.1f}" if v == 0 or abs(v) >= 0.1 else f"{v:.2g}"


def _fmt(f: dict) -> str:
    import math

    v, lo, hi = f["value"], f["ci_low"], f["ci_high"]
    name = f.get("_name", "")
    if not (math.isfinite(lo) and math.isfinite(hi)):  # counts carry no interval
        return f"{v:,.0f}"
    if "anonymity" not in name and abs(v) <= 1.0 and lo <= 1.0 and hi <= 1.0:
        return f"{_pct(v)}% ({_pct(lo)}–{_pct(hi)})"
    return f"{v:,.0f} ({lo:,.0f}–{hi:,.0f})"


def write_markdown(scen: list, speed: dict, command: str = "python benchmarks/run_all.py",
                   moved: list | None = None) -> Path:
    m = machine()
    lines = ["# reidsim benchmark figures", "",
             f"Produced by `{command}` (do not edit by hand). Every figure is a "
             "share of devices (pseudonyms) with its 95 % confidence interval in brackets and the "
             "number of devices it rests on; anonymity-set sizes are medians with a bootstrap CI. "
             "Re-run a scenario from its file and seed to reproduce a figure exactly.", "",
             f"Machine: {m['cpu_count']} cores, {m['memory_gb']} GB; Python {m['versions']['python']}, "
             f"numpy {m['versions']['numpy']}, numba {m['versions']['numba']}, pandas {m['versions']['pandas']}, "
             f"pyarrow {m['versions']['pyarrow']}; run {m['when_utc']}.", ""]
    if scen:
        lines += ["## Key findings", "",
                  "One sentence per real-world story, each with a stable figure id (`reidsim cite FIGURE_ID` "
                  "prints it with its interval, the command that reproduces it and a citation), the scenario file "
                  "and seed, the version, a chart and the assumptions it rests on.", ""]
        for s in scen:
            kf = key_finding(s)
            if kf is None:
                continue
            lines += [f"### {kf['title']}", "", f"**{kf['sentence']}**", "",
                      f"- Figure id: `{kf['figure_id']}` · scenario `{kf['file']}` · seed {kf['seed']} · "
                      f"reidsim {kf['version']}",
                      f"- What it represents: {kf['description']}",
                      f"- Calibrated to: {kf['calibrated_to']}",
                      f"- Assumptions: {kf['assumptions']}"]
            if s.get("chart"):
                lines += ["", f"![{s['scenario']}]({s['chart']})"]
            lines.append("")
        if moved is not None:
            lines += ["## What moved since the last committed run", ""]
            if moved:
                lines += ["| figure | before | now | why |", "|---|---|---|---|"]
                for m in moved:
                    def fv(x):
                        return "—" if x is None else (f"{100 * x:.1f}%" if abs(x) <= 1 else f"{x:,.0f}")
                    lines.append(f"| `{m['figure_id']}` | {fv(m['old'])} | {fv(m['new'])} | {m['why']} |")
            else:
                lines.append("No figure moved beyond its 95 % interval.")
            lines.append("")
        lines += ["## Appendix: every figure of the named scenarios", ""]
        for s in scen:
            lines += [f"### {s['scenario']}" + (" (quick size)" if s["quick"] else ""), "",
                      f"`{s['file']}` · seed {s['seed']} · config hash `{s['config_hash']}` · "
                      f"{s['devices']:,} devices · {s['pings']:,} pings · {s['days']} days · {s['seconds']} s", "",
                      "| figure id | what it is | value (95% CI) | n |", "|---|---|---|---|"]
            for k, f in s["figures"].items():
                f = dict(f, _name=k)
                lines.append(f"| `{s['scenario']}.{k}` | {figure_label(k)} | {_fmt(f)} | {f['n']:,} |")
            lines.append("")
    if speed:
        lines += ["## Speed benchmarks", "",
                  "Timings are ratios against a baseline measured in the same run (this machine is "
                  "shared and noisy); see each JSON for the full record.", ""]
        for name, info in speed.items():
            if info is None:
                lines.append(f"- **{name}**: script not present.")
                continue
            secs = f"{info['seconds']} s" if isinstance(info["seconds"], (int, float)) else info["seconds"]
            lines.append(f"- **{name}** (`{info['script']} {' '.join(info['args'])}`, {secs}): "
                         + ("ok" if info["ok"] else "FAILED") + (f" → `{info['result_file']}`" if info["result_file"] else ""))
            if info["result_file"]:
                lines += ["", "```", _speed_summary(HERE.parent / info["result_file"]), "```", ""]
            full = RESULTS / f"{SPEED[name][2]}.json"
            if "--quick" in info["args"] and full.exists():
                when = json.loads(full.read_text()).get("machine", {}).get("when_utc", "?")
                lines += [f"  Last full-size run (`{info['script']}` without --quick, {when}):", "", "```",
                          _speed_summary(full), "```", ""]
            # runs at other sizes (``--sizes``), saved as <name>_<sizes>.json
            for other in sorted(RESULTS.glob(f"{SPEED[name][2]}_[0-9]*.json")):
                d = json.loads(other.read_text())
                cmd = d.get("command") or f"{info['script']} ({other.name})"
                lines += [f"  Run at other sizes (`{cmd}`, {d.get('machine', {}).get('when_utc', '?')}):"]
                lines += ["", "```", _speed_summary(other), "```", ""]
    lines += _scale_section(RESULTS / "scale.json")
    lines += _end_to_end_section(RESULTS / "run_1000000.json")
    p = HERE.parent / "BENCHMARKS.md"
    tmp = p.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(p)
    return p


def _scale_section(path: Path) -> list:
    """The scaling benchmark's figures (``bench_scale.py``, not re-run here: it takes about
    an hour at 1 M devices): wall time, CPU time and peak RSS per stage and size, the
    fitted log-log slopes, the prediction for 12 M devices x 120 days, and the plot."""
    if not path.exists():
        return []
    d = json.loads(path.read_text())
    rows = d.get("rows", [])
    when = d.get("machine", {}).get("when_utc", "?")
    out = ["## Scaling (out of core)", "",
           f"From `{d.get('command', 'python benchmarks/bench_scale.py')}` ({when}; not re-run by this script), "
           f"{d.get('days')} days, parts of {d.get('block_devices', 0):,} devices, each stage in a fresh process on "
           "this shared machine; peak RSS is the process's VmHWM. Full record: `benchmarks/results/scale.json`.", "",
           f"![time and memory per stage against devices x days]({path.with_suffix('.png').relative_to(HERE.parent)})",
           "", "| stage | devices | pings | wall (s) | CPU (s) | peak RSS (GiB) |", "|---|---|---|---|---|---|"]
    release_pings = {r["devices"]: r["pings"] for r in rows if r["stage"] == "generate"}
    for r in rows:
        pings = r.get("pings", release_pings.get(r["devices"], 0))  # `run` generates the same release
        out.append(f"| {r['stage']} | {r['devices']:,} | {pings:,} | {r['wall_s']:,.1f} | "
                   f"{r['cpu_s']:,.1f} | {r['peak_rss_mb'] / 1024:.2f} |")
    model = d.get("model", {})
    slopes = {k: v.get("wall_vs_device_days") for k, v in model.get("slopes", {}).items()
              if v.get("wall_vs_device_days") is not None}
    if slopes:
        out += ["", "Slope of log(wall time) on log(devices x days) (1 = linear; target: within 10 % of 1), fitted "
                "over every size, between consecutive sizes, and the fit wall = fixed + rate x device-days "
                "(a slope below 1 with a positive fixed cost is that cost amortised, not work growing slower):", "",
                "| stage | slope (all sizes) | slope between sizes | fixed (s) | s per 1 M device-days |",
                "|---|---|---|---|---|"]
        for k, v in model["slopes"].items():
            if v.get("wall_vs_device_days") is None:
                continue
            seg = ", ".join(f"{g['from_devices']:,}→{g['to_devices']:,}: {g['slope']:.2f}"
                            for g in v.get("wall_segments", []))
            fl = v.get("fixed_plus_linear") or {}
            out.append(f"| {k} | {v['wall_vs_device_days']:.2f} | {seg} | "
                       f"{fl.get('fixed_s', float('nan')):,.1f} | {fl.get('s_per_m_device_days', float('nan')):,.1f} |")
    rst = model.get("run_stages") or {}
    if rst.get("split"):
        out += ["", "`reidsim run`'s stages (its `run.json`) at the sizes where it streams: the stages whose work "
                f"grows with the release ({', '.join(k[:-2] for k in rst['data_stages'])}) and the rest, which "
                "work on the fixed-size device sample and the whole register:", "",
                "| devices | release stages (s) | sample stages (s) |", "|---|---|---|"]
        out += [f"| {x['devices']:,} | {x['data_s']:,.1f} | {x['sample_s']:,.1f} |" for x in rst["split"]]
        if rst.get("data_slope") is not None:
            out += ["", f"Slope of the release stages {rst['data_slope']:.2f}, of the sample stages "
                    f"{rst['sample_slope']:.2f}."]
    pred = model.get("prediction", {})
    if pred.get("per_workers"):
        out += ["", f"Predicted for {pred['devices']:,} devices x {pred['days']} days ({pred['pings']:,} pings) on N "
                "machines like this one (assumptions in `scale.json` → `model.assumptions`):", "",
                "| workers | generate (s) | streaming inference (s) | streaming attack (s) |", "|---|---|---|---|"]
        for w in pred["per_workers"]:
            out.append(f"| {w['workers']} | {w['generate_s']} | {w.get('stream_infer_s')} | "
                       f"{w.get('stream_attack_s')} |")
    return out + [""]


def _end_to_end_section(path: Path) -> list:
    """``reidsim run`` at 1 M devices (``bench_run.py``, not re-run here: about 40 min):
    seconds and peak RSS per stage against the scale targets."""
    if not path.exists():
        return []
    d = json.loads(path.read_text())
    wall = d.get("wall_s")
    met = d.get("met", {})
    out = ["## `reidsim run` end to end at 1,000,000 devices", "",
           f"From `{d.get('command', 'python benchmarks/bench_run.py')}` (`{d.get('reidsim_command', '')}`; "
           f"{d.get('machine', {}).get('when_utc', d.get('when_utc', '?'))}; not re-run by this script), "
           "one run on this shared 2-core machine. Targets: <= 15 min wall and <= 4 GiB peak RSS in every stage. "
           f"Full record: `{path.relative_to(HERE.parent)}`.", "",
           "| stage | seconds | peak RSS (MiB) | resident at its start (MiB) |", "|---|---|---|---|"]
    peaks, starts = d.get("peak_rss_mb", {}), d.get("start_rss_mb") or {}
    for k, v in d.get("timings_s", {}).items():
        st = k[:-2] if k.endswith("_s") else k
        pk, s0 = peaks.get(st), starts.get(st)
        out.append(f"| {st} | {v:,.1f} | {'' if pk is None else f'{pk:,.0f}'} | {'' if s0 is None else f'{s0:,.0f}'} |")
    if wall is not None:
        out.append(f"| **all (wall clock)** | **{wall:,.1f}** | **{max(v for v in peaks.values() if v):,.0f}** | |")
    if met:
        out += ["", f"Wall-time target met: {'yes' if met.get('wall') else 'no'}; every stage under 4 GiB: "
                f"{'yes' if met.get('every_stage_main_process') else 'no'}"]
        if peaks:  # the target read in decimal units: 4 GB = 4e9 bytes = 3,815 MiB
            over = [k for k, v in peaks.items() if v and v * 2**20 > 4e9]
            out[-1] += (f"; under 4 GB read in decimal units (3,815 MiB): "
                        f"{'yes' if not over else 'no (' + ', '.join(over) + ')'}.")
        else:
            out[-1] += "."
    if d.get("headline"):
        out += ["", f"Headline of that run: {d['headline']}"]
    return out + [""]


def _speed_summary(path: Path) -> str:
    d = json.loads(path.read_text())
    rows = d.get("rows") or d.get("results") or []
    if isinstance(rows, dict):  # {name: {...}} -> one line per entry, scalars only
        rows = [{"name": k, **{kk: vv for kk, vv in v.items() if not isinstance(vv, (dict, list))}}
                if isinstance(v, dict) else {"name": k, "value": v} for k, v in rows.items()]
    out = []
    for r in rows if isinstance(rows, list) else []:
        keep = {k: v for k, v in r.items() if not isinstance(v, (dict, list))}
        out.append(json.dumps(keep))
    for k in ("peak_rss_growth", "summary", "targets", "status", "note"):
        if k in d:
            out.append(f"{k}: {json.dumps(d[k])}")
    return "\n".join(out) if out else json.dumps({k: v for k, v in d.items() if k != "machine"})[:1500]


def _speed_from_results() -> dict:
    """The speed section from the saved results (for runs that do not re-run it)."""
    speed = {}
    for name, (script, args, result) in SPEED.items():
        rf = RESULTS / f"{result}{'_quick' if '--quick' in args else ''}.json"
        speed[name] = ({"script": script, "args": args, "ok": True, "seconds": "not re-run",
                        "result_file": str(rf.relative_to(HERE.parent))} if rf.exists() else None)
    return speed


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller scenarios and quick speed runs")
    ap.add_argument("--only", choices=["scenarios", "speed"], default=None)
    ap.add_argument("--scenario", nargs="+", help="run only these named scenarios (file stems)")
    ap.add_argument("--from-results", action="store_true",
                    help="re-run nothing: rebuild BENCHMARKS.md from benchmarks/results/*.json")
    a = ap.parse_args()
    if a.from_results:
        scen = [json.loads(f.read_text()) for f in sorted(RESULTS.glob("scenario_*.json"))]
        print(f"wrote {write_markdown(scen, _speed_from_results(), command='python benchmarks/run_all.py --from-results')}")
        return
    committed = {json.loads(f.read_text())["scenario"]: json.loads(f.read_text())
                 for f in sorted(RESULTS.glob("scenario_*.json"))}
    moved = None
    if a.only in (None, "scenarios"):
        files = sorted((HERE / "scenarios").glob("*.toml"))
        if a.scenario:
            files = [f for f in files if f.stem in a.scenario]
            unknown = sorted(set(a.scenario) - {f.stem for f in files})
            if unknown:
                ap.error(f"unknown scenario(s) {unknown}; known: {[f.stem for f in sorted((HERE / 'scenarios').glob('*.toml'))]}")
        fresh = {}
        for f in files:
            print(f"scenario {f.stem} ...", flush=True)
            s = scenario_figures(f, a.quick)
            s["chart"] = scenario_chart(s)
            save(f"scenario_{s['scenario']}", s)
            fresh[s["scenario"]] = s
        moved = moved_figures({k: v for k, v in committed.items() if k in fresh}, fresh)
        moved += [m for m in moved_figures(committed, fresh) if m["why"] == "new scenario"]
        moved = [m for m in moved if not (m["why"] == "new figure" and m["figure_id"].split(".")[0] not in committed)]
        for m in moved:
            print(f"moved: {m['figure_id']}: {m['old']} -> {m['new']} ({m['why']})")
        if not moved:
            print("no figure moved beyond its 95 % interval")
    scen = [json.loads(f.read_text()) for f in sorted(RESULTS.glob("scenario_*.json"))]
    speed = _speed_from_results()
    if a.only in (None, "speed"):
        for name in SPEED:
            print(f"speed benchmark {name} ...", flush=True)
            speed[name] = run_speed(name, a.quick)
    print(f"wrote {write_markdown(scen, speed, moved=moved)}")


if __name__ == "__main__":
    main()
