"""Release stage: what the broker publishes and how it can be defended.

* :mod:`sim.release.dataset` — reading a generated folder (pings, manifest, digest, truth);
* :mod:`sim.release.defenses` — the defense registry and the release transforms;
* :mod:`sim.release.aggregate` — zone x time-bin counts, k-threshold and DP aggregates;
* :mod:`sim.release._kernels` — the defenses' numba kernels.
"""
from sim.release.dataset import (
    Simulation,
    dataset_digest,
    load,
    load_release,
    load_sample,
    sample_devices,
    read_manifest,
    read_pings_table,
    release_to_traces,
)
from sim.release.defenses import REGISTRY, BrokerContext, apply_defense, apply_defenses, defense_table

__all__ = ["Simulation", "load", "load_sample", "sample_devices", "load_release", "read_manifest", "read_pings_table",
           "release_to_traces", "dataset_digest", "REGISTRY", "BrokerContext", "apply_defense",
           "apply_defenses", "defense_table"]
