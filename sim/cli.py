"""The ``reidsim`` command.  It only drives the pipeline; no logic lives here."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .errors import ReidsimError

log = logging.getLogger("sim")


def _scenario_from_args(a):
    from .config import Scenario

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
    from .generate import generate

    scn = _scenario_from_args(a)
    man = generate(scn, a.out, progress=not a.quiet, backend=a.backend, scheduler=a.scheduler,
                   n_workers=a.workers)
    r = man["rows"]
    print(f"wrote {r['pings']:,} pings of {r['pseudonyms']:,} pseudonyms ({r['devices']:,} devices, "
          f"{scn.pings.days} days) to {a.out} in {man['seconds']:.1f} s")
    return 0


def cmd_validate(a):
    from .api import load
    from .validate import calibration_stats, check_calibration

    st = calibration_stats(load(a.dir))
    bad = check_calibration(st)
    print(json.dumps({k: v for k, v in st.items() if not isinstance(v, list)}, indent=2))
    out = Path(a.dir) / "calibration.json"
    from .io import atomic_path

    with atomic_path(out) as tmp:
        Path(tmp).write_text(json.dumps(st, indent=2))
    if bad:
        print("outside sane ranges:\n  " + "\n  ".join(bad))
        return 1
    print("all calibration statistics within their sane ranges")
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

    _add_later_commands(sub)
    return p


def _add_later_commands(sub):
    """Commands of later pipeline stages (registered by their modules)."""
    for mod in ("sim.cli_stages",):
        try:
            m = __import__(mod, fromlist=["register"])
        except ModuleNotFoundError:
            continue
        m.register(sub)


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
