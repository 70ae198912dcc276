"""Simulate a scenario in memory (no files) for notebooks: :func:`simulate`."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from sim.core.config import Scenario
from sim.generate.engine import generate_block, kernel_params, synthesize
from sim.release.dataset import Simulation, release_to_traces


def _scenario(config=None, **overrides) -> Scenario:
    scn = Scenario.from_any(config)
    return scn.replace(**overrides) if overrides else scn


def simulate(n_devices: int | None = None, days: int | None = None, seed: int | None = None,
             config=None, residents: int | None = None, **overrides) -> Simulation:
    """Generate a scenario in memory (no files) and return a :class:`Simulation`.

    ``config`` is a Scenario, a dict or a TOML path; ``n_devices``, ``days``, ``seed``,
    ``residents`` and ``section__field=value`` overrides apply on top.  When
    ``n_devices`` is given without ``residents``, the population is ``n_devices /
    device_share`` people (a small, fast world).
    """
    ov = dict(overrides)
    if n_devices is not None:
        ov["n_devices"] = int(n_devices)
    if days is not None:
        ov["pings__days"] = int(days)
    if seed is not None:
        ov["seed"] = int(seed)
    if residents is not None:
        ov["world__residents"] = int(residents)
    elif n_devices is not None:
        base = _scenario(config)
        ov["world__residents"] = max(100, int(np.ceil(int(n_devices) / base.population.device_share)))
    scn = _scenario(config, **ov)
    syn = synthesize(scn)
    params = kernel_params(scn, syn.world)
    blocks, hist = [], []
    n = len(syn.devices)
    for g0 in range(0, n, scn.block_devices):
        b = generate_block(scn, syn.world, syn.inputs, g0, min(n, g0 + scn.block_devices), params)
        blocks.append(b.pings)
        hist.append(b.history)
    table = pa.concat_tables(blocks).unify_dictionaries() if len(blocks) > 1 else blocks[0]
    release = release_to_traces(table, syn.world.crs, scn.utc_offset_s, start_s=scn.start_s,
                                n_days=scn.pings.days)
    h = pd.concat(hist, ignore_index=True)
    h.insert(2, "person_id", syn.devices["person_id"].to_numpy()[h["device_idx"].to_numpy()])
    devices = syn.devices.copy()
    devices["maid"] = h.loc[h["epoch"] == 0].sort_values("device_idx")["maid"].to_numpy()
    return Simulation(scn, syn.world, syn.persons, devices, h, syn.register, release)


