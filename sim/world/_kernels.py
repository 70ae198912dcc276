"""Exact nearest-point lookup on a uniform bucket grid (numba).

Seeds are bucketed into square cells; a query scans rings of cells outward from its
own cell and stops once the ring's inner distance exceeds the best distance found, and
skips the ring's cells farther than the best distance found so far, so the answer is
the exact nearest seed (ties: lowest seed index).  Used by
:meth:`sim.world.World.locate` for blocks (Voronoi cells) and buildings.  The points are
bucketed by a counting sort (:func:`counting_argsort`, also the population's stable
sort of small integer keys).
"""
import numpy as np

from sim.core.jit import jit, pjit, prange


class GridIndex:
    """Bucket grid over 2-D seeds for exact nearest-seed queries."""

    def __init__(self, xy: np.ndarray, per_cell: float = 4.0):
        xy = np.ascontiguousarray(xy, dtype=np.float64)
        n = len(xy)
        self.xy = xy
        x0, y0 = xy.min(axis=0) - 1.0
        x1, y1 = xy.max(axis=0) + 1.0
        area = max((x1 - x0) * (y1 - y0), 1.0)
        cell = max(np.sqrt(area * per_cell / max(n, 1)), 1e-6)
        nx = int(np.ceil((x1 - x0) / cell)) + 1
        ny = int(np.ceil((y1 - y0) / cell)) + 1
        cx = np.floor((xy[:, 0] - x0) / cell).astype(np.int64)
        cy = np.floor((xy[:, 1] - y0) / cell).astype(np.int64)
        cid = cy * nx + cx
        if n and 0 <= cid.min() and cid.max() < nx * ny:
            self.order, self.start = counting_argsort(cid, nx * ny)
        else:  # no point, or NaN coordinates
            order = np.argsort(cid, kind="stable")
            self.order = order.astype(np.int64)
            self.start = np.searchsorted(cid[order], np.arange(nx * ny + 1)).astype(np.int64)
        self.params = np.array([x0, y0, cell], dtype=np.float64)
        self.nx, self.ny = nx, ny
        # the seeds' coordinates in bucket order: a query reads each cell's seeds from
        # one contiguous run instead of gathering them through ``order``
        self.cell_xy = np.ascontiguousarray(xy[self.order])

    def query(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Index of the nearest seed of every point (int64)."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        y = np.ascontiguousarray(y, dtype=np.float64)
        out = np.empty(len(x), dtype=np.int64)
        _query(x, y, self.cell_xy, self.order, self.start, self.params, self.nx, self.ny, out)
        return out


@jit
def counting_argsort(keys, n_keys):
    """``(order, start)`` of integer keys in [0, n_keys), by counting sort (linear
    time): ``order = np.argsort(keys, kind="stable")`` and the CSR offsets
    ``start[k] = np.searchsorted(keys[order], k)`` for k in 0..n_keys."""
    start = np.zeros(n_keys + 1, dtype=np.int64)
    for i in range(len(keys)):
        start[keys[i] + 1] += 1
    for k in range(n_keys):
        start[k + 1] += start[k]
    nxt = start[:-1].copy()
    order = np.empty(len(keys), dtype=np.int64)
    for i in range(len(keys)):
        k = keys[i]
        order[nxt[k]] = i
        nxt[k] += 1
    return order, start


@jit
def _nearest(px, py, cell_xy, order, start, params, nx, ny):
    """Index of the seed nearest (px, py); ``cell_xy[k]`` is seed ``order[k]``'s point."""
    cell = params[2]
    cx, cy, fx, fy, r, maxr = ring_origin(px, py, params, nx, ny)
    best = -1
    bd = np.inf
    while r <= maxr:
        # cells on the ring at Chebyshev distance r around (cx, cy); a cell whose nearest
        # edge is farther than the best distance so far cannot hold the answer (nor a tie:
        # the bound has a relative margin for rounding, RING_MARGIN)
        for j in range(max(cy - r, 0), min(cy + r, ny - 1) + 1):
            gy = cell_gap(j, cy, fy) * cell
            gy2 = gy * gy
            if gy2 > bd * RING_MARGIN:
                continue
            i, i_end, step = ring_columns(j, r, cx, cy, nx)
            while i <= i_end:
                if 0 <= i < nx:
                    gx = cell_gap(i, cx, fx) * cell
                    if gx * gx + gy2 <= bd * RING_MARGIN:
                        c = j * nx + i
                        for k in range(start[c], start[c + 1]):
                            d = (cell_xy[k, 0] - px) ** 2 + (cell_xy[k, 1] - py) ** 2
                            if d < bd or (d == bd and order[k] < best):
                                bd = d
                                best = order[k]
                i += step
        if best >= 0:
            reach = ring_reach(r, fx, fy, cell)
            if reach > 0 and reach * reach > bd:
                break
        r += 1
    return best


#: relative slack on a cell's squared-distance bound (rounding), so that no cell that may
#: hold a tie with the best distance is skipped
RING_MARGIN = 1.000001


@jit
def ring_origin(px, py, params, nx, ny):
    """Where a ring search of the grid (``params``, ``nx``, ``ny`` of :class:`GridIndex`)
    around (px, py) starts: ``(cx, cy, fx, fy, r0, r_max)`` — the point's cell, its
    offset inside it (in cells), the first ring that reaches the grid (0 for a point
    inside it; nearer rings of a point outside are empty) and the last ring any cell
    lies on."""
    x0, y0, cell = params[0], params[1], params[2]
    u = (px - x0) / cell
    v = (py - y0) / cell
    cx = int(np.floor(u))
    cy = int(np.floor(v))
    r0 = max(0, -cx, cx - (nx - 1), -cy, cy - (ny - 1))
    return cx, cy, u - cx, v - cy, r0, r0 + max(nx, ny) + 1


@jit
def ring_columns(j, r, cx, cy, nx):
    """``(first, last, step)``: the columns of ring ``r``'s cells in row ``j`` — every
    cell of the ring's first and last rows (clipped to the grid), the ring's two ends on
    the rows between (the caller skips an end outside the grid)."""
    if j == cy - r or j == cy + r:
        return max(cx - r, 0), min(cx + r, nx - 1), 1
    return cx - r, cx + r, max(2 * r, 1)


@jit
def ring_reach(r, fx, fy, cell):
    """Distance (metres) from the point within which rings 0..r hold every cell: every
    cell on a later ring is at least this far (r cells, plus the point's nearest
    offset to its own cell's edge)."""
    return (r + min(min(fx, 1.0 - fx), min(fy, 1.0 - fy))) * cell


@jit
def cell_gap(i, c, f):
    """Distance, in cells, from a point at offset ``f`` inside cell ``c`` to cell ``i``
    along one axis (0 for its own cell)."""
    if i < c:
        return c - i - 1 + f
    if i > c:
        return i - c - f
    return 0.0


@pjit
def _query(x, y, cell_xy, order, start, params, nx, ny, out):
    for i in prange(len(x)):
        out[i] = _nearest(x[i], y[i], cell_xy, order, start, params, nx, ny)
