"""Generate stage: persons' days in numba kernels, pings emitted, streamed to Parquet.

* :mod:`sim.generate.engine` — :func:`generate` (to a folder), :func:`generate_block`,
  :func:`synthesize` (world + population + device inputs);
* :mod:`sim.generate.pseudonyms` — MAIDs and published pseudonyms;
* :mod:`sim.generate._kernels` — the compiled schedule and ping kernels.
"""
from sim.generate.engine import (
    PINGS_SCHEMA,
    generate,
    generate_block,
    kernel_params,
    package_versions,
    synthesize,
)
from sim.generate.pseudonyms import maids, pseudonym_hash, pseudonym_of

__all__ = ["generate", "generate_block", "synthesize", "kernel_params", "package_versions",
           "PINGS_SCHEMA", "maids", "pseudonym_of", "pseudonym_hash"]
