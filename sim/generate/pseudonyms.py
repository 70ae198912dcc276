"""Advertising IDs and the pseudonyms a broker publishes: hex SHA-256 of
``salt + MAID [+ ":" + epoch]`` (unsalted by default, as sold)."""
from __future__ import annotations

import hashlib

import numpy as np

from sim.generate import _kernels as K

#: ASCII hex digits, indexed by nibble value
_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
#: positions of the 32 hex digits in the 36 characters of UUID text (8-4-4-4-12)
_UUID_DIGIT_POS = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])


# ---------------------------------------------------------------- identifiers
def maid_bytes(seed: int, device_idx, epoch) -> np.ndarray:
    """Advertising IDs as ASCII UUID v4 text: an array of 36-byte strings (dtype S36).

    ``maids`` returns the same IDs as Python strings.  The 128 random bits of the
    (device, epoch) pair (:func:`sim.generate._kernels.maid_words`) get the version
    nibble 4 (bits 76-79) and the RFC 4122 variant (bits 62-63, binary 10).
    """
    d = np.asarray(device_idx, dtype=np.int64)
    e = np.asarray(epoch, dtype=np.int64)
    hi, lo = K.maid_words(int(seed), d, e)
    hi = (hi & ~np.uint64(0xF << 12)) | np.uint64(0x4 << 12)  # version 4: bits 76-79 = bits 12-15 of hi
    lo = (lo & ~np.uint64(0x3 << 62)) | np.uint64(0x2 << 62)  # RFC 4122 variant
    raw = np.column_stack([hi, lo]).astype(">u8").view(np.uint8).reshape(len(d), 16)  # big-endian bytes
    nibbles = np.empty((len(d), 32), dtype=np.uint8)
    nibbles[:, 0::2] = raw >> 4
    nibbles[:, 1::2] = raw & 0xF
    text = np.full((len(d), 36), ord("-"), dtype=np.uint8)
    text[:, _UUID_DIGIT_POS] = _HEX_DIGITS[nibbles]
    return text.view("S36").ravel()


def maids(seed: int, device_idx, epoch) -> list:
    """Advertising IDs (UUID v4 text) of devices in given epochs (one per rotation).

    Each is a pure function of (seed, device index, epoch).
    """
    return maid_bytes(seed, device_idx, epoch).astype("U36").tolist()


def pseudonym_of(maid_str: str, salt: str = "") -> str:
    """What the broker publishes: hex SHA-256 of (salt + MAID); unsalted by default."""
    return pseudonym_hash(maid_str, salt)


def pseudonyms_of(maid_ascii, salt: str = "") -> list:
    """:func:`pseudonym_of` of many MAIDs given as ASCII bytes (e.g. :func:`maid_bytes`)."""
    prefix = salt.encode("utf-8")
    sha = hashlib.sha256
    return [sha(prefix + m).hexdigest() for m in np.asarray(maid_ascii, dtype=object).tolist()]


def pseudonym_hash(maid: str, salt: str = "", epoch: int | None = None) -> str:
    """The published pseudonym of ``maid``: hex SHA-256 of ``salt + maid [+ ":" + epoch]``."""
    s = salt + str(maid) if epoch is None else f"{salt}{maid}:{int(epoch)}"
    return hashlib.sha256(s.encode("utf-8")).hexdigest()
