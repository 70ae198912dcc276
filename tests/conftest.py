"""Shared small fixtures (session-scoped, so each is built once per test run).

Keep them SMALL: a few thousand residents, a few hundred devices, a week.
"""
from __future__ import annotations

import pytest

#: the one small scenario most foundation tests share
SMALL = dict(n_devices=300, days=7, seed=5)
#: block size of the generated fixture folder (300 devices -> 4 part files)
SMALL_BLOCK = 97


@pytest.fixture(scope="session")
def small_sim():
    """``sim.api.simulate(n_devices=300, days=7, seed=5)`` (3,000 residents)."""
    from sim.api import simulate

    return simulate(**SMALL)


@pytest.fixture(scope="session")
def small_scenario(small_sim):
    """The validated Scenario of ``small_sim`` (block_devices=97, several parts)."""
    return small_sim.scenario.replace(block_devices=SMALL_BLOCK)


@pytest.fixture(scope="session")
def small_dataset(small_scenario, tmp_path_factory):
    """(folder, manifest) of ``sim.generate.generate`` for ``small_scenario``.

    Read-only for tests: copy it before modifying anything inside.
    """
    from sim.generate.engine import generate

    out = tmp_path_factory.mktemp("small_dataset")
    manifest = generate(small_scenario, out, progress=False)
    return out, manifest
