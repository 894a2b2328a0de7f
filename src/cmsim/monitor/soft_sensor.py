"""RTD soft sensor: predicted composition at the diverter from feeder flow data.

Domain brief 7.2 (trigger 2) and 7.3 (method A): each component's feeder mass flow is passed
through the feeder-to-diverter RTD kernel (all components see the same RTD), and the
predicted API mass fraction is the ratio of the filtered flows. Streaming with
:class:`cmsim.rtd.Convolver`, so any chunking gives the one-shot result; several credible
RTD models (the envelope Theta) can be run side by side, giving one prediction row each, the
input :func:`cmsim.monitor.windows.predicted_window` expects.

Time stamps: feeder flows are tick averages (zero-order hold, tick ``k`` covers
``[k dt, (k+1) dt)``); with the bin kernel ``w[j] = F((j+1)dt) - F(j dt)`` output ``k`` is the
exact outflow at time ``(k+1) dt``, which is the time the sensor reports.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from cmsim._validate import finite_array, non_negative, positive, probability
from cmsim.errors import ParameterError
from cmsim.rtd.convolution import Convolver
from cmsim.rtd.models import RTDModel

__all__ = ["EMPTY_FLOW", "RTDSoftSensor", "midpoint_kernel"]

#: Predicted total flow [kg/s] at or below which the line counts as empty (content NaN).
EMPTY_FLOW = 1e-12


_KERNEL_CACHE: dict[tuple, np.ndarray] = {}


def _cached(key: tuple, build: Any) -> np.ndarray:
    hit = _KERNEL_CACHE.get(key)
    if hit is None:
        hit = np.asarray(build(), dtype=np.float64)
        hit.setflags(write=False)
        if len(_KERNEL_CACHE) < 256:
            _KERNEL_CACHE[key] = hit
    return hit


def midpoint_kernel(model: RTDModel, dt: float, tail: float = 1e-12) -> np.ndarray:
    """Tick-average to tick-average kernel ``w[j] = F((j+1/2)dt) - F((j-1/2)dt)``, ``w[0]=F(dt/2)``.

    Parameters
    ----------
    model : RTDModel
        The RTD.
    dt : float
        Tick [s].
    tail : float
        Cut where ``sf((j+1/2) dt) < tail`` [-].

    Returns
    -------
    ndarray
        Kernel [-] (a fresh copy; kernels are cached per model parameter set); its sum is
        ``1 - sf`` at the cut and its mean is the RTD mean (to the cut).
    """
    d = positive("dt", dt)
    return _midpoint(model, d, float(tail)).copy()


def _midpoint(model: RTDModel, d: float, tail: float) -> np.ndarray:
    def build() -> np.ndarray:
        hi = float(model.quantile(1.0 - min(max(tail, 1e-15), 1e-3)))
        n = int(math.ceil(hi / d)) + 2
        edges = (np.arange(n + 1) - 0.5) * d
        edges[0] = 0.0
        return np.diff(np.asarray(model.cdf(edges), dtype=np.float64))

    return _cached(("mid", repr(model.params), type(model).__name__, d, tail), build)


def _bin(model: RTDModel, d: float, tail: float) -> np.ndarray:
    return _cached(("bin", repr(model.params), type(model).__name__, d, tail),
                   lambda: np.asarray(model.kernel(d, tail)))


class RTDSoftSensor:
    """Predicted API content at the diverter from component feeder flows.

    Parameters
    ----------
    model : RTDModel or sequence of RTDModel
        Feeder-to-diverter RTD; several models give one prediction row each (envelope).
    dt : float
        Tick of the flow data [s], > 0.
    api_index : int
        Row of the API component in the flow chunks.
    n_components : int
        Number of component rows in the flow chunks, >= 1.
    target_fraction : float, optional
        Target API mass fraction; content is reported as fraction of target (1.0 = 100 %
        LC). Default: the API fraction of ``initial_flows`` (required then).
    initial_flows : array_like, shape (n_components,), optional
        Constant flows [kg/s] before time 0: the line starts full at steady state. Without
        it the line starts empty and the content is NaN until material arrives.
    tail : float
        Kernel truncation [-] (see ``RTDModel.kernel``).
    timing : {"point", "tick_average"}
        Output convention (module docstring).
    empty_flow : float
        Predicted total flow [kg/s] at or below which the content is NaN (empty line).

    Attributes
    ----------
    lead_ticks : int
        Outputs known ahead of the input (leading zero taps common to all kernels) [ticks].

    Examples
    --------
    >>> from cmsim import rtd
    >>> s = RTDSoftSensor(rtd.CSTR(30.0), dt=1.0, initial_flows=[2 / 3600, 18 / 3600])
    >>> t, c = s.step(np.tile([[2 / 3600], [18 / 3600]], 5))
    >>> t.tolist(), np.round(c, 12).tolist()
    ([1.0, 2.0, 3.0, 4.0, 5.0], [1.0, 1.0, 1.0, 1.0, 1.0])
    """

    def __init__(self, model: RTDModel | Sequence[RTDModel], dt: float, *, api_index: int = 0,
                 n_components: int = 2, target_fraction: float | None = None,
                 initial_flows: Any = None, tail: float = 1e-9,
                 timing: str = "point", empty_flow: float = EMPTY_FLOW) -> None:
        self.dt = positive("dt", dt)
        if timing not in ("point", "tick_average"):
            raise ParameterError("timing", timing, "must be 'point' or 'tick_average'")
        self.timing = timing
        self.empty_flow = non_negative("empty_flow", empty_flow)
        self.tail = probability("tail", tail)
        if isinstance(n_components, bool) or int(n_components) != n_components \
                or n_components < 1:
            raise ParameterError("n_components", n_components, "must be an int >= 1")
        self.n_components = int(n_components)
        if isinstance(api_index, bool) or int(api_index) != api_index \
                or not 0 <= api_index < self.n_components:
            raise ParameterError("api_index", api_index,
                                 f"must be an int in [0, {self.n_components})")
        self.api_index = int(api_index)
        if initial_flows is None:
            self._steady = np.zeros(self.n_components)
        else:
            self._steady = finite_array("initial_flows", initial_flows, ndim=1)
            if self._steady.shape != (self.n_components,) or self._steady.min() < 0:
                raise ParameterError("initial_flows", initial_flows,
                                     f"must be {self.n_components} non-negative flows")
        if target_fraction is None:
            total = self._steady.sum()
            if not total > 0:
                raise ParameterError("target_fraction", None,
                                     "required when initial_flows is not given (or all zero)")
            target_fraction = self._steady[self.api_index] / total
        self.target_fraction = probability("target_fraction", target_fraction)
        self._k = 0          # input ticks processed
        self._next = 0       # next output index to emit
        self._hist = np.zeros((self.n_components, 0))  # recent input deviations
        self._pending: np.ndarray | None = None       # outputs computed at a model change
        self.set_models(model)

    @property
    def ticks(self) -> int:
        """Number of input ticks processed so far."""
        return self._k

    def set_models(self, model: RTDModel | Sequence[RTDModel]) -> None:
        """Use new RTD model(s) from now on (e.g. after a blender speed change).

        The new kernels (cached per parameter set) are applied to the stored input history;
        outputs already returned are not changed (module docstring).

        Parameters
        ----------
        model : RTDModel or sequence of RTDModel
            Feeder-to-diverter RTD(s); the number of rows may change.
        """
        models = [model] if isinstance(model, RTDModel) else list(model)
        if not models or not all(isinstance(m, RTDModel) for m in models):
            raise ParameterError("model", model, "must be an RTD model or a non-empty sequence "
                                                 "of RTD models")
        make = _midpoint if self.timing == "tick_average" else _bin
        kernels = [make(m, self.dt, self.tail) for m in models]
        firsts = [int(np.argmax(w > 1e-15)) if np.any(w > 1e-15) else 0 for w in kernels]
        d0 = min(firsts)
        self.models = tuple(models)
        self.lead_ticks = d0
        self._kernels = [w[d0:] for w in kernels]
        self._filters = [Convolver(w, batch=self.n_components) for w in self._kernels]
        self._hlen = max(self._hlen if hasattr(self, "_hlen") else 0,
                         max(w.size for w in self._kernels))
        self._pending = None
        if self._k > 0:
            # prime the new filters with the history; keep outputs not returned yet
            h = self._hist
            pad = np.zeros((self.n_components, max(0, self._hlen - h.shape[1])))
            h = np.concatenate((pad, h), axis=1)
            first_out = self._k - h.shape[1] + d0
            y = np.stack([f.step(h) for f in self._filters])
            keep = max(0, self._next - first_out)
            self._pending = y[:, :, keep:]
            self._next = max(self._next, first_out + keep)
        self._hist = self._hist[:, -self._hlen:] if self._hlen else self._hist[:, :0]

    def reset(self) -> None:
        """Return to the initial state (tick 0)."""
        for f in self._filters:
            f.reset()
        self._k = 0
        self._next = 0
        self._hist = np.zeros((self.n_components, 0))
        self._pending = None

    def predict_flows(self, flows: Any) -> np.ndarray:
        """Filter one chunk of component flows.

        Parameters
        ----------
        flows : array_like, shape (n_components, n)
            Feeder mass flows [kg/s], tick averages.

        Returns
        -------
        ndarray, shape (n_models, n_components, m)
            Predicted component flows at the diverter [kg/s] for the outputs determined by
            the input so far and not returned before (``m = n``, plus ``lead_ticks`` on the
            first call).
        """
        x = finite_array("flows", flows, ndim=2)
        if x.shape[0] != self.n_components:
            raise ParameterError("flows", f"array of shape {x.shape}",
                                 f"must have {self.n_components} component rows")
        dev = x - self._steady[:, None]
        n = x.shape[1]
        # deviation form: a line full at steady state stays exactly there for steady input
        y = np.stack([f.step(dev) for f in self._filters]) if self._filters else None
        first_out = self._k + self.lead_ticks  # output index of y[..., 0]
        parts = []
        if self._pending is not None:
            parts.append(self._pending)
            self._pending = None
        if self._next < first_out:  # outputs before the first filtered one: initial state
            parts.append(np.zeros((len(self._filters), self.n_components,
                                   first_out - self._next)))
        skip = max(0, self._next - first_out)
        parts.append(y[:, :, skip:])
        dy = np.concatenate(parts, axis=2) if len(parts) > 1 else parts[0]
        self._k += n
        self._next = max(self._next, first_out + n)
        if self._hlen:
            self._hist = np.concatenate((self._hist, dev), axis=1)[:, -self._hlen:]
        return self._steady[None, :, None] + dy

    def step(self, flows: Any) -> tuple[np.ndarray, np.ndarray]:
        """Predicted API content for one chunk of feeder flows.

        Parameters
        ----------
        flows : array_like, shape (n_components, n)
            Feeder mass flows [kg/s], tick averages.

        Returns
        -------
        t : ndarray, shape (m,)
            Output times at the diverter [s] (``(k+1) dt`` or ``(k+1/2) dt``, module
            docstring), for every output determined so far and not returned before.
        content : ndarray, shape (m,) or (n_models, m)
            Predicted API mass fraction divided by the target [-]; NaN where the predicted
            total flow is at most ``empty_flow`` (empty line).
        """
        y = self.predict_flows(flows)
        m = y.shape[-1]
        k_out = self._next - m
        total = y.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            content = y[:, self.api_index, :] / total / self.target_fraction
        content[total <= self.empty_flow] = np.nan
        off = 1.0 if self.timing == "point" else 0.5
        t = (np.arange(k_out, k_out + m) + off) * self.dt
        return t, (content[0] if len(self.models) == 1 else content)
