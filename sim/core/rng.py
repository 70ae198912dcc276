"""Counter-based random numbers: every draw is a pure function of
(seed, purpose tag, device index, counter).

No generator state is shared between devices or threads, so the same seed gives the
same draws whatever the block size, thread count, device order or backend.  The mixer
is splitmix64's finaliser applied to a combination of the four inputs.

Use inside numba kernels::

    key = stream_key(seed, TAG_EMIT, device)      # once per device and purpose
    u = uniform(key, counter)                     # counter = 0, 1, 2, ...
"""
import hashlib

import numpy as np

from sim.core.errors import ConfigError
from sim.core.jit import jit

# Purpose tags (fixed forever: changing one changes every output).
TAG_RATE = 1        # per-device ping rate and silent-day probability
TAG_COUNT = 2       # per-device-day ping counts
TAG_TIMES = 3       # ping times within a day
TAG_SCHED = 4       # daily schedules
TAG_EPR = 5         # exploration / preferential return
TAG_GPS = 6         # GPS error
TAG_MAID = 7        # advertising IDs and their resets
TAG_POP = 8         # population synthesis (Python side)
TAG_WORLD = 9       # world synthesis (Python side)
TAG_DEFENSE = 10    # release transforms
TAG_ATTACK = 11     # attack sampling (unicity points, known points)
TAG_BOOT = 12       # bootstrap resampling

# Sub-tags of TAG_ATTACK used from Python (``seed_sequence(seed, TAG_ATTACK, SUB_...)``).
SUB_SAMPLE_RELEASE = 99     # the seeded sample of pseudonyms defenses are evaluated on
SUB_MEMBERSHIP_TARGETS = 98  # the target devices of membership inference
SUB_CLASSROOM = 0xC1A55     # the classroom page's demo device and attendee samples
SUB_CONTEXT_SAMPLE = 97     # the device sample a large run's context figures are measured on

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLD = np.uint64(0x9E3779B97F4A7C15)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_INV53 = 1.0 / 9007199254740992.0  # 2**-53


@jit
def mix64(z):
    """splitmix64 finaliser: a bijective avalanche mix of one uint64."""
    z = np.uint64(z)
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@jit
def stream_key(seed, tag, index):
    """Key of the stream for (seed, tag, index); all arguments are integers >= 0."""
    k = mix64(np.uint64(seed) * _GOLD + np.uint64(tag))
    return mix64(k ^ (np.uint64(index) * _M2 + _GOLD))


@jit
def bits(key, counter):
    """64 random bits: draw number ``counter`` of stream ``key``."""
    return mix64(key + (np.uint64(counter) + np.uint64(1)) * _GOLD)


@jit
def uniform(key, counter):
    """A float64 uniform on [0, 1) (53 random bits)."""
    return float(bits(key, counter) >> _S11) * _INV53


@jit
def uniform_open(key, counter):
    """A float64 uniform on (0, 1): safe for log()."""
    return (float(bits(key, counter) >> _S11) + 0.5) * _INV53


@jit
def normal(key, counter):
    """A standard normal deviate by Box-Muller (uses draws counter and counter+1)."""
    u1 = uniform_open(key, counter)
    u2 = uniform(key, counter + 1)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


@jit
def exponential(key, counter):
    """A standard exponential deviate (mean 1)."""
    return -np.log(uniform_open(key, counter))


@jit
def poisson(key, counter, lam):
    """A Poisson(lam) deviate; consumes draws counter .. counter+63 at most.

    Inversion for lam < 30, a rounded normal approximation above (the counts it
    drives are ping numbers, where that approximation is immaterial).  Callers must
    reserve 64 counters per call.
    """
    if lam <= 0.0:
        return 0
    if lam < 30.0:
        u = uniform(key, counter)
        p = np.exp(-lam)
        c = p
        k = 0
        while u > c and k < 1000:
            k += 1
            p *= lam / k
            c += p
        return k
    z = normal(key, counter)
    k = int(np.floor(lam + np.sqrt(lam) * z + 0.5))
    return k if k > 0 else 0


def seed_sequence(seed, *tags):
    """A NumPy ``Generator`` for Python-side draws, keyed by (seed, tags).

    Uses ``SeedSequence(seed, spawn_key=tags)`` so streams are independent and can be
    rebuilt anywhere without coordination (never ``seed + i``).
    """
    ss = np.random.SeedSequence(int(seed), spawn_key=tuple(int(t) for t in tags))
    return np.random.Generator(np.random.PCG64(ss))


def check_seed(seed):
    """Validate a root seed: a non-negative integer below 2**63."""

    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}; pass e.g. seed=42")
    if not 0 <= int(seed) < 2**63:
        raise ConfigError(f"seed must be in [0, 2**63), got {seed}; pass e.g. seed=42")
    return int(seed)


def stable_uid64(strings) -> np.ndarray:
    """A uint64 per string that depends only on the string: the first 8 bytes (little
    endian) of SHA-256 of its UTF-8 text.

    The one stable identity used as the index of counter-based streams (per pseudonym,
    per MAID), so draws depend neither on table row order nor on chunking.
    """
    arr = np.asarray(strings, dtype=object).ravel()
    return np.fromiter(
        (int.from_bytes(hashlib.sha256(str(s).encode("utf-8")).digest()[:8], "little") for s in arr),
        dtype=np.uint64, count=len(arr),
    )
