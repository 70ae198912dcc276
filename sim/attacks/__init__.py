"""Re-identification attacks and risk metrics (DESIGN.md §6).

Each attack is a plain function over tables returning tidy DataFrames (one row per
level/parameter/metric with columns value, ci_low, ci_high, n).  The attack half of
each function sees only what an attacker holds (release, inferred tables, register,
world); truth tables are read only by the scoring half.

Modules: linkage (Golle & Partridge home/work linkage, time to identification),
ladder (the attacker ladder: exact, hierarchical, home_adults, ranked; per device and
per pseudonym; relink-then-identify), unicity (de Montjoye p-point unicity), topn (Zang & Bolot top-N places), geofence
(area search -> follow home), known_points (m noisy sightings), relink (rotated
pseudonyms), skmob (scikit-mobility-compatible risk measures), run (all of them).
"""
from sim.attacks.geofence import geofence_attack, seen_in_fence
from sim.attacks.known_points import known_points_attack
from sim.attacks.ladder import (RUNG_NAMES, RUNGS, ladder_attack, ladder_candidates, ladder_sets, relink_groups,
                                rung_table)
from sim.attacks.linkage import link_devices, linkage_attack, linkage_metrics, score_links, time_to_identification
from sim.attacks.relink import propose_links, pseudonym_epochs, relink_attack, relink_vs_period, score_relinks
from sim.attacks.run import ATTACK_NAMES, AttackConfig, run_attacks, summary, write_attack_outputs
from sim.attacks.skmob import privacy_risk
from sim.attacks.topn import top_locations, topn_uniqueness
from sim.attacks.unicity import build_index, fit_power_law, unicity_attack

__all__ = [
    "AttackConfig", "ATTACK_NAMES", "build_index", "fit_power_law", "geofence_attack", "known_points_attack",
    "ladder_attack", "ladder_candidates", "ladder_sets", "relink_groups", "rung_table", "RUNG_NAMES", "RUNGS",
    "link_devices", "linkage_attack", "linkage_metrics", "privacy_risk",
    "propose_links", "pseudonym_epochs", "relink_attack", "relink_vs_period", "run_attacks", "score_links",
    "score_relinks", "seen_in_fence", "summary", "time_to_identification", "top_locations", "topn_uniqueness",
    "unicity_attack", "write_attack_outputs",
]
