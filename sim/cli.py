"""The ``reidsim`` command.  It only drives the pipeline; no logic lives here."""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path

from sim.core.errors import ConfigError, ReidsimError
from sim.core.files import check_output_path
from sim.core.storage import as_path

log = logging.getLogger("sim")

#: runs with at least this many devices print their memory estimate before starting
LARGE_RUN_DEVICES = 1_000_000


# ------------------------------------------------------------------ up-front checks
def _nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        v = int(text)
    except ValueError:
        v = -1
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}")
    return v


def _positive_int(text):
    """argparse type of --workers: an integer >= 1."""
    from sim.core.config import validate_workers

    try:
        return validate_workers(int(text))
    except (ValueError, ConfigError):
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}; use e.g. 2") from None


def _positive_days(text):
    """argparse type of infer --days: a finite number of days > 0."""
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(
            f"must be a finite number of days > 0 (e.g. 7 or 0.5), got {text!r}; "
            "omit --days to use the whole window")
    return v


def _gib(n) -> str:
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit in ("B", "KiB") else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


def _check_memory(scn, *, workers: int = 0, what: str = "generating this scenario") -> None:
    """Refuse a scenario whose estimated peak memory exceeds the available memory
    (``sim.core.config.memory_estimate``); print the estimate for large runs."""
    import psutil

    from sim.core.config import largest_fitting, memory_estimate

    est = memory_estimate(scn, workers=workers)
    avail = int(psutil.virtual_memory().available)
    need = est["total"]
    detail = (f"{scn.residents:,} residents ~ {_gib(est['residents'])}, {scn.devices:,} devices ~ "
              f"{_gib(est['devices'])}, one block of {min(scn.block_devices, scn.devices):,} devices x "
              f"{scn.pings.days} days ~ {_gib(est['block'])}"
              + (f" (x {workers} workers)" if workers > 0 else "") + f", fixed ~ {_gib(est['fixed'])}")
    if need > avail:
        budget = int(avail * 0.8)  # suggested sizes keep a 20 % margin
        fixes, note = [], ""
        b = largest_fitting(scn, "block_devices", budget, workers=workers)
        if 1 <= b < scn.block_devices:
            fixes.append(f"a smaller block (--block-devices {b}; the output is identical)")
        else:
            note = (f" (a smaller --block-devices alone is not enough: without the block it still needs "
                    f"{_gib(need - est['block'])})")
        n = largest_fitting(scn, "n_devices", budget, workers=workers)
        if n >= 1:
            fixes.append(f"fewer devices (about {n:,} fit: --devices {n})")
        else:
            fixes.append("fewer residents (--residents, world.residents) and fewer devices")
        raise ConfigError(
            f"{what} needs an estimated {_gib(need)} of memory ({detail}) but only {_gib(avail)} is "
            f"available; use {' or '.join(fixes)}, or run on a machine with more memory{note}."
        )
    if scn.devices >= LARGE_RUN_DEVICES or need > avail // 2:
        print(f"reidsim: {what}: estimated peak memory {_gib(need)} of {_gib(avail)} available "
              f"({detail})", file=sys.stderr)


def _scenario_from_args(a):
    from sim.core.config import Scenario

    scn = Scenario.from_toml(a.config) if getattr(a, "config", None) else Scenario()
    ov = {}
    if getattr(a, "devices", None) is not None:
        ov["n_devices"] = a.devices
    if getattr(a, "days", None) is not None:
        ov["pings__days"] = a.days
    if getattr(a, "seed", None) is not None:
        ov["seed"] = a.seed
    if getattr(a, "block_devices", None) is not None:
        ov["block_devices"] = a.block_devices
    if getattr(a, "residents", None) is not None:
        ov["world__residents"] = a.residents
    return scn.replace(**ov) if ov else scn.validate()


def cmd_generate(a):
    from sim.generate.engine import generate

    scn = _scenario_from_args(a)
    check_output_path(a.out)
    local_workers = a.workers if a.backend == "dask" and not a.scheduler else 0
    _check_memory(scn, workers=local_workers)
    man = generate(scn, a.out, progress=not a.quiet, backend=a.backend, scheduler=a.scheduler,
                   n_workers=a.workers, overwrite=a.overwrite)
    r = man["rows"]
    print(f"wrote {r['pings']:,} pings of {r['pseudonyms']:,} pseudonyms ({r['devices']:,} devices, "
          f"{scn.pings.days} days) to {a.out} in {man['seconds']:.1f} s")
    return 0


def cmd_validate(a):
    from sim.metrics.calibration import calibration_stats, check_calibration
    from sim.release.dataset import load_sample

    # a seeded device sample bounds memory on large releases (0: every device)
    simulation = load_sample(a.dir, a.sample_devices or None)
    st = calibration_stats(simulation)
    if "sample" in simulation.meta:
        st["sample"] = simulation.meta["sample"]
        print(f"calibration on a seeded sample of {st['sample']['devices']:,} of {st['sample']['of']:,} devices "
              "(--sample-devices 0 for all)")
    bad = check_calibration(st)
    print(json.dumps({k: v for k, v in st.items() if not isinstance(v, list)}, indent=2))
    out = as_path(a.dir) / "calibration.json"
    from sim.core.files import atomic_path

    with atomic_path(out) as tmp:
        Path(tmp).write_text(json.dumps(st, indent=2))
    if bad:
        print("outside sane ranges:\n  " + "\n  ".join(bad))
        return 1
    print("all calibration statistics within their sane ranges")
    return 0


def cmd_defend(a):
    from sim.pipeline.defend import defend_streaming

    m = defend_streaming(a.dir, a.out, a.defense or [], backend=a.backend, scheduler=a.scheduler,
                         n_workers=a.workers, overwrite=a.overwrite)
    steps = ", ".join(f"{d['name']}({', '.join(f'{k}={v}' for k, v in d['params'].items())})" for d in m["defenses"])
    print(f"defended {m['rows']['pings']:,} pings of {m['rows']['pseudonyms']:,} pseudonyms with {steps}, "
          f"{len(m['parts'])} part(s), {m['backend']} -> {a.out} (dataset_id {m['dataset_id']})")
    return 0


def cmd_infer(a):
    from sim.pipeline.stream import infer_streaming, read_inferred

    # always part by part (peak memory ~ the largest part); DIR/inferred/part-*.parquet, plus
    # DIR/inferred.parquet (all parts) when it has at most 5 M rows
    s = infer_streaming(a.dir, a.out, days=a.days, backend=a.backend, scheduler=a.scheduler, n_workers=a.workers)
    where = s["inferred_file"] or f"{s['inferred_dir']}/ ({s['parts']} part files)"
    print(f"inferred home for {s['known_home']:,} and work for {s['known_work']:,} of {s['rows']:,} pseudonyms "
          f"(window {s['window_days']} days, {s['parts']} part(s), {s['backend']}) -> {where}")
    if a.score:
        from sim.core.storage import read_frame
        from sim.metrics.score import score_inference
        from sim.world.model import World

        inf = read_frame(as_path(s["inferred_file"])) if s["inferred_file"] else read_inferred(a.out or a.dir)
        truth = as_path(a.dir) / "truth"  # scoring reads the truth tables, not the pings
        sc = score_inference(inf, read_frame(truth / "pseudonyms.parquet"),
                             read_frame(truth / "persons.parquet"), world=World.load(as_path(a.dir) / "world"))
        print(sc if not hasattr(sc, "to_string") else sc.to_string())
    return 0


def cmd_attack(a):
    from sim.pipeline.main import MAIN_ATTACK_CONFIG, headline_sentence

    if a.in_memory:  # the whole release in memory (sim.attacks.run_attacks): the same tables
        from sim.release.dataset import load
        from sim.pipeline.main import attack_step, infer_step

        simulation = load(a.dir)
        ibd, _ = infer_step(simulation, as_path(a.out or a.dir))
        tables, _ = attack_step(simulation, as_path(a.out or a.dir), ibd)
        profile = simulation.scenario.register.profile
    else:  # part by part (peak memory ~ the largest part, plus per-pseudonym tables)
        from sim.pipeline.stream_attacks import attack_streaming, dataset_attack_config

        res = attack_streaming(a.dir, a.out, config=dataset_attack_config(a.dir, MAIN_ATTACK_CONFIG),
                               backend=a.backend, scheduler=a.scheduler, n_workers=a.workers, hold_per_device=False)
        tables, profile = res["tables"], res["register_profile"]
        log.info("attacked %d part(s) on %s in %.1f s", res["parts"], res["backend"], res["seconds"])
    print(headline_sentence(tables, profile)[0])
    print(f"tables and summary.json written to {as_path(a.out or a.dir) / 'attacks'}")
    return 0


def cmd_run(a):
    from sim.core.config import Scenario
    from sim.pipeline.main import run_main

    scn = Scenario.from_toml(a.config) if a.config else Scenario()
    if a.seed is not None:
        scn = scn.replace(seed=a.seed)
    check_output_path(a.out)
    _check_memory(scn, what="running this scenario")
    info = run_main(scn, a.out, progress=not a.quiet, overwrite=a.overwrite,
                    sample_devices=a.sample_devices or None, backend=a.backend, scheduler=a.scheduler,
                    n_workers=a.workers)
    if info.get("sample"):
        print(f"attacks over all {info['sample']['of']:,} devices part by part; context figures on a seeded "
              f"sample of {info['sample']['devices']:,} devices")
    out = Path(a.out)
    print(info["headline"])
    print(f"report: {out / 'report.html'} (and report.md); tables under {out}")
    return 0


def cmd_sweep(a):
    from sim.pipeline.sweep import load_sweep, run_sweep

    plan = load_sweep(a.file, max_cells=a.max_cells)
    check_output_path(a.out)
    local_workers = a.workers if a.backend == "dask" and not a.scheduler else 0
    _check_memory(plan["base"], workers=local_workers, what="each replicate of this sweep")
    res = run_sweep(plan, a.out, progress=not a.quiet, backend=a.backend, scheduler=a.scheduler,
                    n_workers=a.workers)
    print(f"{res['cells_done']} cells computed, {res['cells_skipped']} already done; "
          f"table: {res['table']}")
    return 0


def cmd_cite(a):
    from sim.report.findings import cite

    print(cite(a.figure_id, a.results))
    return 0


def cmd_classroom(a):
    from sim.pipeline.classroom import check_page_path, classroom_scenario, write_classroom

    check_page_path(a.out, a.overwrite)
    scn = classroom_scenario(a.config, devices=a.devices, seed=a.seed)
    _check_memory(scn, what="simulating this classroom scenario")
    info = write_classroom(a.out, scenario=scn, overwrite=a.overwrite)
    story = (f"named after {info['named_day']} of {info['days']} days" if info["story_named"]
             else "never named in this scenario (the page says so)")
    print(f"wrote {info['path']} ({info['bytes'] / 1024:,.0f} kB): phone {info['device']} {story}; "
          "open it in any browser, no internet needed")
    return 0


def cmd_audit(a):
    from sim.pipeline.audit import run_audit

    def say(msg):
        if not a.quiet:
            print(f"reidsim audit: {msg}", file=sys.stderr)

    reg_cols = {role: getattr(a, f"register_{role}") for role in ("name", "home_lat", "home_lon", "work_lat",
                                                                  "work_lon", "age", "user")}
    res = run_audit(a.pings, a.out, format=a.format, id=a.id, time=a.time, lat=a.lat, lon=a.lon,
                    accuracy=a.accuracy, tz=a.tz, crs=a.crs, defenses=a.defense or (), register=a.register,
                    register_columns=reg_cols, overwrite=a.overwrite, progress=say, k=a.k, seed=a.seed)
    c = res["counts"]
    dropped = ", ".join(f"{n:,} {r.replace('_', ' ')}" for r, n in c["dropped"].items() if n) or "none"
    print(f"read {c['rows_read']:,} rows, kept {c['rows_kept']:,} (dropped: {dropped}); {c['users']:,} users; "
          f"method {res['info']['method']}")
    u = res["uniqueness"]
    for attack, setting, words in (("unicity", "p=4, 500 m, 1 h", "4 random points (500 m, 1 h)"),
                                   ("top_n_cells", "N=2, 500 m cells", "top-2 cells (500 m)"),
                                   ("home_work_pair", "500 m cells", "inferred (home, work) cells (500 m)")):
        r = u[(u["attack"] == attack) & (u["setting"] == setting)]
        if len(r) and r["n"].iloc[0] > 0:
            r = r.iloc[0]
            print(f"unique by {words}: {100 * r['value']:.1f}% (95% CI {100 * r['ci_low']:.1f}-"
                  f"{100 * r['ci_high']:.1f}%, n={int(r['n'])})")
    reg = res["info"].get("register")
    if reg:
        rc = res.get("register_counts") or {}
        rdrop = ", ".join(f"{n:,} {r.replace('_', ' ')}" for r, n in (rc.get("dropped") or {}).items() if n) or "none"
        print(f"register: read {rc.get('rows_read', reg['persons']):,} rows, kept {reg['persons']:,} persons "
              f"(dropped: {rdrop}); {100 * (reg['with_work_share'] or 0):.1f}% with an employer"
              + (f"; owners of {reg['listed']:,} of {reg['users']:,} users listed" if reg["truth"] else ""))
        metric = "named" if reg["truth"] else "single_candidate"
        words = "named correctly" if reg["truth"] else "left with one candidate"
        for cell in reg["cells_m"]:
            r = u[u["attack"].str.startswith("register_") & (u["cell_m"] == cell) & (u["metric"] == metric)]
            if len(r):
                parts = [f"{a_[len('register_'):].replace('_', ' ')} {100 * v:.1f}% ({100 * lo:.1f}-{100 * hi:.1f}%)"
                         for a_, v, lo, hi in zip(r["attack"], r["value"], r["ci_low"], r["ci_high"])]
                print(f"linked to the register on {cell:g} m cells, {words}: " + ", ".join(parts)
                      + f" (95% CI; n={int(r['n'].iloc[0])})")
    print(f"report: {res['paths']['html']} (and audit.md; aggregate tables under {res['paths']['tables']})")
    return 0


def _dask_options(parser, backend_help: str | None = None) -> None:
    """``--backend local|dask``, ``--scheduler ADDRESS`` and ``--workers N``: the Dask
    options every part-by-part command takes."""
    parser.add_argument("--backend", choices=["local", "dask"], default="local", help=backend_help)
    parser.add_argument("--scheduler", help="Dask scheduler address (default: a LocalCluster)")
    parser.add_argument("--workers", type=_positive_int, default=2,
                        help="LocalCluster workers for --backend dask (>= 1, default 2)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reidsim", description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="generate world, population, pings, truth and register")
    g.add_argument("--devices", type=int, help="devices in the panel (default: device_share of residents)")
    g.add_argument("--days", type=int, help="observation window in days (default 14)")
    g.add_argument("--seed", type=int, help="root seed (default 42)")
    g.add_argument("--residents", type=int, help="residents of the synthetic metro")
    g.add_argument("--block-devices", type=int, help="devices per generation block (memory bound)")
    g.add_argument("--config", help="scenario TOML file")
    _dask_options(g)
    g.add_argument("--out", required=True, help="output folder or URL, e.g. s3://bucket/ds (new, empty, or a "
                                                "reidsim dataset with --overwrite)")
    g.add_argument("--overwrite", action="store_true",
                   help="replace the reidsim dataset in --out (and the outputs derived from it)")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    g.set_defaults(func=cmd_generate)

    v = sub.add_parser("validate", help="calibration statistics of a generated folder")
    v.add_argument("dir", help="a folder (or URL) written by reidsim generate")
    v.add_argument("--sample-devices", type=_nonnegative_int, default=20_000, metavar="N",
                   help="measure on a seeded sample of N devices, read part by part (default 20000; 0: all)")
    v.set_defaults(func=cmd_validate)

    c = sub.add_parser("defend", help="apply broker safeguards to a generated release, part by part, "
                                      "into a new dataset folder")
    c.add_argument("dir", help="a folder written by reidsim generate")
    c.add_argument("--defense", action="append", metavar="NAME:param=value",
                   help="a trace defense, e.g. grid:cell_m=500 or rotate:period_days=1 (repeat to chain)")
    c.add_argument("--out", required=True, help="the defended dataset (new, empty, or a reidsim dataset with "
                                                "--overwrite)")
    c.add_argument("--overwrite", action="store_true", help="replace the reidsim dataset in --out")
    _dask_options(c)
    c.set_defaults(func=cmd_defend)

    c = sub.add_parser("infer", help="infer home and work of every pseudonym of a generated folder")
    c.add_argument("dir", help="a folder (or URL) written by reidsim generate")
    c.add_argument("--out", help="write inferred/ here (a new or empty folder, or URL) instead of into DIR")
    c.add_argument("--days", type=_positive_days, help="use only the first D days of the window (D > 0)")
    c.add_argument("--score", action="store_true", help="also score against the truth (loads the whole dataset)")
    _dask_options(c,
                  "infer the release's parts in-process (local) or on Dask")
    c.set_defaults(func=cmd_infer)

    c = sub.add_parser("attack", help="run the re-identification attacks on a generated folder (part by part)")
    c.add_argument("dir", help="a folder (or URL) written by reidsim generate")
    c.add_argument("--out", help="write attacks/ and the inferred tables here (a new or empty local folder) "
                                 "instead of into DIR")
    _dask_options(c,
                  "attack the release's parts in-process (local) or on Dask")
    c.add_argument("--in-memory", action="store_true",
                   help="load the whole release instead of streaming it (same tables; for comparison)")
    c.set_defaults(func=cmd_attack)

    c = sub.add_parser("run", help="the main job: default scenario end to end, with a report")
    c.add_argument("--config", help="scenario TOML (default: the built-in scenario)")
    c.add_argument("--out", default="reidsim-out", help="output folder (default reidsim-out)")
    c.add_argument("--overwrite", action="store_true",
                   help="replace the reidsim run already in --out")
    c.add_argument("--seed", type=int, help="root seed")
    c.add_argument("--sample-devices", type=_nonnegative_int, default=20_000, metavar="N",
                   help="above N devices, attack the release part by part and measure the context figures on a "
                        "seeded sample of N devices (default 20000; 0: everything in memory)")
    _dask_options(c,
                  "run that part-by-part attack stage in this process (local) or as Dask tasks, one per "
                  "part (dask; the same tables)")
    c.add_argument("-q", "--quiet", action="store_true")
    c.set_defaults(func=cmd_run)

    c = sub.add_parser("sweep", help="run a scenario file's defense x parameter x replicate grid")
    c.add_argument("file", help="sweep TOML file")
    c.add_argument("--out", required=True)
    c.add_argument("--max-cells", type=_positive_int, default=None, help="refuse grids larger than this (>= 1)")
    _dask_options(c,
                  "evaluate cells in this process (local) or as Dask tasks (dask)")
    c.add_argument("-q", "--quiet", action="store_true")
    c.set_defaults(func=cmd_sweep)
    c = sub.add_parser("cite", help="print a benchmark figure as a sentence with its interval, how to "
                                    "reproduce it and a citation")
    c.add_argument("figure_id", help="e.g. broker_sdk.narrowed_to_5_after_7_days (see BENCHMARKS.md)")
    c.add_argument("--results", default="benchmarks/results",
                   help="folder of the named scenarios' results (default benchmarks/results)")
    c.set_defaults(func=cmd_cite)

    c = sub.add_parser("classroom", help="write a self-contained classroom page (one HTML file that runs "
                                         "offline in any browser)")
    c.add_argument("--out", required=True, help="the HTML file to write, e.g. lesson.html")
    c.add_argument("--config", help="scenario TOML (default: a small classroom city)")
    c.add_argument("--seed", type=int, help="root seed")
    c.add_argument("--devices", type=int, help="phones in the panel (default 1500 without --config)")
    c.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    c.set_defaults(func=cmd_classroom)

    c = sub.add_parser("audit", help="audit real pings (CSV, Parquet, GeoLife): share of users singled out, "
                                     "aggregate-only report")
    c.add_argument("pings", help="a CSV or Parquet file, a folder of them, or a GeoLife root folder")
    c.add_argument("--out", required=True, help="report folder (new, empty, or a previous audit with --overwrite)")
    c.add_argument("--format", choices=["auto", "csv", "parquet", "geolife"], default="auto")
    c.add_argument("--id", help="user id column (default: detected, e.g. uid, user_id, user, id)")
    c.add_argument("--time", help="time column: Unix time or ISO text, naive = UTC (default: detected)")
    c.add_argument("--lat", help="latitude column, degrees (default: detected)")
    c.add_argument("--lon", help="longitude column, degrees (default: detected)")
    c.add_argument("--accuracy", help="horizontal accuracy column, metres (optional)")
    c.add_argument("--tz", help="IANA time zone of local time, e.g. Asia/Shanghai (default: solar time of the data)")
    c.add_argument("--crs", help="projected CRS for distances (default: the UTM zone of the data)")
    c.add_argument("--defense", action="append", metavar="NAME:k=v",
                   help="apply a defense before auditing, e.g. grid:cell_m=500 (repeatable, applied in order)")
    c.add_argument("--register", metavar="FILE",
                   help="your register of people (CSV or Parquet: name, home lat/lon, optional work lat/lon, age) to "
                        "link the users to with the attacker ladder; aggregate results only")
    for role, words in (("name", "name column (default: detected, e.g. name, full_name)"),
                        ("home-lat", "home latitude column, degrees (default: detected, e.g. home_lat, lat)"),
                        ("home-lon", "home longitude column, degrees (default: detected, e.g. home_lon, lon)"),
                        ("work-lat", "employer latitude column (optional; default: detected, e.g. work_lat)"),
                        ("work-lon", "employer longitude column (optional; default: detected, e.g. work_lon)"),
                        ("age", "age column, years (optional; default: detected, age)"),
                        ("user", "column holding each person's user id in PINGS, when known (ground truth: the "
                                 "linkage is then scored; never detected)")):
        c.add_argument(f"--register-{role}", metavar="COLUMN", help=f"register {words}")
    c.add_argument("--k", type=_positive_int, default=5,
                   help="density cells with fewer than k distinct users are suppressed (default 5)")
    c.add_argument("--seed", type=int, default=0, help="seed of the random draws (default 0)")
    c.add_argument("--overwrite", action="store_true", help="replace the previous audit in --out")
    c.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    c.set_defaults(func=cmd_audit)
    return p


def main(argv=None) -> int:
    """Run the ``reidsim`` command; returns the exit status (0 ok, 1 calibration outside
    its sane ranges, 2 bad input or usage, with a message on stderr)."""
    p = build_parser()
    try:
        a = p.parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error argparse already reported (2)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(a.func(a) or 0)
    except ReidsimError as e:
        print(f"reidsim: error: {e}", file=sys.stderr)
        return 2
    except MemoryError:
        print("reidsim: error: out of memory; use fewer devices (--devices), fewer residents or a "
              "smaller --block-devices, or run on a machine with more memory.", file=sys.stderr)
        return 2
    except OSError as e:  # last resort: a file system problem the up-front checks missed
        where = f" {str(e.filename)!r}" if e.filename else ""
        print(f"reidsim: error: cannot access{where}: {e.strerror or e}; check that the path exists, "
              "is a folder where one is expected and that you may write to it.", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
