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

log = logging.getLogger("sim")

#: runs with at least this many devices print their memory estimate before starting
LARGE_RUN_DEVICES = 1_000_000


# ------------------------------------------------------------------ up-front checks
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
    from sim.release.dataset import load
    from sim.metrics.calibration import calibration_stats, check_calibration

    st = calibration_stats(load(a.dir))
    bad = check_calibration(st)
    print(json.dumps({k: v for k, v in st.items() if not isinstance(v, list)}, indent=2))
    out = Path(a.dir) / "calibration.json"
    from sim.core.files import atomic_path

    with atomic_path(out) as tmp:
        Path(tmp).write_text(json.dumps(st, indent=2))
    if bad:
        print("outside sane ranges:\n  " + "\n  ".join(bad))
        return 1
    print("all calibration statistics within their sane ranges")
    return 0


def cmd_infer(a):
    from sim.release.dataset import load_release, read_manifest
    from sim.infer import infer_home_work
    from sim.core.files import write_table

    rel = load_release(a.dir)
    did = read_manifest(a.dir)["dataset_id"]
    if a.days is not None:
        rel = rel.prefix(a.days)
    inf = infer_home_work(rel)
    write_table(inf, Path(a.dir) / "inferred", dataset_id=did)
    known_h = int(inf["home_x_m"].notna().sum())
    known_w = int(inf["work_x_m"].notna().sum())
    print(f"inferred home for {known_h:,} and work for {known_w:,} of {len(inf):,} pseudonyms "
          f"(window {rel.n_days} days) -> {Path(a.dir) / 'inferred.parquet'}")
    if a.score:
        from sim.release.dataset import load
        from sim.metrics.score import score_inference

        simulation = load(a.dir)
        sc = score_inference(inf, simulation.pseudonyms, simulation.persons, world=simulation.world)
        print(sc if not hasattr(sc, "to_string") else sc.to_string())
    return 0


def cmd_attack(a):
    from sim.release.dataset import load
    from sim.pipeline.main import attack_step, headline_sentence, infer_step

    simulation = load(a.dir)
    ibd, _ = infer_step(simulation, Path(a.dir))
    tables, _ = attack_step(simulation, Path(a.dir), ibd)

    print(headline_sentence(tables, simulation.scenario.register.profile)[0])
    print(f"tables and summary.json written to {Path(a.dir) / 'attacks'}")
    return 0


def cmd_run(a):
    from sim.core.config import Scenario
    from sim.pipeline.main import run_main

    scn = Scenario.from_toml(a.config) if a.config else Scenario()
    if a.seed is not None:
        scn = scn.replace(seed=a.seed)
    check_output_path(a.out)
    _check_memory(scn, what="running this scenario")
    info = run_main(scn, a.out, progress=not a.quiet, overwrite=a.overwrite)
    out = Path(a.out)
    print(info["headline"])
    print(f"report: {out / 'report.html'} (and report.md); tables under {out}")
    return 0


def cmd_sweep(a):
    from sim.pipeline.sweep import load_sweep, run_sweep

    plan = load_sweep(a.file, max_cells=a.max_cells)
    check_output_path(a.out)
    _check_memory(plan["base"], what="each replicate of this sweep")
    res = run_sweep(plan, a.out, progress=not a.quiet)
    print(f"{res['cells_done']} cells computed, {res['cells_skipped']} already done; "
          f"table: {res['table']}")
    return 0


def cmd_cite(a):
    from sim.report.findings import cite

    print(cite(a.figure_id, a.results))
    return 0


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
    g.add_argument("--backend", choices=["local", "dask"], default="local")
    g.add_argument("--scheduler", help="Dask scheduler address (default: a LocalCluster)")
    g.add_argument("--workers", type=_positive_int, default=2,
                   help="LocalCluster workers for --backend dask (>= 1, default 2)")
    g.add_argument("--out", required=True, help="output folder (new, empty, or a reidsim dataset with --overwrite)")
    g.add_argument("--overwrite", action="store_true",
                   help="replace the reidsim dataset in --out (and the outputs derived from it)")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    g.set_defaults(func=cmd_generate)

    v = sub.add_parser("validate", help="calibration statistics of a generated folder")
    v.add_argument("dir")
    v.set_defaults(func=cmd_validate)

    c = sub.add_parser("infer", help="infer home and work of every pseudonym of a generated folder")
    c.add_argument("dir")
    c.add_argument("--days", type=_positive_days, help="use only the first D days of the window (D > 0)")
    c.add_argument("--score", action="store_true", help="also score against the truth")
    c.set_defaults(func=cmd_infer)

    c = sub.add_parser("attack", help="run the re-identification attacks on a generated folder")
    c.add_argument("dir")
    c.set_defaults(func=cmd_attack)

    c = sub.add_parser("run", help="the main job: default scenario end to end, with a report")
    c.add_argument("--config", help="scenario TOML (default: the built-in scenario)")
    c.add_argument("--out", default="reidsim-out", help="output folder (default reidsim-out)")
    c.add_argument("--overwrite", action="store_true",
                   help="replace the reidsim run already in --out")
    c.add_argument("--seed", type=int, help="root seed")
    c.add_argument("-q", "--quiet", action="store_true")
    c.set_defaults(func=cmd_run)

    c = sub.add_parser("sweep", help="run a scenario file's defense x parameter x replicate grid")
    c.add_argument("file", help="sweep TOML file")
    c.add_argument("--out", required=True)
    c.add_argument("--max-cells", type=_positive_int, default=None, help="refuse grids larger than this (>= 1)")
    c.add_argument("-q", "--quiet", action="store_true")
    c.set_defaults(func=cmd_sweep)
    c = sub.add_parser("cite", help="print a benchmark figure as a sentence with its interval, how to "
                                    "reproduce it and a citation")
    c.add_argument("figure_id", help="e.g. broker_sdk.narrowed_to_5_after_7_days (see BENCHMARKS.md)")
    c.add_argument("--results", default="benchmarks/results",
                   help="folder of the named scenarios' results (default benchmarks/results)")
    c.set_defaults(func=cmd_cite)
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
