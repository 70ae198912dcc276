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
)

GOLDEN = {
    "small_dataset": "67ca4217290f41f4d70cc6f65745c39e98040fec9fea276dad8a6b9002cc4528",
    "tiny_run": "d4acc0227ce6166ed1ea5bd6880830d7b02145a89d54be686d17da4c570374bf",
    "attacks/geofence.parquet": "ac1e1106bec75234",
    "attacks/geofence_per_pseudonym.parquet": "ddad02f695ce2852",
    "attacks/known_points.parquet": "1b53a096d47c9a88",
    "attacks/linkage.parquet": "79a0c50bb2042d73",
    "attacks/linkage_per_device.parquet": "42f741d0dfabf0c4",
    "attacks/time_to_identification.parquet": "e538f87e28d223c8",
    "attacks/time_to_identification_per_device.parquet": "c0067e09249cb813",
    "attacks/topn.parquet": "2f463133fbc8448a",
    "attacks/unicity.parquet": "8d282837d958c8cb",
    "attacks/unicity_power_law.parquet": "65e1275093855de3",
    "defenses/privacy.parquet": "5f83083a924046dd",
    "defenses/utility.parquet": "1cf88decc4404abd",
    "inferred.parquet": "ed01b08123991a6f",
    "inferred_by_day.parquet": "ba7c41d3e96d8e68",
    "register.parquet": "17034b082439e4e8",
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
