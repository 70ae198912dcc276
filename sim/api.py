"""The Python API for notebooks: simulate in memory, load a generated folder, run the
main job.

>>> from sim.api import simulate
>>> s = simulate(n_devices=500, days=7, seed=1)
>>> s.release.n_traces  # pseudonymous traces the broker sells
"""
from sim.pipeline.api import simulate
from sim.pipeline.classroom import write_classroom
from sim.pipeline.evaluate import evaluate_defense, evaluate_defenses, infer_by_day
from sim.pipeline.main import run_main
from sim.release.dataset import Simulation, load, load_release

__all__ = ["simulate", "load", "load_release", "Simulation", "run_main", "evaluate_defense",
           "evaluate_defenses", "infer_by_day", "write_classroom"]
