"""A tiny complete run folder shared by tests/test_plots.py and tests/test_report.py.

``tiny_run(tmp_path_factory)`` runs the main job once per pytest session on a small
scenario (300 devices, 3,000 residents, 5 days; about 15 s after numba compilation)
and returns the folder.  Treat it as read-only: copy it before writing into it.
"""
from __future__ import annotations

_CACHE: dict = {}

#: the scenario of the shared run folder
TINY = dict(n_devices=300, residents=3000, days=5, seed=42)


def tiny_scenario():
    from sim.core.config import Scenario

    return Scenario(n_devices=TINY["n_devices"], seed=TINY["seed"]).replace(
        world__residents=TINY["residents"], pings__days=TINY["days"])


def tiny_run(tmp_path_factory):
    """Folder of ``run_main(tiny_scenario(), DIR, report=False)``, built once per session."""
    if "dir" not in _CACHE:
        from sim.pipeline.main import run_main

        d = tmp_path_factory.mktemp("tiny_run")
        run_main(tiny_scenario(), d, report=False, progress=False)
        _CACHE["dir"] = d
    return _CACHE["dir"]
