"""Numba kernels for home/work inference (three layers, stumpy style).

* serial workers over one trace: :func:`dbscan_trace` (exact grid DBSCAN),
  :func:`cluster_stats` (per-place support), :func:`choose_home_work`,
  :func:`infer_window` (all of it for one observation window of one trace, from
  scratch: the reference the windows of :func:`infer_kernel` are tested against, which
  filter and grid-sort each trace once for all its windows and carry each window's
  DBSCAN over to the next, :func:`dbscan_prefixes`; :func:`dbscan_prefix` is one
  prefix from scratch on the whole trace's grid, the reference of that);
* parallel kernels looping ``prange`` over traces, each iteration writing only its
  own output slice: :func:`infer_kernel`, :func:`from_labels_kernel`,
  :func:`place_stats_kernel`;
* the public, validating functions live in :mod:`sim.infer`.

Kernels never validate: they trust the public layer for dtypes, contiguity and
parameter ranges.

Conventions
-----------
``rel_s`` is ``t_s - start_s`` (seconds since local midnight of day 0).  A *time
window* of the day is ``[a_s, b_s)`` in seconds of the local day; when ``a_s > b_s``
it wraps midnight (``[a_s, 86400) U [0, b_s)``) and pings after midnight belong to
the window that opened the day before, so a night is counted once.  The *window id*
of a ping is the local day on which its window opened (``NO_ID`` outside).  Window
ids are non-decreasing in time, so distinct ids per place are counted by comparing
each ping's id with the last id seen at that place.
"""
import numpy as np

from sim.core.constants import DAY_S
from sim.core.jit import jit, pjit, prange
from sim.world._kernels import counting_argsort

NO_ID = -(2**62)  # "not in the window"

NOISE = -1     # label: kept ping in no place (DBSCAN noise)
DROPPED = -2   # label: ping dropped by the accuracy filter
OUTSIDE = -3   # label: ping after the end of the observation window

# columns of the float / int outputs
F_HOME_X, F_HOME_Y, F_WORK_X, F_WORK_Y = 0, 1, 2, 3
N_F = 4
I_HOME_NIGHTS, I_HOME_PINGS, I_WORK_DAYS, I_WORK_PINGS, I_N_PINGS, I_N_DAYS = 0, 1, 2, 3, 4, 5
I_HOME_PLACE, I_WORK_PLACE = 6, 7  # place numbers (-1 unknown)
N_I = 8

_REACH = 3  # grid cells scanned either side (cell side eps/2 needs 2; +1 absorbs rounding)


# --------------------------------------------------------------------------- union-find
@jit
def find_root(parent, i):
    """Root of ``i`` in the union-find forest ``parent`` (with path halving)."""
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@jit
def union_roots(parent, a, b):
    """Join the sets of ``a`` and ``b``; the smaller root becomes the parent."""
    ra = find_root(parent, a)
    rb = find_root(parent, b)
    if ra < rb:
        parent[rb] = ra
    elif rb < ra:
        parent[ra] = rb


@jit
def _cell_ranges(cell_keys, key, ny, lo_out, hi_out):
    """Cell-index ranges ``[lo_out[r], hi_out[r])`` of the 7 x 7 cells around ``key``."""
    cx = key // ny
    cy = key - cx * ny
    for r in range(2 * _REACH + 1):
        col = cx + r - _REACH
        lo_out[r] = np.searchsorted(cell_keys, col * ny + cy - _REACH, side="left")
        hi_out[r] = np.searchsorted(cell_keys, col * ny + cy + _REACH, side="right")


# --------------------------------------------------------------------------- DBSCAN
@jit
def _grid_keys(x, y, eps_m):
    """Cell key (int64) of each point on a grid of cell side ``eps_m / 2`` anchored at
    the points' minimum, and the key stride ``ny``: ``(keys, ny)``.  ``x`` non-empty."""
    n = len(x)
    inv = 2.0 / eps_m
    x0 = x.min()
    y0 = y.min()
    ix = np.empty(n, np.int64)
    iy = np.empty(n, np.int64)
    for i in range(n):
        ix[i] = np.int64(np.floor((x[i] - x0) * inv)) + _REACH
        iy[i] = np.int64(np.floor((y[i] - y0) * inv)) + _REACH
    ny = iy.max() + _REACH + 1
    return ix * ny + iy, ny


@jit
def _cells_of(order, keys, x, y):
    """The grid of the points ``order`` (sorted by key): ``(xs, ys, cell_start,
    cell_keys)`` — sorted coordinates, and cell ``c`` (key ``cell_keys[c]``) holding
    sorted positions ``[cell_start[c], cell_start[c + 1])``."""
    n = len(order)
    skey = keys[order]
    xs = x[order]
    ys = y[order]
    # cells = runs of equal key in sorted order
    cell_start = np.empty(n + 1, np.int64)
    ncell = 0
    for p in range(n):
        if p == 0 or skey[p] != skey[p - 1]:
            cell_start[ncell] = p
            ncell += 1
    cell_start[ncell] = n
    cell_keys = np.empty(ncell, np.int64)
    for c in range(ncell):
        cell_keys[c] = skey[cell_start[c]]
    return xs, ys, cell_start[:ncell + 1], cell_keys


@jit
def _grid_cells(x, y, eps_m):
    """Sort one trace's points into a grid of cell side ``eps_m / 2``.

    Returns ``(order, xs, ys, ny, cell_start, cell_keys)``: ``order`` sorts the points
    by cell key (stable), ``xs``/``ys`` are the sorted coordinates, ``ny`` the key
    stride, and cell ``c`` (key ``cell_keys[c]``) holds sorted positions
    ``[cell_start[c], cell_start[c + 1])``.  ``x`` must be non-empty.
    """
    keys, ny = _grid_keys(x, y, eps_m)
    order = np.argsort(keys, kind="mergesort")
    xs, ys, cell_start, cell_keys = _cells_of(order, keys, x, y)
    return order, xs, ys, ny, cell_start, cell_keys


@jit
def _core_points(xs, ys, cell_start, cell_keys, ny, eps2, min_samples):
    """Core flag per sorted position: ``>= min_samples`` neighbours within ``eps``."""
    n = len(xs)
    ncell = len(cell_keys)
    nr = 2 * _REACH + 1
    rlo = np.empty(nr, np.int64)
    rhi = np.empty(nr, np.int64)
    core = np.zeros(n, np.bool_)
    for c in range(ncell):
        a0 = cell_start[c]
        a1 = cell_start[c + 1]
        if a1 - a0 >= min_samples:
            for p in range(a0, a1):
                core[p] = True
            continue
        _cell_ranges(cell_keys, cell_keys[c], ny, rlo, rhi)
        for p in range(a0, a1):
            cnt = 0
            for r in range(nr):
                q0 = cell_start[rlo[r]]
                q1 = cell_start[rhi[r]]
                for q in range(q0, q1):
                    dx = xs[p] - xs[q]
                    dy = ys[p] - ys[q]
                    if dx * dx + dy * dy <= eps2:
                        cnt += 1
                        if cnt >= min_samples:
                            break
                if cnt >= min_samples:
                    break
            core[p] = cnt >= min_samples
    return core


@jit
def _cores_touch(xs, ys, core, cell_start, c, c2, eps2):
    """Whether some core point of cell ``c`` is within ``eps`` of one of cell ``c2``."""
    for p in range(cell_start[c], cell_start[c + 1]):
        if not core[p]:
            continue
        for q in range(cell_start[c2], cell_start[c2 + 1]):
            if not core[q]:
                continue
            dx = xs[p] - xs[q]
            dy = ys[p] - ys[q]
            if dx * dx + dy * dy <= eps2:
                return True
    return False


@jit
def _link_cores(xs, ys, core, cell_start, cell_keys, ny, eps2):
    """Union-find parents over sorted positions joining core points within ``eps``."""
    n = len(xs)
    ncell = len(cell_keys)
    nr = 2 * _REACH + 1
    rlo = np.empty(nr, np.int64)
    rhi = np.empty(nr, np.int64)
    parent = np.arange(n)
    first_core = np.full(ncell, -1, np.int64)
    for c in range(ncell):
        for p in range(cell_start[c], cell_start[c + 1]):
            if core[p]:
                if first_core[c] < 0:
                    first_core[c] = p
                else:
                    union_roots(parent, first_core[c], p)
    for c in range(ncell):
        if first_core[c] < 0:
            continue
        _cell_ranges(cell_keys, cell_keys[c], ny, rlo, rhi)
        for r in range(nr):
            for c2 in range(rlo[r], rhi[r]):
                if c2 <= c or first_core[c2] < 0:
                    continue
                if find_root(parent, first_core[c]) == find_root(parent, first_core[c2]):
                    continue
                if _cores_touch(xs, ys, core, cell_start, c, c2, eps2):
                    union_roots(parent, first_core[c], first_core[c2])
    return parent


@jit
def _nearest_core(p, xs, ys, order, core, cell_start, rlo, rhi, eps2):
    """Sorted position of the core point nearest ``p`` within ``eps`` (ties to the lowest
    original index), or -1; ``rlo``/``rhi`` are the cell ranges around ``p``'s cell."""
    best = -1
    bestd = np.inf
    for r in range(len(rlo)):
        for q in range(cell_start[rlo[r]], cell_start[rhi[r]]):
            if not core[q]:
                continue
            dx = xs[p] - xs[q]
            dy = ys[p] - ys[q]
            d2 = dx * dx + dy * dy
            if d2 <= eps2 and (d2 < bestd or (d2 == bestd and order[q] < order[best])):
                best = q
                bestd = d2
    return best


@jit
def _border_owners(xs, ys, order, core, cell_start, cell_keys, ny, eps2):
    """Sorted position of the core point each point joins (itself if core, -1 noise)."""
    n = len(xs)
    ncell = len(cell_keys)
    nr = 2 * _REACH + 1
    rlo = np.empty(nr, np.int64)
    rhi = np.empty(nr, np.int64)
    owner = np.full(n, -1, np.int64)
    for c in range(ncell):
        a0 = cell_start[c]
        a1 = cell_start[c + 1]
        need = False
        for p in range(a0, a1):
            if core[p]:
                owner[p] = p
            else:
                need = True
        if not need:
            continue
        _cell_ranges(cell_keys, cell_keys[c], ny, rlo, rhi)
        for p in range(a0, a1):
            if core[p]:
                continue
            owner[p] = _nearest_core(p, xs, ys, order, core, cell_start, rlo, rhi, eps2)
    return owner


@jit
def _canonical_labels(order, owner, parent, labels):
    """Write ``labels`` (original order), places numbered by their earliest member;
    returns the place count."""
    n = len(order)
    pos_of = np.empty(n, np.int64)
    for p in range(n):
        pos_of[order[p]] = p
    root_label = np.full(n, -1, np.int64)
    nc = 0
    for i in range(n):
        p = pos_of[i]
        if owner[p] < 0:
            labels[i] = NOISE
            continue
        root = find_root(parent, owner[p])
        if root_label[root] < 0:
            root_label[root] = nc
            nc += 1
        labels[i] = root_label[root]
    return nc


@jit
def dbscan_trace(x, y, eps_m, min_samples, labels):
    """Exact DBSCAN of one trace's points; writes ``labels`` and returns the place count.

    Neighbours of a point are the points (itself included) at Euclidean distance
    ``<= eps_m`` (inclusive, computed as ``dx*dx + dy*dy <= eps_m*eps_m``); a point is
    *core* when it has ``>= min_samples`` neighbours, exactly as scikit-learn's
    ``DBSCAN``.  Core points within ``eps_m`` of each other share a place.  A non-core
    point within ``eps_m`` of a core point (a *border* point) joins the place of its
    nearest core point, ties going to the earliest such core point (lowest index);
    other points are noise (label -1).  Places are numbered 0, 1, ... in order of
    their earliest member.

    Neighbour search uses a grid of cell side ``eps_m / 2`` sorted by cell key:
    points sharing a cell are always neighbours, so a cell holding ``min_samples``
    points makes them all core without distance tests, and two cells' core points
    are linked by the first close pair found.
    """
    if len(x) == 0:
        return 0
    order, xs, ys, ny, cell_start, cell_keys = _grid_cells(x, y, eps_m)
    return _dbscan_cells(order, xs, ys, ny, cell_start, cell_keys, eps_m, min_samples, labels)


@jit
def _dbscan_cells(order, xs, ys, ny, cell_start, cell_keys, eps_m, min_samples, labels):
    """:func:`dbscan_trace` of points already sorted into their grid (as
    :func:`_grid_cells` returns it).  The places do not depend on where the grid is
    anchored: points sharing a cell are always neighbours, and every other neighbour
    test is a distance."""
    eps2 = eps_m * eps_m
    core = _core_points(xs, ys, cell_start, cell_keys, ny, eps2, min_samples)
    parent = _link_cores(xs, ys, core, cell_start, cell_keys, ny, eps2)
    owner = _border_owners(xs, ys, order, core, cell_start, cell_keys, ny, eps2)
    return _canonical_labels(order, owner, parent, labels)


@jit
def dbscan_prefix(order_full, keys, ny, x, y, m, eps_m, min_samples, labels):
    """:func:`dbscan_trace` of the first ``m`` points of ``x``/``y``, given the grid of
    all of them (``keys``, ``ny`` from :func:`_grid_keys` and ``order_full``, their
    stable sort by key): the first ``m`` points in that order are their own stable
    sort, so a trace is sorted into its grid once for every observation window."""
    if m == 0:
        return 0
    order = np.empty(m, np.int64)
    j = 0
    for p in order_full:
        if p < m:
            order[j] = p
            j += 1
    xs, ys, cell_start, cell_keys = _cells_of(order, keys, x, y)
    return _dbscan_cells(order, xs, ys, ny, cell_start, cell_keys, eps_m, min_samples, labels)


# --------------------------------------------------------------------------- DBSCAN of growing prefixes
# The places of every prefix of a trace's points (its observation windows), with the
# work of the shorter prefixes carried over: a point's neighbours in a prefix are its
# neighbours with an index below the prefix's end, so a point is core from the prefix
# that holds its min_samples-th smallest neighbour on (its *core time*), core points only
# ever join places, and each prefix only links its new core points and re-assigns its
# non-core points.  The labels of each prefix are :func:`dbscan_prefix`'s (tested).


@jit
def _core_times(sx, sy, order, cell_start, nlo, nhi, eps2, min_samples):
    """Per sorted position: the smallest prefix length ``m`` in which the point is core
    (its own index and its ``min_samples``-th smallest neighbour index both below ``m``),
    ``len(sx) + 1`` if it never is.  Points of a cell are neighbours without a distance
    test (a cell's diagonal is below eps), and within a cell the positions are in index
    order, so a cell holding ``min_samples`` points settles all but its first ones and a
    neighbouring cell is scanned only up to the current ``min_samples``-th smallest."""
    n = len(sx)
    ncell = len(nlo)
    nr = 2 * _REACH + 1
    ct = np.full(n, n + 1, np.int64)
    best = np.empty(min_samples, np.int64)
    for c in range(ncell):
        a0 = cell_start[c]
        a1 = cell_start[c + 1]
        dense = a1 - a0 >= min_samples
        kth_own = order[a0 + min_samples - 1] if dense else -1
        rlo = nlo[c]
        rhi = nhi[c]
        for p in range(a0, a1):
            ip = order[p]
            if dense and ip >= kth_own:
                ct[p] = ip + 1
                continue
            nb = 0
            for r in range(nr):
                for c2 in range(rlo[r], rhi[r]):
                    for q in range(cell_start[c2], cell_start[c2 + 1]):
                        iq = order[q]
                        if nb == min_samples and iq >= best[min_samples - 1]:
                            break  # the cell's later points have larger indices
                        if c2 != c:
                            dx = sx[p] - sx[q]
                            dy = sy[p] - sy[q]
                            if dx * dx + dy * dy > eps2:
                                continue
                        # insert iq into the sorted best, dropping the largest when full
                        pos = nb if nb < min_samples else min_samples - 1
                        while pos > 0 and best[pos - 1] > iq:
                            if pos < min_samples:
                                best[pos] = best[pos - 1]
                            pos -= 1
                        best[pos] = iq
                        if nb < min_samples:
                            nb += 1
            if nb == min_samples:
                ct[p] = max(ip, best[min_samples - 1]) + 1
    return ct


@jit
def _new_cores_touch(sx, sy, order, ct, m_prev, m, cell_start, c, c2, eps2):
    """Whether a point of cell ``c`` that is core from prefix ``m`` but not ``m_prev`` is
    within eps of a core point (at ``m``) of cell ``c2``."""
    for p in range(cell_start[c], cell_start[c + 1]):
        if order[p] >= m:
            break
        if ct[p] > m or ct[p] <= m_prev:
            continue
        for q in range(cell_start[c2], cell_start[c2 + 1]):
            if order[q] >= m:
                break
            if ct[q] > m:
                continue
            dx = sx[p] - sx[q]
            dy = sy[p] - sy[q]
            if dx * dx + dy * dy <= eps2:
                return True
    return False


@jit
def _grow_cores(m_prev, m, step, ptr, by_ct, ct, cell_of, first_core, parent, touched, cell_step, sx, sy, order,
                cell_start, nlo, nhi, eps2):
    """Join the points that are core from prefix ``m`` on but not from ``m_prev`` (those
    of ``by_ct[ptr:]`` with core time <= m) to their places; returns the new ``ptr``.  A
    new core joins its cell's cores, and its cell is stamped ``cell_step[c] = step``;
    each such cell is then linked to every neighbouring cell whose cores are not yet in
    its place and are within eps of one of its new cores (pairs of cores that were both
    core before were linked in an earlier prefix)."""
    n_t = 0
    while ptr < len(by_ct) and ct[by_ct[ptr]] <= m:
        p = by_ct[ptr]
        ptr += 1
        c = cell_of[p]
        if first_core[c] < 0:
            first_core[c] = p
        else:
            union_roots(parent, first_core[c], p)
        if cell_step[c] != step:
            cell_step[c] = step
            touched[n_t] = c
            n_t += 1
    for k in range(n_t):
        c = touched[k]
        rlo = nlo[c]
        rhi = nhi[c]
        for r in range(len(rlo)):
            for c2 in range(rlo[r], rhi[r]):
                if c2 == c or first_core[c2] < 0:
                    continue
                if find_root(parent, first_core[c]) == find_root(parent, first_core[c2]):
                    continue
                if _new_cores_touch(sx, sy, order, ct, m_prev, m, cell_start, c, c2, eps2):
                    union_roots(parent, first_core[c], first_core[c2])
    return ptr


@jit
def _prefix_owners(m_prev, m, step, cell_step, ct, sx, sy, order, cell_start, nlo, nhi, eps2, owner):
    """``owner[p]`` of every point of prefix ``m`` that is not core in it: its nearest
    core point of the prefix within eps (ties to the lowest index), -1 for noise.  A
    point already in prefix ``m_prev`` keeps its owner there unless a new core (of a
    cell stamped ``step``) is nearer (cores only ever join), so only those are searched."""
    for c in range(len(nlo)):
        a0 = cell_start[c]
        a1 = cell_start[c + 1]
        if order[a0] >= m:
            continue  # the cell's first point is its lowest index
        need = False
        for p in range(a0, a1):
            if order[p] >= m:
                break
            if ct[p] > m:
                need = True
                break
        if not need:
            continue
        rlo = nlo[c]
        rhi = nhi[c]
        for p in range(a0, a1):
            if order[p] >= m:
                break
            if ct[p] <= m:
                continue
            old = order[p] < m_prev  # owner[p] is its nearest core of prefix m_prev
            best = owner[p] if old else -1
            bestd = np.inf
            if best >= 0:
                dx = sx[p] - sx[best]
                dy = sy[p] - sy[best]
                bestd = dx * dx + dy * dy
            for r in range(len(rlo)):
                for c2 in range(rlo[r], rhi[r]):
                    if old and cell_step[c2] != step:
                        continue  # no new core there
                    for q in range(cell_start[c2], cell_start[c2 + 1]):
                        if order[q] >= m:
                            break
                        if ct[q] > m or (old and ct[q] <= m_prev):
                            continue
                        dx = sx[p] - sx[q]
                        dy = sy[p] - sy[q]
                        d2 = dx * dx + dy * dy
                        if d2 <= eps2 and (d2 < bestd or (d2 == bestd and order[q] < order[best])):
                            best = q
                            bestd = d2
            owner[p] = best


@jit
def _prefix_labels(m, pos_of, ct, owner, parent, root_label, used, labels):
    """Labels of the first ``m`` points (places numbered by their earliest member, as
    :func:`_canonical_labels`); returns the place count.  ``root_label`` is all -1 on
    entry and on return."""
    nc = 0
    for i in range(m):
        p = pos_of[i]
        own = p if ct[p] <= m else owner[p]
        if own < 0:
            labels[i] = NOISE
            continue
        root = find_root(parent, own)
        if root_label[root] < 0:
            root_label[root] = nc
            used[nc] = root
            nc += 1
        labels[i] = root_label[root]
    for k in range(nc):
        root_label[used[k]] = -1
    return nc


@jit
def _prefix_state(x, y, eps_m, min_samples):
    """The grid of all the points and what every prefix's DBSCAN reads of it: a tuple
    (order, sx, sy, nlo, cell_start, nhi, cell_of, pos_of, ct, by_ct, parent,
    first_core, owner, root_label, scratch, cell_step, at) for :func:`_prefix_step`,
    ``at`` = (previous prefix length, core-time pointer, step).  ``x`` non-empty."""
    n = len(x)
    keys, ny = _grid_keys(x, y, eps_m)
    order = np.argsort(keys, kind="mergesort")
    sx, sy, cell_start, cell_keys = _cells_of(order, keys, x, y)
    ncell = len(cell_keys)
    cell_of = np.empty(n, np.int64)
    nr = 2 * _REACH + 1
    nlo = np.empty((ncell, nr), np.int64)  # each cell's neighbouring cell ranges
    nhi = np.empty((ncell, nr), np.int64)
    for c in range(ncell):
        _cell_ranges(cell_keys, cell_keys[c], ny, nlo[c], nhi[c])
        for p in range(cell_start[c], cell_start[c + 1]):
            cell_of[p] = c
    pos_of = np.empty(n, np.int64)
    for p in range(n):
        pos_of[order[p]] = p
    ct = _core_times(sx, sy, order, cell_start, nlo, nhi, eps_m * eps_m, min_samples)
    by_ct, _ = counting_argsort(ct, n + 2)
    return (order, sx, sy, nlo, cell_start, nhi, cell_of, pos_of, ct, by_ct, np.arange(n),
            np.full(ncell, -1, np.int64), np.full(n, -1, np.int64), np.full(n, -1, np.int64),
            np.empty(max(n, ncell), np.int64), np.full(ncell, -1, np.int64), np.zeros(3, np.int64))


@jit
def _prefix_step(state, m, eps_m, labels):
    """DBSCAN labels of the first ``m`` points into ``labels[:m]``, going on from the
    state (:func:`_prefix_state`) of the previous prefix; returns the place count.
    Prefixes must come in non-decreasing length."""
    (order, sx, sy, nlo, cell_start, nhi, cell_of, pos_of, ct, by_ct, parent, first_core, owner,
     root_label, scratch, cell_step, at) = state
    if m == 0:
        return 0
    m_prev, ptr, step = at[0], at[1], at[2] + 1
    eps2 = eps_m * eps_m
    ptr = _grow_cores(m_prev, m, step, ptr, by_ct, ct, cell_of, first_core, parent, scratch, cell_step, sx, sy,
                      order, cell_start, nlo, nhi, eps2)
    _prefix_owners(m_prev, m, step, cell_step, ct, sx, sy, order, cell_start, nlo, nhi, eps2, owner)
    at[0], at[1], at[2] = m, ptr, step
    return _prefix_labels(m, pos_of, ct, owner, parent, root_label, scratch, labels)


@jit
def dbscan_prefixes(x, y, eps_m, min_samples, ms, labels):
    """:func:`dbscan_trace` of each prefix ``x[:ms[w]]`` (``ms`` non-decreasing) into
    ``labels[w, :ms[w]]``, the work carried from each prefix to the next (section
    comment above); returns the place counts."""
    out = np.zeros(len(ms), np.int64)
    if len(x) == 0:
        return out
    state = _prefix_state(x, y, eps_m, min_samples)
    for w in range(len(ms)):
        out[w] = _prefix_step(state, ms[w], eps_m, labels[w])
    return out


# --------------------------------------------------------------------------- windows
@jit
def window_id(rel_s, a_s, b_s):
    """Local day on which the time window ``[a_s, b_s)`` containing ``rel_s`` opened."""
    day = rel_s // DAY_S
    sod = rel_s - day * DAY_S
    if a_s < b_s:
        if sod >= a_s and sod < b_s:
            return day
        return NO_ID
    if sod >= a_s:
        return day
    if sod < b_s:
        return day - 1
    return NO_ID


@jit
def cluster_stats(rel_s, x, y, labels, nc, night_a, night_b, work_a, work_b, wd_mask,
                  epoch_day0, cnt, sx, sy, nights, night_pings, wdays, work_pings):
    """Per-place support of one trace (pings in time order); returns observed work days.

    Fills, for each place ``0..nc-1``: ping count, coordinate sums, distinct nights and
    night pings, distinct weekday working-hours days and working-hours pings.  The
    return value is the number of distinct working-hours days on which the trace has
    any ping (noise included): the denominator of the work share.
    """
    last_n = np.full(nc, NO_ID, np.int64)
    last_w = np.full(nc, NO_ID, np.int64)
    for c in range(nc):
        cnt[c] = 0
        sx[c] = 0.0
        sy[c] = 0.0
        nights[c] = 0
        night_pings[c] = 0
        wdays[c] = 0
        work_pings[c] = 0
    n_work_obs = 0
    last_obs = NO_ID
    for i in range(len(rel_s)):
        wid = window_id(rel_s[i], work_a, work_b)
        if wid != NO_ID and not wd_mask[(epoch_day0 + wid + 3) % 7]:
            wid = NO_ID
        if wid != NO_ID and wid != last_obs:
            n_work_obs += 1
            last_obs = wid
        c = labels[i]
        if c < 0:
            continue
        cnt[c] += 1
        sx[c] += x[i]
        sy[c] += y[i]
        nid = window_id(rel_s[i], night_a, night_b)
        if nid != NO_ID:
            night_pings[c] += 1
            if nid != last_n[c]:
                nights[c] += 1
                last_n[c] = nid
        if wid != NO_ID:
            work_pings[c] += 1
            if wid != last_w[c]:
                wdays[c] += 1
                last_w[c] = wid
    return n_work_obs


@jit
def choose_home_work(nc, cnt, sx, sy, nights, night_pings, wdays, work_pings, n_work_obs,
                     min_home_nights, min_work_days, min_work_share, max_work_night_share,
                     min_work_dist_m, work_requires_home):
    """Indices of the home and work places (-1 for unknown).

    Home: most distinct nights, ties to more night pings, then the earliest place;
    unknown when its nights are below ``min_home_nights``.
    Work: among places other than home whose centre is at least ``min_work_dist_m``
    from home's, most distinct working days, ties to more working pings, then the
    earliest place; unknown unless its days are ``>= min_work_days`` and
    ``>= min_work_share * n_work_obs`` and its nights are
    ``<= max_work_night_share * home nights``; with ``work_requires_home`` work is
    unknown whenever home is.  All thresholds are inclusive.
    """
    home = -1
    for c in range(nc):
        if nights[c] == 0:
            continue
        if home < 0 or nights[c] > nights[home] or (
            nights[c] == nights[home] and night_pings[c] > night_pings[home]
        ):
            home = c
    if home >= 0 and nights[home] < min_home_nights:
        home = -1
    hx = 0.0
    hy = 0.0
    if home >= 0:
        hx = sx[home] / cnt[home]
        hy = sy[home] / cnt[home]
    d2min = min_work_dist_m * min_work_dist_m
    work = -1
    if work_requires_home and home < 0:
        return home, work
    for c in range(nc):
        if c == home or wdays[c] == 0:
            continue
        if home >= 0:
            dx = sx[c] / cnt[c] - hx
            dy = sy[c] / cnt[c] - hy
            if dx * dx + dy * dy < d2min:
                continue
        if work < 0 or wdays[c] > wdays[work] or (
            wdays[c] == wdays[work] and work_pings[c] > work_pings[work]
        ):
            work = c
    if work >= 0:
        home_n = nights[home] if home >= 0 else 0
        if (
            wdays[work] < min_work_days
            or wdays[work] < min_work_share * n_work_obs
            or nights[work] > max_work_night_share * home_n
        ):
            work = -1
    return home, work


@jit
def _write_choice(home, work, cnt, sx, sy, nights, wdays, of, oi):
    oi[I_HOME_PLACE] = home
    oi[I_WORK_PLACE] = work
    if home >= 0:
        of[F_HOME_X] = sx[home] / cnt[home]
        of[F_HOME_Y] = sy[home] / cnt[home]
        oi[I_HOME_NIGHTS] = nights[home]
        oi[I_HOME_PINGS] = cnt[home]
    else:
        of[F_HOME_X] = np.nan
        of[F_HOME_Y] = np.nan
        oi[I_HOME_NIGHTS] = 0
        oi[I_HOME_PINGS] = 0
    if work >= 0:
        of[F_WORK_X] = sx[work] / cnt[work]
        of[F_WORK_Y] = sy[work] / cnt[work]
        oi[I_WORK_DAYS] = wdays[work]
        oi[I_WORK_PINGS] = cnt[work]
    else:
        of[F_WORK_X] = np.nan
        of[F_WORK_Y] = np.nan
        oi[I_WORK_DAYS] = 0
        oi[I_WORK_PINGS] = 0


@jit
def _count_days(t, start_s):
    n = 0
    last = NO_ID
    for i in range(len(t)):
        d = (t[i] - start_s) // DAY_S
        if d != last:
            n += 1
            last = d
    return n


@jit
def _home_work_of_labels(rel_s, x, y, lab, nc, night_a, night_b, work_a, work_b, wd_mask,
                         epoch_day0, min_home_nights, min_work_days, min_work_share,
                         max_work_night_share, min_work_dist_m, work_requires_home, of, oi):
    cnt = np.empty(nc, np.int64)
    sx = np.empty(nc, np.float64)
    sy = np.empty(nc, np.float64)
    nights = np.empty(nc, np.int64)
    night_pings = np.empty(nc, np.int64)
    wdays = np.empty(nc, np.int64)
    work_pings = np.empty(nc, np.int64)
    n_work_obs = cluster_stats(rel_s, x, y, lab, nc, night_a, night_b, work_a, work_b, wd_mask,
                               epoch_day0, cnt, sx, sy, nights, night_pings, wdays, work_pings)
    home, work = choose_home_work(nc, cnt, sx, sy, nights, night_pings, wdays, work_pings,
                                  n_work_obs, min_home_nights, min_work_days, min_work_share,
                                  max_work_night_share, min_work_dist_m, work_requires_home)
    _write_choice(home, work, cnt, sx, sy, nights, wdays, of, oi)


@jit
def _kept_rows(acc, max_acc_m):
    """Rows (ascending) the accuracy filter keeps: ``acc <= max_acc_m`` or NaN."""
    idx = np.empty(len(acc), np.int64)
    m = 0
    for i in range(len(acc)):
        if not (acc[i] > max_acc_m):
            idx[m] = i
            m += 1
    return idx[:m]


@jit
def infer_window(t, x, y, acc, start_s, epoch_day0, eps_m, min_samples, max_acc_m,
                 night_a, night_b, work_a, work_b, wd_mask, min_home_nights, min_work_days,
                 min_work_share, max_work_night_share, min_work_dist_m, work_requires_home,
                 of, oi, lab_out, write_labels):
    """Home/work of one trace from the pings given (one observation window).

    Pings with ``acc > max_acc_m`` are dropped before clustering (NaN accuracy is
    kept).  ``n_pings``/``n_days_observed`` count every ping given, dropped or not.
    """
    k = len(t)
    oi[I_N_PINGS] = k
    oi[I_N_DAYS] = _count_days(t, start_s)
    idx = _kept_rows(acc, max_acc_m)
    m = len(idx)
    xs = x[idx]
    ys = y[idx]
    rel = t[idx] - start_s
    lab = np.empty(m, np.int64)
    nc = dbscan_trace(xs, ys, eps_m, min_samples, lab)
    _home_work_of_labels(rel, xs, ys, lab, nc, night_a, night_b, work_a, work_b, wd_mask,
                         epoch_day0, min_home_nights, min_work_days, min_work_share,
                         max_work_night_share, min_work_dist_m, work_requires_home, of, oi)
    if write_labels:
        for i in range(k):
            lab_out[i] = DROPPED
        for j in range(m):
            lab_out[idx[j]] = lab[j]


# --------------------------------------------------------------------------- parallel
@pjit
def infer_kernel(offsets, t_s, x_m, y_m, acc_m, cutoffs_s, start_s, epoch_day0, eps_m,
                 min_samples, max_acc_m, night_a, night_b, work_a, work_b, wd_mask,
                 min_home_nights, min_work_days, min_work_share, max_work_night_share,
                 min_work_dist_m, work_requires_home, out_f, out_i, labels_out, write_labels):
    """All traces x all windows.  Window ``w`` holds the pings with ``t_s < cutoffs_s[w]``.

    Trace ``tr`` writes only ``out_f[:, tr]``, ``out_i[:, tr]`` and (when
    ``write_labels``) ``labels_out[offsets[tr]:offsets[tr+1]]``, labelled for the last
    window (pings after it: ``OUTSIDE``).
    """
    n_tr = len(offsets) - 1
    for tr in prange(n_tr):
        a = offsets[tr]
        b = offsets[tr + 1]
        _infer_trace_windows(t_s[a:b], x_m[a:b], y_m[a:b], acc_m[a:b], cutoffs_s, start_s, epoch_day0, eps_m,
                             min_samples, max_acc_m, night_a, night_b, work_a, work_b, wd_mask,
                             min_home_nights, min_work_days, min_work_share, max_work_night_share,
                             min_work_dist_m, work_requires_home, out_f[:, tr], out_i[:, tr],
                             labels_out[a:b], write_labels)


@jit
def _infer_trace_windows(t, x, y, acc, cutoffs_s, start_s, epoch_day0, eps_m, min_samples, max_acc_m,
                         night_a, night_b, work_a, work_b, wd_mask, min_home_nights, min_work_days,
                         min_work_share, max_work_night_share, min_work_dist_m, work_requires_home,
                         out_f, out_i, labels_out, write_labels):
    """:func:`infer_window` of one trace for every window ``t < cutoffs_s[w]`` (into
    ``out_f[w]``, ``out_i[w]``; labels of the last window to ``labels_out``).  The
    accuracy filter, the sort into the DBSCAN grid and the core times are done once for
    the whole trace, and each window's DBSCAN goes on from the previous window's
    (:func:`_prefix_step`; ``cutoffs_s`` ascending): a window's kept pings are the first
    ones of the trace's."""
    n = len(t)
    n_w = len(cutoffs_s)
    idx = _kept_rows(acc, max_acc_m)
    m_all = len(idx)
    xs = x[idx]
    ys = y[idx]
    rel = t[idx] - start_s
    # the DBSCAN state of all the kept pings (a dummy one for a trace without any)
    state = _prefix_state(xs, ys, eps_m, min_samples) if m_all > 0 else \
        _prefix_state(np.zeros(1), np.zeros(1), eps_m, min_samples)
    for w in range(n_w):
        k = np.searchsorted(t, cutoffs_s[w], side="left")
        m = np.searchsorted(idx, k, side="left")  # kept pings before the cutoff
        of = out_f[w]
        oi = out_i[w]
        oi[I_N_PINGS] = k
        oi[I_N_DAYS] = _count_days(t[:k], start_s)
        lab = np.empty(m, np.int64)
        nc = _prefix_step(state, m, eps_m, lab)
        _home_work_of_labels(rel[:m], xs[:m], ys[:m], lab, nc, night_a, night_b, work_a, work_b, wd_mask,
                             epoch_day0, min_home_nights, min_work_days, min_work_share,
                             max_work_night_share, min_work_dist_m, work_requires_home, of, oi)
        if write_labels and w == n_w - 1:
            for i in range(k):
                labels_out[i] = DROPPED
            for j in range(m):
                labels_out[idx[j]] = lab[j]
            for i in range(k, n):
                labels_out[i] = OUTSIDE


@pjit
def from_labels_kernel(offsets, t_s, x_m, y_m, labels, start_s, epoch_day0, night_a, night_b,
                       work_a, work_b, wd_mask, min_home_nights, min_work_days,
                       min_work_share, max_work_night_share, min_work_dist_m,
                       work_requires_home, out_f, out_i):
    """Home/work from given per-ping place labels (``>= 0`` place, ``< 0`` none).

    Labels of a trace must be ``0..nc-1`` (any order of first appearance); pings with a
    negative label count towards ``n_pings`` and the working-days denominator only.
    """
    n_tr = len(offsets) - 1
    for tr in prange(n_tr):
        a = offsets[tr]
        b = offsets[tr + 1]
        lab = labels[a:b]
        nc = 0
        for i in range(b - a):
            if lab[i] + 1 > nc:
                nc = lab[i] + 1
        of = out_f[tr]
        oi = out_i[tr]
        oi[I_N_PINGS] = b - a
        oi[I_N_DAYS] = _count_days(t_s[a:b], start_s)
        _home_work_of_labels(t_s[a:b] - start_s, x_m[a:b], y_m[a:b], lab, nc, night_a, night_b,
                             work_a, work_b, wd_mask, epoch_day0, min_home_nights,
                             min_work_days, min_work_share, max_work_night_share,
                             min_work_dist_m, work_requires_home, of, oi)


@pjit
def place_stats_kernel(offsets, t_s, x_m, y_m, labels, place_off, start_s, epoch_day0,
                       night_a, night_b, work_a, work_b, wd_mask, p_f, p_i):
    """Per-place table: rows ``place_off[tr]:place_off[tr+1]`` belong to trace ``tr``.

    ``p_f[:, 0:2]`` = mean x, y; ``p_i[:, 0:5]`` = pings, nights, night pings, working
    days, working pings.
    """
    n_tr = len(offsets) - 1
    for tr in prange(n_tr):
        a = offsets[tr]
        b = offsets[tr + 1]
        p0 = place_off[tr]
        nc = place_off[tr + 1] - p0
        if nc == 0:
            continue
        cnt = np.empty(nc, np.int64)
        sx = np.empty(nc, np.float64)
        sy = np.empty(nc, np.float64)
        nights = np.empty(nc, np.int64)
        night_pings = np.empty(nc, np.int64)
        wdays = np.empty(nc, np.int64)
        work_pings = np.empty(nc, np.int64)
        cluster_stats(t_s[a:b] - start_s, x_m[a:b], y_m[a:b], labels[a:b], nc, night_a,
                      night_b, work_a, work_b, wd_mask, epoch_day0, cnt, sx, sy, nights,
                      night_pings, wdays, work_pings)
        for c in range(nc):
            p_f[p0 + c, 0] = sx[c] / cnt[c] if cnt[c] > 0 else np.nan
            p_f[p0 + c, 1] = sy[c] / cnt[c] if cnt[c] > 0 else np.nan
            p_i[p0 + c, 0] = cnt[c]
            p_i[p0 + c, 1] = nights[c]
            p_i[p0 + c, 2] = night_pings[c]
            p_i[p0 + c, 3] = wdays[c]
            p_i[p0 + c, 4] = work_pings[c]
