"""Regenerate the figures shown in README.md (seeded; about a minute).

    python docs/make_figures.py
"""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from sim.api import simulate  # noqa: E402
from sim.infer import infer_prefixes
from sim.metrics.score import plot_accuracy_vs_days, score_inference

OUT = Path(__file__).resolve().parent / "figures"


def main():
    OUT.mkdir(exist_ok=True)
    s = simulate(n_devices=3000, days=14, seed=1)
    inf = infer_prefixes(s.release, days=(1, 2, 3, 5, 7, 10, 14))
    sc = score_inference(inf, s.pseudonyms, s.persons, world=s.world)
    fig = plot_accuracy_vs_days(sc)
    fig.savefig(OUT / "inference_accuracy.png", dpi=110, bbox_inches="tight")
    (OUT / "inference_accuracy.txt").write_text(sc.to_string())
    print(sc.to_string())


if __name__ == "__main__":
    main()
