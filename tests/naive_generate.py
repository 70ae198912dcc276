"""Slow, obviously-correct references for the generator's numba kernels.

Everything here is plain Python (ints masked to 64 bits, ``math`` floats, lists), a
line-by-line transcription of sim/core/rng.py and sim/generate/_kernels.py written for
readability, not speed.  The tests compare the compiled kernels against these on small
inputs: identical draws, identical counters, identical outputs.

The last sections hold the first, plain versions of steps that were later made fast:
publishing a block (pairs, runs, the sort by pseudonym), the synthetic metro's rejection
sampler and housing-type calibration, and the register's names.  Their NumPy float
operations are the ones the fast code must reproduce bit for bit.
"""
from __future__ import annotations

import math

import numpy as np

MASK = (1 << 64) - 1
M1 = 0xBF58476D1CE4E5B9
M2 = 0x94D049BB133111EB
GOLD = 0x9E3779B97F4A7C15
INV53 = 1.0 / 9007199254740992.0  # 2**-53

TAG_RATE, TAG_COUNT, TAG_TIMES, TAG_SCHED, TAG_EPR, TAG_GPS, TAG_MAID = 1, 2, 3, 4, 5, 6, 7

DAY = 86400
MAX_SEG = 64
MAX_PLACES = 64
DAY_SHIFT = 20

# parameter vector layout (must mirror sim._kernels_generate; the tests check it)
(P_MEDIAN_RATE, P_RATE_SIGMA, P_MAX_RATE, P_SILENT, P_SESSION, P_GAP, P_GPS_MED,
 P_COARSE_SHARE, P_COARSE_MED, P_SPEED, P_OVERHEAD, P_RADIUS, P_RHO, P_GAMMA,
 P_JUMP_R0, P_JUMP_ALPHA, P_WEEKEND_RATE, P_CX, P_CY) = range(19)
SCHED_DAY, SCHED_NIGHT, SCHED_NONE = 0, 1, 2


# =================================================================== RNG (splitmix64)
def hypot(x: float, y: float) -> float:
    """The C library's hypot (what numba calls).  Python's ``math.hypot`` uses its own
    algorithm since 3.8 and can differ from it in the last bit."""
    return float(np.hypot(x, y))


def mix64(z: int) -> int:
    z &= MASK
    z = ((z ^ (z >> 30)) * M1) & MASK
    z = ((z ^ (z >> 27)) * M2) & MASK
    return z ^ (z >> 31)


def stream_key(seed: int, tag: int, index: int) -> int:
    k = mix64((seed * GOLD + tag) & MASK)
    return mix64(k ^ ((index * M2 + GOLD) & MASK))


def bits(key: int, counter: int) -> int:
    return mix64((key + (counter + 1) * GOLD) & MASK)


def uniform(key: int, counter: int) -> float:
    return float(bits(key, counter) >> 11) * INV53


def uniform_open(key: int, counter: int) -> float:
    return (float(bits(key, counter) >> 11) + 0.5) * INV53


def normal(key: int, counter: int) -> float:
    u1 = uniform_open(key, counter)
    u2 = uniform(key, counter + 1)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def exponential(key: int, counter: int) -> float:
    return -math.log(uniform_open(key, counter))


def poisson(key: int, counter: int, lam: float) -> int:
    if lam <= 0.0:
        return 0
    if lam < 30.0:
        u = uniform(key, counter)
        p = math.exp(-lam)
        c = p
        k = 0
        while u > c and k < 1000:
            k += 1
            p *= lam / k
            c += p
        return k
    z = normal(key, counter)
    k = int(math.floor(lam + math.sqrt(lam) * z + 0.5))
    return max(k, 0)


# =================================================================== counts
def device_rate(seed, g, params):
    k = stream_key(seed, TAG_RATE, g)
    rate = params[P_MEDIAN_RATE] * math.exp(params[P_RATE_SIGMA] * normal(k, 0))
    rate = min(rate, params[P_MAX_RATE])
    p_silent = min(params[P_SILENT] * exponential(k, 2), 0.95)
    return rate, p_silent


def day_count(kc, day, rate, p_silent, weekend_factor, is_weekend):
    base = day << DAY_SHIFT
    if uniform(kc, base) < p_silent:
        return 0
    lam = rate * (weekend_factor if is_weekend else 1.0)
    return poisson(kc, base + 1, lam)


def device_day_counts(seed, g, n_days, weekday0, params):
    """Pings of each day of device g (list of n_days ints)."""
    rate, p_silent = device_rate(seed, g, params)
    kc = stream_key(seed, TAG_COUNT, g)
    return [day_count(kc, d, rate, p_silent, params[P_WEEKEND_RATE], (weekday0 + d) % 7 >= 5)
            for d in range(n_days)]


# =================================================================== schedule
def trip_s(ks, c, x0, y0, x1, y1, params):
    d = hypot(x1 - x0, y1 - y0)
    if d < 1.0:
        return 0.0
    base = params[P_OVERHEAD] * 60.0 + d / (params[P_SPEED] / 3.6)
    return base * math.exp(0.15 * normal(ks, c))


def dwell_s(ks, c, median_min, sigma, cap_h):
    return min(median_min * 60.0 * math.exp(sigma * normal(ks, c)), cap_h * 3600.0)


class DayPlan:
    """Mutable state of one device while its day is planned: a segment list, the
    current (t, x, y) and the EPR memory (places and visit counts)."""

    def __init__(self, places=None):
        self.segs = []
        self.t = 0.0
        self.x = 0.0
        self.y = 0.0
        self.places = [] if places is None else places  # list of [x, y, visits]

    def add(self, t0, t1, x0, y0, x1, y1):
        if len(self.segs) < MAX_SEG and t1 > t0:
            self.segs.append((t0, t1, x0, y0, x1, y1))

    def go(self, ks, c, x1, y1, t_dep, params):
        """Stay until t_dep, then travel to (x1, y1)."""
        t_dep = max(t_dep, self.t)
        if t_dep >= DAY:
            return
        self.add(self.t, t_dep, self.x, self.y, self.x, self.y)
        dur = trip_s(ks, c, self.x, self.y, x1, y1, params)
        self.add(t_dep, t_dep + dur, self.x, self.y, x1, y1)
        self.t, self.x, self.y = t_dep + dur, x1, y1

    def epr(self, ke, c, ax, ay, params):
        """Index of the next "other" place (explore a new one or return to a known one)."""
        S = len(self.places)
        explore = S == 0 or (S < MAX_PLACES and uniform(ke, c) < params[P_RHO] * S ** (-params[P_GAMMA]))
        if explore:
            u = uniform(ke, c + 1)
            r = params[P_JUMP_R0] * ((1.0 - u) ** (-1.0 / params[P_JUMP_ALPHA]) - 1.0)
            r = min(r, 2.0 * params[P_RADIUS])
            a = 2.0 * math.pi * uniform(ke, c + 2)
            # clip to the disk of radius 0.98 * P_RADIUS around the centre (P_CX, P_CY)
            cx, cy = params[P_CX], params[P_CY]
            x = ax + r * math.cos(a) - cx
            y = ay + r * math.sin(a) - cy
            rr = hypot(x, y)
            lim = 0.98 * params[P_RADIUS]
            if rr > lim:
                x *= lim / rr
                y *= lim / rr
            self.places.append([x + cx, y + cy, 1.0])
            return S
        u = uniform(ke, c + 3) * sum(p[2] for p in self.places)
        acc = 0.0
        pick = S - 1
        for j, p in enumerate(self.places):
            acc += p[2]
            if u < acc:
                pick = j
                break
        self.places[pick][2] += 1.0
        return pick


def build_day(ks, ke, day, weekday, sched, hx, hy, wx, wy, places, params, sx=math.nan, sy=math.nan):
    """Reference of ``build_day``: the list of segments (t0, t1, x0, y0, x1, y1) of one
    device-day.  ``places`` (list of [x, y, visits]) is updated in place.  (sx, sy): where
    the previous day ended (NaN = home); if away from home, the day starts with a trip home."""
    P = DayPlan(places)
    c = day << DAY_SHIFT
    is_weekend = weekday >= 5
    has_work = not math.isnan(wx)
    absent = uniform(ks, c) < 0.05
    c += 1
    P.t, P.x, P.y = 0.0, hx, hy
    if sched == SCHED_NIGHT and has_work and 1 <= weekday <= 5:
        P.x, P.y = wx, wy  # coming off the night shift
        off = (6.0 + 0.3 * normal(ks, c)) * 3600.0
        c += 2
        P.go(ks, c, hx, hy, max(off, 4.5 * 3600.0), params)
        c += 2
    elif not math.isnan(sx) and (abs(sx - hx) > 1.0 or abs(sy - hy) > 1.0):
        P.x, P.y = sx, sy  # still out at midnight: home first, on a counter of its own
        P.go(ks, (day << DAY_SHIFT) + (1 << 19), hx, hy, 0.0, params)
    if sched == SCHED_DAY and has_work and not is_weekend and not absent:
        dep = min(max((8.0 + 0.75 * normal(ks, c)) * 3600.0, 5.5 * 3600.0), 10.5 * 3600.0)
        c += 2
        P.go(ks, c, wx, wy, dep, params)
        c += 2
        end = P.t + (8.5 + 0.5 * normal(ks, c)) * 3600.0
        c += 2
        if uniform(ks, c) < 0.25:  # lunch
            c += 1
            j = P.epr(ke, c, wx, wy, params)
            c += 4
            P.go(ks, c, P.places[j][0], P.places[j][1], P.t + 3.5 * 3600.0, params)
            c += 2
            P.go(ks, c, wx, wy, P.t + 45 * 60.0, params)
            c += 2
        else:
            c += 1
        if uniform(ks, c) < 0.45:  # errand after work
            c += 1
            j = P.epr(ke, c, wx, wy, params)
            c += 4
            P.go(ks, c, P.places[j][0], P.places[j][1], end, params)
            c += 2
            end = P.t + dwell_s(ks, c, 50.0, 0.8, 4.0)
            c += 2
        else:
            c += 1
        P.go(ks, c, hx, hy, end, params)
        c += 2
    else:
        if sched == SCHED_NIGHT and has_work and weekday <= 4:
            k = 1 if uniform(ks, c) < 0.4 else 0
            t_first = (14.0 + 1.0 * normal(ks, c + 1)) * 3600.0
        else:
            k = poisson(ks, c, 1.8 if is_weekend else 1.3)
            t_first = (9.5 + 1.5 * normal(ks, c + 1)) * 3600.0
        c += 4
        t_next = max(t_first, P.t + 600.0)
        for a in range(min(k, 6)):
            j = P.epr(ke, c, P.x, P.y, params)
            c += 4
            P.go(ks, c, P.places[j][0], P.places[j][1], t_next, params)
            c += 2
            dwell = dwell_s(ks, c, 60.0, 0.9, 6.0)
            c += 2
            t_next = P.t + dwell
            if uniform(ks, c) < 0.5 and a + 1 < k:  # back home in between
                c += 1
                P.go(ks, c, hx, hy, t_next, params)
                c += 2
                t_next = P.t + dwell_s(ks, c, 90.0, 0.7, 5.0)
                c += 2
            else:
                c += 1
            if t_next > 22.5 * 3600.0:
                break
        P.go(ks, c, hx, hy, t_next, params)
        c += 2
    if sched == SCHED_NIGHT and has_work and weekday <= 4:
        P.go(ks, c, wx, wy, 21.5 * 3600.0, params)
        c += 2
    if P.t < DAY:
        P.add(P.t, float(DAY), P.x, P.y, P.x, P.y)
    return P.segs


# =================================================================== ping times
def ping_times(kt, day, n, hour_cdf, params):
    """Reference of ``ping_times``: n sorted, strictly increasing seconds of the day."""
    if n == 0:
        return []
    base = day << DAY_SHIFT
    n_sess = min(1 + poisson(kt, base, (n - 1) / params[P_SESSION]), n)
    c = base + 64
    starts = []
    for _ in range(n_sess):
        u = uniform(kt, c)
        h = 0
        while h < 23 and hour_cdf[h] <= u:
            h += 1
        starts.append((h + uniform(kt, c + 1)) * 3600.0)
        c += 2
    out = []
    for _ in range(n):
        s = min(int(uniform(kt, c) * n_sess), n_sess - 1)
        t = starts[s] + params[P_GAP] * exponential(kt, c + 1)
        c += 2
        out.append(min(int(t), DAY - 1))
    out.sort()
    for j in range(1, n):
        if out[j] <= out[j - 1]:
            out[j] = out[j - 1] + 1
    if out[-1] > DAY - 1:
        out[-1] = DAY - 1
        for j in range(n - 2, -1, -1):
            if out[j] >= out[j + 1]:
                out[j] = out[j + 1] - 1
    return out


# =================================================================== one device
def fill_device(seed, g, n_days, weekday0, sched, hx, hy, wx, wy, params, hour_cdf):
    """Reference of ``fill_device``: (t_s, x_m, y_m, accuracy_m) lists of device g, with
    t_s in seconds after local midnight of day 0."""
    rate, p_silent = device_rate(seed, g, params)
    kc = stream_key(seed, TAG_COUNT, g)
    ks = stream_key(seed, TAG_SCHED, g)
    ke = stream_key(seed, TAG_EPR, g)
    kt = stream_key(seed, TAG_TIMES, g)
    kg = stream_key(seed, TAG_GPS, g)
    places = []
    T, X, Y, A = [], [], [], []
    end_x = end_y = math.nan
    for d in range(n_days):
        wd = (weekday0 + d) % 7
        m = day_count(kc, d, rate, p_silent, params[P_WEEKEND_RATE], wd >= 5)
        segs = build_day(ks, ke, d, wd, sched, hx, hy, wx, wy, places, params, end_x, end_y)
        end_x, end_y = segs[-1][4], segs[-1][5]
        if m == 0:
            continue
        tod = ping_times(kt, d, m, hour_cdf, params)
        k = 0
        for j in range(m):
            t = float(tod[j])
            while k < len(segs) - 1 and segs[k][1] <= t:
                k += 1
            t0, t1, x0, y0, x1, y1 = segs[k]
            f = 0.0 if t1 <= t0 else min(max((t - t0) / (t1 - t0), 0.0), 1.0)
            x = x0 + f * (x1 - x0)
            y = y0 + f * (y1 - y0)
            cg = (d << DAY_SHIFT) + 8 * j
            if uniform(kg, cg) < params[P_COARSE_SHARE]:
                acc = params[P_COARSE_MED] * math.exp(0.6 * normal(kg, cg + 1))
            else:
                acc = params[P_GPS_MED] * math.exp(0.7 * normal(kg, cg + 1))
            acc = min(max(acc, 2.0), 5000.0)
            sd = acc / 1.515
            X.append(x + sd * normal(kg, cg + 3))
            Y.append(y + sd * normal(kg, cg + 5))
            A.append(acc)
            T.append(d * DAY + tod[j])
    return T, X, Y, A


# =================================================================== identifiers
def epochs_by_day(seed, g, n_days, rotation_days, reset_prob):
    k = stream_key(seed, TAG_MAID, g)
    e, out = 0, []
    for d in range(n_days):
        if d > 0:
            if rotation_days > 0 and d % rotation_days == 0:
                e += 1
            elif reset_prob > 0.0 and uniform(k, (1 << 40) | d) < reset_prob:
                e += 1
        out.append(e)
    return out


def maid(seed, g, epoch):
    """UUID-v4 text of the MAID of device g in an epoch."""
    k = stream_key(seed, TAG_MAID, g)
    v = (bits(k, 2 * epoch) << 64) | bits(k, 2 * epoch + 1)
    v = (v & ~(0xF << 76)) | (0x4 << 76)
    v = (v & ~(0x3 << 62)) | (0x2 << 62)
    h = f"{v:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def segs_array(segs):
    return np.array(segs, dtype=np.float64).reshape(-1, 6)


# =================================================================== publishing a block
def pair_counts(offsets, t_s, start_s, epochs, pair_off):
    """Pings per (device, epoch) pair, one ping at a time."""
    out = [0] * int(pair_off[-1])
    for i in range(len(offsets) - 1):
        for j in range(int(offsets[i]), int(offsets[i + 1])):
            day = (int(t_s[j]) - int(start_s)) // DAY
            out[int(pair_off[i]) + int(epochs[i][day])] += 1
    return out


def gather_runs(src_start, dst_off, columns):
    """Run k of every column (src_start[k], dst_off[k+1] - dst_off[k] rows) laid end to
    end, and the run number of every output row."""
    out = [[] for _ in columns]
    code = []
    for k in range(len(src_start)):
        n = int(dst_off[k + 1] - dst_off[k])
        for c, col in enumerate(columns):
            out[c].extend(col[int(src_start[k]) + q] for q in range(n))
        code.extend([k] * n)
    return out, code


def published_rows(pseudonym_of_ping, t_s, *columns):
    """A block's pings as the broker publishes them: rows sorted by (pseudonym, t_s)
    with Python's sort; returns (pseudonyms, t_s, *columns) in that order."""
    order = sorted(range(len(t_s)), key=lambda j: (pseudonym_of_ping[j], int(t_s[j])))
    return ([pseudonym_of_ping[j] for j in order], [int(t_s[j]) for j in order],
            *([col[j] for j in order] for col in columns))


# =================================================================== world synthesis
def sample_density(rng, n, radius_m, centres, scales, weights, power=1.0):
    """The rejection sampler of the synthetic metro as first written: the density is
    evaluated at every candidate.  Returns (xy, density**power at xy)."""
    out = np.empty((0, 2))
    fs = np.empty(0)
    fmax = float(sum(weights)) ** power
    while len(out) < n:
        m = max(1024, int((n - len(out)) * 3))
        r = radius_m * np.sqrt(rng.random(m))
        a = 2 * np.pi * rng.random(m)
        xy = np.column_stack([r * np.cos(a), r * np.sin(a)])
        d = np.zeros(m)
        for c, s, w in zip(centres, scales, weights):
            d += w * np.exp(-np.hypot(xy[:, 0] - c[0], xy[:, 1] - c[1]) / s)
        f = d ** power
        keep = rng.random(m) * fmax < f
        out = np.vstack([out, xy[keep]])
        fs = np.concatenate([fs, f[keep]])
    return out[:n], fs[:n]


def calibrate(powers, shares, iters):
    """Iterative proportional fitting of the housing-type coefficients, every step run:
    type probabilities coef * powers normalised per row, their mean over rows."""
    coef = np.where(shares > 0, shares, 0.0).astype(np.float64)
    for _ in range(iters):
        w = coef[None, :] * powers
        m = (w / w.sum(axis=1, keepdims=True)).mean(axis=0)
        ok = m > 0
        coef[ok] *= shares[ok] / m[ok]
        coef /= max(coef.sum(), 1e-300)
    return coef


def register_name(person_id, first, last):
    """A register name as first written (one f-string per person)."""
    i = int(person_id)
    return f"{first[(i * 7919) % len(first)]} {last[(i * 104729 // 7) % len(last)]} #{i}"


# =================================================================== population
def gravity_workplaces(world, home_b, employed, decay_m, rng):
    """Workplaces by the gravity model as first written: one home block at a time."""
    b = world.buildings
    blk = b["block_id"].to_numpy()
    jobs = b["jobs"].to_numpy()
    n_blocks = len(world.zones["block"])
    bjobs = np.bincount(blk, weights=jobs, minlength=n_blocks)
    seeds = world.block_seed_xy
    home_blk = blk[home_b]
    out = np.full(len(home_b), -1, dtype=np.int64)
    jb = np.flatnonzero(jobs > 0)
    jb = jb[np.argsort(blk[jb], kind="stable")]
    starts = np.searchsorted(blk[jb], np.arange(n_blocks + 1))
    emp_idx = np.flatnonzero(employed)
    order = emp_idx[np.argsort(home_blk[emp_idx], kind="stable")]
    hb_sorted = home_blk[order]
    bounds = np.searchsorted(hb_sorted, np.arange(n_blocks + 1))
    wblk = np.full(len(order), -1, dtype=np.int64)
    for hb in range(n_blocks):
        lo, hi = bounds[hb], bounds[hb + 1]
        if hi == lo:
            continue
        d = np.hypot(seeds[:, 0] - seeds[hb, 0], seeds[:, 1] - seeds[hb, 1])
        p = bjobs * np.exp(-d / decay_m)
        if p.sum() <= 0:
            continue
        cdf = np.cumsum(p)
        cdf /= cdf[-1]
        wblk[lo:hi] = np.minimum(np.searchsorted(cdf, rng.random(hi - lo), side="right"), n_blocks - 1)
    cum = np.concatenate([[0.0], np.cumsum(jobs[jb])])
    lo_c = cum[starts[:-1]]
    tot_c = cum[starts[1:]] - lo_c
    sel = np.flatnonzero(wblk >= 0)
    c = wblk[sel]
    target = lo_c[c] + rng.random(len(sel)) * tot_c[c]
    k = np.searchsorted(cum, target, side="right") - 1
    k = np.clip(k, starts[c], np.maximum(starts[c + 1] - 1, starts[c]))
    ok = tot_c[c] > 0
    out[order[sel[ok]]] = jb[k[ok]]
    return out
