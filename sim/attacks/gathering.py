"""Picking a crowded place and time for the geofence demonstration."""
from __future__ import annotations

import numpy as np
import shapely

from sim.core.constants import DAY_S
from sim.core.errors import InputError
from sim.core.traces import Traces, weekday_of_day


#: pick_gathering's defaults: the hours of the day searched, the fence's radius, and the
#: accuracy of the pings it counts
GATHERING_HOURS = (12, 18)
GATHERING_RADIUS_M = 400.0
GATHERING_MAX_ACCURACY_M = 100.0


def gathering_window(start_s: int, utc_offset_s: int, n_days: int, day: int | None = None,
                     hours=GATHERING_HOURS) -> tuple[int, int]:
    """The window :func:`pick_gathering` searches: ``hours`` of ``day``, by default the
    first Saturday of the release (else day 1, or 0 for a one-day release)."""
    if day is None:
        days = np.arange(n_days)
        sat = days[weekday_of_day(start_s, utc_offset_s, days) == 5]
        day = int(sat[0]) if len(sat) else int(min(n_days - 1, 1))
    t0 = int(start_s) + day * DAY_S + int(hours[0] * 3600)
    return t0, int(start_s) + day * DAY_S + int(hours[1] * 3600)


def cell_crowds(x, y, trace, cell_m: float) -> tuple:
    """``(gx, gy, n)``: the grid cells (squares of ``cell_m`` metres) holding the points
    and the number of distinct ``trace`` values in each, cells sorted by (gx, gy)."""
    gx = np.floor(np.asarray(x, dtype=np.float64) / cell_m).astype(np.int64)
    gy = np.floor(np.asarray(y, dtype=np.float64) / cell_m).astype(np.int64)
    pairs = np.unique(np.stack([gx, gy, np.asarray(trace, dtype=np.int64)]), axis=1)
    cells, counts = np.unique(pairs[:2], axis=1, return_counts=True)
    return cells[0], cells[1], counts.astype(np.int64)


def busiest_cell(gx, gy, n) -> tuple[int, int]:
    """The cell with the most distinct pseudonyms, summing ``n`` over repeated cells (the
    crowds of several parts); ties: the smallest (gx, gy)."""
    if not len(n):
        raise InputError("no pings in the chosen geofence window; pick another day or hours.")
    cells, inv = np.unique(np.stack([np.asarray(gx), np.asarray(gy)]), axis=1, return_inverse=True)
    tot = np.bincount(np.ravel(inv), weights=n, minlength=cells.shape[1])
    best = int(np.argmax(tot))
    return int(cells[0, best]), int(cells[1, best])


def gathering_circle(x, y, cell, cell_m: float, radius_m: float):
    """The fence: a circle of ``radius_m`` around the median of the points (x, y) that lie
    in ``cell`` (a cell of :func:`cell_crowds`)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    m = (np.floor(x / cell_m).astype(np.int64) == cell[0]) & (np.floor(y / cell_m).astype(np.int64) == cell[1])
    return shapely.Point(float(np.median(x[m])), float(np.median(y[m]))).buffer(radius_m, quad_segs=16)


def pick_gathering(release: Traces, world, day: int | None = None, hours=GATHERING_HOURS,
                   radius_m: float = GATHERING_RADIUS_M):
    """A crowded place for the geofence demo: a circle of ``radius_m`` around the busiest
    spot (the grid cell of side 2 * radius_m with most distinct pseudonyms, pings with
    accuracy <= 100 m) during ``hours`` of a weekend day (Saturday by default).
    Returns (polygon, t0_s, t1_s)."""
    t0, t1 = gathering_window(release.start_s, release.utc_offset_s, release.n_days, day, hours)
    sel = (release.t_s >= t0) & (release.t_s < t1) & (release.accuracy_m <= GATHERING_MAX_ACCURACY_M)
    if not sel.any():
        raise InputError("no pings in the chosen geofence window; pick another day or hours.")
    cell_m = 2.0 * radius_m  # the densest cell (side = the fence's diameter) by distinct pseudonyms
    x, y = release.x_m[sel], release.y_m[sel]
    cell = busiest_cell(*cell_crowds(x, y, release.trace_index()[sel], cell_m))
    return gathering_circle(x, y, cell, cell_m, radius_m), t0, t1
