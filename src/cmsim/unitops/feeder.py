"""Loss-in-weight (LIW) feeder: a source of (material, lot) channel flows.

Model (docs/process.md, "Feeder model"), per tick ``k`` covering ``[k dt, (k+1) dt)``:

* **Gravimetric mode** (normal): the gravimetric loop holds the mean, the delivered flow is
  ``set_point * (1 + xi_k)`` with coloured noise ``xi_k = rsd * e_k``, ``e_k`` a unit-variance
  AR(1) process ``e_k = phi e_{k-1} + sqrt(1 - phi^2) z_k``, ``phi = exp(-dt / correlation_time)``.
  The innovations ``z_k`` are pre-drawn per tick index from a private generator seeded once from
  the ``rng`` passed in, so results do not depend on how the run is chunked.
* **Volumetric mode** (during a hopper refill and ``settle_time`` after it, or permanently after
  ``set_drift(..., volumetric=True)``): the screw speed is frozen, so feed-factor changes pass
  through: ``flow = frozen * L(l)/L(l_v) * D/D_v * (1 + surge * exp(-(t - t_refill)/surge_decay))
  * (1 + xi)`` with the level effect ``L(l) = 1 + kappa (l - l_ref)`` (``l`` = hopper fill
  fraction), the feed-factor drift multiplier ``D`` (``set_drift``), values at the moment the
  screw froze marked ``_v``; the surge term is the exact tick average of the exponential and acts
  only while a refill or its settling lasts.
* **Hopper**: per-lot masses. Automatic refill when the hopper mass is below
  ``refill_low * capacity`` at the start of a tick: mass is added at ``refill_rate`` until the
  hopper holds ``refill_high * capacity`` (the last tick adds only what is needed), charging the lot
  currently assigned to the feeder. Discharge lot shares follow ``mixing``: ``"mixed"`` (well-mixed
  hopper contents) or ``"fifo"`` (parcels leave in the order they were charged). An empty hopper
  starves the feeder (it delivers what is there, then zero; logged).
* Without a hopper the feeder is an inexhaustible source of its current lot.
* **Gravimetric PI loop** (optional, :meth:`LossInWeightFeeder.set_control`; the default is the
  ideal loop above): the screw is modelled physically, ``flow = f_f N (1 + xi)`` with the true
  feed factor ``f_f = f_f0 L(l) D`` (times the refill excursion while it lasts) and the screw
  speed ``N`` [rev/s] set by a velocity-form PI on ``e = set_point - flow_estimate`` every
  ``period``: ``N_pi += Kc / f_hat (e_k - e_{k-1} + T / Ti e_k)``, ``N = clamp(sp / f_hat +
  N_pi, 0, N_max)`` (feed-forward ``N_ff = sp / f_hat``; the clamp is fed back into ``N_pi``,
  so the integral cannot wind up). During a refill, its settling time and a stuck volumetric
  mode ``N`` is frozen. The flow estimate comes from the load cell: a reading of the hopper
  mass (or, without a hopper, minus the discharged mass) at the end of every tick with Gaussian
  noise, and the estimate is minus the least-squares slope of the last ``window`` readings
  (held while a refill invalidates the window, until ``window`` fresh readings exist). The load
  cell can also run alone (:meth:`LossInWeightFeeder.enable_load_cell`) to give supervisory
  controllers a measured flow (:attr:`LossInWeightFeeder.measured_flow`).

Internal happenings are appended to :attr:`LossInWeightFeeder.events` as dicts with ``time_s``,
``type`` (``refill_start``, ``refill_end``, ``gravimetric_resume``, ``hopper_empty``,
``hopper_empty_end``) and ``data``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cmsim import _validate as v
from cmsim.errors import ParameterError, SimulationError
from cmsim.streams import ChannelMap
from cmsim.unitops import _feeder_kernel as fk

__all__ = ["Hopper", "LossInWeightFeeder"]

_EVENT_NAMES = {
    fk.EV_REFILL_START: "refill_start",
    fk.EV_REFILL_END: "refill_end",
    fk.EV_GRAVIMETRIC: "gravimetric_resume",
    fk.EV_EMPTY: "hopper_empty",
    fk.EV_EMPTY_END: "hopper_empty_end",
}


@dataclass(frozen=True)
class Hopper:
    """Hopper and refill parameters of a LIW feeder.

    Parameters
    ----------
    capacity : float
        Hopper capacity [kg].
    initial_mass : float or None
        Initial contents [kg] (of the feeder's initial lot); default ``refill_high * capacity``.
    refill_low, refill_high : float
        Refill trigger and target as fractions of ``capacity`` [-], ``0 <= low < high <= 1``.
    refill_rate : float
        Mass added per second during an automatic refill [kg/s].
    settle_time : float
        Volumetric time after a refill ends [s].
    surge : float
        Relative flow excursion when a refill starts [-] (e.g. 0.05 for +5 %).
    surge_decay : float
        Decay time of the excursion [s].
    mixing : {"mixed", "fifo"}
        Lot model of the hopper contents.
    level_coefficient : float
        ``kappa``: relative feed-factor change per unit fill fraction [-] (volumetric mode only).
    level_ref : float
        Reference fill fraction of the level effect [-].
    """

    capacity: float
    initial_mass: float | None = None
    refill_low: float = 0.2
    refill_high: float = 0.8
    refill_rate: float = 1.0
    settle_time: float = 0.0
    surge: float = 0.0
    surge_decay: float = 30.0
    mixing: str = "mixed"
    level_coefficient: float = 0.0
    level_ref: float = 0.5

    def __post_init__(self) -> None:
        v.positive("hopper.capacity", self.capacity)
        low = v.probability("hopper.refill_low", self.refill_low, open_interval=False)
        high = v.probability("hopper.refill_high", self.refill_high, open_interval=False)
        if not low < high:
            raise ParameterError("hopper.refill_high", high,
                                 f"must be > refill_low = {low}")
        v.positive("hopper.refill_rate", self.refill_rate)
        v.non_negative("hopper.settle_time", self.settle_time)
        v._real("hopper.surge", self.surge)
        if self.surge <= -1.0:
            raise ParameterError("hopper.surge", self.surge, "must be > -1")
        v.positive("hopper.surge_decay", self.surge_decay)
        if self.mixing not in ("mixed", "fifo"):
            raise ParameterError("hopper.mixing", self.mixing, "must be 'mixed' or 'fifo'")
        v._real("hopper.level_coefficient", self.level_coefficient)
        v.probability("hopper.level_ref", self.level_ref, open_interval=False)
        if abs(self.level_coefficient) * max(self.level_ref, 1 - self.level_ref) >= 1.0:
            raise ParameterError("hopper.level_coefficient", self.level_coefficient,
                                 "must keep 1 + kappa (l - l_ref) > 0 for l in [0, 1]")
        if self.initial_mass is not None:
            m0 = v.non_negative("hopper.initial_mass", self.initial_mass)
            if m0 > self.capacity:
                raise ParameterError("hopper.initial_mass", m0,
                                     f"must be <= capacity = {self.capacity}")

    @property
    def start_mass(self) -> float:
        """Initial hopper mass [kg]."""
        if self.initial_mass is None:
            return self.refill_high * self.capacity
        return float(self.initial_mass)


class LossInWeightFeeder:
    """Loss-in-weight feeder delivering one material into stream channels.

    Parameters
    ----------
    name : str
        Feeder name (used in events).
    material : str
        Material fed; must be in ``channel_map``.
    mass_flow : float
        Set point [kg/s], >= 0.
    channel_map : cmsim.streams.ChannelMap
        Channel layout of the stream the feeder writes into.
    lot : str
        Initial lot (of the initial hopper contents and of refills until changed).
    dt : float
        Tick length [s].
    duration : float, optional
        Planned run length [s]; noise is pre-drawn for ``ceil(duration/dt)`` ticks (more is
        drawn, in fixed blocks, if the run goes on).
    n_ticks : int, optional
        Alternative to ``duration``.
    rng : numpy.random.Generator, optional
        Source of the noise seed; required when ``noise_rsd > 0`` or ``set_noise`` is used.
    noise_rsd : float
        Relative standard deviation of the coloured flow noise [-].
    noise_correlation_time : float
        Correlation time of the AR(1) noise [s].
    hopper : Hopper, optional
        Hopper and refill model; ``None`` for an inexhaustible source.
    """

    def __init__(self, name: str, material: str, mass_flow: float, channel_map: ChannelMap,
                 lot: str, dt: float, *, duration: float | None = None,
                 n_ticks: int | None = None, rng: np.random.Generator | None = None,
                 noise_rsd: float = 0.0, noise_correlation_time: float = 2.0,
                 hopper: Hopper | None = None) -> None:
        self.name = str(name)
        self.material = str(material)
        self.channel_map = channel_map
        self.dt = v.positive("dt", dt)
        self.rows = np.ascontiguousarray(channel_map.material_rows(self.material),
                                         dtype=np.int64)
        self._lots = channel_map.lots(self.material)
        self.hopper = hopper
        if hopper is not None and not isinstance(hopper, Hopper):
            raise ParameterError("hopper", hopper, "must be a cmsim.unitops.Hopper or None")
        if n_ticks is None:
            n_ticks = 0 if duration is None else int(np.ceil(v.non_negative(
                "duration", duration) / self.dt - 1e-9))
        elif isinstance(n_ticks, bool) or int(n_ticks) != n_ticks or n_ticks < 0:
            raise ParameterError("n_ticks", n_ticks, "must be an integer >= 0")
        self._block = max(int(n_ticks), 4096)
        self.noise_correlation_time = v.positive("noise_correlation_time",
                                                 noise_correlation_time)
        if rng is not None and not isinstance(rng, np.random.Generator):
            raise ParameterError("rng", rng, "must be a numpy.random.Generator")
        # private generator: the caller's rng is touched exactly once
        self._noise_rng = (None if rng is None
                           else np.random.default_rng(int(rng.integers(0, 2**63 - 1))))
        self._noise = np.zeros(0)
        self.events: list[dict[str, Any]] = []
        self.k = 0
        (self._fs, self._is, self._pr, self._lot_mass, self._fifo_lot, self._fifo_mass,
         self._fed) = fk.new_state(len(self._lots))
        pr = self._pr
        pr[fk.P_DT] = self.dt
        pr[fk.P_PHI] = np.exp(-self.dt / self.noise_correlation_time)
        if hopper is not None:
            pr[fk.P_HAS_HOPPER] = 1.0
            pr[fk.P_CAPACITY] = hopper.capacity
            pr[fk.P_LOW] = hopper.refill_low
            pr[fk.P_HIGH] = hopper.refill_high
            pr[fk.P_SETTLE_TICKS] = round(hopper.settle_time / self.dt)
            pr[fk.P_SURGE] = hopper.surge
            pr[fk.P_SURGE_DECAY] = hopper.surge_decay
            pr[fk.P_KAPPA] = hopper.level_coefficient
            pr[fk.P_LEVEL_REF] = hopper.level_ref
            pr[fk.P_FIFO] = 1.0 if hopper.mixing == "fifo" else 0.0
            pr[fk.P_REFILL_RATE] = hopper.refill_rate
        self._is[fk.I_RUNNING] = 1
        self._is[fk.I_LOT] = self._lot_index(lot)
        self._fs[fk.F_SP] = v.non_negative("mass_flow", mass_flow)
        self._fs[fk.F_DRIFT] = 1.0
        self._fs[fk.F_LEVEL_V] = 1.0
        self._fs[fk.F_DRIFT_V] = 1.0
        self._cell_rng: np.random.Generator | None = None
        self._cell_noise = np.zeros(0)
        self._meas = np.zeros(0)
        self._ring = np.zeros(1)
        self._ev_i = np.zeros((fk.EV_CAP, 3), dtype=np.int64)
        self._ev_f = np.zeros((fk.EV_CAP, 3))
        if self._noise_rng is not None:
            # stationary start of the AR(1) state (drawn before the per-tick innovations)
            self._fs[fk.F_AR] = self._noise_rng.standard_normal()
        self.set_noise(noise_rsd)
        if hopper is not None:
            m0 = hopper.start_mass
            self._lot_mass[self._is[fk.I_LOT]] = m0
            if m0 > 0.0:
                self._fifo_lot[0] = self._is[fk.I_LOT]
                self._fifo_mass[0] = m0
                self._is[fk.I_COUNT] = 1
        self.initial_hopper_mass = self.hopper_mass
        self._charged = np.zeros(len(self._lots))
        if n_ticks:
            self._ensure_noise(int(n_ticks))

    # ------------------------------------------------------------------ helpers
    def _lot_index(self, lot: str) -> int:
        try:
            return self._lots.index(str(lot))
        except ValueError:
            raise ParameterError("lot", lot, f"must be one of the channel map's lots of "
                                 f"{self.material!r}: {self._lots}") from None

    def _ensure_noise(self, upto: int) -> None:
        if self._noise_rng is None:
            return
        while self._noise.size < upto:
            self._noise = np.concatenate([self._noise,
                                          self._noise_rng.standard_normal(self._block)])

    def _ensure_cell(self, upto: int) -> None:
        while self._meas.size < upto:
            self._meas = np.concatenate([self._meas, np.full(self._block, np.nan)])
        while self._cell_noise.size < upto:
            block = (self._cell_rng.standard_normal(self._block) if self._cell_rng is not None
                     else np.zeros(self._block))
            self._cell_noise = np.concatenate([self._cell_noise, block])

    def _time(self, tick: int) -> float:
        return tick * self.dt

    # ------------------------------------------------------------------ state views
    @property
    def mass_flow(self) -> float:
        """Current set point [kg/s]."""
        return float(self._fs[fk.F_SP])

    @property
    def lot(self) -> str:
        """Lot currently assigned to the feeder (charged by the next refill)."""
        return self._lots[int(self._is[fk.I_LOT])]

    @property
    def running(self) -> bool:
        """False while stopped."""
        return bool(self._is[fk.I_RUNNING])

    @property
    def mode(self) -> str:
        """``"gravimetric"``, ``"refill"``, ``"settling"`` or ``"volumetric"`` (stuck)."""
        r = int(self._is[fk.I_REFILL])
        if r == 1:
            return "refill"
        if r == 2:
            return "settling"
        return "volumetric" if self._is[fk.I_STUCK] else "gravimetric"

    @property
    def hopper_mass(self) -> float:
        """Hopper contents [kg] (0 without a hopper)."""
        return float(self._lot_mass.sum())

    @property
    def hopper_lot_masses(self) -> dict[str, float]:
        """Hopper contents per lot [kg]."""
        return {lot: float(m) for lot, m in zip(self._lots, self._lot_mass, strict=True)}

    @property
    def lots(self) -> tuple[str, ...]:
        """Lots of the feeder's material in channel order."""
        return self._lots

    @property
    def fed(self) -> np.ndarray:
        """Cumulative discharged mass per stream channel, shape (n_channels,) [kg].

        Zero outside the rows of the feeder's material; summing over feeders gives the line's
        fed mass per (material, lot).
        """
        f = np.zeros(self.channel_map.n_channels)
        f[self.rows] = self._fed
        return f

    @property
    def charged(self) -> np.ndarray:
        """Cumulative mass charged into the hopper by refills per channel, (n_channels,) [kg]."""
        c = np.zeros(self.channel_map.n_channels)
        c[self.rows] = self._charged
        return c

    @property
    def fed_by_lot(self) -> dict[str, float]:
        """Cumulative discharged mass per lot [kg]."""
        return {lot: float(m) for lot, m in zip(self._lots, self._fed, strict=True)}

    @property
    def charged_by_lot(self) -> dict[str, float]:
        """Cumulative mass charged per lot [kg]."""
        return {lot: float(m) for lot, m in zip(self._lots, self._charged, strict=True)}

    @property
    def total_charged(self) -> float:
        """Total mass charged by refills so far [kg]."""
        return float(self._charged.sum())

    # ------------------------------------------------------------------ streaming
    def step(self, out: np.ndarray, k0: int) -> None:
        """Add the feeder's flows for ticks ``k0 .. k0+n-1`` into ``out``.

        Parameters
        ----------
        out : ndarray, shape (n_channels, n)
            Stream chunk [kg/s]; the feeder's channels are *incremented*.
        k0 : int
            First tick; must equal the feeder's own tick counter :attr:`k`.

        Raises
        ------
        cmsim.errors.SimulationError
            If ``k0`` is not the next tick of this feeder.
        """
        if out.ndim != 2 or out.shape[0] != self.channel_map.n_channels or \
                out.dtype != np.float64:
            raise ParameterError("out", f"array of shape {out.shape}, dtype {out.dtype}",
                                 f"must be float64 of shape ({self.channel_map.n_channels}, n)")
        if int(k0) != self.k:
            raise SimulationError(f"feeder {self.name!r}: step(k0={k0}) but the next tick is "
                                  f"{self.k} (chunks must be contiguous)")
        n = out.shape[1]
        if n == 0:
            return
        if self._noise_rng is None:
            noise = np.zeros(n)
            base = 0
        else:
            self._ensure_noise(self.k + n)
            noise = self._noise
            base = self.k
        if self._pr[fk.P_CELL]:
            self._ensure_cell(self.k + n)
            cell_noise, meas = self._cell_noise, self._meas
        else:
            cell_noise = meas = noise  # not touched by the kernel without a load cell
        done = 0
        while done < n:
            k = self.k
            ticks, n_ev = fk.feeder_kernel(
                out[:, done:], self.rows, noise[base + done: base + n], self._fs, self._is,
                self._pr, self._lot_mass, self._fifo_lot, self._fifo_mass, self._fed,
                self._charged, k, self._ev_i, self._ev_f, cell_noise[k: k + n - done],
                self._ring, meas[k: k + n - done])
            self._record_events(n_ev)
            self.k += ticks
            done += ticks

    def _record_events(self, n_ev: int) -> None:
        for (tick, code, lot), (a, b, c) in zip(self._ev_i[:n_ev].tolist(),
                                                self._ev_f[:n_ev].tolist(), strict=True):
            data: dict[str, Any] = {"feeder": self.name, "material": self.material,
                                    "lot": self._lots[lot]}
            if code == fk.EV_REFILL_START:
                data.update(hopper_mass_kg=a, target_mass_kg=b, refill_rate_kg_s=c,
                            scheduled=False)
            elif code == fk.EV_REFILL_END:
                data.update(charged_kg=a, hopper_mass_kg=b)
            elif code == fk.EV_EMPTY:
                data.update(demanded_kg_s=a, delivered_kg_s=b)
            self.events.append({"time_s": self._time(tick), "type": _EVENT_NAMES[code],
                                "data": data})

    # ------------------------------------------------------------------ scheduled events
    def set_mass_flow(self, mass_flow: float) -> None:
        """Change the set point [kg/s] from the current tick on.

        In volumetric mode the (open-loop) screw speed is rescaled in proportion. With the PI
        loop in gravimetric mode the feed-forward part of the screw speed follows at once.
        """
        new = v.non_negative("mass_flow", mass_flow)
        fs = self._fs
        old = fs[fk.F_SP]
        volumetric = bool(self._is[fk.I_STUCK] or self._is[fk.I_REFILL])
        # scaled as (x / old) * new: x is proportional to old, so the ratio stays near 1
        # even for a subnormal old set point, where new / old would overflow
        if self.control == "pi":
            if volumetric:
                fs[fk.F_SPEED] = fs[fk.F_SPEED] / old * new if old > 0 else new / fs[fk.F_FFHAT]
            else:
                fs[fk.F_SP] = new
                self._apply_speed()
        elif volumetric:
            fs[fk.F_FROZEN] = fs[fk.F_FROZEN] / old * new if old > 0 else new
        fs[fk.F_SP] = new

    def _apply_speed(self) -> None:
        fs = self._fs
        n_ff = fs[fk.F_SP] / fs[fk.F_FFHAT]
        speed = min(max(n_ff + fs[fk.F_NPI], 0.0), self._pr[fk.P_NMAX])
        fs[fk.F_NPI] = speed - n_ff
        fs[fk.F_SPEED] = speed

    def stop(self) -> None:
        """Stop the screw: zero flow until :meth:`start`."""
        self._is[fk.I_RUNNING] = 0

    def start(self) -> None:
        """Restart the screw after :meth:`stop` (the load-cell window restarts empty)."""
        if not self._is[fk.I_RUNNING]:
            self._is[fk.I_CELL_N] = 0
        self._is[fk.I_RUNNING] = 1

    # ------------------------------------------------------------------ control
    @property
    def control(self) -> str:
        """Gravimetric loop model: ``"ideal"`` (default) or ``"pi"``."""
        return "pi" if self._pr[fk.P_CTRL] == 1.0 else "ideal"

    @property
    def screw_speed(self) -> float:
        """Screw speed N [rev/s] (PI mode; NaN with the ideal loop)."""
        return float(self._fs[fk.F_SPEED]) if self.control == "pi" else float("nan")

    @property
    def feed_factor_estimate(self) -> float:
        """Feed-forward feed factor estimate [kg/rev] (PI mode; NaN with the ideal loop)."""
        return float(self._fs[fk.F_FFHAT]) if self.control == "pi" else float("nan")

    @property
    def load_cell_window(self) -> float:
        """Regression window of the load-cell flow estimate [s] (0 without a load cell)."""
        return float(self._pr[fk.P_WINDOW] * self.dt) if self._pr[fk.P_CELL] else 0.0

    @property
    def measured_flow(self) -> np.ndarray:
        """Load-cell flow estimate after each computed tick, shape (k,) [kg/s].

        Entry ``i`` is the estimate available at the end of tick ``i`` (minus the slope of the
        last ``window`` readings, held during refills). Requires :meth:`enable_load_cell` or
        :meth:`set_control`.
        """
        if not self._pr[fk.P_CELL]:
            raise ParameterError("load_cell", None, f"feeder {self.name!r} has no load cell "
                                 "(call enable_load_cell or set_control first)")
        return self._meas[:self.k]

    def enable_load_cell(self, noise_sd: float = 0.0, window: float = 5.0) -> None:
        """Simulate the load cell and its flow estimate (before the first :meth:`step`).

        Parameters
        ----------
        noise_sd : float
            Noise of one reading (one per tick), 1 sigma [kg].
        window : float
            Regression window [s]; rounded to ``round(window / dt)`` ticks, at least 2.

        Notes
        -----
        The readings before tick 0 are taken as a noise-free steady discharge at the set point
        (a line that was running), so the estimate is valid from the first tick. The reading
        noise comes from a child of the feeder's private generator: it does not change the flow
        noise.
        """
        if self.k != 0:
            raise ParameterError("enable_load_cell", self.k, "must be called before the "
                                 "first step (tick 0)")
        sd = v.non_negative("load_cell_noise", noise_sd)
        n_win = round(v.positive("window", window) / self.dt)
        if n_win < 2:
            raise ParameterError("window", window, f"must span >= 2 ticks (dt = {self.dt} s)")
        if sd > 0.0:
            if self._noise_rng is None:
                raise ParameterError("rng", None,
                                     "a numpy Generator is required when load_cell_noise > 0")
            if self._cell_rng is None:
                self._cell_rng = self._noise_rng.spawn(1)[0]
        pr, fs, ist = self._pr, self._fs, self._is
        pr[fk.P_CELL] = 1.0
        pr[fk.P_WINDOW] = n_win
        fs[fk.F_CELL_SD] = sd
        fs[fk.F_CELLW] = self.hopper_mass
        sp = fs[fk.F_SP]
        self._ring = fs[fk.F_CELLW] + (n_win - 1 - np.arange(n_win)) * sp * self.dt
        ist[fk.I_CELL_POS] = 0
        ist[fk.I_CELL_N] = n_win
        # the running sums of a long window (the kernel's own exact sums)
        fs[fk.F_CELL_S], fs[fk.F_CELL_T] = fk.window_sums(self._ring, 0, n_win)
        ist[fk.I_CELL_SINCE] = 0
        fs[fk.F_MEAS] = sp
        self._cell_noise = np.zeros(0)
        self._meas = np.zeros(0)

    def set_control(self, mode: str = "pi", *, gain: float = 0.3, integral_time: float = 1.0,
                    period: float | None = None, window: float = 5.0,
                    load_cell_noise: float = 0.0, nominal_speed: float = 1.0,
                    max_speed: float | None = None, adapt_time: float = 0.0) -> None:
        """Choose the gravimetric loop model (before the first :meth:`step`).

        Parameters
        ----------
        mode : {"pi", "ideal"}
            ``"pi"``: physical screw with the PI loop described in the module docstring;
            ``"ideal"``: delivered flow = set point x (1 + noise) (the default model).
        gain : float
            ``Kc``, PI gain on the flow error relative to the feed factor [-] (> 0).
        integral_time : float
            ``Ti`` [s] (> 0).
        period : float, optional
            Controller update period [s], a whole number of ticks (default ``dt``).
        window : float
            Load-cell regression window [s] (:meth:`enable_load_cell`).
        load_cell_noise : float
            Reading noise, 1 sigma [kg].
        nominal_speed : float
            Screw speed at the initial set point [rev/s]; sets ``f_f0 = set_point /
            nominal_speed`` [kg/rev], also the initial feed-forward estimate.
        max_speed : float, optional
            Upper clamp of the screw speed [rev/s] (default ``3 * nominal_speed``).
        adapt_time : float
            Time constant of the feed-forward feed-factor adaptation [s] (0: no adaptation).
        """
        if self.k != 0:
            raise ParameterError("set_control", self.k, "must be called before the first "
                                 "step (tick 0)")
        if mode == "ideal":
            self._pr[fk.P_CTRL] = 0.0
            return
        if mode != "pi":
            raise ParameterError("mode", mode, "must be 'pi' or 'ideal'")
        pr, fs = self._pr, self._fs
        kc = v.positive("gain", gain)
        ti = v.positive("integral_time", integral_time)
        t_ctrl = self.dt if period is None else v.positive("period", period)
        n_per = round(t_ctrl / self.dt)
        if n_per < 1 or abs(n_per * self.dt - t_ctrl) > 1e-9 * max(1.0, t_ctrl):
            raise ParameterError("period", period, f"must be a whole number (>= 1) of ticks "
                                 f"(dt = {self.dt} s)")
        n0 = v.positive("nominal_speed", nominal_speed)
        n_max = 3.0 * n0 if max_speed is None else v.positive("max_speed", max_speed)
        sp = fs[fk.F_SP]
        if sp <= 0.0:
            raise ParameterError("mass_flow", sp, "must be > 0 to size the PI feeder's screw")
        if n_max < n0:
            raise ParameterError("max_speed", max_speed,
                                 f"must be >= nominal_speed = {n0}")
        self.enable_load_cell(load_cell_noise, window)
        pr[fk.P_CTRL] = 1.0
        pr[fk.P_KC] = kc
        pr[fk.P_TI] = ti
        pr[fk.P_PERIOD] = n_per
        pr[fk.P_NMAX] = n_max
        pr[fk.P_ADAPT] = v.non_negative("adapt_time", adapt_time)
        fs[fk.F_FF0] = sp / n0
        fs[fk.F_FFHAT] = sp / n0
        fs[fk.F_NPI] = 0.0
        fs[fk.F_EPREV] = 0.0
        fs[fk.F_SPEED] = n0

    def scale_feed_factor(self, factor: float) -> None:
        """Step the true feed factor by ``factor`` [-] (e.g. 0.9 for -10 %) from now on.

        With the ideal loop the step reaches the flow only in volumetric mode; with the PI loop
        it reaches it until the loop has corrected the screw speed.
        """
        f = v.positive("factor", factor)
        self._fs[fk.F_DRIFT] *= f

    def set_noise(self, rsd: float, correlation_time: float | None = None) -> None:
        """Set the relative standard deviation [-] (and optionally correlation time [s])."""
        rsd = v.non_negative("noise_rsd", rsd)
        if rsd > 0.0 and self._noise_rng is None:
            raise ParameterError("rng", None, "a numpy Generator is required when noise_rsd > 0")
        if correlation_time is not None:
            self.noise_correlation_time = v.positive("noise_correlation_time",
                                                     correlation_time)
            self._pr[fk.P_PHI] = np.exp(-self.dt / self.noise_correlation_time)
        self._fs[fk.F_RSD] = rsd

    def set_drift(self, rate_per_s: float, volumetric: bool = False) -> None:
        """Start a linear feed-factor drift [1/s] (e.g. -2 %/h = -0.02/3600).

        In gravimetric mode the loop compensates the drift; it reaches the flow only while the
        feeder is volumetric. ``volumetric=True`` freezes the screw now (stuck in volumetric
        mode) so the drift passes through until :meth:`set_gravimetric`.
        """
        self._fs[fk.F_DRIFT_RATE] = v._real("rate_per_s", rate_per_s)
        if volumetric and not self._is[fk.I_STUCK]:
            self._is[fk.I_STUCK] = 1
            if not self._is[fk.I_REFILL]:
                self._freeze()

    def set_gravimetric(self) -> None:
        """Leave a stuck volumetric mode (gravimetric control resumes)."""
        self._is[fk.I_STUCK] = 0

    def _freeze(self) -> None:
        fs = self._fs
        fs[fk.F_FROZEN] = fs[fk.F_SP]
        m = self.hopper_mass
        fs[fk.F_LEVEL_V] = (1.0 if self.hopper is None else
                            1.0 + self.hopper.level_coefficient
                            * (m / self.hopper.capacity - self.hopper.level_ref))
        fs[fk.F_DRIFT_V] = fs[fk.F_DRIFT]

    def set_lot(self, lot: str) -> None:
        """Assign ``lot`` to the feeder: charged by the next refill (or, without a hopper,
        discharged from now on)."""
        self._is[fk.I_LOT] = self._lot_index(lot)

    def refill(self, lot: str, mass: float | None = None, duration: float | None = None) -> None:
        """Start a scheduled refill charging ``lot`` (this is how lot changes happen).

        Parameters
        ----------
        lot : str
            Lot charged (becomes the feeder's current lot).
        mass : float, optional
            Mass to charge [kg]; default: until the hopper holds ``refill_high * capacity``.
            The hopper is never filled above its capacity (the refill then ends early and
            charges less; ``refill_end`` reports the mass charged).
        duration : float, optional
            Refill duration [s] (sets the rate ``mass / duration``; without ``mass`` the rate is
            computed from the mass missing now); default: the hopper's ``refill_rate``.

        Without a hopper this only changes the lot.
        """
        idx = self._lot_index(lot)
        if self.hopper is None:
            self._is[fk.I_LOT] = idx
            return
        m_now = self.hopper_mass
        cap = self.hopper.capacity
        if mass is None:
            target = self.hopper.refill_high * cap
            limit = np.inf
            to_charge = max(0.0, target - m_now)
        else:
            limit = to_charge = v.non_negative("mass", mass)
            target = cap  # never above the capacity
        rate = self.hopper.refill_rate
        if duration is not None:
            dur = v.positive("duration", duration)
            rate = to_charge / dur if to_charge > 0 else rate
        if self._is[fk.I_REFILL] == 1:
            self.events.append({"time_s": self._time(self.k), "type": "refill_end", "data": {
                "feeder": self.name, "material": self.material, "lot": self.lot,
                "charged_kg": float(self._fs[fk.F_CHARGED]), "hopper_mass_kg": m_now,
                "interrupted": True}})
        elif self._is[fk.I_REFILL] == 0 and not self._is[fk.I_STUCK]:
            self._freeze()
        if self._is[fk.I_REFILL] != 1:
            self._fs[fk.F_SURGE_K] = self.k
        self._is[fk.I_LOT] = idx
        self._is[fk.I_REFILL] = 1
        self._fs[fk.F_TARGET] = target
        self._fs[fk.F_LIMIT] = limit
        self._fs[fk.F_RATE] = rate
        self._fs[fk.F_CHARGED] = 0.0
        self.events.append({"time_s": self._time(self.k), "type": "refill_start", "data": {
            "feeder": self.name, "material": self.material, "lot": self.lot,
            "hopper_mass_kg": m_now, "target_mass_kg": target, "refill_rate_kg_s": rate,
            "scheduled": True}})
