"""Picking a crowded place and time for the geofence demonstration."""
from __future__ import annotations

import numpy as np
import shapely

from sim.core.constants import DAY_S
from sim.core.errors import InputError
from sim.core.traces import Traces, weekday_of_day


def pick_gathering(release: Traces, world, day: int | None = None, hours=(12, 18), radius_m: float = 400.0):
    """A crowded place for the geofence demo: a circle of ``radius_m`` around the busiest
    spot (the grid cell of side 2 * radius_m with most distinct pseudonyms, pings with
    accuracy <= 100 m) during ``hours`` of a weekend day (Saturday by default).
    Returns (polygon, t0_s, t1_s)."""
    if day is None:
        days = np.arange(release.n_days)
        wd = weekday_of_day(release.start_s, release.utc_offset_s, days)
        sat = days[wd == 5]
        day = int(sat[0]) if len(sat) else int(min(release.n_days - 1, 1))
    t0 = release.start_s + day * DAY_S + int(hours[0] * 3600)
    t1 = release.start_s + day * DAY_S + int(hours[1] * 3600)
    sel = (release.t_s >= t0) & (release.t_s < t1) & (release.accuracy_m <= 100)
    if not sel.any():
        raise InputError("no pings in the chosen geofence window; pick another day or hours.")
    # the densest cell (side = the fence's diameter) by distinct pseudonyms
    cell = 2.0 * radius_m
    gx = np.floor(release.x_m[sel] / cell).astype(np.int64)
    gy = np.floor(release.y_m[sel] / cell).astype(np.int64)
    tr = release.trace_index()[sel]
    key = (gx - gx.min()) * (int(gy.max() - gy.min()) + 1) + (gy - gy.min())
    pairs = np.unique(np.stack([key, tr]), axis=1)
    ukey, counts = np.unique(pairs[0], return_counts=True)
    best = ukey[np.argmax(counts)]
    m = key == best
    cx = float(np.median(release.x_m[sel][m]))
    cy = float(np.median(release.y_m[sel][m]))
    poly = shapely.Point(cx, cy).buffer(radius_m, quad_segs=16)
    return poly, t0, t1
