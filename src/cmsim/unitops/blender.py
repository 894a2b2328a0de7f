"""Continuous blender: an RTD stage with an impeller-speed law.

With a CSTR or integer tanks-in-series RTD (optionally in series with plug-flow delays) the
blender is the compartment (mass-state) model of docs/rtd.md: ``set_speed(rpm)`` sets the
tanks' mean residence time ``tau = tau_ref (rpm / rpm_ref)^(-beta)`` while keeping the tank
masses, so the hold-up relaxes towards ``tau x flow`` (a transient outflow surge when speeding up,
a deficit when slowing down). Plug-flow delays are left unchanged. Other RTDs (non-integer n,
axial dispersion, empirical) are convolution stages with a fixed hold-up and do not support speed
changes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cmsim import _validate as v
from cmsim.errors import ParameterError
from cmsim.unitops.stage import SPEED_CAPABLE_MODELS, RTDStage

__all__ = ["ContinuousBlender"]


class ContinuousBlender:
    """Continuous blender (RTD stage + speed law).

    Parameters
    ----------
    rtd_model : cmsim.rtd.RTDModel
        Blender RTD at the reference speed.
    dt : float
        Tick length [s].
    n_channels : int
        Channels of the stream.
    speed : float, optional
        Reference impeller speed [rpm] at which ``rtd_model`` holds; needed for
        :meth:`set_speed`.
    speed_exponent : float
        ``beta`` in ``tau = tau_ref (rpm/rpm_ref)^(-beta)`` [-].
    tail : float
        FIR truncation level [-] (see :class:`RTDStage`).

    Notes
    -----
    The blender starts empty (start-up from an empty blender); call ``reset(steady_inflow)``
    to start at steady state.
    """

    def __init__(self, rtd_model: Any, dt: float, n_channels: int, *, speed: float | None = None,
                 speed_exponent: float = 0.5, tail: float = 1e-12) -> None:
        self.stage = RTDStage(rtd_model, dt, n_channels, tail=tail)
        self.dt = self.stage.dt
        self.n_channels = self.stage.n_channels
        self.speed_ref = None if speed is None else v.positive("speed", speed)
        self.speed = self.speed_ref
        self.speed_exponent = v.non_negative("speed_exponent", speed_exponent)
        self.tau_ref = self.stage.tis_mean_residence_time

    @property
    def holdup(self) -> np.ndarray:
        """Mass inside the blender per channel [kg]."""
        return self.stage.holdup

    @property
    def model(self) -> Any:
        """Current RTD model (after speed changes)."""
        return self.stage.model

    @property
    def n_dispersive(self) -> int:
        """Dispersive elements (half-tick time-stamp shifts), see :class:`RTDStage`."""
        return self.stage.n_dispersive

    @property
    def mean_delay_ticks(self) -> float:
        """Index-mean delay of the current RTD [ticks]."""
        return self.stage.mean_delay_ticks

    def step(self, inflow: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Advance one chunk: inflow ``(n_channels, n)`` [kg/s] -> outflow [kg/s] (written into
        ``out`` when given, see :meth:`RTDStage.step`)."""
        return self.stage.step(inflow, out)

    def reset(self, steady_inflow: Any = None) -> None:
        """Empty the blender (start-up) or set it to steady state for a constant inflow [kg/s]."""
        self.stage.reset(steady_inflow)

    def tau_at(self, speed: float) -> float:
        """Tanks' mean residence time at impeller speed ``speed`` [rpm] -> [s]."""
        self._check_speed_capable()
        rpm = v.positive("speed", speed)
        assert self.speed_ref is not None and self.tau_ref is not None
        return self.tau_ref * (rpm / self.speed_ref) ** (-self.speed_exponent)

    def _check_speed_capable(self) -> None:
        if self.speed_ref is None:
            raise ParameterError("speed", None,
                                 "a reference speed [rpm] must be given at construction to "
                                 "change the blender speed")
        if not self.stage.supports_residence_time_change:
            raise ParameterError(
                "rtd_model", self.stage.model,
                f"impeller-speed changes are supported only for {SPEED_CAPABLE_MODELS} "
                "(optionally in series with plug-flow delays)")

    def set_speed(self, speed: float) -> None:
        """Change the impeller speed [rpm]; the tank masses are kept (mass-state model)."""
        tau = self.tau_at(speed)
        self.stage.set_mean_residence_time(tau)
        self.speed = float(speed)
