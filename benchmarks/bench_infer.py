"""Home/work inference benchmark: pings/s, peak RSS and accuracy against the truth.

Methods, each in its own fresh process (so peak RSS is its own) on the same pings:
  * ``numba``: sim.infer.infer_home_work (all numba threads, and 1 thread);
  * ``numba prefixes``: sim.infer.infer_prefixes for days 1, 2, 3, 7, 14 in one call,
    and the same windows as 5 separate calls on ``Traces.prefix(d)``;
  * ``sklearn``: scikit-learn ``DBSCAN`` per pseudonym in a Python loop (the
    reference), then the same home/work rules (sim.infer.home_work_from_labels): the
    **baseline** every throughput ratio is taken against;
  * ``trackintel`` (if importable): positionfixes -> staypoints -> locations -> FREQ
    and OSNA home/work, at the library's defaults and at settings that suit sparse
    pings (staypoints from any two pings within 100 m and 12 h, DBSCAN locations with
    epsilon 50 m and 1 sample, no pre-filter).  Timed from the positionfixes
    GeoDataFrame on (conversion from Traces excluded); FREQ and OSNA share one
    staypoints+locations run, whose time is added to each.

Data: ``sim.api.simulate(n_devices=1000, days=14, seed=...)``.  Every method sees the pings
with ``accuracy_m <= 200`` (the numba default filter) of the same seeded subset of
``--max-traces`` pseudonyms; pings/s are over those pings.  Accuracy is scored with
sim.score on the full 14-day window (home within 100/250 m over all pseudonyms, work
within 250 m over persons with a workplace, false work over persons without).

    python benchmarks/bench_infer.py                   # default, ~1-2 min
    python benchmarks/bench_infer.py --max-traces 0    # every pseudonym (slower)

Results: printed, and saved to benchmarks/results/infer.json.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

MAX_ACC_M = 200.0
WINDOWS = [1, 2, 3, 7, 14]


# ============================================================================ data
def load_data(n_devices, days, seed):
    from sim.api import simulate

    s = simulate(n_devices=n_devices, days=days, seed=seed)
    return (f"sim.api.simulate(n_devices={n_devices}, days={days}, seed={seed})", s.release,
            s.persons, s.pseudonyms, s.world)


# ============================================================================ workers
def _rss_mb():
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _table(pseudonym, hx, hy, wx, wy, n_pings, window_days):
    return pd.DataFrame({"pseudonym": pseudonym, "home_x_m": hx, "home_y_m": hy,
                         "work_x_m": wx, "work_y_m": wy, "n_pings": n_pings,
                         "window_days": window_days})


def worker_numba(traces, threads, repeats=5):
    import numba

    from sim.infer import infer_home_work, infer_prefixes

    if threads:
        numba.set_num_threads(threads)
    infer_home_work(traces.take(np.arange(min(3, traces.n_traces))))  # load compiled kernels
    base = _rss_mb()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = infer_home_work(traces)
        times.append(time.perf_counter() - t)
    res = dict(seconds=min(times), seconds_all=times, threads=numba.get_num_threads(),
               rss_after_load_mb=base)
    if not threads:
        t = time.perf_counter()
        infer_prefixes(traces, WINDOWS)
        one = time.perf_counter() - t
        t = time.perf_counter()
        for d in WINDOWS:
            infer_home_work(traces.prefix(d))
        sep = time.perf_counter() - t
        res["prefixes"] = dict(days=WINDOWS, one_call_s=one, separate_calls_s=sep,
                               one_call_vs_full=one / min(times))
    return res, out


def worker_sklearn(traces, eps_m=50.0, min_samples=3):
    from sklearn.cluster import DBSCAN

    from sim.infer import home_work_from_labels

    base = _rss_mb()
    t = time.perf_counter()
    labels = np.full(traces.n_pings, -1, dtype=np.int64)
    off = traces.offsets
    for i in range(traces.n_traces):
        a, b = off[i], off[i + 1]
        if b - a == 0:
            continue
        xy = np.column_stack([traces.x_m[a:b], traces.y_m[a:b]])
        # scikit-learn numbers places 0..k-1 (noise -1), as home_work_from_labels expects
        labels[a:b] = DBSCAN(eps=eps_m, min_samples=min_samples, algorithm="kd_tree").fit(xy).labels_
    out = home_work_from_labels(traces, labels)
    return dict(seconds=time.perf_counter() - t, threads=1, rss_after_load_mb=base), out


TI_SETTINGS = {
    "defaults": dict(sp={}, loc={}, pre_filter=True),
    "sparse": dict(sp=dict(time_threshold=0.0, gap_threshold=12 * 60.0, include_last=True),
                   loc=dict(epsilon=50, num_samples=1), pre_filter=False),
}


def worker_trackintel(traces, setting):
    import datetime as dt
    import warnings

    import geopandas as gpd
    import pyproj
    import trackintel as ti

    df = traces.to_frame()
    tf = pyproj.Transformer.from_crs(traces.crs, "EPSG:4326", always_xy=True)
    lon, lat = tf.transform(df.x_m.to_numpy(), df.y_m.to_numpy())
    tz = dt.timezone(dt.timedelta(seconds=int(traces.utc_offset_s)))
    gdf = gpd.GeoDataFrame(
        {"user_id": df.pseudonym.astype(str).to_numpy(),
         "tracked_at": pd.to_datetime(df.t_s.to_numpy(), unit="s", utc=True).tz_convert(tz)},
        geometry=gpd.points_from_xy(lon, lat), crs="EPSG:4326")
    cfg = TI_SETTINGS[setting]
    base = _rss_mb()
    res, outs = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        pfs = ti.io.read_positionfixes_gpd(gdf, geom_col="geometry", crs="EPSG:4326")
        _, sp = pfs.generate_staypoints(**cfg["sp"])
        sp, locs = sp.generate_locations(**cfg["loc"])
        shared = time.perf_counter() - t
        back = pyproj.Transformer.from_crs("EPSG:4326", traces.crs, always_xy=True)
        cx, cy = back.transform(locs.center.x.to_numpy(), locs.center.y.to_numpy())
        centre = pd.DataFrame({"x": cx, "y": cy}, index=locs.index)
        for method in ("FREQ", "OSNA"):
            t = time.perf_counter()
            try:
                lab = ti.analysis.location_identifier(sp, method=method, pre_filter=cfg["pre_filter"])
                err = None
            except Exception as exc:  # e.g. OSNA on users with too few staypoints
                lab, err = None, f"{exc.__class__.__name__}: {exc}"
            sec = shared + time.perf_counter() - t
            xy = {}
            for purpose in ("home", "work"):
                if lab is None:
                    xy[purpose] = pd.DataFrame(columns=["x", "y"])
                    continue
                s = lab[lab.purpose == purpose].dropna(subset=["location_id"])
                first = s.groupby("user_id").location_id.first().astype(np.int64)
                xy[purpose] = centre.loc[first.to_numpy()].set_axis(first.index)
            pse = pd.Series(traces.pseudonym.astype(str))
            h = xy["home"].reindex(pse)
            w = xy["work"].reindex(pse)
            outs[method] = _table(traces.pseudonym, h.x.to_numpy(float), h.y.to_numpy(float),
                                  w.x.to_numpy(float), w.y.to_numpy(float), traces.lengths,
                                  traces.n_days)
            res[method] = dict(seconds=sec, staypoints=len(sp), locations=len(locs), error=err)
    return dict(methods=res, threads=1, rss_after_load_mb=base), outs


def run_worker(args):
    with open(args.data, "rb") as f:
        traces = pickle.load(f)["traces"]
    if args.worker == "numba":
        res, out = worker_numba(traces, args.threads)
    elif args.worker == "sklearn":
        res, out = worker_sklearn(traces)
    else:
        res, out = worker_trackintel(traces, args.worker.split(":", 1)[1])
    res["peak_rss_mb"] = _peak_mb()
    with open(args.out, "wb") as f:
        pickle.dump(out, f)
    print(json.dumps(res, default=str))


def spawn(kind, data, out, threads=0, timeout=900):
    cmd = [sys.executable, __file__, "--worker", kind, "--data", data, "--out", out,
           "--threads", str(threads)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"worker {kind} failed:\n{p.stderr[-3000:]}")
    with open(out, "rb") as f:
        table = pickle.load(f)
    return json.loads(p.stdout.strip().splitlines()[-1]), table


# ============================================================================ main
def accuracy(table, pseudonyms, persons):
    from sim.metrics.score import score_inference

    sc = score_inference(table, pseudonyms, persons, radii_m=(100.0, 250.0))
    s = sc.summary[sc.summary.rate_bin == "all"].set_index("metric")
    keep = ["home_known", "home_within_100m", "home_within_250m", "work_within_250m", "false_work"]
    return {m: dict(value=float(s.loc[m, "value"]), ci_low=float(s.loc[m, "ci_low"]),
                    ci_high=float(s.loc[m, "ci_high"]), n=int(s.loc[m, "n"])) for m in keep}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-devices", type=int, default=1000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--max-traces", type=int, default=500,
                    help="seeded subset of pseudonyms every method runs on (0 = all)")
    ap.add_argument("--no-trackintel", action="store_true")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return run_worker(args)

    from _common import machine, save

    from sim.core.rng import seed_sequence

    t0 = time.perf_counter()
    source, release, persons, pseudonyms, _world = load_data(args.n_devices, args.days, args.seed)
    n_all = release.n_traces
    if args.max_traces and release.n_traces > args.max_traces:
        idx = np.sort(seed_sequence(args.seed, 902).choice(release.n_traces, args.max_traces,
                                                           replace=False))
        release = release.take(idx)
    traces = release.select_pings(~(release.accuracy_m > MAX_ACC_M), drop_empty=False)
    print(f"data: {source}")
    print(f"      {traces.n_traces} of {n_all} pseudonyms, {traces.n_pings} pings with accuracy_m <= "
          f"{MAX_ACC_M:g} (of {release.n_pings})", flush=True)

    try:
        import trackintel

        ti_version = trackintel.__version__
    except Exception as exc:
        ti_version = None
        ti_reason = f"{exc.__class__.__name__}: {exc}"
    if args.no_trackintel:
        ti_version, ti_reason = None, "skipped (--no-trackintel)"

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data.pkl")
        with open(data, "wb") as f:
            pickle.dump({"traces": traces}, f)
        jobs = [("numba", "numba", 0), ("numba (1 thread)", "numba", 1), ("sklearn DBSCAN loop", "sklearn", 0)]
        if ti_version:
            jobs += [(f"trackintel {s}", f"trackintel:{s}", 0) for s in TI_SETTINGS]
        for name, kind, threads in jobs:
            print(f"running {name} ...", flush=True)
            res, out = spawn(kind, data, os.path.join(tmp, f"{len(rows)}.pkl"), threads)
            if kind.startswith("trackintel"):
                for method, r in res["methods"].items():
                    rows.append(dict(method=f"{name} {method}", seconds=r["seconds"], threads=1,
                                     peak_rss_mb=res["peak_rss_mb"],
                                     rss_after_load_mb=res["rss_after_load_mb"],
                                     accuracy=accuracy(out[method], pseudonyms, persons),
                                     detail={k: v for k, v in r.items() if k != "seconds"}))
            else:
                rows.append(dict(method=name, seconds=res["seconds"], threads=res["threads"],
                                 peak_rss_mb=res["peak_rss_mb"],
                                 rss_after_load_mb=res["rss_after_load_mb"],
                                 accuracy=accuracy(out, pseudonyms, persons),
                                 detail={k: v for k, v in res.items()
                                         if k not in ("seconds", "threads", "peak_rss_mb",
                                                      "rss_after_load_mb")}))

    base = next(r for r in rows if r["method"].startswith("sklearn"))
    ti_rows = [r for r in rows if r["method"].startswith("trackintel")]
    for r in rows:
        r["pings_per_s"] = traces.n_pings / r["seconds"]
        r["speed_vs_sklearn"] = base["seconds"] / r["seconds"]
    best_ti = max(ti_rows, key=lambda r: r["accuracy"]["home_within_100m"]["value"]) if ti_rows else None
    numba_row = rows[0]
    targets = {}
    if best_ti:
        sp = best_ti["seconds"] / numba_row["seconds"]
        acc_ok = all(numba_row["accuracy"][m]["value"] >= best_ti["accuracy"][m]["value"]
                     for m in ("home_within_100m", "home_within_250m", "work_within_250m"))
        targets = {"numba_vs_most_accurate_trackintel_speedup": sp,
                   "most_accurate_trackintel": best_ti["method"],
                   "speedup_target_100x_met": bool(sp >= 100),
                   "accuracy_equal_or_better": acc_ok}

    hdr = (f"{'method':34s} {'pings/s':>11s} {'x sklearn':>9s} {'peak MB':>8s} {'home<=100m':>11s} "
           f"{'home<=250m':>11s} {'work<=250m':>11s} {'false work':>10s}")
    print("\n" + hdr + "\n" + "-" * len(hdr))
    for r in rows:
        a = r["accuracy"]
        print(f"{r['method']:34s} {r['pings_per_s']:11.0f} {r['speed_vs_sklearn']:9.2f} "
              f"{r['peak_rss_mb']:8.0f} {a['home_within_100m']['value']:11.3f} "
              f"{a['home_within_250m']['value']:11.3f} {a['work_within_250m']['value']:11.3f} "
              f"{a['false_work']['value']:10.3f}")
    pre = numba_row["detail"].get("prefixes")
    if pre:
        print(f"\nprefixes {pre['days']}: one infer_prefixes call {pre['one_call_s']*1e3:.1f} ms "
              f"({pre['one_call_vs_full']:.2f} x one full-window pass); 5 separate calls on "
              f"Traces.prefix(d): {pre['separate_calls_s']*1e3:.1f} ms")
    if ti_version is None:
        print(f"\ntrackintel not run: {ti_reason}")
    if targets:
        print(f"\nnumba vs most accurate trackintel ({targets['most_accurate_trackintel']}): "
              f"{targets['numba_vs_most_accurate_trackintel_speedup']:.0f}x faster; accuracy equal or "
              f"better: {targets['accuracy_equal_or_better']}")
    payload = dict(
        benchmark="infer", machine=machine(), data=source,
        config=dict(n_devices=args.n_devices, days=args.days, seed=args.seed,
                    max_traces=args.max_traces, max_accuracy_m=MAX_ACC_M,
                    n_traces=traces.n_traces, n_pings=traces.n_pings,
                    trackintel_settings=TI_SETTINGS if ti_version else None,
                    sklearn=dict(eps_m=50.0, min_samples=3, algorithm="kd_tree")),
        trackintel=ti_version or f"unavailable ({ti_reason})",
        baseline="sklearn DBSCAN loop", rows=rows, targets=targets,
        wall_s=time.perf_counter() - t0,
    )
    print(f"\nsaved {save('infer', payload)}  (total {payload['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
