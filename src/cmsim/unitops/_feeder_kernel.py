"""Numba kernel of the loss-in-weight feeder: the per-tick state machine.

State lives in plain arrays owned by :class:`cmsim.unitops.feeder.LossInWeightFeeder`; the
kernel advances it tick by tick and writes flows into the caller's chunk. Index constants below
name the slots of the state arrays.

Optional parts (off unless configured): a load cell (weight reading per tick with noise, flow
estimate = minus the slope of a least-squares line through the last ``window`` readings) and
the gravimetric PI loop on the screw speed (velocity form with feed-forward, docs/control.md).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# ---- float state (fs) slots
F_SP = 0          # set point [kg/s]
F_RSD = 1         # noise relative standard deviation [-]
F_AR = 2          # AR(1) state in unit variance (value at the last tick)
F_DRIFT = 3       # feed-factor drift multiplier D at the end of the last tick [-]
F_DRIFT_RATE = 4  # dD/dt [1/s]
F_FROZEN = 5      # frozen (volumetric) flow basis [kg/s]
F_LEVEL_V = 6     # level factor 1 + kappa (l - l_ref) when the screw was frozen [-]
F_DRIFT_V = 7     # drift multiplier when the screw was frozen [-]
F_RATE = 8        # current refill rate [kg/s]
F_TARGET = 9      # current refill target hopper mass [kg]
F_CHARGED = 10    # mass charged by the current refill [kg]
F_SURGE_K = 11    # tick at which the current refill started
F_LIMIT = 12      # most mass the current refill may charge [kg] (inf: up to the target level)
F_SPEED = 13      # screw speed N [rev/s] (PI mode)
F_FF0 = 14        # nominal feed factor f_f0 [kg/rev] (PI mode)
F_FFHAT = 15      # feed-forward estimate of the feed factor [kg/rev] (PI mode)
F_NPI = 16        # PI part of the screw speed [rev/s] (PI mode)
F_EPREV = 17      # previous control error [kg/s] (PI mode)
F_MEAS = 18       # latest load-cell flow estimate [kg/s]
F_CELLW = 19      # weight seen by the load cell without noise [kg] (hopper or -discharged)
F_CELL_SD = 20    # load-cell reading noise, 1 sigma [kg]
F_CELL_S = 21     # sum of the readings in the load-cell window [kg] (long windows only)
F_CELL_T = 22     # sum of j x reading over the window, j = 0 for the oldest [kg]
N_FS = 23

# ---- int state (is) slots
I_RUNNING = 0     # 1 running, 0 stopped
I_REFILL = 1      # 0 gravimetric, 1 refilling, 2 settling after a refill
I_SETTLE = 2      # settling ticks left
I_STUCK = 3       # 1 stuck in volumetric mode
I_STARVED = 4     # 1 while the hopper cannot deliver the demanded flow
I_LOT = 5         # lot index (within the material) of the current refill lot
I_HEAD = 6        # FIFO ring head
I_COUNT = 7       # FIFO parcels in the ring
I_CELL_POS = 8    # next slot of the load-cell ring
I_CELL_N = 9      # valid readings in the load-cell ring (since the last refill)
I_CELL_SINCE = 10  # readings since the window sums were last summed exactly (long windows)
N_IS = 11

# ---- parameter (pr) slots
P_HAS_HOPPER = 0
P_CAPACITY = 1
P_LOW = 2
P_HIGH = 3
P_SETTLE_TICKS = 4
P_SURGE = 5
P_SURGE_DECAY = 6
P_KAPPA = 7
P_LEVEL_REF = 8
P_PHI = 9
P_DT = 10
P_FIFO = 11
P_REFILL_RATE = 12
P_CTRL = 13       # 0 ideal gravimetric loop, 1 PI on the screw speed
P_KC = 14         # PI gain on the relative flow error [-]
P_TI = 15         # PI integral time [s]
P_PERIOD = 16     # PI update period [ticks]
P_WINDOW = 17     # load-cell regression window [ticks] (>= 2)
P_NMAX = 18       # maximum screw speed [rev/s]
P_CELL = 19       # 1: the load cell and its flow estimate are simulated
P_ADAPT = 20      # feed-factor adaptation time constant [s] (0: no adaptation)
N_PR = 21

# ---- event codes
EV_REFILL_START = 1
EV_REFILL_END = 2
EV_GRAVIMETRIC = 3
EV_EMPTY = 4
EV_EMPTY_END = 5

EV_CAP = 64  # events buffered per kernel call; the kernel returns early when nearly full


@njit(cache=True)
def _level_factor(mass, pr):
    if pr[P_HAS_HOPPER] == 0.0:
        return 1.0
    return 1.0 + pr[P_KAPPA] * (mass / pr[P_CAPACITY] - pr[P_LEVEL_REF])


@njit(cache=True, inline="always")  # one copy per call site, no separate specialisations
def _push_event(ev_i, ev_f, n_ev, tick, code, lot, a, b, c):
    ev_i[n_ev, 0] = tick
    ev_i[n_ev, 1] = code
    ev_i[n_ev, 2] = lot
    ev_f[n_ev, 0] = a
    ev_f[n_ev, 1] = b
    ev_f[n_ev, 2] = c
    return n_ev + 1


#: Windows of up to this many readings take the least-squares slope by a loop over the window;
#: longer ones (a small tick) keep running sums, O(1) per reading instead of O(window), summed
#: again exactly once per window length so that rounding cannot accumulate.
SLOPE_LOOP_MAX = 64


@njit(cache=True)
def window_sums(ring, pos, n_win):
    """Exact ``(sum w_j, sum j w_j)`` of the last ``n_win`` readings (j = 0 oldest)."""
    size = ring.size
    s = 0.0
    t = 0.0
    for j in range(n_win):
        w = ring[(pos - n_win + j) % size]
        s += w
        t += j * w
    return s, t


@njit(cache=True)
def _push_reading(fs, ist, ring, w, n_win):
    """Store reading ``w`` in the ring; with a long window, update the running sums."""
    pos = ist[I_CELL_POS]
    n = ist[I_CELL_N]
    if n_win > SLOPE_LOOP_MAX:
        if n >= n_win:  # full: the oldest reading (in the slot written now) leaves
            old = ring[pos]
            fs[F_CELL_T] += (n_win - 1) * w - (fs[F_CELL_S] - old)
            fs[F_CELL_S] += w - old
        else:
            fs[F_CELL_T] += n * w
            fs[F_CELL_S] += w
    ring[pos] = w
    ist[I_CELL_POS] = (pos + 1) % ring.size
    if n < n_win:
        ist[I_CELL_N] = n + 1
    elif n_win > SLOPE_LOOP_MAX:
        ist[I_CELL_SINCE] += 1
        if ist[I_CELL_SINCE] >= n_win:
            fs[F_CELL_S], fs[F_CELL_T] = window_sums(ring, ist[I_CELL_POS], n_win)
            ist[I_CELL_SINCE] = 0


@njit(cache=True)
def _cell_slope(ring, pos, n_win, dt):
    """Least-squares slope [kg/s] of the last ``n_win`` readings of the ring (oldest first)."""
    size = ring.size
    xm = 0.5 * (n_win - 1)
    num = 0.0
    den = 0.0
    for j in range(n_win):
        w = ring[(pos - n_win + j) % size]
        x = j - xm
        num += x * w
        den += x * x
    return num / den / dt


@njit(cache=True)
def feeder_kernel(out, rows, noise, fs, ist, pr, lot_mass, fifo_lot, fifo_mass, fed, charged,
                  k0, ev_i, ev_f, cell_noise, cell_ring, meas):
    """Advance the feeder over ``noise.size`` ticks starting at tick ``k0``.

    Adds flows [kg/s] into ``out[rows[j], i]``, discharged masses [kg] into ``fed[j]`` and
    refill masses [kg] into ``charged[j]``. With the load cell on (``pr[P_CELL]``), writes the
    flow estimate after tick ``i`` into ``meas[i]`` (``cell_noise`` holds the unit normal
    reading noise per tick, ``cell_ring`` the last readings); with ``pr[P_CTRL] == 1`` the PI
    loop
    sets the screw speed.
    Returns ``(ticks_done, n_events)``; the caller calls again for the remaining ticks when
    ``ticks_done < noise.size`` (event buffer nearly full).
    """
    n = noise.size
    dt = pr[P_DT]
    phi = pr[P_PHI]
    innov = math.sqrt(max(0.0, 1.0 - phi * phi))
    has_hopper = pr[P_HAS_HOPPER] != 0.0
    cap = pr[P_CAPACITY]
    fifo = pr[P_FIFO] != 0.0
    ring = fifo_lot.size
    n_lots = lot_mass.size
    decay = pr[P_SURGE_DECAY]
    if decay > 0.0:
        surge_avg = decay / dt * (1.0 - math.exp(-dt / decay))
    else:
        surge_avg = 0.0
    pi_mode = pr[P_CTRL] == 1.0
    cell_on = pr[P_CELL] != 0.0
    n_win = int(pr[P_WINDOW])
    period = int(pr[P_PERIOD])
    n_ev = 0
    for i in range(n):
        if n_ev > EV_CAP - 4:
            return i, n_ev
        k = k0 + i
        # coloured noise (unit-variance AR(1), scaled by the current RSD)
        ar = phi * fs[F_AR] + innov * noise[i]
        fs[F_AR] = ar
        xi = fs[F_RSD] * ar
        # feed-factor drift: tick average of the linear ramp
        d_avg = fs[F_DRIFT] + 0.5 * fs[F_DRIFT_RATE] * dt
        fs[F_DRIFT] = fs[F_DRIFT] + fs[F_DRIFT_RATE] * dt
        mass = 0.0
        for j in range(n_lots):
            mass += lot_mass[j]
        # automatic refill trigger
        if has_hopper and ist[I_REFILL] == 0 and mass < pr[P_LOW] * cap:
            ist[I_REFILL] = 1
            fs[F_TARGET] = pr[P_HIGH] * cap
            fs[F_LIMIT] = np.inf
            fs[F_CHARGED] = 0.0
            fs[F_SURGE_K] = k
            fs[F_RATE] = pr[P_REFILL_RATE]
            if ist[I_STUCK] == 0 and not pi_mode:
                fs[F_FROZEN] = fs[F_SP]
                fs[F_LEVEL_V] = _level_factor(mass, pr)
                fs[F_DRIFT_V] = d_avg
            n_ev = _push_event(ev_i, ev_f, n_ev, k, EV_REFILL_START, ist[I_LOT], mass,
                               fs[F_TARGET], fs[F_RATE])
        # demanded flow
        q = 0.0
        if ist[I_RUNNING] == 1 and pi_mode:
            # physical screw: flow = true feed factor x screw speed
            q = fs[F_FF0] * _level_factor(mass, pr) * d_avg * fs[F_SPEED]
            if ist[I_REFILL] != 0 and decay > 0.0:
                q *= 1.0 + pr[P_SURGE] * surge_avg * math.exp(
                    -(k - fs[F_SURGE_K]) * dt / decay)
            q *= 1.0 + xi
            if q < 0.0:
                q = 0.0
        elif ist[I_RUNNING] == 1:
            if ist[I_STUCK] == 1 or ist[I_REFILL] != 0:
                q = fs[F_FROZEN] * (_level_factor(mass, pr) / fs[F_LEVEL_V]) \
                    * (d_avg / fs[F_DRIFT_V])
                if ist[I_REFILL] != 0 and decay > 0.0:
                    q *= 1.0 + pr[P_SURGE] * surge_avg * math.exp(
                        -(k - fs[F_SURGE_K]) * dt / decay)
            else:
                q = fs[F_SP]
            q *= 1.0 + xi
            if q < 0.0:
                q = 0.0
        if not has_hopper:
            j = ist[I_LOT]
            out[rows[j], i] += q
            fed[j] += q * dt
            if cell_on:
                fs[F_CELLW] -= q * dt
                _cell_and_pi(fs, ist, pr, cell_ring, meas, i, k, cell_noise[i], dt, n_win, period,
                             pi_mode)
            continue
        # refill addition (bounded by the target) and discharge (bounded by the contents)
        add_max = fs[F_RATE] * dt if ist[I_REFILL] == 1 else 0.0
        demand = q * dt
        d = min(demand, mass + add_max)
        add = 0.0
        if ist[I_REFILL] == 1:
            add = min(add_max, max(0.0, min(fs[F_TARGET] - mass + d,
                                            fs[F_LIMIT] - fs[F_CHARGED])))
            lot = ist[I_LOT]
            lot_mass[lot] += add
            charged[lot] += add
            fs[F_CHARGED] += add
            if fifo and add > 0.0:
                if ist[I_COUNT] > 0 and fifo_lot[(ist[I_HEAD] + ist[I_COUNT] - 1) % ring] == lot:
                    fifo_mass[(ist[I_HEAD] + ist[I_COUNT] - 1) % ring] += add
                else:
                    if ist[I_COUNT] == ring:
                        # ring full: merge into the newest parcel (documented loss of FIFO
                        # order for > ring alternating lots in the hopper at once)
                        fifo_mass[(ist[I_HEAD] + ist[I_COUNT] - 1) % ring] += add
                    else:
                        slot = (ist[I_HEAD] + ist[I_COUNT]) % ring
                        fifo_lot[slot] = lot
                        fifo_mass[slot] = add
                        ist[I_COUNT] += 1
        total = mass + add
        if d > 0.0:
            if not fifo:
                if d >= total:
                    for j in range(n_lots):
                        dj = lot_mass[j]
                        lot_mass[j] = 0.0
                        out[rows[j], i] += dj / dt
                        fed[j] += dj
                else:
                    frac = d / total
                    for j in range(n_lots):
                        dj = lot_mass[j] * frac
                        lot_mass[j] -= dj
                        out[rows[j], i] += dj / dt
                        fed[j] += dj
            else:
                rem = d
                while rem > 0.0 and ist[I_COUNT] > 0:
                    h = ist[I_HEAD]
                    j = fifo_lot[h]
                    if fifo_mass[h] <= rem:
                        dj = fifo_mass[h]
                        fifo_mass[h] = 0.0
                        ist[I_HEAD] = (h + 1) % ring
                        ist[I_COUNT] -= 1
                    else:
                        dj = rem
                        fifo_mass[h] -= dj
                    rem -= dj
                    out[rows[j], i] += dj / dt
                    fed[j] += dj
                for j in range(n_lots):
                    lot_mass[j] = 0.0
                for p in range(ist[I_COUNT]):
                    slot = (ist[I_HEAD] + p) % ring
                    lot_mass[fifo_lot[slot]] += fifo_mass[slot]
        # starvation bookkeeping
        if demand > 0.0 and d < demand * (1.0 - 1e-12):
            if ist[I_STARVED] == 0:
                ist[I_STARVED] = 1
                n_ev = _push_event(ev_i, ev_f, n_ev, k, EV_EMPTY, ist[I_LOT], demand / dt,
                                   d / dt, 0.0)
        elif ist[I_STARVED] == 1 and demand > 0.0:
            ist[I_STARVED] = 0
            n_ev = _push_event(ev_i, ev_f, n_ev, k, EV_EMPTY_END, ist[I_LOT], 0.0, 0.0, 0.0)
        # refill end / settling
        if ist[I_REFILL] == 1 and add < add_max:
            ist[I_REFILL] = 2
            ist[I_SETTLE] = int(pr[P_SETTLE_TICKS])
            m_end = 0.0
            for j in range(n_lots):
                m_end += lot_mass[j]
            n_ev = _push_event(ev_i, ev_f, n_ev, k + 1, EV_REFILL_END, ist[I_LOT],
                               fs[F_CHARGED], m_end, 0.0)
        elif ist[I_REFILL] == 2:
            ist[I_SETTLE] -= 1
        if ist[I_REFILL] == 2 and ist[I_SETTLE] <= 0:
            ist[I_REFILL] = 0
            n_ev = _push_event(ev_i, ev_f, n_ev, k + 1, EV_GRAVIMETRIC, ist[I_LOT], 0.0, 0.0,
                               0.0)
        if cell_on:
            m_now = 0.0
            for j in range(n_lots):
                m_now += lot_mass[j]
            fs[F_CELLW] = m_now
            _cell_and_pi(fs, ist, pr, cell_ring, meas, i, k, cell_noise[i], dt, n_win, period,
                         pi_mode)
    return n, n_ev


@njit(cache=True)
def _cell_and_pi(fs, ist, pr, ring, meas, i, k, z, dt, n_win, period, pi_mode):
    """Load-cell reading at the end of tick ``k``, flow estimate, and the PI update."""
    gravimetric = ist[I_REFILL] == 0 and ist[I_STUCK] == 0
    if ist[I_REFILL] != 0:
        ist[I_CELL_N] = 0  # the weight rises during a refill: no loss-in-weight estimate
        fs[F_CELL_S] = 0.0
        fs[F_CELL_T] = 0.0
        ist[I_CELL_SINCE] = 0
    else:
        _push_reading(fs, ist, ring, fs[F_CELLW] + fs[F_CELL_SD] * z, n_win)
        if ist[I_CELL_N] >= n_win:
            if n_win > SLOPE_LOOP_MAX:  # sum (j - xm) w_j = T - xm S over sum (j - xm)^2
                num = fs[F_CELL_T] - 0.5 * (n_win - 1) * fs[F_CELL_S]
                fs[F_MEAS] = -num / (n_win * (n_win * n_win - 1.0) / 12.0) / dt
            else:
                fs[F_MEAS] = -_cell_slope(ring, ist[I_CELL_POS], n_win, dt)
    meas[i] = fs[F_MEAS]
    if not pi_mode or (k + 1) % period != 0:
        return
    if gravimetric and ist[I_RUNNING] == 1 and ist[I_CELL_N] >= n_win:
        e = fs[F_SP] - fs[F_MEAS]
        t_ctrl = period * dt
        ffhat = fs[F_FFHAT]
        fs[F_NPI] += pr[P_KC] / ffhat * ((e - fs[F_EPREV]) + t_ctrl / pr[P_TI] * e)
        fs[F_EPREV] = e
        if pr[P_ADAPT] > 0.0 and fs[F_SPEED] > 0.0:
            a = min(1.0, t_ctrl / pr[P_ADAPT])
            fs[F_FFHAT] = ffhat + a * (fs[F_MEAS] / fs[F_SPEED] - ffhat)
    elif ist[I_RUNNING] == 1 and not gravimetric:
        return  # volumetric: screw speed frozen
    else:
        fs[F_EPREV] = 0.0
    n_ff = fs[F_SP] / fs[F_FFHAT]
    speed = n_ff + fs[F_NPI]
    if speed > pr[P_NMAX]:
        speed = pr[P_NMAX]
    elif speed < 0.0:
        speed = 0.0
    fs[F_NPI] = speed - n_ff  # clamped velocity form: no integral wind-up
    fs[F_SPEED] = speed


def new_state(n_lots: int, fifo_ring: int = 256):
    """Fresh zeroed state arrays ``(fs, is, pr, lot_mass, fifo_lot, fifo_mass, fed)``."""
    return (np.zeros(N_FS), np.zeros(N_IS, dtype=np.int64), np.zeros(N_PR),
            np.zeros(n_lots), np.zeros(fifo_ring, dtype=np.int64), np.zeros(fifo_ring),
            np.zeros(n_lots))
