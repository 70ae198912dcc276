"""Golden values: the content digest of a small seeded dataset and of the main tables of a
tiny ``reidsim run`` are pinned, so any change of output (a numba or numpy upgrade, a
refactor, a changed draw) fails here and has to be reviewed and re-pinned on purpose.

To re-pin after a deliberate change of output::

    python tests/test_golden.py      # prints the current values as a Python dict

and paste them into ``GOLDEN`` below, saying in the commit message why they moved.

Tables are hashed column by column in a canonical form (columns sorted, floats printed
with 9 significant digits), so a change in the last bits of a float does not count, but
any change a reader could see does.
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _runfixture import tiny_run

#: tables of the tiny run folder that are pinned (relative paths)
TABLES = (
    "inferred.parquet", "inferred_by_day.parquet", "register.parquet",
    "attacks/linkage.parquet", "attacks/linkage_per_device.parquet",
    "attacks/time_to_identification.parquet", "attacks/time_to_identification_per_device.parquet",
    "attacks/unicity.parquet", "attacks/unicity_power_law.parquet", "attacks/topn.parquet",
    "attacks/geofence.parquet", "attacks/geofence_per_pseudonym.parquet",
    "attacks/known_points.parquet", "defenses/privacy.parquet", "defenses/utility.parquet",
    "attacks/ladder.parquet", "attacks/waterfall.parquet", "attacks/sensitivity.parquet",
    "attacks/unicity_panel.parquet",
)

GOLDEN = {
    "small_dataset": "924911ca0dd3b0f08e40185c24a153a03a27f580c7ffc85bb43721013510c5bc",
    "tiny_run": "35a8597a946b86a8ef614e9b19ba4334dd3d523fa57fe0fc2646fbbfaab000a5",
    "attacks/geofence.parquet": "7af265f714f8cec7",
    "attacks/geofence_per_pseudonym.parquet": "03b5fb3303a3d4c7",
    "attacks/known_points.parquet": "a5bd47fb04a1229b",
    "attacks/ladder.parquet": "b6eacca05b396959",
    "attacks/linkage.parquet": "b3b38f00f2fba9a7",
    "attacks/linkage_per_device.parquet": "15002ffeb4ab3136",
    "attacks/sensitivity.parquet": "a16266ba7d60e11f",
    "attacks/time_to_identification.parquet": "b0c4805c687e6bf0",
    "attacks/time_to_identification_per_device.parquet": "c2dd7b4bc51684b7",
    "attacks/topn.parquet": "5e5a6340516dbf41",
    "attacks/unicity.parquet": "56e033334c10c36e",
    "attacks/unicity_panel.parquet": "5a22912b210fc775",
    "attacks/unicity_power_law.parquet": "09447031926a9a29",
    "attacks/waterfall.parquet": "8d446354b3486a74",
    "defenses/privacy.parquet": "99a176592f22c3bc",
    "defenses/utility.parquet": "d3092770ece0ae80",
    "inferred.parquet": "aee783903c2bac39",
    "inferred_by_day.parquet": "6c41b906fcea79e2",
    "register.parquet": "8e1e92a0dfa89ac5",
}


def table_digest(df: pd.DataFrame) -> str:
    """16 hex digits of SHA-256 over the canonical text of ``df`` (see module docstring)."""
    cols = sorted(df.columns)
    h = hashlib.sha256("|".join(cols).encode())
    for c in cols:
        v = df[c]
        if pd.api.types.is_float_dtype(v):
            h.update(",".join(f"{x:.9g}" for x in np.asarray(v, float)).encode())
        else:
            h.update(",".join(map(str, v.tolist())).encode())
    return h.hexdigest()[:16]


def current_values(small_dir: Path, run_dir: Path) -> dict:
    from sim.release.dataset import dataset_digest

    out = {"small_dataset": dataset_digest(small_dir), "tiny_run": dataset_digest(run_dir)}
    for rel in TABLES:
        out[rel] = table_digest(pd.read_parquet(run_dir / rel))
    return out


@pytest.fixture(scope="module")
def values(small_dataset, tmp_path_factory):
    return current_values(small_dataset[0], tiny_run(tmp_path_factory))


@pytest.mark.parametrize("key", sorted(GOLDEN))
def test_output_matches_golden_value(values, key):
    assert values[key] == GOLDEN[key], (
        f"{key} changed: {values[key]} != pinned {GOLDEN[key]}. If the change of output is "
        "deliberate, re-pin with `python tests/test_golden.py` and say why in the commit.")


def test_table_digest_sees_a_visible_change_only():
    df = pd.DataFrame({"a": [0.1, 0.2], "b": [1, 2]})
    same = df.assign(a=df["a"] + 1e-15)
    moved = df.assign(a=[0.1, 0.2001])
    assert table_digest(df) == table_digest(same) == table_digest(df[["b", "a"]])
    assert table_digest(df) != table_digest(moved)


if __name__ == "__main__":  # pragma: no cover - re-pinning helper
    import tempfile

    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import SMALL, SMALL_BLOCK
    from _runfixture import tiny_scenario

    from sim.api import simulate
    from sim.generate.engine import generate
    from sim.pipeline.main import run_main

    with tempfile.TemporaryDirectory() as tmp:
        scn = simulate(**SMALL).scenario.replace(block_devices=SMALL_BLOCK)
        generate(scn, Path(tmp) / "small", progress=False)
        run_main(tiny_scenario(), Path(tmp) / "run", report=False, progress=False)
        vals = current_values(Path(tmp) / "small", Path(tmp) / "run")
    print("GOLDEN = {")
    for k in sorted(vals, key=lambda k: (k not in ("small_dataset", "tiny_run"), k)):
        print(f"    {k!r}: {vals[k]!r},")
    print("}")
