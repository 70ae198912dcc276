"""The Python API for notebooks: simulate in memory, or load a generated folder.

>>> from sim.api import simulate
>>> sim_ = simulate(n_devices=500, days=7, seed=1)
>>> sim_.release.n_traces  # pseudonymous traces the broker sells
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .config import Scenario
from .errors import InputError
from .generate import generate_block, kernel_params, synthesize
from .io import read_manifest, read_pings_table, release_to_traces
from .traces import Traces
from .world import World


@dataclass
class Simulation:
    """Everything about one scenario: the attacker's view and the truth.

    release : Traces — the broker's release projected to ``world.crs`` (attacker view).
    register : DataFrame — the attacker's auxiliary register.
    world : World — the geography (public).
    persons, devices, pseudonyms : DataFrames — ground truth, only for scoring.
    """

    scenario: Scenario
    world: World
    persons: pd.DataFrame
    devices: pd.DataFrame
    pseudonyms: pd.DataFrame
    register: pd.DataFrame
    release: Traces
    meta: dict = field(default_factory=dict)


def _scenario(config=None, **overrides) -> Scenario:
    if config is None:
        scn = Scenario()
    elif isinstance(config, Scenario):
        scn = config
    elif isinstance(config, dict):
        scn = Scenario.from_dict(config)
    else:
        scn = Scenario.from_toml(config)
    return scn.replace(**overrides) if overrides else scn.validate()


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
    import pyarrow as pa

    table = pa.concat_tables(blocks).unify_dictionaries() if len(blocks) > 1 else blocks[0]
    release = release_to_traces(table, syn.world.crs, scn.utc_offset_s, start_s=scn.start_s,
                                n_days=scn.pings.days)
    h = pd.concat(hist, ignore_index=True)
    h.insert(2, "person_id", syn.devices["person_id"].to_numpy()[h["device_idx"].to_numpy()])
    devices = syn.devices.copy()
    devices["maid"] = h.loc[h["epoch"] == 0].sort_values("device_idx")["maid"].to_numpy()
    return Simulation(scn, syn.world, syn.persons, devices, h, syn.register, release)


def load(directory) -> Simulation:
    """Load a folder written by ``reidsim generate`` as a :class:`Simulation`."""
    d = Path(directory)
    man = read_manifest(d)
    world = World.load(d / "world")
    table = read_pings_table(d / "pings")
    release = release_to_traces(table, world.crs, man["utc_offset_s"], start_s=man["start_s"],
                                n_days=man["n_days"])
    truth = d / "truth"
    for f in ("persons", "devices", "pseudonyms"):
        if not (truth / f"{f}.parquet").exists():
            raise InputError(f"{str(truth / (f + '.parquet'))!r} is missing; regenerate the dataset.")
    return Simulation(
        scenario=Scenario.from_dict(man["scenario"]), world=world,
        persons=pd.read_parquet(truth / "persons.parquet"),
        devices=pd.read_parquet(truth / "devices.parquet"),
        pseudonyms=pd.read_parquet(truth / "pseudonyms.parquet"),
        register=pd.read_parquet(d / "register.parquet"), release=release, meta=man,
    )


def load_release(directory) -> Traces:
    """Only the attacker's view of a generated folder: the release as Traces."""
    d = Path(directory)
    man = read_manifest(d)
    world = World.load(d / "world")
    return release_to_traces(read_pings_table(d / "pings"), world.crs, man["utc_offset_s"],
                             start_s=man["start_s"], n_days=man["n_days"])
