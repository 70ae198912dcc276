"""Numba kernels of the defenses: a serial worker over one trace, a parallel kernel over
traces (each iteration writes only its own slice), and the stream keys they use."""
from __future__ import annotations

import numpy as np

from sim.core.jit import jit, pjit, prange
from sim.core.rng import TAG_DEFENSE, exponential, normal, stream_key, uniform

# Sub-tags of TAG_DEFENSE (fixed forever: changing one changes every output).
SUB_SUBSAMPLE = 1
SUB_CAP = 2
SUB_GAUSS = 3
SUB_LAPLACE = 4
SUB_RESET = 5
SUB_DP = 6
SUB_MIA = 7
SUB_SALT = 8


def defense_key(seed: int, sub: int) -> np.uint64:
    """The root stream key of the defense with sub-tag ``sub``."""
    return np.uint64(stream_key(seed, TAG_DEFENSE, sub))


# =============================================================================
# Kernels: serial worker over one trace, parallel kernel over traces
# =============================================================================
@jit
def _subsample_one(key, fraction, keep):
    for j in range(keep.shape[0]):
        keep[j] = uniform(key, j) < fraction


@pjit
def subsample_kernel(offsets, uids, dkey, fraction, keep):
    for i in prange(offsets.shape[0] - 1):
        a, b = offsets[i], offsets[i + 1]
        _subsample_one(stream_key(dkey, 0, uids[i]), fraction, keep[a:b])


@jit
def _cap_one(key, day, cap, keep):
    n = day.shape[0]
    j = 0
    while j < n:
        k = j
        while k < n and day[k] == day[j]:
            k += 1
        m = k - j
        if m <= cap:
            for q in range(j, k):
                keep[q] = True
        else:
            u = np.empty(m)
            for q in range(m):
                u[q] = uniform(key, j + q)
            order = np.argsort(u, kind="mergesort")
            for q in range(m):
                keep[j + q] = False
            for q in range(cap):
                keep[j + order[q]] = True
        j = k


@pjit
def cap_kernel(offsets, uids, dkey, day, cap, keep):
    for i in prange(offsets.shape[0] - 1):
        a, b = offsets[i], offsets[i + 1]
        _cap_one(stream_key(dkey, 0, uids[i]), day[a:b], cap, keep[a:b])


@jit
def _gauss_one(key, sigma_m, x, y, xo, yo):
    for j in range(x.shape[0]):
        xo[j] = x[j] + sigma_m * normal(key, 4 * j)
        yo[j] = y[j] + sigma_m * normal(key, 4 * j + 2)


@pjit
def gauss_kernel(offsets, uids, dkey, sigma_m, x, y, xo, yo):
    for i in prange(offsets.shape[0] - 1):
        a, b = offsets[i], offsets[i + 1]
        _gauss_one(stream_key(dkey, 0, uids[i]), sigma_m, x[a:b], y[a:b], xo[a:b], yo[a:b])


@jit
def _laplace_one(key, eps_per_m, x, y, xo, yo):
    for j in range(x.shape[0]):
        # Gamma(2, 1/eps) radius as the sum of two exponentials; uniform angle.
        r = (exponential(key, 4 * j) + exponential(key, 4 * j + 1)) / eps_per_m
        th = 2.0 * np.pi * uniform(key, 4 * j + 2)
        xo[j] = x[j] + r * np.cos(th)
        yo[j] = y[j] + r * np.sin(th)


@pjit
def laplace_kernel(offsets, uids, dkey, eps_per_m, x, y, xo, yo):
    for i in prange(offsets.shape[0] - 1):
        a, b = offsets[i], offsets[i + 1]
        _laplace_one(stream_key(dkey, 0, uids[i]), eps_per_m, x[a:b], y[a:b], xo[a:b], yo[a:b])


@jit
def _reset_one(key, day, prob, epoch):
    # A reset happens at the local midnight opening day d >= 1 iff uniform(key, d) < prob;
    # the epoch of a ping on day d is the number of resets on days 1..d.
    count = 0
    cur = 0
    for j in range(day.shape[0]):
        d = day[j]
        while cur < d:
            cur += 1
            if uniform(key, cur) < prob:
                count += 1
        epoch[j] = count


@pjit
def reset_kernel(offsets, uids, dkey, day, prob, epoch):
    for i in prange(offsets.shape[0] - 1):
        a, b = offsets[i], offsets[i + 1]
        _reset_one(stream_key(dkey, 0, uids[i]), day[a:b], prob, epoch[a:b])


@jit
def _contrib_one(zone, tbin, cap, oz, ob):
    """Distinct (zone, bin) cells of one trace, at most ``cap`` zones per bin.

    Within a bin the zones with most pings win, ties to the lowest zone id; zones < 0
    are ignored.  Returns the number of cells written to ``oz``/``ob``.
    """
    n = zone.shape[0]
    zs = np.empty(n, dtype=np.int64)  # scratch, reused by every bin of the trace
    uz = np.empty(n, dtype=np.int64)
    cnt = np.empty(n, dtype=np.int64)
    w = 0
    j = 0
    while j < n:
        k = j
        while k < n and tbin[k] == tbin[j]:
            k += 1
        if k - j == 1:  # fast path: a lone ping in its bin
            if zone[j] >= 0:
                oz[w] = zone[j]
                ob[w] = tbin[j]
                w += 1
            j = k
            continue
        g = zs[: k - j]
        g[:] = zone[j:k]
        g.sort()
        m = 0
        for q in range(k - j):
            if g[q] < 0:
                continue
            if m > 0 and uz[m - 1] == g[q]:
                cnt[m - 1] += 1
            else:
                uz[m] = g[q]
                cnt[m] = 1
                m += 1
        if m <= cap:
            for q in range(m):
                oz[w] = uz[q]
                ob[w] = tbin[j]
                w += 1
        else:
            order = np.argsort(-cnt[:m], kind="mergesort")  # stable: ties keep lowest zone
            for q in range(cap):
                oz[w] = uz[order[q]]
                ob[w] = tbin[j]
                w += 1
        j = k
    return w


@pjit
def contrib_kernel(offsets, zone, tbin, cap, oz, ob, nw):
    for i in prange(offsets.shape[0] - 1):
        a, b = offsets[i], offsets[i + 1]
        nw[i] = _contrib_one(zone[a:b], tbin[a:b], cap, oz[a:b], ob[a:b])


@pjit
def dp_noise_kernel(zone_ids, n_bins, dkey, scale, geometric, out):
    # Cell (zone z, bin b) uses draws 2b, 2b+1 of stream (dkey, z): Laplace(scale) as the
    # difference of two exponentials, two-sided geometric as the difference of floors.
    for zi in prange(zone_ids.shape[0]):
        key = stream_key(dkey, 0, zone_ids[zi])
        for b in range(n_bins):
            e1 = exponential(key, 2 * b)
            e2 = exponential(key, 2 * b + 1)
            if geometric:
                out[zi, b] = np.floor(e1 * scale) - np.floor(e2 * scale)
            else:
                out[zi, b] = scale * (e1 - e2)


