"""`reidsim run` end to end at scale: wall time and peak memory of every stage.

The scale issue's target run: 1,000,000 devices x 30 days (seed 5, parts of 25,000
devices), checked against its targets (<= 15 min wall, <= 4 GB peak RSS in every stage).
Runs ``reidsim run`` in a child process (under ``/usr/bin/time -v`` where it exists, for
the whole process tree's wall clock and the largest process's RSS), then reads the run's
``run.json``: per-stage seconds and peak RSS of the main process (``peak_rss_mb``, reset at
each stage's start) and, with ``--backend dask``, each Dask worker's peak during the
part-by-part stage (``stream.worker_peak_rss_mb``).  With Dask workers a stage's memory is
spread over processes: the record gives the main process's peak and the sum of the
workers' peaks (an upper bound on what they held at once).

    python benchmarks/bench_run.py                       # 1 M x 30 days (about 40 min here)
    python benchmarks/bench_run.py --devices 100000 --backend dask --workers 2

Writes ``benchmarks/results/run_<devices>[_dask].json`` (the TOML, the command and the
record) and prints a table.  The output folder is removed afterwards unless ``--keep``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, save  # noqa: E402

WALL_TARGET_S = 15 * 60
RSS_TARGET_MB = 4096


def scenario_toml(devices: int, days: int, seed: int, block: int) -> str:
    return (f"# {devices:,} devices x {days} days (bench_run.py)\nseed = {seed}\nn_devices = {devices}\n"
            f"block_devices = {block}\n\n[pings]\ndays = {days}\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--block-devices", type=int, default=25_000)
    ap.add_argument("--backend", choices=["local", "dask"], default="local")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--workdir", help="folder for the run (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the run folder")
    a = ap.parse_args()

    work = Path(a.workdir or tempfile.mkdtemp(prefix="bench_run_"))
    work.mkdir(parents=True, exist_ok=True)
    toml = scenario_toml(a.devices, a.days, a.seed, a.block_devices)
    cfg = work / "scenario.toml"
    cfg.write_text(toml)
    out = work / "run"
    cmd = ["reidsim", "run", "--config", str(cfg), "--out", str(out), "--overwrite", "-q", "--backend", a.backend]
    if a.backend == "dask":
        cmd += ["--workers", str(a.workers)]
    timer = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)
    full = ([timer, "-v"] if timer else []) + cmd
    t0 = time.perf_counter()
    p = subprocess.run(full, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"reidsim run failed ({p.returncode}):\n{p.stderr[-4000:]}")
    max_rss_kb = None
    for line in p.stderr.splitlines():
        if "Maximum resident set size" in line:
            max_rss_kb = int(line.rsplit(":", 1)[1])
    run = json.loads((out / "run.json").read_text())
    stream = run.get("stream") or {}
    workers = stream.get("worker_peak_rss_mb") or []
    peaks = dict(run["peak_rss_mb"])
    stage_max = max(v for v in peaks.values() if v is not None)
    rec = {
        "benchmark": f"run_{a.devices}", "command": " ".join(["python", "benchmarks/bench_run.py", *sys.argv[1:]]).replace(str(work), "WORKDIR"),
        "reidsim_command": " ".join(cmd).replace(str(work), "WORKDIR"), "config_toml": toml, "machine": machine(),
        "note": "one run on this shared machine; peak_rss_mb per stage = the main process's VmHWM during the "
                "stage (reset at its start; freed memory is handed back between stages), plus, for a stage "
                "run in a child process (generation of a streamed run), the child's peak (stage_processes); "
                "on Dask the part-by-part stage's workers are separate processes (worker_peak_rss_mb)",
        "dataset_id": run["dataset_id"], "sample": run.get("sample"), "wall_s": round(wall, 1),
        "timings_s": run["timings_s"], "peak_rss_mb": peaks, "start_rss_mb": run.get("start_rss_mb"),
        "stage_processes": run.get("stage_processes"),
        "stream": stream,
        "stream_workers_peak_sum_mb": round(sum(workers), 1) if workers else None,
        "max_rss_kb_time_v": max_rss_kb, "headline": run["headline"],
        "targets": {"wall_s": f"<= {WALL_TARGET_S}", "peak_rss_mb_every_stage": f"<= {RSS_TARGET_MB}"},
        "met": {"wall": wall <= WALL_TARGET_S, "every_stage_main_process": stage_max <= RSS_TARGET_MB,
                "workers": all(w <= RSS_TARGET_MB for w in workers) if workers else None},
    }
    name = f"run_{a.devices}" + ("_dask" if a.backend == "dask" else "")
    path = save(name, rec)
    print(f"reidsim run, {a.devices:,} devices x {a.days} days, backend {a.backend}: {wall / 60:.1f} min "
          f"(target <= {WALL_TARGET_S / 60:.0f} min: {'met' if rec['met']['wall'] else 'NOT met'})")
    starts = run.get("start_rss_mb") or {}
    print(f"{'stage':<26}{'seconds':>10}{'peak MiB':>10}{'start MiB':>11}")
    for k, v in run["timings_s"].items():
        st = k[:-2]
        print(f"{st:<26}{v:>10.1f}{peaks.get(st) or float('nan'):>10.0f}{starts.get(st) or float('nan'):>11.0f}")
    if workers:
        print(f"Dask workers' peaks (MiB): {', '.join(f'{w:.0f}' for w in workers)}")
    print(f"largest stage peak {stage_max:.0f} MiB (target <= {RSS_TARGET_MB}: "
          f"{'met' if rec['met']['every_stage_main_process'] else 'NOT met'}); saved {path}")
    if not a.keep and not a.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
