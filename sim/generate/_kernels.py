"""Numba kernels of the ping generator (DESIGN.md §4).

Layers (stumpy style): serial ``@jit`` workers for one device-day, a ``@pjit`` kernel
looping ``prange`` over devices (each iteration writes only its own CSR slice), and the
plain Python driver in :mod:`sim.generate`.  Every random draw comes from
:mod:`sim.core.rng` streams keyed by (seed, purpose tag, global device index) with counters
based on the day number, so output does not depend on block size, thread count or the
order in which devices are processed.
"""
import numpy as np

from sim.core.constants import DAY_S
from sim.core.jit import jit, pjit, prange
from sim.core.rng import (
    TAG_COUNT,
    TAG_EPR,
    TAG_GPS,
    TAG_MAID,
    TAG_RATE,
    TAG_SCHED,
    TAG_TIMES,
    bits,
    exponential,
    normal,
    poisson,
    stream_key,
    uniform,
)

MAX_SEG = 64          # segments (stays and trips) per device-day
MAX_PLACES = 64       # "other" places per device (EPR)
DAY_SHIFT = 20        # counters of day d start at d << 20

# parameter vector layout (float64), filled by sim.generate._params
P_MEDIAN_RATE, P_RATE_SIGMA, P_MAX_RATE, P_SILENT, P_SESSION, P_GAP, P_GPS_MED, \
    P_COARSE_SHARE, P_COARSE_MED, P_SPEED, P_OVERHEAD, P_RADIUS, P_RHO, P_GAMMA, \
    P_JUMP_R0, P_JUMP_ALPHA, P_WEEKEND_RATE, P_CX, P_CY = range(19)
N_PARAMS = 19

SCHED_DAY, SCHED_NIGHT, SCHED_NONE = 0, 1, 2


@jit
def device_rate(seed, g, params):
    """(pings per day, probability of a silent day) of global device ``g``."""
    k = stream_key(seed, TAG_RATE, g)
    rate = params[P_MEDIAN_RATE] * np.exp(params[P_RATE_SIGMA] * normal(k, 0))
    if rate > params[P_MAX_RATE]:
        rate = params[P_MAX_RATE]
    p_silent = params[P_SILENT] * exponential(k, 2)
    if p_silent > 0.95:
        p_silent = 0.95
    return rate, p_silent


@jit
def day_count(kc, day, rate, p_silent, weekend_factor, is_weekend):
    """Number of pings of one device-day (0 on a silent day)."""
    base = np.uint64(day) << np.uint64(DAY_SHIFT)
    if uniform(kc, base) < p_silent:
        return 0
    lam = rate * (weekend_factor if is_weekend else 1.0)
    return poisson(kc, base + np.uint64(1), lam)


@pjit
def count_pings(seed, g0, n_dev, n_days, weekday0, params):
    """Pings per device (pass 1); identical draws to pass 2."""
    counts = np.zeros(n_dev, dtype=np.int64)
    for i in prange(n_dev):
        g = g0 + i
        rate, p_silent = device_rate(seed, g, params)
        kc = stream_key(seed, TAG_COUNT, g)
        c = 0
        for d in range(n_days):
            wd = (weekday0 + d) % 7
            c += day_count(kc, d, rate, p_silent, params[P_WEEKEND_RATE], wd >= 5)
        counts[i] = c
    return counts


# ---------------------------------------------------------------- schedule
@jit
def _add_seg(seg, n, t0, t1, x0, y0, x1, y1):
    if n >= MAX_SEG or t1 <= t0:
        return n
    seg[n, 0] = t0
    seg[n, 1] = t1
    seg[n, 2] = x0
    seg[n, 3] = y0
    seg[n, 4] = x1
    seg[n, 5] = y1
    return n + 1


@jit
def _trip_s(ks, c, x0, y0, x1, y1, params):
    d = np.hypot(x1 - x0, y1 - y0)
    if d < 1.0:
        return 0.0
    base = params[P_OVERHEAD] * 60.0 + d / (params[P_SPEED] / 3.6)
    return base * np.exp(0.15 * normal(ks, c))


@jit
def _go(seg, n, state, ks, c, x1, y1, t_dep, params):
    """Stay where we are until t_dep, then travel to (x1, y1). state = [t, x, y]."""
    t, x, y = state[0], state[1], state[2]
    if t_dep < t:
        t_dep = t
    if t_dep >= DAY_S:
        return n
    n = _add_seg(seg, n, t, t_dep, x, y, x, y)
    dur = _trip_s(ks, c, x, y, x1, y1, params)
    n = _add_seg(seg, n, t_dep, t_dep + dur, x, y, x1, y1)
    state[0] = t_dep + dur
    state[1] = x1
    state[2] = y1
    return n


@jit
def _dwell_s(ks, c, median_min, sigma, cap_h):
    d = median_min * 60.0 * np.exp(sigma * normal(ks, c))
    return min(d, cap_h * 3600.0)


@jit
def _epr_place(ke, c, ax, ay, px, py, visits, n_places, params):
    """Exploration and preferential return (Song et al. 2010).

    With probability rho * S**-gamma (S = distinct places so far) explore a new place
    at a power-law jump from the anchor (ax, ay); otherwise return to a known place with
    probability proportional to its past visits.  Returns (index, new n_places).
    """
    S = n_places
    explore = S == 0 or (S < MAX_PLACES and uniform(ke, c) < params[P_RHO] * S ** (-params[P_GAMMA]))
    if explore:
        r0 = params[P_JUMP_R0]
        u = uniform(ke, c + 1)
        r = r0 * ((1.0 - u) ** (-1.0 / params[P_JUMP_ALPHA]) - 1.0)
        r = min(r, 2.0 * params[P_RADIUS])
        a = 2.0 * np.pi * uniform(ke, c + 2)
        cx, cy = params[P_CX], params[P_CY]
        x = ax + r * np.cos(a) - cx
        y = ay + r * np.sin(a) - cy
        rr = np.hypot(x, y)
        lim = 0.98 * params[P_RADIUS]
        if rr > lim:  # keep places inside the study area's disk
            x *= lim / rr
            y *= lim / rr
        x += cx
        y += cy
        px[S] = x
        py[S] = y
        visits[S] = 1.0
        return S, S + 1
    tot = 0.0
    for j in range(S):
        tot += visits[j]
    u = uniform(ke, c + 3) * tot
    acc = 0.0
    pick = S - 1
    for j in range(S):
        acc += visits[j]
        if u < acc:
            pick = j
            break
    visits[pick] += 1.0
    return pick, S


@jit
def build_day(seg, ks, ke, day, weekday, sched, hx, hy, wx, wy, px, py, visits, n_places, params,
              sx=np.nan, sy=np.nan):
    """Plan one device-day as segments [t0, t1, x0, y0, x1, y1] (seconds after local
    midnight).  (sx, sy) is where the previous day ended (NaN = at home): someone still
    out at midnight travels home first.  Returns (n_segments, n_places)."""
    base = np.uint64(day) << np.uint64(DAY_SHIFT)
    c = base
    state = np.empty(3)
    n = 0
    is_weekend = weekday >= 5
    has_work = not np.isnan(wx)
    absent = uniform(ks, c) < 0.05
    c += np.uint64(1)
    state[0] = 0.0
    state[1] = hx
    state[2] = hy
    # night workers come off a shift that began the evening before (Mon-Fri nights)
    prev_work_night = sched == SCHED_NIGHT and has_work and (weekday >= 1 and weekday <= 5)
    if prev_work_night:
        state[1] = wx
        state[2] = wy
        off = (6.0 + 0.3 * normal(ks, c)) * 3600.0
        c += np.uint64(2)
        n = _go(seg, n, state, ks, c, hx, hy, max(off, 4.5 * 3600.0), params)
        c += np.uint64(2)
    elif not np.isnan(sx) and (abs(sx - hx) > 1.0 or abs(sy - hy) > 1.0):
        # an activity ran past midnight: go home now (own counter, other draws unchanged)
        state[1] = sx
        state[2] = sy
        n = _go(seg, n, state, ks, base + np.uint64(1 << 19), hx, hy, 0.0, params)
    if sched == SCHED_DAY and has_work and not is_weekend and not absent:
        dep = (8.0 + 0.75 * normal(ks, c)) * 3600.0
        c += np.uint64(2)
        dep = min(max(dep, 5.5 * 3600.0), 10.5 * 3600.0)
        n = _go(seg, n, state, ks, c, wx, wy, dep, params)
        c += np.uint64(2)
        end = state[0] + (8.5 + 0.5 * normal(ks, c)) * 3600.0
        c += np.uint64(2)
        if uniform(ks, c) < 0.25:  # lunch out near work
            c += np.uint64(1)
            j, n_places = _epr_place(ke, c, wx, wy, px, py, visits, n_places, params)
            c += np.uint64(4)
            n = _go(seg, n, state, ks, c, px[j], py[j], state[0] + 3.5 * 3600.0, params)
            c += np.uint64(2)
            n = _go(seg, n, state, ks, c, wx, wy, state[0] + 45 * 60.0, params)
            c += np.uint64(2)
        else:
            c += np.uint64(1)
        if uniform(ks, c) < 0.45:  # an errand or leisure after work
            c += np.uint64(1)
            j, n_places = _epr_place(ke, c, wx, wy, px, py, visits, n_places, params)
            c += np.uint64(4)
            n = _go(seg, n, state, ks, c, px[j], py[j], end, params)
            c += np.uint64(2)
            end = state[0] + _dwell_s(ks, c, 50.0, 0.8, 4.0)
            c += np.uint64(2)
        else:
            c += np.uint64(1)
        n = _go(seg, n, state, ks, c, hx, hy, end, params)
        c += np.uint64(2)
    else:
        # a home-based day: a few activities (EPR) with heavy-tailed dwell times
        if sched == SCHED_NIGHT and has_work and weekday <= 4:
            k = 1 if uniform(ks, c) < 0.4 else 0
            t_first = (14.0 + 1.0 * normal(ks, c + np.uint64(1))) * 3600.0
        else:
            lam = 1.8 if is_weekend else 1.3
            k = poisson(ks, c, lam)
            t_first = (9.5 + 1.5 * normal(ks, c + np.uint64(1))) * 3600.0
        c += np.uint64(4)
        t_next = max(t_first, state[0] + 600.0)
        for a in range(min(k, 6)):
            j, n_places = _epr_place(ke, c, state[1], state[2], px, py, visits, n_places, params)
            c += np.uint64(4)
            n = _go(seg, n, state, ks, c, px[j], py[j], t_next, params)
            c += np.uint64(2)
            dwell = _dwell_s(ks, c, 60.0, 0.9, 6.0)
            c += np.uint64(2)
            t_next = state[0] + dwell
            if uniform(ks, c) < 0.5 and a + 1 < k:  # a break at home in between
                c += np.uint64(1)
                n = _go(seg, n, state, ks, c, hx, hy, t_next, params)
                c += np.uint64(2)
                t_next = state[0] + _dwell_s(ks, c, 90.0, 0.7, 5.0)
                c += np.uint64(2)
            else:
                c += np.uint64(1)
            if t_next > 22.5 * 3600.0:
                break
        n = _go(seg, n, state, ks, c, hx, hy, t_next, params)
        c += np.uint64(2)
    if sched == SCHED_NIGHT and has_work and weekday <= 4:
        n = _go(seg, n, state, ks, c, wx, wy, 21.5 * 3600.0, params)
        c += np.uint64(2)
    # stay where we are until midnight
    if state[0] < DAY_S:
        n = _add_seg(seg, n, state[0], float(DAY_S), state[1], state[2], state[1], state[2])
    return n, n_places


# ---------------------------------------------------------------- ping times
@jit
def ping_times(out, kt, day, n, hour_cdf, params):
    """Fill out[:n] with sorted, strictly increasing seconds after local midnight.

    Pings come in app sessions: 1 + Poisson((n-1)/pings_per_session) session starts
    drawn from the diurnal profile ``hour_cdf`` (cumulative over 24 hours), each ping in
    a uniformly chosen session at an exponential offset (mean session_gap_s).
    """
    if n == 0:
        return
    base = np.uint64(day) << np.uint64(DAY_SHIFT)
    n_sess = 1 + poisson(kt, base, (n - 1) / params[P_SESSION])
    if n_sess > n:
        n_sess = n
    starts = np.empty(n_sess)
    c = base + np.uint64(64)
    for s in range(n_sess):
        u = uniform(kt, c)
        h = 0
        while h < 23 and hour_cdf[h] <= u:
            h += 1
        starts[s] = (h + uniform(kt, c + np.uint64(1))) * 3600.0
        c += np.uint64(2)
    for j in range(n):
        s = int(uniform(kt, c) * n_sess)
        if s >= n_sess:
            s = n_sess - 1
        t = starts[s] + params[P_GAP] * exponential(kt, c + np.uint64(1))
        c += np.uint64(2)
        ti = int(t)
        if ti > DAY_S - 1:
            ti = DAY_S - 1
        out[j] = ti
    out[:n] = np.sort(out[:n])
    for j in range(1, n):  # strictly increasing (no duplicate seconds)
        if out[j] <= out[j - 1]:
            out[j] = out[j - 1] + 1
    if out[n - 1] > DAY_S - 1:
        out[n - 1] = DAY_S - 1
        for j in range(n - 2, -1, -1):
            if out[j] >= out[j + 1]:
                out[j] = out[j + 1] - 1


# ---------------------------------------------------------------- fill
@jit
def fill_device(seed, g, n_days, weekday0, sched, hx, hy, wx, wy, params, hour_cdf,
                t_out, x_out, y_out, acc_out):
    """Generate all pings of one device into its output slices (pass 2)."""
    rate, p_silent = device_rate(seed, g, params)
    kc = stream_key(seed, TAG_COUNT, g)
    ks = stream_key(seed, TAG_SCHED, g)
    ke = stream_key(seed, TAG_EPR, g)
    kt = stream_key(seed, TAG_TIMES, g)
    kg = stream_key(seed, TAG_GPS, g)
    seg = np.empty((MAX_SEG, 6))
    px = np.empty(MAX_PLACES)
    py = np.empty(MAX_PLACES)
    visits = np.zeros(MAX_PLACES)
    n_places = 0
    tod = np.empty(max(len(t_out), 1), dtype=np.int64)
    pos = 0
    end_x = np.nan
    end_y = np.nan
    for d in range(n_days):
        wd = (weekday0 + d) % 7
        m = day_count(kc, d, rate, p_silent, params[P_WEEKEND_RATE], wd >= 5)
        # the schedule advances every day, pinged or not (EPR memory carries over)
        n_seg, n_places = build_day(seg, ks, ke, d, wd, sched, hx, hy, wx, wy, px, py, visits,
                                    n_places, params, end_x, end_y)
        end_x = seg[n_seg - 1, 4]
        end_y = seg[n_seg - 1, 5]
        if m == 0:
            continue
        ping_times(tod, kt, d, m, hour_cdf, params)
        k = 0
        base = np.uint64(d) << np.uint64(DAY_SHIFT)
        for j in range(m):
            t = float(tod[j])
            while k < n_seg - 1 and seg[k, 1] <= t:
                k += 1
            t0, t1 = seg[k, 0], seg[k, 1]
            f = 0.0 if t1 <= t0 else min(max((t - t0) / (t1 - t0), 0.0), 1.0)
            x = seg[k, 2] + f * (seg[k, 4] - seg[k, 2])
            y = seg[k, 3] + f * (seg[k, 5] - seg[k, 3])
            cg = base + np.uint64(8 * j)
            if uniform(kg, cg) < params[P_COARSE_SHARE]:
                acc = params[P_COARSE_MED] * np.exp(0.6 * normal(kg, cg + np.uint64(1)))
            else:
                acc = params[P_GPS_MED] * np.exp(0.7 * normal(kg, cg + np.uint64(1)))
            acc = min(max(acc, 2.0), 5000.0)
            sd = acc / 1.515  # 68 % of 2-D Gaussian errors fall within `acc`
            x_out[pos] = x + sd * normal(kg, cg + np.uint64(3))
            y_out[pos] = y + sd * normal(kg, cg + np.uint64(5))
            acc_out[pos] = acc
            t_out[pos] = d * DAY_S + tod[j]
            pos += 1
    return pos


@pjit
def fill_pings(seed, g0, offsets, n_days, weekday0, schedule, home_x, home_y, work_x, work_y, params, hour_cdf,
               t_out, x_out, y_out, acc_out):
    """Pass 2 over all devices of a block; device i writes rows offsets[i]:offsets[i+1]."""
    n_dev = len(offsets) - 1
    written = np.zeros(n_dev, dtype=np.int64)
    for i in prange(n_dev):
        a, b = offsets[i], offsets[i + 1]
        written[i] = fill_device(seed, g0 + i, n_days, weekday0, schedule[i], home_x[i], home_y[i], work_x[i], work_y[i],
                                 params, hour_cdf, t_out[a:b], x_out[a:b], y_out[a:b], acc_out[a:b])
    return written


@jit
def epochs_by_day(seed, g0, n_dev, n_days, rotation_days, reset_prob):
    """MAID epoch of every device-day: +1 at each rotation day and each user reset."""
    out = np.zeros((n_dev, n_days), dtype=np.int32)
    for i in range(n_dev):
        k = stream_key(seed, TAG_MAID, g0 + i)
        e = 0
        for d in range(n_days):
            if d > 0:
                if rotation_days > 0 and d % rotation_days == 0:
                    e += 1
                elif reset_prob > 0.0 and uniform(k, np.uint64(1) << np.uint64(40) | np.uint64(d)) < reset_prob:
                    e += 1
            out[i, d] = e
    return out


@jit
def maid_words(seed, devices, epochs):
    """Two 64-bit words of the MAID of each (device, epoch) pair."""
    n = len(devices)
    hi = np.empty(n, dtype=np.uint64)
    lo = np.empty(n, dtype=np.uint64)
    for i in range(n):
        k = stream_key(seed, TAG_MAID, devices[i])
        hi[i] = bits(k, np.uint64(2 * epochs[i]))
        lo[i] = bits(k, np.uint64(2 * epochs[i] + 1))
    return hi, lo


@jit
def device_rates(seed, g0, n, params):
    out = np.empty((n, 2))
    for i in range(n):
        r, p = device_rate(seed, g0 + i, params)
        out[i, 0] = r
        out[i, 1] = p
    return out


# ---------------------------------------------------------------- publish (sort by pseudonym)
@pjit
def pair_counts(offsets, t_s, start_s, epochs, pair_off):
    """Pings of every (device, epoch) pair of a block.

    Device i's pings are rows offsets[i]:offsets[i+1] of ``t_s`` (Unix seconds, sorted
    by time); a ping on day (t_s - start_s) // DAY_S belongs to epoch epochs[i, day],
    and pair (i, e) is number pair_off[i] + e.  Each device counts only its own pairs.
    """
    n_dev = len(offsets) - 1
    out = np.zeros(pair_off[n_dev], dtype=np.int64)
    for i in prange(n_dev):
        p0 = pair_off[i]
        for j in range(offsets[i], offsets[i + 1]):
            out[p0 + epochs[i, (t_s[j] - start_s) // DAY_S]] += 1
    return out


@pjit
def gather_runs(src_start, dst_off, t_s, x_m, y_m, acc_m, t_out, x_out, y_out, acc_out, code_out):
    """Copy run k (rows src_start[k] .. src_start[k] + n_k - 1 of the inputs, with
    n_k = dst_off[k+1] - dst_off[k]) to rows dst_off[k] .. dst_off[k+1] - 1 of the
    outputs, and set code_out there to k.  Each run writes only its own output rows."""
    for k in prange(len(src_start)):
        a = src_start[k]
        b = dst_off[k]
        for q in range(dst_off[k + 1] - b):
            t_out[b + q] = t_s[a + q]
            x_out[b + q] = x_m[a + q]
            y_out[b + q] = y_m[a + q]
            acc_out[b + q] = acc_m[a + q]
            code_out[b + q] = k
