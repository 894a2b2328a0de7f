"""Tablet press: transfer (chute / press hopper) stage + feed-frame stage, tablets, stop/start.

Flow path: inflow -> stop buffer -> transfer RTD stage -> feed-frame RTD stage -> dies.

Stop/start model (mass-conserving, kept simple on purpose): while the press is stopped, the
turret makes no tablets and nothing moves inside the press: the RTD stages are frozen (not
stepped) and all material arriving from upstream accumulates in a well-mixed **stop buffer**
(the press hopper above the chute). When the press restarts, the turret runs faster than the
inflow until the buffer is empty: the buffer is released into the transfer stage at
``release_rate`` [kg/s] on top of the inflow, with the buffer's channel composition. The default
release rate is ``restart_boost`` (10 %) times the mean inflow during the stop, so a 1-min stop is
worked off in about 10 min. Whether upstream keeps feeding during a stop is the line's choice (it
may also stop the feeders); the press conserves mass either way:
``in = out + d(holdup)``, ``holdup = transfer + feed frame + buffer``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cmsim import _validate as v
from cmsim.errors import ParameterError
from cmsim.unitops.stage import RTDStage

__all__ = ["TabletPress"]


class TabletPress:
    """Tablet press with transfer and feed-frame RTDs.

    Parameters
    ----------
    transfer_rtd, feed_frame_rtd : cmsim.rtd.RTDModel
        RTDs of the transfer (chute / press hopper) and of the feed frame.
    tablet_mass : float
        Target tablet mass [kg].
    dt : float
        Tick length [s].
    n_channels : int
        Channels of the stream.
    gate_delay : float
        Diverter actuation delay [s] (used by the line's gate logic; stored here).
    release_rate : float, optional
        Extra flow [kg/s] from the stop buffer after a restart; default ``restart_boost`` x
        mean inflow during the stop.
    restart_boost : float
        Default release rate as a fraction of the mean inflow during the stop [-].
    tail : float
        FIR truncation level [-] (see :class:`RTDStage`).
    """

    def __init__(self, transfer_rtd: Any, feed_frame_rtd: Any, tablet_mass: float, dt: float,
                 n_channels: int, *, gate_delay: float = 0.5, release_rate: float | None = None,
                 restart_boost: float = 0.1, tail: float = 1e-12) -> None:
        self.transfer = RTDStage(transfer_rtd, dt, n_channels, tail=tail)
        self.feed_frame = RTDStage(feed_frame_rtd, dt, n_channels, tail=tail)
        self.dt = self.transfer.dt
        self.n_channels = self.transfer.n_channels
        self.tablet_mass = v.positive("tablet_mass", tablet_mass)
        self.gate_delay = v.non_negative("gate_delay", gate_delay)
        self.release_rate = None if release_rate is None else v.positive("release_rate",
                                                                          release_rate)
        self.restart_boost = v.positive("restart_boost", restart_boost)
        self.running = True
        self.buffer = np.zeros(self.n_channels)
        """Material held in the stop buffer per channel [kg]."""
        self._stop_inflow = 0.0
        self._stop_ticks = 0
        self._rate = 0.0

    # ------------------------------------------------------------------ properties
    @property
    def holdup(self) -> np.ndarray:
        """Mass inside the press per channel (buffer + transfer + feed frame) [kg]."""
        return self.buffer + self.transfer.holdup + self.feed_frame.holdup

    @property
    def n_dispersive(self) -> int:
        """Dispersive elements of transfer + feed frame (half-tick time-stamp shifts)."""
        return self.transfer.n_dispersive + self.feed_frame.n_dispersive

    @property
    def mean_delay_ticks(self) -> float:
        """Index-mean delay of transfer + feed frame [ticks]."""
        return self.transfer.mean_delay_ticks + self.feed_frame.mean_delay_ticks

    # ------------------------------------------------------------------ events
    def stop(self) -> None:
        """Stop the turret: no tablets; inflow accumulates in the stop buffer."""
        if self.running:
            self.running = False
            self._stop_inflow = 0.0
            self._stop_ticks = 0

    def start(self) -> None:
        """Restart the turret; the stop buffer is worked off at the release rate."""
        if not self.running:
            self.running = True
            if self.release_rate is not None:
                self._rate = self.release_rate
            elif self._stop_ticks > 0 and self._stop_inflow > 0.0:
                self._rate = self.restart_boost * self._stop_inflow / (self._stop_ticks * self.dt)
            # else nothing arrived during this stop (it lasted no tick, or upstream was
            # stopped too): a buffer left from an earlier stop keeps its release rate

    # ------------------------------------------------------------------ streaming
    def step(self, inflow: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Advance one chunk.

        Parameters
        ----------
        inflow : ndarray, shape (n_channels, n)
            Flow arriving at the press [kg/s].
        out : ndarray, shape (n_channels, n), optional
            C-contiguous float64 array that receives the outflow; it may be ``inflow`` itself
            (read in full before ``out`` is written).

        Returns
        -------
        ndarray, shape (n_channels, n)
            Flow compressed at the dies [kg/s] (zero while stopped; ``out`` when given).
        """
        x = np.asarray(inflow, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] != self.n_channels:
            raise ParameterError("inflow", f"array of shape {x.shape}",
                                 f"must have shape ({self.n_channels}, n)")
        n = x.shape[1]
        if not self.running:
            mass = x.sum(axis=1) * self.dt
            self.buffer += mass
            self._stop_inflow += float(mass.sum())
            self._stop_ticks += n
            if out is None:
                return np.zeros_like(x)
            out[...] = 0.0
            return out
        feed = x
        total = float(self.buffer.sum())
        if total > 0.0 and n > 0:
            if self._rate <= 0.0:
                raise ParameterError("release_rate", self._rate,
                                     "must be > 0 to empty the press stop buffer")
            feed = np.array(x, dtype=np.float64, copy=True)
            per_tick = self._rate * self.dt
            full = int(min(n, total // per_tick))
            released = np.full(full, per_tick)
            if full < n:
                released = np.append(released, total - full * per_tick)
            comp = self.buffer / total
            m = released.size
            feed[:, :m] += comp[:, None] * (released / self.dt)[None, :]
            if m < n or full * per_tick >= total:
                self.buffer[:] = 0.0  # emptied within this chunk (last tick takes the rest)
            else:
                self.buffer -= comp * float(released.sum())
                np.maximum(self.buffer, 0.0, out=self.buffer)
        # the transfer stage reads all of the feed before the feed frame writes ``out``
        return self.feed_frame.step(self.transfer.step(feed), out)

    def tablets(self, outflow: np.ndarray) -> np.ndarray:
        """Tablets formed per tick (float) = total mass flow x dt / tablet_mass [-]."""
        y = np.asarray(outflow, dtype=np.float64)
        return y.sum(axis=0) * (self.dt / self.tablet_mass)

    def reset(self, steady_inflow: Any = None) -> None:
        """Empty the press (or set transfer and feed frame at steady state); clears the buffer."""
        self.transfer.reset(steady_inflow)
        self.feed_frame.reset(steady_inflow)
        self.buffer[:] = 0.0
        self.running = True
