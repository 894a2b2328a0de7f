"""Streaming multi-channel RTD stage built from a :mod:`cmsim.rtd` model.

The stage picks the streaming form from the model:

* ``CSTR`` or ``TanksInSeries`` with an integer ``n <= 200`` ->
  :class:`cmsim.rtd.TanksInSeriesFilter` (exact zero-order hold of the tank chain, mass-state
  form: supports :meth:`RTDStage.set_mean_residence_time`);
* ``PFR`` -> :class:`cmsim.rtd.PlugFlowDelay` of ``round(delay / dt)`` ticks (the applied delay is
  :attr:`RTDStage.delays_applied`; a pure shift adds no half-tick);
* ``Series`` -> a chain of the above; all PFR delays are merged into one shift at the inlet
  (the elements are linear and time-invariant, so they commute: same outflow, same total
  hold-up, and the delay is rounded to ticks once);
* anything else (non-integer ``n``, more than 200 tanks, axial dispersion, empirical) ->
  :class:`cmsim.rtd.Convolver`
  with the bin kernel ``w[j] = F((j+1) dt) - F(j dt)`` cut where ``1 - F < tail`` and
  **renormalised** to sum exactly to 1 (mass conservation); the discarded mass is recorded in
  :attr:`RTDStage.renormalised_mass`.

Every element acts identically on every channel (row) of a chunk ``(n_channels, n)``.
Time convention (design.md): output ``y[k]`` is the outflow for input ticks ``<= k``; each
dispersive (non-shift) element adds half a tick to the time stamp, counted by
:attr:`RTDStage.n_dispersive` so the line can compensate.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cmsim import _validate as v
from cmsim import rtd
from cmsim.errors import ParameterError
from cmsim.rtd.filters import MAX_RECURSIVE_TANKS

__all__ = ["MAX_RECURSIVE_TANKS", "SPEED_CAPABLE_MODELS", "RTDStage", "alignment_shift",
           "chain_shift", "speed_capable"]

#: RTD models whose stage supports a mean-residence-time change (mass-state form).
SPEED_CAPABLE_MODELS = ("CSTR", f"TanksInSeries with integer n_tanks <= {MAX_RECURSIVE_TANKS}")


def _integer_n(n: float) -> int | None:
    r = round(n)
    if r >= 1 and abs(n - r) <= 1e-12 * max(1.0, n):
        return int(r)
    return None


def alignment_shift(n_dispersive_stages: int) -> int:
    """Integer gate shift [ticks] compensating ``S`` bin-kernel stages (:mod:`cmsim.line`).

    Parameters
    ----------
    n_dispersive_stages : int
        Number ``S`` of dispersive stages realised by bin kernels / their recursive filters.

    Returns
    -------
    int
        ``floor(S/2 + 1/2)``.

    Examples
    --------
    >>> [alignment_shift(s) for s in range(5)]
    [0, 1, 1, 2, 2]
    """
    s = int(n_dispersive_stages)
    if s < 0:
        raise ParameterError("n_dispersive_stages", n_dispersive_stages, "must be >= 0")
    return (s + 1) // 2


def chain_shift(models: Any, dt: float) -> int:
    """:func:`alignment_shift` of a chain of stages of ``models`` at tick ``dt`` [s] [ticks]
    (what a line of these stages puts in front of its gate)."""
    return alignment_shift(sum(RTDStage(m, dt, 1).n_dispersive for m in models))


def _tanks(model: Any) -> int | None:
    """Tanks of the mass-state form of ``model`` (a CSTR or integer tanks in series), else
    None."""
    if isinstance(model, rtd.CSTR):
        return 1
    if isinstance(model, rtd.TanksInSeries):
        n = _integer_n(model.n)
        return n if n is not None and n <= MAX_RECURSIVE_TANKS else None
    return None


def speed_capable(model: Any) -> bool:
    """Whether a stage of ``model`` can change its mean residence time (a blender speed
    change): exactly one CSTR or integer tanks-in-series element, in series with anything
    else (plug-flow delays, tabulated or dispersion models, which keep their times)."""
    stages = list(model.stages) if isinstance(model, rtd.Series) else [model]
    return sum(1 for m in stages if _tanks(m) is not None) == 1


class _FilterElement:
    """Stage element that streams through one :mod:`cmsim.rtd` filter ``f``."""

    f: Any

    def step(self, x: np.ndarray, out: np.ndarray) -> None:
        self.f.step(x, out=out)

    def holdup(self) -> np.ndarray:
        return self.f.holdup

    def reset(self, u: np.ndarray | None) -> None:
        self.f.reset(u)


class _TIS(_FilterElement):
    kind = "tis"
    dispersive = True

    def __init__(self, tau: float, n: int, dt: float, rows: int) -> None:
        self.n = n
        self.tau = tau
        self.f = rtd.TanksInSeriesFilter(tau, n, dt, batch=rows)

    def model(self) -> Any:
        return rtd.CSTR(self.tau) if self.n == 1 else rtd.TanksInSeries(self.tau, self.n)

    def mean_delay_ticks(self, dt: float) -> float:
        # index mean of the bin kernel: sum_j j w[j] = sum_{m>=1} (1 - F(m dt))
        m = self.model()
        t_end = float(m.quantile(1.0 - 1e-15)) if hasattr(m, "quantile") else 50 * self.tau
        grid = np.arange(1, int(math.ceil(t_end / dt)) + 2) * dt
        return math.fsum(m.sf(grid))


class _Shift(_FilterElement):
    kind = "pfr"
    dispersive = False

    def __init__(self, delay: float, dt: float, rows: int) -> None:
        self.requested = delay
        self.f = rtd.PlugFlowDelay(delay, dt, batch=rows, allow_rounding=True)

    def model(self) -> Any:
        return rtd.PFR(self.f.delay)

    def mean_delay_ticks(self, dt: float) -> float:
        return float(self.f.ticks)


class _FIR:
    kind = "fir"
    dispersive = True

    def __init__(self, model: Any, dt: float, rows: int, tail: float) -> None:
        self._model = model
        self.dt = dt
        self.rows = rows
        k = np.asarray(model.kernel(dt, tail), dtype=np.float64)
        total = math.fsum(k)
        if not total > 0.0:
            raise ParameterError("model", model, f"kernel at dt={dt} has no mass")
        self.renormalised_mass = 1.0 - total
        self.w = k / total
        self.w.setflags(write=False)
        self._new()

    def _new(self) -> None:
        self.c = rtd.Convolver(self.w, batch=self.rows)
        self._hold = np.zeros(self.rows)

    def model(self) -> Any:
        return self._model

    def step(self, x: np.ndarray, out: np.ndarray) -> None:
        y = self.c.step(x)
        out[...] = y
        self._hold += self.dt * (x.sum(axis=1) - y.sum(axis=1))

    def holdup(self) -> np.ndarray:
        return self._hold.copy()

    def reset(self, u: np.ndarray | None) -> None:
        self._new()
        if u is not None and self.w.size > 1:
            prime = np.repeat(u[:, None], self.w.size - 1, axis=1)
            out = np.empty_like(prime)
            self.step(prime, out)

    def mean_delay_ticks(self, dt: float) -> float:
        return float(np.dot(np.arange(self.w.size), self.w))


class RTDStage:
    """Streaming multi-channel RTD stage.

    Parameters
    ----------
    model : cmsim.rtd.RTDModel
        Residence-time distribution of the stage.
    dt : float
        Tick length [s].
    n_channels : int
        Rows of the chunks (channels of the stream).
    tail : float, optional
        Truncation level ``1 - F`` of FIR kernels [-] (default 1e-12, below the lot-genealogy
        threshold 1e-6 of docs/genealogy.md).

    Attributes
    ----------
    renormalised_mass : float
        Total probability mass discarded (and redistributed by renormalisation) by the FIR
        elements [-] (0 for purely recursive stages).
    delays_applied : tuple of float
        Delay actually applied by each plug-flow element [s] (``round(delay/dt) * dt``).
    """

    def __init__(self, model: Any, dt: float, n_channels: int, *, tail: float = 1e-12) -> None:
        self.dt = v.positive("dt", dt)
        if isinstance(n_channels, bool) or int(n_channels) != n_channels or n_channels < 1:
            raise ParameterError("n_channels", n_channels, "must be an integer >= 1")
        self.n_channels = int(n_channels)
        self.tail = v.probability("tail", tail)
        if not isinstance(model, rtd.RTDModel):
            raise ParameterError("model", model, "must be a cmsim.rtd RTD model")
        self._elements = self._build(model)
        self._buf: np.ndarray | None = None

    # ------------------------------------------------------------------ construction
    def _build(self, model: Any) -> list[Any]:
        stages = list(model.stages) if isinstance(model, rtd.Series) else [model]
        elements: list[Any] = []
        # linear time-invariant elements commute: all plug-flow delays merge into one shift at
        # the inlet (rounded once), which gives the same outflow and total hold-up
        delay = math.fsum(m.delay for m in stages if isinstance(m, rtd.PFR))
        if delay > 0.0 or all(isinstance(m, rtd.PFR) for m in stages):
            elements.append(_Shift(delay, self.dt, self.n_channels))
        for m in stages:
            if isinstance(m, rtd.PFR):
                continue
            n = _tanks(m)
            if n is not None:
                elements.append(_TIS(m.mean, n, self.dt, self.n_channels))
            else:
                elements.append(_FIR(m, self.dt, self.n_channels, self.tail))
        return elements

    # ------------------------------------------------------------------ properties
    @property
    def model(self) -> Any:
        """The RTD model currently applied (after any residence-time change)."""
        ms = [e.model() for e in self._elements]
        return ms[0] if len(ms) == 1 else rtd.Series(*ms)

    @property
    def kinds(self) -> tuple[str, ...]:
        """Streaming form of each element: ``"tis"``, ``"pfr"`` or ``"fir"``."""
        return tuple(e.kind for e in self._elements)

    @property
    def n_dispersive(self) -> int:
        """Number of non-shift elements (each adds half a tick to the time stamp)."""
        return sum(1 for e in self._elements if e.dispersive)

    @property
    def mean_delay_ticks(self) -> float:
        """Index-mean delay of the stage's discrete impulse response [ticks].

        The sum over the elements of ``sum_j j w[j]`` of each element's discrete impulse
        response: ``sum_{m>=1} (1 - F(m dt))`` (``= tau/dt - 1/2 + O(dt/tau)``) for tanks in series,
        the integer shift for plug flow and the renormalised kernel's index mean for FIR
        elements. Each dispersive element contributes about half a tick beyond ``tau/dt``.
        """
        return float(sum(e.mean_delay_ticks(self.dt) for e in self._elements))

    @property
    def renormalised_mass(self) -> float:
        """Kernel mass discarded by truncation and redistributed by renormalisation [-]."""
        return float(sum(e.renormalised_mass for e in self._elements if e.kind == "fir"))

    @property
    def delays_applied(self) -> tuple[float, ...]:
        """Applied plug-flow delays [s]."""
        return tuple(e.f.delay for e in self._elements if e.kind == "pfr")

    @property
    def holdup(self) -> np.ndarray:
        """Mass inside the stage per channel, shape (n_channels,) [kg]."""
        h = np.zeros(self.n_channels)
        for e in self._elements:
            h += e.holdup()
        return h

    @property
    def supports_residence_time_change(self) -> bool:
        """True when the stage has exactly one tanks-in-series (or CSTR) element."""
        return sum(1 for e in self._elements if e.kind == "tis") == 1

    @property
    def mean_residence_time(self) -> float:
        """Mean residence time of the whole stage [s] (``model.mean``)."""
        return float(self.model.mean)

    # ------------------------------------------------------------------ streaming
    def step(self, inflow: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Advance by one chunk.

        Parameters
        ----------
        inflow : ndarray, shape (n_channels, n)
            Inlet mass flows [kg/s].
        out : ndarray, shape (n_channels, n), optional
            C-contiguous float64 array that receives the outlet flows (not ``inflow``).

        Returns
        -------
        ndarray, shape (n_channels, n)
            Outlet mass flows [kg/s] (``out`` when given).
        """
        x = np.asarray(inflow, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] != self.n_channels:
            raise ParameterError("inflow", f"array of shape {x.shape}",
                                 f"must have shape ({self.n_channels}, n)")
        x = np.ascontiguousarray(x)
        if out is not None and (out.shape != x.shape or out.dtype != np.float64
                                or not out.flags.c_contiguous):
            raise ParameterError("out", f"array of shape {out.shape}",
                                 f"must be a C-contiguous float64 array of shape {x.shape}")
        if x.shape[1] == 0:
            return x.copy() if out is None else out
        last = len(self._elements) - 1
        for i, e in enumerate(self._elements):
            y = out if out is not None and i == last else np.empty_like(x)
            e.step(x, y)
            x = y
        return x

    def reset(self, steady_inflow: Any = None) -> None:
        """Empty the stage, or set it to the steady state of a constant inflow.

        Parameters
        ----------
        steady_inflow : float or array_like of shape (n_channels,), optional
            Constant inlet flow per channel [kg/s]; None empties the stage.
        """
        if steady_inflow is None:
            for e in self._elements:
                e.reset(None)
            return
        u = v.finite_array("steady_inflow", steady_inflow, ndim=(0, 1))
        u = np.array(np.broadcast_to(u, (self.n_channels,)), dtype=np.float64) if u.ndim == 0 \
            or u.size == self.n_channels else None
        if u is None:
            raise ParameterError("steady_inflow", steady_inflow,
                                 f"must be a scalar or have {self.n_channels} elements")
        for e in self._elements:
            e.reset(u)  # a linear stage with unit gain passes the same constant flow on

    def set_mean_residence_time(self, mean_residence_time: float) -> None:
        """Change the tanks-in-series element's mean residence time, keeping its tank masses.

        Mass-state semantics (docs/rtd.md, compartment model): the hold-up then relaxes towards
        ``tau_new x
        flow`` (a transient outflow surge or deficit). Only stages with exactly one CSTR /
        integer tanks-in-series element support this.

        Parameters
        ----------
        mean_residence_time : float
            New mean residence time of that element [s].
        """
        tau = v.positive("mean_residence_time", mean_residence_time)
        tis = [e for e in self._elements if e.kind == "tis"]
        if len(tis) != 1:
            raise ParameterError(
                "model", self.model,
                "a residence-time (speed) change needs a stage with exactly one element of "
                f"the supported models {SPEED_CAPABLE_MODELS}")
        tis[0].f.set_mean_residence_time(tau)
        tis[0].tau = tau

    @property
    def tis_mean_residence_time(self) -> float | None:
        """Mean residence time of the single tanks-in-series element [s], or None."""
        tis = [e for e in self._elements if e.kind == "tis"]
        return tis[0].tau if len(tis) == 1 else None
