"""Advertising IDs and the pseudonyms a broker publishes: hex SHA-256 of
``salt + MAID [+ ":" + epoch]`` (unsalted by default, as sold)."""
from __future__ import annotations

import hashlib

import numpy as np

from sim.generate import _kernels as K

# ---------------------------------------------------------------- identifiers
def maids(seed: int, device_idx, epoch) -> list:
    """Advertising IDs (UUID v4 text) of devices in given epochs (one per rotation).

    Each is a pure function of (seed, device index, epoch).
    """
    d = np.asarray(device_idx, dtype=np.int64)
    e = np.asarray(epoch, dtype=np.int64)
    hi, lo = K.maid_words(int(seed), d, e)
    out = []
    for a, b in zip(hi.tolist(), lo.tolist()):
        v = (a << 64) | b
        v = (v & ~(0xF << 76)) | (0x4 << 76)   # version 4
        v = (v & ~(0x3 << 62)) | (0x2 << 62)   # RFC 4122 variant
        h = f"{v:032x}"
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out


def pseudonym_of(maid_str: str, salt: str = "") -> str:
    """What the broker publishes: hex SHA-256 of (salt + MAID); unsalted by default."""
    return pseudonym_hash(maid_str, salt)


def pseudonym_hash(maid: str, salt: str = "", epoch: int | None = None) -> str:
    """The published pseudonym of ``maid``: hex SHA-256 of ``salt + maid [+ ":" + epoch]``."""
    s = salt + str(maid) if epoch is None else f"{salt}{maid}:{int(epoch)}"
    return hashlib.sha256(s.encode("utf-8")).hexdigest()


