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

from collections.abc import Sequence
from typing import Any

import numpy as np

from cmsim._validate import finite_array, positive, probability
from cmsim.errors import ParameterError
from cmsim.rtd.convolution import Convolver
from cmsim.rtd.models import RTDModel

__all__ = ["EMPTY_FLOW", "RTDSoftSensor"]

#: Predicted total flow [kg/s] at or below which the line counts as empty (content NaN).
EMPTY_FLOW = 1e-12


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
        Kernel truncation (see ``RTDModel.kernel``).

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
                 initial_flows: Any = None, tail: float = 1e-9) -> None:
        models = [model] if isinstance(model, RTDModel) else list(model)
        if not models or not all(isinstance(m, RTDModel) for m in models):
            raise ParameterError("model", model, "must be an RTD model or a non-empty sequence "
                                                 "of RTD models")
        self.models = tuple(models)
        self.dt = positive("dt", dt)
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
        self._kernels = [m.kernel(self.dt, tail) for m in self.models]
        self._filters = [Convolver(w, batch=self.n_components) for w in self._kernels]
        self._k = 0

    @property
    def ticks(self) -> int:
        """Number of input ticks processed so far."""
        return self._k

    def reset(self) -> None:
        """Return to the initial state (tick 0)."""
        for f in self._filters:
            f.reset()
        self._k = 0

    def predict_flows(self, flows: Any) -> np.ndarray:
        """Filter one chunk of component flows.

        Parameters
        ----------
        flows : array_like, shape (n_components, n)
            Feeder mass flows [kg/s], tick averages.

        Returns
        -------
        ndarray, shape (n_models, n_components, n)
            Predicted component flows at the diverter [kg/s] at times ``(k+1) dt``.
        """
        x = finite_array("flows", flows, ndim=2)
        if x.shape[0] != self.n_components:
            raise ParameterError("flows", f"array of shape {x.shape}",
                                 f"must have {self.n_components} component rows")
        dev = x - self._steady[:, None]
        out = np.empty((len(self._filters),) + x.shape)
        for i, f in enumerate(self._filters):
            # deviation form: a line full at steady state stays exactly there for steady input
            out[i] = self._steady[:, None] + f.step(dev)
        self._k += x.shape[1]
        return out

    def step(self, flows: Any) -> tuple[np.ndarray, np.ndarray]:
        """Predicted API content for one chunk of feeder flows.

        Parameters
        ----------
        flows : array_like, shape (n_components, n)
            Feeder mass flows [kg/s], tick averages.

        Returns
        -------
        t : ndarray, shape (n,)
            Output times at the diverter [s] (``(k+1) dt``).
        content : ndarray, shape (n,) or (n_models, n)
            Predicted API mass fraction divided by the target [-]; NaN where the predicted
            total flow is at most :data:`EMPTY_FLOW` (empty line).
        """
        k0 = self._k
        y = self.predict_flows(flows)
        n = y.shape[-1]
        total = y.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            content = y[:, self.api_index, :] / total / self.target_fraction
        content[total <= EMPTY_FLOW] = np.nan
        t = (np.arange(k0, k0 + n) + 1) * self.dt
        return t, (content[0] if len(self.models) == 1 else content)
