"""Numba settings shared by every kernel (defined once, as in stumpy's config).

``cache=True`` keeps compiled kernels on disk so a command does not pay the JIT
warm-up again. ``fastmath`` stays off: bit-identical output across runs matters more
than the last few percent of speed.
"""
import numba

JIT = dict(cache=True, nogil=True, fastmath=False)
PJIT = dict(cache=True, nogil=True, fastmath=False, parallel=True)

njit = numba.njit
prange = numba.prange


def jit(fn):
    """Serial kernel decorator with the project's flags."""
    return numba.njit(**JIT)(fn)


def pjit(fn):
    """Parallel (``prange``) kernel decorator with the project's flags."""
    return numba.njit(**PJIT)(fn)
