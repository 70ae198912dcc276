"""``reidsim`` sub-commands of the later stages: infer, attack, run, sweep."""
from __future__ import annotations

import json
from pathlib import Path


def cmd_infer(a):
    from .api import load_release
    from .infer import infer_home_work
    from .run import write_table
    from .world import World

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
        from .api import load
        from .score import score_inference

        sim = load(a.dir)
        sc = score_inference(inf, sim.pseudonyms, sim.persons, world=sim.world)
        print(sc if not hasattr(sc, "to_string") else sc.to_string())
    return 0


def cmd_attack(a):
    from .api import load
    from .attacks import summary
    from .run import attack_step, infer_step

    sim = load(a.dir)
    ibd = infer_step(sim, Path(a.dir))
    tables = attack_step(sim, Path(a.dir), ibd)
    s = summary(tables)
    from .run import headline_sentence

    print(headline_sentence(tables)[0])
    print(f"tables and summary.json written to {Path(a.dir) / 'attacks'}")
    return 0


def cmd_run(a):
    from .config import Scenario
    from .run import run_main

    scn = Scenario.from_toml(a.config) if a.config else Scenario()
    if a.seed is not None:
        scn = scn.replace(seed=a.seed)
    info = run_main(scn, a.out, progress=not a.quiet)
    out = Path(a.out)
    print(info["headline"])
    print(f"report: {out / 'report.html'} (and report.md); tables under {out}")
    return 0


def cmd_sweep(a):
    from .sweep import run_sweep

    res = run_sweep(a.file, a.out, progress=not a.quiet, max_cells=a.max_cells)
    print(f"{res['cells_done']} cells computed, {res['cells_skipped']} already done; "
          f"table: {res['table']}")
    return 0


def register(sub):
    p = sub.add_parser("infer", help="infer home and work of every pseudonym of a generated folder")
    p.add_argument("dir")
    p.add_argument("--days", type=float, help="use only the first D days of the window")
    p.add_argument("--score", action="store_true", help="also score against the truth")
    p.set_defaults(func=cmd_infer)

    p = sub.add_parser("attack", help="run the re-identification attacks on a generated folder")
    p.add_argument("dir")
    p.set_defaults(func=cmd_attack)

    p = sub.add_parser("run", help="the main job: default scenario end to end, with a report")
    p.add_argument("--config", help="scenario TOML (default: the built-in scenario)")
    p.add_argument("--out", default="reidsim-out", help="output folder (default reidsim-out)")
    p.add_argument("--seed", type=int, help="root seed")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("sweep", help="run a scenario file's defense x parameter x replicate grid")
    p.add_argument("file", help="sweep TOML file")
    p.add_argument("--out", required=True)
    p.add_argument("--max-cells", type=int, default=None, help="refuse grids larger than this")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_sweep)
