"""Scale benchmark: generation, streaming inference and streaming attacks from 10k to 1M
devices, with a cost model extrapolated to 12M devices x 120 days.

For each size, in fresh processes (so wall time, CPU time and peak RSS are the stage's own):
  * ``generate``: ``reidsim generate --devices N --days D --block-devices 50000`` (run
    through ``sim.cli.main`` in the child);
  * ``largest_part``: read the largest release part and infer it (the unit of work of
    streaming inference: its memory is what one worker must hold);
  * ``stream``: ``sim.pipeline.stream.infer_streaming`` (local backend, part after part,
    per-part Parquet+CSV and the concatenated table as ``reidsim infer`` writes them);
  * ``whole`` (only up to ``--whole-max-devices``): ``load_release`` + ``infer_home_work``
    + ``write_table``, the in-memory path, for comparison;
  * ``attack``: ``sim.pipeline.stream_attacks.attack_streaming`` with the settings of
    ``reidsim attack`` (the main job's: every attack, inference of every window, a picked
    geofence; local backend), writing what ``reidsim attack`` writes;
  * ``attack_whole`` (only up to ``--whole-max-devices``): ``reidsim attack --in-memory``'s
    path (``load`` + ``infer_step`` + ``attack_step``), for comparison;
  * ``defend``: ``sim.pipeline.defend.defend_streaming`` with :data:`DEFENSES` (local
    backend, part by part), writing the defended dataset as ``reidsim defend`` does;
  * ``run`` (only up to ``--run-max-devices``): ``reidsim run`` end to end on the same
    scenario (it generates again, then streams the attack above ``--sample-devices``'s
    default and measures the context figures, defenses and report on the sample); its
    row also carries the per-stage seconds and peak RSS of ``run.json``.
Readers skip part hashing (``verify_hashes=False``) so every size does the same work
(``reidsim infer`` hashes releases up to 2 GiB).  Peak RSS is the child's VmHWM
(``/proc/self/status``), which unlike ``ru_maxrss`` is not inherited from the parent.

Cost model: per stage, the slope of log(wall time) against log(devices x days) (1 =
linear); memory: peak RSS against the pings of the largest part (streaming) or of the
release (whole) or residents (generate), linear fits; for the streaming attack, what it
holds above streaming inference at the same size, linear in pseudonyms.  The prediction
for 12M devices x 120 days on N workers assumes the per-part stages are perfectly
parallel over parts, generation's synthesis (world, population, register: one process)
and the streaming attack's reduce (the per-device attacks, in the driver) are serial, a
part size chosen so a part holds what a 50,000-device x 30-day part holds, and no I/O
limit beyond what was measured on local disk.

    python benchmarks/bench_scale.py --quick            # 2k/10k/50k devices x 7 days (~3 min)
    python benchmarks/bench_scale.py                    # 10k/100k/1M devices x 30 days
    python benchmarks/bench_scale.py --max-devices 100000 --merge   # keep the 1M rows already measured
    python benchmarks/bench_scale.py --stages attack --max-devices 100000 --merge
    python benchmarks/bench_scale.py --refit            # the model and plot again from scale.json

Results: benchmarks/results/scale.json (scale_quick.json with --quick), saved after every
stage, and a log-log plot scale.png (scale_quick.png).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, machine, save  # noqa: E402

BLOCK = 50_000
TARGET_DEVICES, TARGET_DAYS = 12_000_000, 120
PREDICT_WORKERS = (1, 2, 8, 32, 128)
#: the trace defenses of the ``defend`` stage (coarsening and a night-time blackout)
DEFENSES = ["grid:cell_m=500", "night_suppression:duration_h=8,end_h=6"]
STAGES = ("generate", "largest_part", "stream", "whole", "attack", "attack_whole", "defend", "run")
#: the stages' names in the plot
LABELS = {"generate": "generate", "largest_part": "infer the largest part", "stream": "inference (streaming)",
          "whole": "inference (whole release)", "attack": "attack (streaming)",
          "attack_whole": "attack (whole release)", "defend": "defend (streaming)",
          "run": "reidsim run (end to end)"}

PRELUDE = """
import json, resource, sys, time
from sim.core.memory import peak_rss_mb
def _peak_mb():
    v = peak_rss_mb()  # VmHWM; ru_maxrss where /proc is missing
    return v if v is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
_t0, _r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
"""
EPILOGUE = """
_r1 = resource.getrusage(resource.RUSAGE_SELF)
res.update(wall_s=time.perf_counter() - _t0, cpu_s=(_r1.ru_utime - _r0.ru_utime) + (_r1.ru_stime - _r0.ru_stime),
           peak_rss_mb=_peak_mb())
print(json.dumps(res))
"""

GEN = """
from sim.cli import main
_t0, _r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)  # imports excluded
rc = main(['generate', '--devices', '{n}', '--days', '{days}', '--block-devices', '{block}', '--seed', '1',
           '--out', {out!r}, '-q'])
assert rc == 0, rc
man = json.load(open({out!r} + '/manifest.json'))
res = dict(pings=man['rows']['pings'], pseudonyms=man['rows']['pseudonyms'], persons=man['rows']['persons'],
           parts=len(man['parts']), release_bytes=sum(p['bytes'] for p in man['parts']),
           largest_part_pings=max(p['rows'] for p in man['parts']), timings=man['timings_s'])
"""

PART = """
from sim.release.dataset import check_dataset, read_release_part
from sim.infer import infer_home_work
_t0, _r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
man = check_dataset({d!r}, verify_hashes=False)
big = max(man['parts'], key=lambda r: r['rows'])
inf = infer_home_work(read_release_part({d!r}, big['file'], man))
res = dict(pings=int(big['rows']), rows=len(inf))
"""

STREAM = """
from sim.pipeline.stream import infer_streaming
_t0, _r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
s = infer_streaming({d!r}, out_dir={out!r}, verify_hashes=False)
res = dict(pings=s['pings'], rows=s['rows'], parts=s['parts'], concatenated=s['inferred_file'] is not None,
           part_seconds_max=max(p['seconds'] for p in s['per_part']))
"""

ATTACK = """
from sim.pipeline.main import MAIN_ATTACK_CONFIG
from sim.pipeline.stream_attacks import attack_streaming, dataset_attack_config
_t0, _r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
s = attack_streaming({d!r}, out_dir={out!r}, config=dataset_attack_config({d!r}, MAIN_ATTACK_CONFIG),
                     verify_hashes=False)
res = dict(pings=s['pings'], rows=s['pseudonyms'], parts=s['parts'],
           passes={{k: v['seconds'] for k, v in s['passes'].items()}},
           part_map_seconds_max=max(p['map_seconds'] for p in s['per_part']),
           part_count_seconds_max=max(p['count_seconds'] or 0 for p in s['per_part']),
           inferred_written=s['inferred_written'], tables=len(s['tables']))
"""

DEFEND = """
from sim.pipeline.defend import defend_streaming
_t0, _r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
s = defend_streaming({d!r}, {out!r}, {defenses!r}, verify_hashes=False)
res = dict(pings=sum(r['pings_in'] for r in s['per_part']), pings_out=s['rows']['pings'], parts=len(s['parts']))
"""

RUN = """
from sim.cli import main
_t0, _r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)  # imports excluded
open({out!r} + '.toml', 'w').write('seed = 1\\nn_devices = {n}\\nblock_devices = {block}\\n[pings]\\ndays = {days}\\n')
rc = main(['run', '--config', {out!r} + '.toml', '--out', {out!r}, '-q'])
assert rc == 0, rc
info = json.load(open({out!r} + '/run.json'))
res = dict(run_timings_s=info['timings_s'], run_peak_rss_mb=info.get('peak_rss_mb'), sample=info.get('sample'))
"""

ATTACK_WHOLE = """
from pathlib import Path
from sim.release.dataset import load
from sim.pipeline.main import attack_step, infer_step
_t0, _r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
sim = load({d!r}, verify_hashes=False)
ibd, _ = infer_step(sim, Path({out!r}))
tables, _ = attack_step(sim, Path({out!r}), ibd)
res = dict(pings=int(sim.release.n_pings), rows=int(sim.release.n_traces), tables=len(tables))
"""

WHOLE = """
from pathlib import Path
from sim.release.dataset import load_release, read_manifest
from sim.infer import infer_home_work
from sim.core.files import write_table
_t0, _r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
rel = load_release({d!r}, verify_hashes=False)
inf = infer_home_work(rel)
write_table(inf, Path({out!r}) / 'inferred', dataset_id=read_manifest({d!r})['dataset_id'])
res = dict(pings=int(rel.n_pings), rows=len(inf))
"""


def child(code: str, timeout: float) -> dict:
    """Run ``code`` in a fresh Python; returns its result with wall_s, cpu_s, peak_rss_mb."""
    env = dict(os.environ)
    p = subprocess.run([sys.executable, "-c", PRELUDE + code + EPILOGUE], capture_output=True, text=True,
                       env=env, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ model
def loglog_slope(x, y):
    """Least-squares slope and intercept of log y on log x (None with < 2 points)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = (x > 0) & (y > 0)
    if ok.sum() < 2:
        return None, None
    b, a = np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)
    return float(b), float(a)


def linear(x, y):
    """Least-squares y = c0 + c1 x (None with < 2 points)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2 or np.ptp(x) == 0:
        return None, None
    c1, c0 = np.polyfit(x, y, 1)
    return float(c0), float(c1)


def slope_detail(rs: list) -> dict:
    """How a stage's wall time grows, beyond the one fitted slope.

    ``wall_segments``: the log-log slope between each pair of consecutive sizes (the
    slope between the two largest is the one least weighed by fixed costs);
    ``fixed_plus_linear``: the least-squares fit wall = fixed_s + s_per_m_device_days x
    (devices x days / 1e6) -- a slope below 1 with fixed_s > 0 is a fixed cost
    amortised over the sizes, not cost growing more slowly than the work;
    ``within_10pct_of_linear``: whether the fitted slope (all sizes) and the top
    segment's are each within 10 % of 1, the scale target."""
    rs = sorted(rs, key=lambda r: r["device_days"])
    seg = []
    for r0, r1 in zip(rs, rs[1:]):
        if r0["device_days"] < r1["device_days"] and r0["wall_s"] > 0 and r1["wall_s"] > 0:
            seg.append({"from_devices": r0["devices"], "to_devices": r1["devices"],
                        "slope": math.log(r1["wall_s"] / r0["wall_s"]) / math.log(r1["device_days"] / r0["device_days"])})
    c0, c1 = linear([r["device_days"] / 1e6 for r in rs], [r["wall_s"] for r in rs])
    b, _ = loglog_slope([r["device_days"] for r in rs], [r["wall_s"] for r in rs])
    return {
        "wall_segments": seg,
        "fixed_plus_linear": None if c1 is None else {"fixed_s": c0, "s_per_m_device_days": c1},
        "within_10pct_of_linear": {
            "fit": None if b is None else abs(b - 1) <= 0.1,
            "top_segment": abs(seg[-1]["slope"] - 1) <= 0.1 if seg else None},
    }


#: `reidsim run`'s stages whose work grows with the release (the rest, above the sample
#: size, measure the context figures, defenses and report on a fixed-size device sample)
RUN_DATA_STAGES = ("generate_s", "infer_attacks_streaming_s")


def run_stages(rs: list) -> dict:
    """`reidsim run`'s seconds per stage and size (its ``run.json``), split into the
    stages whose work grows with the release (generation, the streaming attack) and the
    ones that work on the fixed-size device sample (plus the whole register), with the
    log-log slope of each part between the streamed sizes (a run at or below the sample
    size runs in memory: a different split, left out of the slopes)."""
    rs = sorted(rs, key=lambda r: r["device_days"])
    per = {str(r["devices"]): r.get("run_timings_s", {}) for r in rs}
    streamed = [r for r in rs if "infer_attacks_streaming_s" in r.get("run_timings_s", {})]
    split = [{"devices": r["devices"], "device_days": r["device_days"],
              "data_s": sum(v for k, v in r["run_timings_s"].items() if k in RUN_DATA_STAGES),
              "sample_s": sum(v for k, v in r["run_timings_s"].items() if k not in RUN_DATA_STAGES)}
             for r in streamed]
    out = {"seconds": per, "split": split, "data_stages": list(RUN_DATA_STAGES)}
    for part in ("data_s", "sample_s"):
        b, _ = loglog_slope([x["device_days"] for x in split], [x[part] for x in split])
        out[f"{part[:-2]}_slope"] = b
    return out


def estimate_mb(devices: int, days: int, block: int) -> float:
    """The project's generation memory estimate (MB) for the CLI's scenario at this size."""
    from sim.core.config import Scenario, memory_estimate

    scn = Scenario(n_devices=devices, block_devices=block).replace(pings__days=days)
    return memory_estimate(scn)["total"] / 2**20


def model(rows: list) -> dict:
    """Fitted slopes, throughputs, memory models and the 12M x 120-day prediction."""
    by = {s: [r for r in rows if r["stage"] == s] for s in STAGES}
    out = {"slopes": {}, "memory": {}, "assumptions": [], "prediction": {}}
    for s, rs in by.items():
        b, _ = loglog_slope([r["device_days"] for r in rs], [r["wall_s"] for r in rs])
        bc, _ = loglog_slope([r["device_days"] for r in rs], [r["cpu_s"] for r in rs])
        bm, _ = loglog_slope([r["device_days"] for r in rs], [r["peak_rss_mb"] for r in rs])
        out["slopes"][s] = {"wall_vs_device_days": b, "cpu_vs_device_days": bc, "rss_vs_device_days": bm,
                            "points": len(rs), **slope_detail(rs)}
    if by["run"]:
        out["run_stages"] = run_stages(by["run"])
    gens = by["generate"]
    if not gens:
        return out
    big = max(gens, key=lambda r: r["device_days"])
    pings_per_dd = big["pings"] / big["device_days"]
    bytes_per_ping = big["release_bytes"] / big["pings"]
    # memory models
    out["memory"]["generate_mb"] = {
        "model": "sim.core.config.memory_estimate (fixed + 480 B/resident + 300 B/device + 300 B/pseudonym "
                 "+ one block at 120 B/ping); measured / estimated peak per size:",
        "measured_over_estimate": {str(r["devices"]): round(r["peak_rss_mb"] / r["estimate_mb"], 2)
                                   for r in gens if r.get("estimate_mb")}}
    st = by["stream"] + by["largest_part"]
    s0, s1 = linear([r["largest_part_pings"] for r in st], [r["peak_rss_mb"] for r in st])
    out["memory"]["stream_mb"] = {"formula": "c0 + c1 * pings of the largest part", "c0": s0,
                                  "c1_per_ping": s1}
    if by["whole"]:
        w0, w1 = linear([r["pings"] for r in by["whole"]], [r["peak_rss_mb"] for r in by["whole"]])
        out["memory"]["whole_mb"] = {"formula": "c0 + c1 * pings of the release", "c0": w0, "c1_per_ping": w1}
    # the streaming attack: a part's pings (as streaming inference) plus the driver's per-pseudonym tables;
    # measured as the bytes per pseudonym above streaming inference's peak at the same size
    stream_at = {r["devices"]: r for r in by["stream"]}
    above = [(r["rows"], r["peak_rss_mb"] - stream_at[r["devices"]]["peak_rss_mb"])
             for r in by["attack"] if r["devices"] in stream_at and r.get("rows")]
    a0, a1 = linear([x for x, _ in above], [y for _, y in above])
    if by["attack"]:
        out["memory"]["attack_mb"] = {
            "model": "peak of streaming inference at the same size (one part) + c0 + c1 * pseudonyms: what the "
                     "driver holds beyond a part (inferred tables of every window, observed span, register and "
                     "truth tables, the per-device attacks' working memory), fitted across sizes",
            "c0": a0, "c1_per_pseudonym": a1,
            "above_stream_mb": {str(r["devices"]): round(y) for r, (_, y) in zip(by["attack"], above)},
            "peak_mb": {str(r["devices"]): round(r["peak_rss_mb"]) for r in by["attack"]},
            "whole_release_peak_mb": {str(r["devices"]): round(r["peak_rss_mb"]) for r in by["attack_whole"]}}
    # prediction
    dd = TARGET_DEVICES * TARGET_DAYS
    pings = dd * pings_per_dd
    # parts as big (in device-days) as a 50,000-device x 30-day part
    block = max(1, int(BLOCK * 30 / TARGET_DAYS))
    n_parts = math.ceil(TARGET_DEVICES / block)
    part_pings = pings / n_parts
    device_share = big["devices"] / big["persons"]
    residents = TARGET_DEVICES / device_share
    stream_big = max(by["stream"], key=lambda r: r["device_days"]) if by["stream"] else None

    def scaled(r, key="wall_s", slope=None):
        """Stage time at the target size from the largest measured point and the slope."""
        b = 1.0 if slope is None else max(1.0, slope)  # never extrapolate sub-linearly
        return r[key] * (dd / r["device_days"]) ** b

    synth_s = big["timings"]["synthesize"] * residents / big["persons"]  # linear in residents, serial
    gen_slope = out["slopes"]["generate"]["wall_vs_device_days"]
    ping_stage_1w = scaled({"wall_s": big["timings"]["pings"], "device_days": big["device_days"]},
                           slope=gen_slope)
    stream_1w = scaled(stream_big, slope=out["slopes"]["stream"]["wall_vs_device_days"]) if stream_big else None
    attack_big = max(by["attack"], key=lambda r: r["device_days"]) if by["attack"] else None
    attack_par_1w = attack_ser = attack_driver_mb = None
    if attack_big:  # passes over parts run in parallel; the reduce (per-device attacks) is serial
        from sim.pipeline.evaluate import observation_days

        ser = attack_big["passes"].get("reduce", 0.0)
        slope = out["slopes"]["attack"]["wall_vs_device_days"]
        attack_par_1w = scaled({"wall_s": attack_big["wall_s"] - ser, "device_days": attack_big["device_days"]},
                               slope=slope)
        # the reduce works on one row per pseudonym and observation window: linear in both
        ps_per_device = attack_big["rows"] / attack_big["devices"]
        windows = len(observation_days(TARGET_DAYS)) / len(observation_days(attack_big["days"]))
        rows_ratio = windows * TARGET_DEVICES * ps_per_device / attack_big["rows"]
        attack_ser = ser * rows_ratio
        if a1 is not None:
            attack_driver_mb = round(a0 + a1 * windows * TARGET_DEVICES * ps_per_device)
    cpu_stream_1w = scaled(stream_big, "cpu_s", slope=out["slopes"]["stream"]["cpu_vs_device_days"]) \
        if stream_big else None
    threads = os.cpu_count() or 1
    pred = {
        "devices": TARGET_DEVICES, "days": TARGET_DAYS, "device_days": dd,
        "pings": round(pings), "pings_per_device_day_measured": round(pings_per_dd, 2),
        "release_bytes": round(pings * bytes_per_ping), "bytes_per_ping_measured": round(bytes_per_ping, 2),
        "block_devices": block, "parts": n_parts, "pings_per_part": round(part_pings),
        "residents": round(residents),
        "generate_synthesize_s_serial": round(synth_s),
        "generate_driver_memory_mb": round(estimate_mb(TARGET_DEVICES, TARGET_DAYS, block)),
        "stream_worker_memory_mb": round(s0 + s1 * part_pings) if s1 is not None else None,
        "whole_release_memory_mb": (round(out["memory"]["whole_mb"]["c0"] + out["memory"]["whole_mb"][
            "c1_per_ping"] * pings) if "whole_mb" in out["memory"] and out["memory"]["whole_mb"]["c1_per_ping"]
            is not None else None),
        "attack_driver_memory_mb": attack_driver_mb,
        "measured_on_threads": threads,
        "per_workers": [],
    }
    for n in PREDICT_WORKERS:
        # the measured runs used every core of this machine; a "worker" here = this machine's cores
        pred["per_workers"].append({
            "workers": n,
            "generate_s": round(synth_s + ping_stage_1w / n),
            "stream_infer_s": round(stream_1w / n) if stream_1w else None,
            "stream_infer_cpu_s_total": round(cpu_stream_1w) if cpu_stream_1w else None,
            "stream_attack_s": round(attack_par_1w / n + attack_ser) if attack_par_1w is not None else None,
        })
    out["prediction"] = pred
    out["assumptions"] = [
        "a worker is one machine like this one (2 cores); per-part stages (generation's ping stage, "
        "streaming inference) are perfectly parallel over parts, with no scheduler or network cost",
        "time is extrapolated from the largest measured size with the fitted log-log slope (never below 1: "
        f"linear at least), over a factor {dd / big['device_days']:.0f} in devices x days",
        "generation's synthesis (world, population, register) runs serially in one process and grows "
        "linearly with residents (devices / device_share); its memory follows the project's "
        "memory_estimate (residents dominate: the driver memory figure) -- this, not the ping stage, is "
        "the first wall",
        f"parts of {block:,} devices x {TARGET_DAYS} days (as many device-days as a 50,000 x 30 part), so a "
        "worker's memory stays at the measured per-part level",
        "I/O as measured on this machine's local disk; the release is written and read once; no shared or "
        "object storage (workers read parts by path)",
        "the streaming attack's passes over parts (map incl. inference, count) are perfectly "
        "parallel; its reduce (the per-device attacks on the per-pseudonym tables) runs serially in the "
        "driver, linear in pseudonyms x observation windows; the driver's memory above one part grows the "
        "same way (attack_mb: c0 + c1 x pseudonyms, fitted across the measured sizes, scaled by the "
        "windows)",
        "`reidsim run` = generation + the streaming attack + the context figures, defenses and report on a "
        "fixed-size device sample (their cost grows with the register, not the release: run_stages)",
    ]
    return out


# ------------------------------------------------------------------ plot
def plot(rows: list, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.2))
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    for s in STAGES:
        rs = sorted((r for r in rows if r["stage"] == s), key=lambda r: r["device_days"])
        if not rs:
            continue
        x = [r["device_days"] for r in rs]
        ax1.plot(x, [r["wall_s"] for r in rs], "o-", label=LABELS.get(s, s))
        ax2.plot(x, [r["peak_rss_mb"] / 1024 for r in rs], "o-", label=LABELS.get(s, s))
    xs = sorted({r["device_days"] for r in rows})
    if len(xs) > 1:  # a guide of slope 1 (cost proportional to devices x days) through the middle stage's end
        ends = sorted(r["wall_s"] for r in rows if r["device_days"] == xs[-1])
        y1 = ends[len(ends) // 2]
        ax1.plot([xs[0], xs[-1]], [y1 * xs[0] / xs[-1], y1], ":", color="0.4", lw=1.5, label="slope 1 (linear)")
    for ax, yl in ((ax1, "wall time (s)"), (ax2, "peak RSS (GiB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("devices x days")
        ax.set_ylabel(yl)
        ax.grid(True, which="both", alpha=0.3)
    ax1.legend(fontsize=8)
    ax1.set_title("time per stage")
    ax2.set_title("peak memory per stage")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# ------------------------------------------------------------------ main
def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2k/10k/50k devices x 7 days")
    ap.add_argument("--max-devices", type=int, default=None, help="skip sizes above this")
    ap.add_argument("--days", type=int, default=None, help="override the window (default 30; 7 with --quick)")
    ap.add_argument("--block-devices", type=int, default=None,
                    help=f"devices per part (default {BLOCK:,}; 10,000 with --quick so parts are several)")
    ap.add_argument("--whole-max-devices", type=int, default=300_000,
                    help="run the whole-release comparison only up to this many devices")
    ap.add_argument("--run-max-devices", type=int, default=100_000,
                    help="run the end-to-end `reidsim run` stage only up to this many devices")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per child process")
    ap.add_argument("--workdir", default=None, help="where datasets go (default a temporary folder)")
    ap.add_argument("--stages", default=",".join(STAGES),
                    help=f"comma-separated stages to run (default all: {','.join(STAGES)}; generate always runs)")
    ap.add_argument("--merge", action="store_true",
                    help="keep the rows of the existing results file for the sizes and stages this run does not "
                         "measure (same window and part size), so a partial run updates it")
    ap.add_argument("--refit", action="store_true",
                    help="measure nothing: refit the cost model and redraw the plot from the saved results")
    a = ap.parse_args()
    name = "scale_quick" if a.quick else "scale"
    if a.refit:
        payload = json.loads((RESULTS / f"{name}.json").read_text())
        payload["model"] = model(payload["rows"])
        save(name, payload)
        plot(payload["rows"], RESULTS / f"{name}.png")
        print(json.dumps(payload["model"]["slopes"], indent=2))
        return
    stages = {x.strip() for x in a.stages.split(",") if x.strip()} | {"generate"}
    unknown = sorted(stages - set(STAGES))
    if unknown:
        ap.error(f"unknown stage(s) {unknown}; choose from {', '.join(STAGES)}")
    sizes = [2_000, 10_000, 50_000] if a.quick else [10_000, 100_000, 1_000_000]
    days = a.days or (7 if a.quick else 30)
    if a.max_devices:
        sizes = [n for n in sizes if n <= a.max_devices]
    block = a.block_devices or (10_000 if a.quick else BLOCK)
    tmp = Path(tempfile.mkdtemp(prefix="reidsim-scale-", dir=a.workdir))
    kept = []
    if a.merge and (RESULTS / f"{name}.json").exists():
        prior = json.loads((RESULTS / f"{name}.json").read_text())
        if prior.get("days") == days and prior.get("block_devices") == block:
            kept = [r for r in prior.get("rows", []) if not (r["devices"] in sizes and r["stage"] in stages)]
        else:
            print(f"not merging: {name}.json was measured with another window or part size", file=sys.stderr)
    rows, payload = list(kept), {}
    command = "python benchmarks/bench_scale.py " + " ".join(sys.argv[1:])
    if a.workdir:  # the record names no local folder
        command = command.replace(a.workdir, "WORKDIR")

    def record(row):
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "timings"}), flush=True)
        all_sizes = sorted({r["devices"] for r in rows} | set(sizes))
        payload.update(benchmark="scale", machine=machine(), days=days, sizes=all_sizes, block_devices=block,
                       rows=sorted(rows, key=lambda r: (r["devices"], STAGES.index(r["stage"]))),
                       model=model(rows), complete=False, command=command.strip(),
                       merged_rows=len(kept))
        save(name, payload)

    try:
        child(GEN.format(n=200, days=2, block=BLOCK, out=str(tmp / "warm")), a.timeout)  # numba cache
        child(STREAM.format(d=str(tmp / "warm"), out=str(tmp / "warm-o")), a.timeout)
        if stages & {"attack", "attack_whole"}:
            child(ATTACK.format(d=str(tmp / "warm"), out=str(tmp / "warm-a")), a.timeout)
        for w in ("warm", "warm-o", "warm-a"):
            shutil.rmtree(tmp / w, ignore_errors=True)
        for n in sizes:
            d = tmp / f"d{n}"
            common = {"devices": n, "days": days, "device_days": n * days}
            g = child(GEN.format(n=n, days=days, block=block, out=str(d)), a.timeout)
            record({"stage": "generate", **common, **g, "estimate_mb": round(estimate_mb(n, days, block))})
            extra = {"largest_part_pings": g["largest_part_pings"], "persons": g["persons"]}
            runs = [("largest_part", PART, True), ("stream", STREAM, True),
                    ("whole", WHOLE, n <= a.whole_max_devices), ("attack", ATTACK, True),
                    ("attack_whole", ATTACK_WHOLE, n <= a.whole_max_devices), ("defend", DEFEND, True),
                    ("run", RUN, n <= a.run_max_devices)]
            for stage, code, ok in runs:
                if stage in stages and ok:
                    r = child(code.format(d=str(d), out=str(tmp / f"o-{stage}-{n}"), defenses=DEFENSES, n=n,
                                          days=days, block=block), a.timeout)
                    if r.get("run_peak_rss_mb"):  # `run` resets the peak per stage: the child's is their max
                        r["peak_rss_mb"] = max([r["peak_rss_mb"]] + [v for v in r["run_peak_rss_mb"].values() if v])
                    record({"stage": stage, **common, **extra, **r})
                    shutil.rmtree(tmp / f"o-{stage}-{n}", ignore_errors=True)
            shutil.rmtree(d, ignore_errors=True)
        payload["complete"] = True
        save(name, payload)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if rows:
            plot(rows, RESULTS / f"{name}.png")
            print(f"saved {RESULTS / (name + '.json')} and {name}.png")
    print(json.dumps(payload.get("model", {}), indent=2))


if __name__ == "__main__":
    main()
