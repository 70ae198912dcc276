"""Attack benchmark: unicity, linkage and time to identification at 100,000 devices.

Figures (all in one process, JIT compiled first on a small warm-up set):
  * unicity, p = 4 points, cell v = 500 m, hour bins, every device of a 14-day release
    (index build + query), vs a numpy sort of the same number of int64 keys
    (one key per ping) measured in the same run;
  * Golle & Partridge linkage, 4 levels x 2 keys, and time to identification for
    d = 1, 2, 3, 5, 7, 14 at block level, vs a numpy sort of one int64 key per
    (device, level, key) row.
Targets (issue): unicity under a minute; linkage + time to identification under a minute.

Data: ``--source api`` uses ``sim.api.simulate`` (the project's generator); ``synthetic``
a self-contained numba generator here (~30 pings per device-day, heavy-tailed rates,
home/work/other places in a 30 km city).  Linkage inputs are oracle-noise inferences
(true home/work + 30 m noise, missing with a probability that falls with d) so the
timing measures the attack, not sim.infer.

    python benchmarks/bench_attacks.py                      # 100k devices, 14 days, sim.api if present
    python benchmarks/bench_attacks.py --source synthetic   # the same on the built-in generator
    python benchmarks/bench_attacks.py --quick              # 10k devices
Results: benchmarks/results/attacks.json (api source) or attacks_synthetic.json.
"""
from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # tests/_gridworld.py: the stand-in World

from _common import machine, save  # noqa: E402

from sim.core.jit import jit, pjit, prange
from sim.core.rng import TAG_ATTACK, normal, poisson, stream_key, uniform
from sim.core.traces import Traces

T0 = 1_700_006_400  # a Monday? no matter: local midnight, UTC offset 0
DAYS_TTI = (1, 2, 3, 5, 7, 14)


# ------------------------------------------------------------ synthetic generator
@jit
def _day_count(seed, dev, day, rate):
    key = stream_key(seed, TAG_ATTACK, np.uint64(dev) * np.uint64(1024) + np.uint64(day) + np.uint64(1 << 40))
    return poisson(key, 0, rate), key


@pjit
def _count(seed, rate, n_days, counts):
    for d in prange(len(rate)):
        c = 0
        for day in range(n_days):
            k, _ = _day_count(seed, d, day, rate[d])
            c += k
        counts[d] = c


@pjit
def _fill(seed, rate, n_days, places_x, places_y, offsets, t_s, x_m, y_m):
    for d in prange(len(rate)):
        o = offsets[d]
        for day in range(n_days):
            k, key = _day_count(seed, d, day, rate[d])
            for j in range(k):
                t_s[o + j] = T0 + day * 86400 + int(uniform(key, 100 + j) * 86400)
            t_s[o:o + k] = np.sort(t_s[o:o + k])
            weekday = (day % 7) < 5
            for j in range(k):
                h = ((t_s[o + j] - T0) % 86400) / 3600.0
                u = uniform(key, 100_000 + j)
                if h < 7.0 or h >= 21.0:
                    p = 0
                elif weekday and 9.0 <= h < 17.0 and u < 0.7:
                    p = 1
                else:
                    p = 2 + int(uniform(key, 200_000 + j) * 3.0)
                x_m[o + j] = places_x[d, p] + 20.0 * normal(key, 300_000 + 4 * j)
                y_m[o + j] = places_y[d, p] + 20.0 * normal(key, 300_000 + 4 * j + 2)
            o += k


def synthetic(n_devices, days, seed, size_m=30_000.0, pings_per_day=30.0):
    """Release + truth for a synthetic city (see module docstring)."""
    rng = np.random.default_rng(seed)
    n_persons = int(n_devices * 1.25)
    centre = size_m / 2
    hx = np.clip(rng.normal(centre, size_m / 6, n_persons), 0, size_m - 1)
    hy = np.clip(rng.normal(centre, size_m / 6, n_persons), 0, size_m - 1)
    hx, hy = (np.floor(hx / 50) + 0.5) * 50, (np.floor(hy / 50) + 0.5) * 50  # building centres
    employed = rng.random(n_persons) < 0.7
    wx = np.where(employed, (np.floor(np.clip(rng.normal(centre, size_m / 10, n_persons), 0, size_m - 1) / 50) + 0.5) * 50, np.nan)
    wy = np.where(employed, (np.floor(np.clip(rng.normal(centre, size_m / 10, n_persons), 0, size_m - 1) / 50) + 0.5) * 50, np.nan)
    owner = np.sort(rng.choice(n_persons, n_devices, replace=False))
    px = np.empty((n_devices, 5))
    py = np.empty((n_devices, 5))
    px[:, 0], py[:, 0] = hx[owner], hy[owner]
    px[:, 1] = np.where(employed[owner], wx[owner], hx[owner])
    py[:, 1] = np.where(employed[owner], wy[owner], hy[owner])
    px[:, 2:] = np.clip(px[:, :1] + rng.normal(0, 3000, (n_devices, 3)), 0, size_m - 1)
    py[:, 2:] = np.clip(py[:, :1] + rng.normal(0, 3000, (n_devices, 3)), 0, size_m - 1)
    rate = pings_per_day * rng.lognormal(-0.5, 1.0, n_devices)  # mean ~ pings_per_day
    counts = np.zeros(n_devices, np.int64)
    _count(np.uint64(seed), rate, days, counts)
    offsets = np.zeros(n_devices + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    n = int(offsets[-1])
    t_s, x_m, y_m = np.empty(n, np.int64), np.empty(n), np.empty(n)
    _fill(np.uint64(seed), rate, days, px, py, offsets, t_s, x_m, y_m)
    pseud = np.array([f"{i:08x}" for i in range(n_devices)], dtype=object)
    release = Traces(pseudonym=pseud, offsets=offsets, t_s=t_s, x_m=x_m, y_m=y_m,
                     accuracy_m=np.full(n, 20, np.float32), crs="LOCAL_CS[bench]", start_s=T0, n_days=days)
    pid = np.arange(n_persons)
    from _gridworld import GridWorld, register_from_points

    world = GridWorld(size_m, size_m, (50.0, 200.0, 1000.0, 10_000.0))
    persons = register_from_points(world, pid, (hx, hy), (wx, wy))
    cover = rng.random(n_persons) < 0.9
    register = persons[cover].reset_index(drop=True)
    pseudonyms = pd.DataFrame({"pseudonym": pseud, "device_idx": np.arange(n_devices), "person_id": owner})
    return dict(release=release, world=world, persons=persons, register=register, pseudonyms=pseudonyms,
                source="synthetic (benchmarks/bench_attacks.py numba generator; GridWorld 30 km)")


def from_api(n_devices, days, seed):
    from sim.api import simulate

    s = simulate(n_devices=n_devices, days=days, seed=seed)
    return dict(release=s.release, world=s.world, persons=s.persons, register=s.register,
                pseudonyms=s.pseudonyms, source="sim.api.simulate")


def oracle_inferred(data, days_list, seed):
    """Inferred tables per d: truth + 30 m noise, unknown with probability 0.6**d (home), 0.75**d (work)."""
    ps = data["pseudonyms"].drop_duplicates("pseudonym")
    per = data["persons"].set_index("person_id").loc[ps["person_id"].to_numpy()]
    rng = np.random.default_rng(seed)
    n = len(ps)
    u_home, u_work = rng.random(n), rng.random(n)
    nh = rng.normal(0, 30, (n, 2))
    nw = rng.normal(0, 30, (n, 2))
    out = {}
    for d in days_list:
        kh = u_home >= 0.6 ** d
        kw = u_work >= 0.75 ** d
        out[d] = pd.DataFrame({
            "pseudonym": ps["pseudonym"].to_numpy(),
            "home_x_m": np.where(kh, per["home_x_m"].to_numpy() + nh[:, 0], np.nan),
            "home_y_m": np.where(kh, per["home_y_m"].to_numpy() + nh[:, 1], np.nan),
            "work_x_m": np.where(kw, per["work_x_m"].to_numpy() + nw[:, 0], np.nan),
            "work_y_m": np.where(kw, per["work_y_m"].to_numpy() + nw[:, 1], np.nan),
        })
    return out


def timed(fn, *a, **k):
    gc.collect()
    t = time.perf_counter()
    r = fn(*a, **k)
    return r, time.perf_counter() - t


def run_suite(data, seed, p=4, v_m=500.0, h_h=1.0):
    from sim.attacks import linkage_attack, time_to_identification
    from sim.attacks.unicity import build_index, matching_counts, sample_traces, trace_streams

    tr = data["release"]
    res = {}
    idx, t_build = timed(build_index, tr, v_m, h_h)
    sample = sample_traces(tr, None, seed)
    streams = trace_streams(tr, sample, seed)
    cnt, t_query = timed(matching_counts, idx, sample, streams, p)
    has = cnt > 0
    res["unicity"] = dict(p=p, v_m=v_m, h_h=h_h, seconds=t_build + t_query, build_s=t_build, query_s=t_query,
                          n_points=int(len(idx.pt_keys)), value=float((cnt[has] == 1).mean()) if has.any() else None,
                          n=int(has.sum()), n_short=int((~has).sum()))
    keys = np.random.default_rng(0).integers(0, 2**62, tr.n_pings)
    _, t_sort = timed(np.sort, keys)
    res["unicity"]["baseline_sort_s"] = t_sort
    res["unicity"]["ratio_to_sort"] = (t_build + t_query) / t_sort
    del keys, idx

    inferred = oracle_inferred(data, DAYS_TTI, seed)
    full = inferred[max(DAYS_TTI)]
    (per, met), t_link = timed(linkage_attack, full, data["register"], data["world"], data["pseudonyms"])
    (curve, _), t_tti = timed(time_to_identification, inferred, data["register"], data["world"], data["pseudonyms"],
                              level="block", key="home_work")
    kl = np.random.default_rng(1).integers(0, 2**62, len(per))
    _, t_sort2 = timed(np.sort, kl)
    ident = met[(met.metric == "identified")].set_index(["level", "key"])["value"]
    res["linkage"] = dict(seconds=t_link, rows=int(len(per)), baseline_sort_s=t_sort2, ratio_to_sort=t_link / t_sort2,
                          identified={f"{a}/{b}": float(v) for (a, b), v in ident.items()})
    res["time_to_identification"] = dict(seconds=t_tti, days=list(DAYS_TTI), ratio_to_sort=t_tti / t_sort2,
                                         curve=[float(v) for v in curve["value"]])
    res["linkage_plus_tti_s"] = t_link + t_tti
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--quick", action="store_true", help="10,000 devices")
    ap.add_argument("--source", choices=("auto", "api", "synthetic"), default="auto")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    n = 10_000 if args.quick else args.devices
    src = args.source
    if src == "auto":
        try:
            import sim.api  # noqa: F401

            src = "api"
        except ImportError:
            src = "synthetic"
    make = from_api if src == "api" else synthetic

    import numba

    t = time.perf_counter()
    run_suite(make(300, 3, args.seed), args.seed)  # JIT warm-up on a small set
    warm = time.perf_counter() - t
    data, t_gen = timed(make, n, args.days, args.seed)
    tr = data["release"]
    print(f"data: {data['source']}: {tr.n_traces:,} devices, {tr.n_pings:,} pings "
          f"({tr.n_pings / max(tr.n_traces, 1) / args.days:.1f} per device-day) in {t_gen:.1f} s")
    res = run_suite(data, args.seed)
    u, lk, tti = res["unicity"], res["linkage"], res["time_to_identification"]
    print(f"unicity p=4 v=500 m h=1 h: {u['seconds']:.1f} s (index {u['build_s']:.1f} s + query {u['query_s']:.1f} s), "
          f"unicity {u['value']:.3f} over {u['n']:,} devices; numpy sort of {tr.n_pings:,} keys {u['baseline_sort_s']:.2f} s "
          f"-> ratio {u['ratio_to_sort']:.1f}")
    print(f"linkage (4 levels x 2 keys): {lk['seconds']:.1f} s; time to identification ({len(DAYS_TTI)} prefixes): "
          f"{tti['seconds']:.1f} s; together {res['linkage_plus_tti_s']:.1f} s "
          f"(ratios to a sort of {lk['rows']:,} keys: {lk['ratio_to_sort']:.0f}, {tti['ratio_to_sort']:.0f})")
    payload = dict(
        benchmark="attacks", machine=machine(), numba_threads=numba.get_num_threads(),
        config=dict(devices=n, days=args.days, seed=args.seed, source=data["source"], p=4, v_m=500.0, h_h=1.0,
                    tti_days=list(DAYS_TTI), tti_level="block", linkage_inference="oracle + 30 m noise"),
        data=dict(devices=int(tr.n_traces), pings=int(tr.n_pings), generate_s=t_gen), jit_warmup_s=warm,
        results=res,
        targets=dict(unicity_under_60s=u["seconds"] < 60, linkage_plus_tti_under_60s=res["linkage_plus_tti_s"] < 60),
    )
    name = "attacks" + ("" if src == "api" else "_synthetic") + ("_quick" if args.quick else "")
    path = save(name, payload)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
