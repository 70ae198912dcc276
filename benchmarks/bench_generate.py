"""Generation benchmark: pings/s, peak RSS, and the ratio to a pyarrow write baseline.

For each size, in fresh processes:
  * ``generate``: world + population + pings for N devices x 14 days, written as Parquet
    (block size fixed at 10,000 devices so peak memory should not grow with N);
  * ``baseline``: write a table of random numbers with the same row count, schema and
    part sizes with the same pyarrow writer settings (what writing alone costs).
Targets: the whole run (world + population + pings + every file written) and the ping
stage (kernels + pseudonyms + projection + sort + write) each within 3x of the baseline,
at 100,000 devices and at 1,000,000; 100,000 devices x 14 days in under 2 minutes; flat
peak RSS; at 1,000,000 devices every stage (synthesis: world, persons, panel, register;
the ping stage; the truth tables written after it) within 4 GB.  Each stage's peak is
the largest RSS sampled (every 0.1 s) while it ran; ``peak_rss_mb`` is the process's.

    python benchmarks/bench_generate.py            # 10k and 100k devices
    python benchmarks/bench_generate.py --quick    # 2k and 10k devices
    python benchmarks/bench_generate.py --sizes 1000000 --days 7   # other sizes
                                                   # (saved as generate_<sizes>.json)
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from _common import machine, run_child, save

GEN = """
import threading, time
import psutil
from sim.core.config import Scenario
from sim.generate import generate
scn = Scenario(n_devices={n}, block_devices={b}).replace(pings__days={days})
samples, stop, proc = [], threading.Event(), psutil.Process()
def sample():  # RSS every 0.1 s, to tell the stages' peaks apart
    while not stop.is_set():
        samples.append((time.perf_counter(), proc.memory_info().rss))
        stop.wait(0.1)
sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
t = time.perf_counter()
m = generate(scn, {out!r}, progress=False)
res = dict(seconds=time.perf_counter() - t, pings=m['rows']['pings'], pseudonyms=m['rows']['pseudonyms'],
           persons=m['rows']['persons'], timings=m['timings_s'], blocks=m['blocks'])
stop.set()
sampler.join()
a = t + m['timings_s']['synthesize']
b = a + m['timings_s']['pings']
def peak(lo, hi):
    got = [r for s, r in samples if lo <= s < hi]
    return round(max(got) / 2**20) if got else None  # None: the stage was shorter than a sample
res['stage_peak_rss_mb'] = dict(synthesize=peak(t, a), pings=peak(a, b), tables=peak(b, float('inf')))
"""

BASE = """
import time, numpy as np, pyarrow as pa
from sim.generate.engine import PINGS_SCHEMA, write_pings_part
rng = np.random.default_rng(0)
sizes = {sizes}
t_total = 0.0
for i, n in enumerate(sizes):
    k = max(1, n // 250)
    names = np.array(sorted('%064x' % v for v in rng.integers(0, 2**62, k)), dtype=object)
    codes = np.sort(rng.integers(0, k, n)).astype(np.int32)
    tab = pa.Table.from_arrays([
        pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(list(names), type=pa.string())),
        pa.array(np.sort(rng.integers(1.7e9, 1.71e9, n))), pa.array(41.88 + rng.normal(0, .05, n)),
        pa.array(-87.63 + rng.normal(0, .05, n)), pa.array(rng.lognormal(2.5, .7, n).astype(np.float32))],
        schema=PINGS_SCHEMA)
    t = time.perf_counter()
    write_pings_part(tab, {out!r} + '/part-%05d.parquet' % i)
    t_total += time.perf_counter() - t
res = dict(seconds=t_total, rows=int(sum(sizes)))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--sizes", type=int, nargs="+", help="device counts (default 10k and 100k)")
    a = ap.parse_args()
    sizes = a.sizes or ([2_000, 10_000] if a.quick else [10_000, 100_000])
    block = 10_000
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="reidsim-bench-"))
    try:
        # warm the numba cache so no run pays compilation
        run_child(GEN.format(n=200, b=block, days=2, out=str(tmp / "warm")))
        for n in sizes:
            g = run_child(GEN.format(n=n, b=block, days=a.days, out=str(tmp / f"g{n}")))
            parts = sorted((tmp / f"g{n}" / "pings").glob("part-*.parquet"))
            import pyarrow.parquet as pq

            part_rows = [pq.ParquetFile(p).metadata.num_rows for p in parts]
            b = run_child(BASE.format(sizes=part_rows, out=str(tmp / f"b{n}")))
            shutil.rmtree(tmp / f"g{n}", ignore_errors=True)
            shutil.rmtree(tmp / f"b{n}", ignore_errors=True)
            row = {
                "devices": n, "days": a.days, "pings": g["pings"], "persons": g["persons"],
                "total_s": round(g["seconds"], 2),
                "synthesize_s": g["timings"]["synthesize"], "ping_stage_s": g["timings"]["pings"],
                "pings_per_s_ping_stage": round(g["pings"] / g["timings"]["pings"]),
                "pings_per_s_total": round(g["pings"] / g["seconds"]),
                "baseline_write_s": round(b["seconds"], 2),
                "ratio_ping_stage_to_baseline": round(g["timings"]["pings"] / b["seconds"], 2),
                "ratio_total_to_baseline": round(g["seconds"] / b["seconds"], 2),
                "peak_rss_mb": round(g["peak_rss_mb"]), "baseline_peak_rss_mb": round(b["peak_rss_mb"]),
                "stage_peak_rss_mb": g["stage_peak_rss_mb"],
            }
            rows.append(row)
            print(json.dumps(row))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = {
        "benchmark": "generate", "machine": machine(), "block_devices": block, "rows": rows,
        "command": " ".join(["python", "benchmarks/bench_generate.py"] + sys.argv[1:]),
        "targets": {"ratio_total_to_baseline": "<= 3", "ratio_ping_stage_to_baseline": "<= 3",
                    "100k_devices_14_days_total_s": "< 120",
                    "peak_rss": "flat as devices grow", "stage_peak_rss_1m_devices_mb": "<= 4096"},
    }
    if len(rows) == 2:
        out["peak_rss_growth"] = round(rows[1]["peak_rss_mb"] / rows[0]["peak_rss_mb"], 2)
    name = "generate_" + "_".join(map(str, sizes)) if a.sizes else "generate" + ("_quick" if a.quick else "")
    p = save(name, out)
    print(f"saved {p}")


if __name__ == "__main__":
    main()
