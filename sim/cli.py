"""The ``reidsim`` command.  It only drives the pipeline; no logic lives here."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from sim.core.errors import ReidsimError

log = logging.getLogger("sim")


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
    man = generate(scn, a.out, progress=not a.quiet, backend=a.backend, scheduler=a.scheduler,
                   n_workers=a.workers)
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
    from sim.release.dataset import load_release
    from sim.infer import infer_home_work
    from sim.core.files import write_table

    rel = load_release(a.dir)
    if a.days is not None:
        rel = rel.prefix(a.days)
    inf = infer_home_work(rel)
    write_table(inf, Path(a.dir) / "inferred")
    known_h = int(inf["home_x_m"].notna().sum())
    known_w = int(inf["work_x_m"].notna().sum())
    print(f"inferred home for {known_h:,} and work for {known_w:,} of {len(inf):,} pseudonyms "
          f"(window {rel.n_days} days) -> {Path(a.dir) / 'inferred.parquet'}")
    if a.score:
        from sim.release.dataset import load
        from sim.metrics.score import score_inference

        sim = load(a.dir)
        sc = score_inference(inf, sim.pseudonyms, sim.persons, world=sim.world)
        print(sc if not hasattr(sc, "to_string") else sc.to_string())
    return 0


def cmd_attack(a):
    from sim.release.dataset import load
    from sim.attacks import summary
    from sim.pipeline.main import attack_step, infer_step

    sim = load(a.dir)
    ibd = infer_step(sim, Path(a.dir))
    tables = attack_step(sim, Path(a.dir), ibd)
    from sim.pipeline.main import headline_sentence

    print(headline_sentence(tables)[0])
    print(f"tables and summary.json written to {Path(a.dir) / 'attacks'}")
    return 0


def cmd_run(a):
    from sim.core.config import Scenario
    from sim.pipeline.main import run_main

    scn = Scenario.from_toml(a.config) if a.config else Scenario()
    if a.seed is not None:
        scn = scn.replace(seed=a.seed)
    info = run_main(scn, a.out, progress=not a.quiet)
    out = Path(a.out)
    print(info["headline"])
    print(f"report: {out / 'report.html'} (and report.md); tables under {out}")
    return 0


def cmd_sweep(a):
    from sim.pipeline.sweep import run_sweep

    res = run_sweep(a.file, a.out, progress=not a.quiet, max_cells=a.max_cells)
    print(f"{res['cells_done']} cells computed, {res['cells_skipped']} already done; "
          f"table: {res['table']}")
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
    g.add_argument("--workers", type=int, default=2, help="LocalCluster workers for --backend dask")
    g.add_argument("--out", required=True, help="output folder")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    g.set_defaults(func=cmd_generate)

    v = sub.add_parser("validate", help="calibration statistics of a generated folder")
    v.add_argument("dir")
    v.set_defaults(func=cmd_validate)

    c = sub.add_parser("infer", help="infer home and work of every pseudonym of a generated folder")
    c.add_argument("dir")
    c.add_argument("--days", type=float, help="use only the first D days of the window")
    c.add_argument("--score", action="store_true", help="also score against the truth")
    c.set_defaults(func=cmd_infer)

    c = sub.add_parser("attack", help="run the re-identification attacks on a generated folder")
    c.add_argument("dir")
    c.set_defaults(func=cmd_attack)

    c = sub.add_parser("run", help="the main job: default scenario end to end, with a report")
    c.add_argument("--config", help="scenario TOML (default: the built-in scenario)")
    c.add_argument("--out", default="reidsim-out", help="output folder (default reidsim-out)")
    c.add_argument("--seed", type=int, help="root seed")
    c.add_argument("-q", "--quiet", action="store_true")
    c.set_defaults(func=cmd_run)

    c = sub.add_parser("sweep", help="run a scenario file's defense x parameter x replicate grid")
    c.add_argument("file", help="sweep TOML file")
    c.add_argument("--out", required=True)
    c.add_argument("--max-cells", type=int, default=None, help="refuse grids larger than this")
    c.add_argument("-q", "--quiet", action="store_true")
    c.set_defaults(func=cmd_sweep)
    return p


def main(argv=None) -> int:
    p = build_parser()
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(a.func(a) or 0)
    except ReidsimError as e:
        print(f"reidsim: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
