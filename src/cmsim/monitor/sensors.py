"""Measurement models: NIR (PAT) probe, feeder load cell, tablet weight (domain brief 8.1).

Each sensor turns a true signal given on the simulation grid into sampled, noisy readings.
They are streaming objects: call ``measure`` with consecutive chunks of the true signal and
every reading is produced exactly once, in the chunk where the data it needs is complete.
Readings and their random numbers depend only on the sample index, never on the chunking
(noise and dropouts come from separate child streams of the ``rng`` given).

Between grid points the true signal is taken as linear in time (the grid values are
instantaneous values), so window averages are exact integrals of that interpolant.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cmsim._validate import finite_array, non_negative, positive, probability
from cmsim.errors import ParameterError

__all__ = ["LoadCellSignal", "NIRSensor", "TabletWeightSignal"]


def _generator(rng: Any) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    try:
        return np.random.default_rng(rng)
    except (TypeError, ValueError) as exc:
        raise ParameterError("rng", rng, f"must be a numpy Generator, SeedSequence, int or "
                                         f"None ({exc})") from None


class _Sampler:
    """Regular sample clock and a history of the true signal carried between chunks."""

    def __init__(self, sample_period: float, start: float, rng: Any) -> None:
        self.sample_period = positive("sample_period", sample_period)
        s = finite_array("start", start, ndim=0).item()
        self.start = float(s)
        children = _generator(rng).spawn(2)
        self._noise_rng, self._drop_rng = children
        self._next = 0  # index of the next sample to emit
        self._t = np.empty(0)
        self._v = np.empty(0)

    def reset(self) -> None:
        """Forget the signal history and restart the sample clock (random streams continue)."""
        self._next = 0
        self._t = np.empty(0)
        self._v = np.empty(0)

    def _append(self, t_grid: Any, values: Any) -> None:
        t = finite_array("t_grid", t_grid, ndim=1)
        v = finite_array("values", values, ndim=1)
        if v.shape != t.shape:
            raise ParameterError("values", f"array of shape {v.shape}",
                                 f"must have the shape of t_grid {t.shape}")
        if t.size > 1 and not np.all(np.diff(t) > 0):
            raise ParameterError("t_grid", "not strictly increasing",
                                 "must be strictly increasing")
        if self._t.size and t.size and not t[0] > self._t[-1]:
            raise ParameterError("t_grid", float(t[0]),
                                 f"must continue after the previous chunk (last t = "
                                 f"{self._t[-1]})")
        self._t = np.concatenate([self._t, t])
        self._v = np.concatenate([self._v, v])

    def _due(self, lag: float) -> np.ndarray:
        """Sample times whose data (up to ``t - lag``) is available; advances the clock."""
        if self._t.size == 0:
            return np.empty(0)
        last = self._t[-1]
        # number of samples with start + j*period - lag <= last
        n_total = math.floor((last + lag - self.start) / self.sample_period + 1e-9) + 1
        n_total = max(n_total, self._next)
        idx = np.arange(self._next, n_total)
        self._next = n_total
        return self.start + idx * self.sample_period

    def _trim(self, keep_from: float) -> None:
        """Drop history before ``keep_from`` (keeping one earlier point for interpolation)."""
        k = int(np.searchsorted(self._t, keep_from, side="right")) - 1
        if k > 0:
            self._t = self._t[k:]
            self._v = self._v[k:]

    def _interp(self, x: np.ndarray) -> np.ndarray:
        """Linear interpolation of the history at ``x``; NaN outside its time range."""
        out = np.interp(x, self._t, self._v)
        out[(x < self._t[0]) | (x > self._t[-1])] = np.nan
        return out

    def _window_mean(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Exact mean of the piecewise-linear history over [a, b] (NaN if not covered)."""
        t, v = self._t, self._v
        if t.size < 2:  # zero or one point: only a zero-width window at that point has a value
            out = np.full(a.shape, np.nan)
            if t.size == 1:
                out[(a == b) & (b == t[0])] = v[0]
            return out
        h = np.diff(t)
        cum = np.concatenate([[0.0], np.cumsum(0.5 * (v[1:] + v[:-1]) * h)])

        def integral(x: np.ndarray) -> np.ndarray:
            k = np.clip(np.searchsorted(t, x, side="right") - 1, 0, t.size - 2)
            s = x - t[k]
            return cum[k] + v[k] * s + (v[k + 1] - v[k]) * s * s / (2.0 * h[k])

        width = b - a
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(width > 0, (integral(b) - integral(a)) / np.where(width > 0, width,
                                                                              1.0),
                           np.interp(b, t, v))
        out[(a < t[0]) | (b > t[-1])] = np.nan
        return out


class NIRSensor(_Sampler):
    """In-line NIR prediction of the API mass fraction at a probe.

    Parameters
    ----------
    sample_period : float
        Time between predictions [s], > 0.
    noise_sd : float
        Standard deviation of the prediction error [mass fraction] (absolute), >= 0.
    latency : float
        Delay from the end of the spectrum to the reported prediction [s], >= 0.
    integration_time : float
        Spectrum integration time ``T_int`` [s], >= 0 (0: instantaneous value).
    bias : float
        Constant calibration offset [mass fraction].
    drift_per_s : float
        Linear drift of the offset [mass fraction / s], from time 0.
    dropout_probability : float
        Probability that a prediction is missing (NaN), in [0, 1).
    rng : numpy.random.Generator, int, SeedSequence or None
        Random source; two child streams (noise, dropouts) are spawned from it.
    start : float
        Time of the first prediction [s].

    Notes
    -----
    Reading ``k`` at :math:`t_k=\\text{start}+k\\,\\text{period}` is

    .. math:: y_k=\\frac1{T_{int}}\\int_{t_k-\\ell-T_{int}}^{t_k-\\ell}w(t)\\,dt + b
              + d\\,t_k + e_k,\\qquad e_k\\sim N(0,\\sigma^2),

    NaN with probability ``dropout_probability`` and NaN when the window starts before the
    first grid time (no data yet).

    Examples
    --------
    >>> nir = NIRSensor(sample_period=2.0, noise_sd=0.0, latency=1.0, rng=1)
    >>> t = np.arange(0.0, 10.0, 0.5)
    >>> ts, y = nir.measure(t, np.where(t < 4.0, 0.10, 0.12))
    >>> ts.tolist(), y.round(3).tolist()
    ([0.0, 2.0, 4.0, 6.0, 8.0, 10.0], [nan, 0.1, 0.1, 0.12, 0.12, 0.12])
    """

    def __init__(self, sample_period: float, noise_sd: float = 0.0, latency: float = 0.0,
                 integration_time: float = 0.0, bias: float = 0.0, drift_per_s: float = 0.0,
                 dropout_probability: float = 0.0, rng: Any = None, *,
                 start: float = 0.0) -> None:
        super().__init__(sample_period, start, rng)
        self.noise_sd = non_negative("noise_sd", noise_sd)
        self.latency = non_negative("latency", latency)
        self.integration_time = non_negative("integration_time", integration_time)
        self.bias = finite_array("bias", bias, ndim=0).item()
        self.drift_per_s = finite_array("drift_per_s", drift_per_s, ndim=0).item()
        p = probability("dropout_probability", dropout_probability, open_interval=False)
        if p >= 1.0:
            raise ParameterError("dropout_probability", dropout_probability, "must be < 1")
        self.dropout_probability = p
        self._faults: list[dict[str, Any]] = []
        self._last_valid = math.nan

    def add_fault(self, kind: str, start: float, end: float | None = None,
                  value: float = 0.0) -> None:
        """Schedule a sensor fault by reading time (domain brief 8.1).

        Parameters
        ----------
        kind : {"bias", "spike", "frozen", "dropout"}
            ``"bias"``: add ``value`` to readings in ``[start, end)`` (a bias step when
            ``end`` is None); ``"spike"``: add ``value`` to the first reading at or after
            ``start``; ``"frozen"``: readings in ``[start, end)`` repeat the last valid reading
            before ``start``; ``"dropout"``: readings in ``[start, end)`` are NaN.
        start : float
            Reading time the fault starts [s].
        end : float, optional
            Reading time it ends [s] (exclusive); None: never.
        value : float
            Offset [mass fraction] for ``"bias"`` and ``"spike"``.

        Notes
        -----
        Faults act on reading times, so they do not depend on the chunking; schedule them
        before the readings they affect are produced. Order of application: noise, bias,
        spike, frozen, random dropouts, dropout faults.
        """
        kinds = ("bias", "spike", "frozen", "dropout")
        if kind not in kinds:
            raise ParameterError("kind", kind, f"must be one of {kinds}")
        st = finite_array("start", start, ndim=0).item()
        en = math.inf if end is None else finite_array("end", end, ndim=0).item()
        if en < st:
            raise ParameterError("end", end, f"must be >= start = {start}")
        val = finite_array("value", value, ndim=0).item()
        self._faults.append({"kind": kind, "start": st, "end": en, "value": val,
                             "held": math.nan, "done": False})

    def _apply_faults(self, ts: np.ndarray, y: np.ndarray, drop: np.ndarray) -> np.ndarray:
        y = y.copy()
        for f in self._faults:
            if f["kind"] == "bias":
                y[(ts >= f["start"]) & (ts < f["end"])] += f["value"]
            elif f["kind"] == "spike" and not f["done"]:
                hit = np.flatnonzero(ts >= f["start"])
                if hit.size:
                    y[hit[0]] += f["value"]
                    f["done"] = True
        missing = drop.copy()
        for f in self._faults:
            if f["kind"] == "dropout":
                missing |= (ts >= f["start"]) & (ts < f["end"])
        frozen = [f for f in self._faults if f["kind"] == "frozen"]
        if frozen:  # sequential: a frozen value is the last valid reading before the fault
            last = self._last_valid
            for i in range(ts.size):
                for f in frozen:
                    if f["start"] <= ts[i] < f["end"]:
                        if math.isnan(f["held"]):
                            f["held"] = last
                        y[i] = f["held"]
                if not missing[i] and not math.isnan(y[i]):
                    last = y[i]
        y[missing] = np.nan
        valid = np.flatnonzero(~np.isnan(y))
        if valid.size:
            self._last_valid = float(y[valid[-1]])
        return y

    def measure(self, t_grid: Any, w_probe: Any, *,
                return_noise_free: bool = False) -> tuple[np.ndarray, ...]:
        """Readings completed by this chunk of the true probe concentration.

        Parameters
        ----------
        t_grid : array_like, shape (n,)
            Times of the chunk [s], strictly increasing and after the previous chunk.
        w_probe : array_like, shape (n,)
            True API mass fraction at the probe at those times [-].
        return_noise_free : bool
            Also return the window averages without bias, drift, noise or dropouts.

        Returns
        -------
        t_samples : ndarray
            Reading times [s].
        y : ndarray
            Readings [mass fraction] (NaN = dropout or no data).
        noise_free : ndarray
            Only with ``return_noise_free``.
        """
        self._append(t_grid, w_probe)
        ts = self._due(self.latency)
        b = ts - self.latency
        a = b - self.integration_time
        true = self._window_mean(a, b) if ts.size else np.empty(0)
        noise = self._noise_rng.standard_normal(ts.size)
        drop = self._drop_rng.random(ts.size) < self.dropout_probability
        y = true + self.bias + self.drift_per_s * ts + self.noise_sd * noise
        y = self._apply_faults(ts, y, drop)
        next_t = self.start + self._next * self.sample_period
        self._trim(next_t - self.latency - self.integration_time)
        return (ts, y, true) if return_noise_free else (ts, y)


class LoadCellSignal(_Sampler):
    """Loss-in-weight load cell: noisy hopper mass and a moving-window flow estimate.

    Parameters
    ----------
    sample_period : float
        Time between weighings [s], > 0.
    noise_sd : float
        Standard deviation of one weighing [kg], >= 0.
    window : float
        Length of the least-squares window for the flow estimate [s]; it holds
        ``N = round(window / sample_period)`` weighings, N >= 2.
    rng : numpy.random.Generator, int, SeedSequence or None
        Random source.
    start : float
        Time of the first weighing [s].

    Notes
    -----
    The flow estimate is minus the ordinary least-squares slope of the last ``N``
    weighings [kg/s]: positive while the hopper discharges. For white weighing noise its
    standard deviation is :math:`\\sigma\\sqrt{12/(N(N^2-1))}/\\Delta t`. The first ``N-1``
    estimates are NaN.

    Examples
    --------
    >>> lc = LoadCellSignal(sample_period=0.5, noise_sd=0.0, window=5.0, rng=0)
    >>> t = np.arange(0.0, 20.0, 0.1)
    >>> ts, m, flow = lc.measure(t, 10.0 - 0.005 * t)
    >>> float(flow[-1].round(9))
    0.005
    """

    def __init__(self, sample_period: float, noise_sd: float = 0.0, window: float = 10.0,
                 rng: Any = None, *, start: float = 0.0) -> None:
        super().__init__(sample_period, start, rng)
        self.noise_sd = non_negative("noise_sd", noise_sd)
        n = int(round(positive("window", window) / self.sample_period))
        if n < 2:
            raise ParameterError("window", window,
                                 f"must hold at least 2 samples of {self.sample_period} s")
        self.window = float(window)
        self.n_window = n
        i = np.arange(n) - (n - 1) / 2.0
        self._weights = i / (np.sum(i * i) * self.sample_period)  # OLS slope weights
        self._recent = np.empty(0)

    def reset(self) -> None:
        """Restart the clock and forget the weighings of the flow window."""
        super().reset()
        self._recent = np.empty(0)

    def measure(self, t_grid: Any, mass: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Weighings and flow estimates completed by this chunk.

        Parameters
        ----------
        t_grid : array_like, shape (n,)
            Times [s], strictly increasing, continuing the previous chunk.
        mass : array_like, shape (n,)
            True hopper mass [kg].

        Returns
        -------
        t_samples : ndarray
            Weighing times [s].
        mass_measured : ndarray
            Weighings [kg] (NaN before the first grid time).
        flow_estimate : ndarray
            Discharge rate estimate [kg/s].
        """
        self._append(t_grid, mass)
        ts = self._due(0.0)
        m = self._interp(ts) + self.noise_sd * self._noise_rng.standard_normal(ts.size)
        series = np.concatenate([self._recent, m])
        n = self.n_window
        flow = np.full(ts.size, np.nan)
        if series.size >= n:
            windows = np.lib.stride_tricks.sliding_window_view(series, n)
            slopes = windows @ self._weights
            # the window ending at reading i of this chunk is windows[len(recent) + i - n + 1]
            first = self._recent.size - n + 1
            idx = np.arange(ts.size) + first
            ok = idx >= 0
            flow[ok] = -slopes[idx[ok]]
        self._recent = series[-(n - 1):] if n > 1 else np.empty(0)
        next_t = self.start + self._next * self.sample_period
        self._trim(next_t)
        return ts, m, flow


class TabletWeightSignal(_Sampler):
    """Sampled tablet weights (mean of ``n_tablets`` tablets) with a relative spread.

    Parameters
    ----------
    sample_period : float
        Time between samples [s], > 0.
    rsd : float
        Relative standard deviation of one tablet's mass [-], >= 0.
    n_tablets : int
        Tablets weighed per sample (the reported value is their mean), >= 1.
    rng : numpy.random.Generator, int, SeedSequence or None
        Random source.
    start : float
        Time of the first sample [s].

    Notes
    -----
    Each tablet weighs :math:`m(t)(1+\\text{rsd}\\,\\varepsilon)`, so a sample has standard
    deviation :math:`m\\,\\text{rsd}/\\sqrt{n}`.

    Examples
    --------
    >>> tw = TabletWeightSignal(sample_period=10.0, rsd=0.0, rng=0)
    >>> tw.measure(np.arange(0.0, 30.0), np.full(30, 250e-6))[1].tolist()
    [0.00025, 0.00025, 0.00025]
    """

    def __init__(self, sample_period: float, rsd: float = 0.01, n_tablets: int = 1,
                 rng: Any = None, *, start: float = 0.0) -> None:
        super().__init__(sample_period, start, rng)
        self.rsd = non_negative("rsd", rsd)
        if isinstance(n_tablets, bool) or int(n_tablets) != n_tablets or n_tablets < 1:
            raise ParameterError("n_tablets", n_tablets, "must be an int >= 1")
        self.n_tablets = int(n_tablets)

    def measure(self, t_grid: Any, tablet_mass: Any) -> tuple[np.ndarray, np.ndarray]:
        """Weight samples completed by this chunk.

        Parameters
        ----------
        t_grid : array_like, shape (n,)
            Times [s], strictly increasing, continuing the previous chunk.
        tablet_mass : array_like, shape (n,)
            True mean tablet mass [kg].

        Returns
        -------
        t_samples : ndarray
            Sample times [s].
        weights : ndarray
            Mean weight of the ``n_tablets`` tablets [kg].
        """
        self._append(t_grid, tablet_mass)
        ts = self._due(0.0)
        m = self._interp(ts)
        eps = self._noise_rng.standard_normal((ts.size, self.n_tablets)).mean(axis=1)
        self._trim(self.start + self._next * self.sample_period)
        return ts, m * (1.0 + self.rsd * eps)
