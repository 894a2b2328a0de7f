"""One call to apply an RTD model to a signal: exact recursion where one exists, FIR otherwise.

Private module behind :meth:`cmsim.rtd.RTDModel.apply`. Every path computes the same sequence,
the causal convolution with the model's bin kernel ``w[j] = F((j+1) dt) - F(j dt)``:
``y[k] = sum_j w[j] x[k-j]`` (zero history before ``x[0]``). Time stamps: the input ``x[k]`` is a
flow held over the tick ``[k dt, (k+1) dt)``; ``y[k]`` is the outflow at the right edge
``(k+1) dt`` of that tick (equivalently the mean outflow over tick ``k`` when the mass
``dt x[k]`` enters at the start of the tick).

Which models have an exact recursion (:class:`RecursiveForm`):

* a plug-flow delay alone: a pure shift by ``m`` ticks, ``m`` the first ``j`` with
  ``(j+1) dt >= delay`` (``m = delay/dt - 1`` for a whole number of ticks, ``floor(delay/dt)``
  otherwise), exactly as the kernel places its unit tap;
* ideal tanks (CSTR, tanks in series with an integer count, chains of them) after a plug-flow delay
  that is a whole number ``D`` of ticks: the tanks' exact zero-order-hold recursion
  (:class:`cmsim.rtd.TanksInSeriesFilter`) shifted by ``D`` ticks. Tanks with different stage
  times are split into partial fractions, a weighted sum of equal-tank chains; the weights are
  exact, but when they are large (close stage times) their cancellation would cost more than
  ``MAX_PARTIAL_FRACTION_GAIN`` units of round-off, and the FIR path is used instead. So is a
  chain of more than ``MAX_RECURSIVE_TANKS`` tanks, whose recursion costs n^2 per tick.

A plug-flow delay that is not a whole number of ticks in front of tanks moves the tanks' kernel
by a fraction of a tick (a different kernel, not a shift): that series goes through the FIR path,
as do non-integer tank counts, axial dispersion and tabulated RTDs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from cmsim import _validate
from cmsim.errors import ParameterError
from cmsim.rtd.filters import (
    MAX_RECURSIVE_TANKS,
    TanksInSeriesFilter,
    _finite_array,
    _float_array,
)

#: Largest sum of |partial-fraction weights| accepted for the recursive path (round-off grows
#: with it, about gain x 3e-15 of the largest output: 100 keeps it near 3e-13).
MAX_PARTIAL_FRACTION_GAIN = 100.0
#: A delay counts as a whole number of ticks within this relative distance (about the accuracy of
#: the kernel's own time grid, so the shifted recursion equals the kernel to rounding).
WHOLE_TICK_RTOL = 1e-12

_METHODS = ("auto", "recursive", "fir")


@dataclass(frozen=True)
class RecursiveForm:
    """A model as a plug-flow delay followed by chains of equal ideal tanks.

    Attributes
    ----------
    delay : float
        Total plug-flow delay [s], >= 0.
    stages : tuple of (float, int)
        ``(stage time b [s], tank count n)`` per chain of equal tanks, distinct ``b``; empty for a
        pure delay.
    """

    delay: float
    stages: tuple[tuple[float, int], ...]

    def then(self, other: RecursiveForm) -> RecursiveForm:
        """This form followed by ``other`` (delays add, tanks of equal stage time merge)."""
        counts: dict[float, int] = dict(self.stages)
        for b, n in other.stages:
            counts[b] = counts.get(b, 0) + n
        return RecursiveForm(math.fsum((self.delay, other.delay)), tuple(counts.items()))


@dataclass(frozen=True)
class _Plan:
    """What :func:`apply_model` runs at one ``dt``: a shift and weighted equal-tank chains."""

    shift: int  # ticks
    terms: tuple[tuple[float, float, int], ...]  # (weight, stage time b [s], tank count)


def _kernel_delay_ticks(delay: float, dt: float) -> int:
    """Tick of the kernel's unit tap for a pure delay: first ``j >= 0`` with ``(j+1) dt >= delay``.

    Evaluated in the same floating-point products as :meth:`RTDModel.kernel` (``edges = j dt``).
    """
    j = max(int(math.ceil(delay / dt)) - 1, 0)
    while (j + 1) * dt < delay:
        j += 1
    while j > 0 and j * dt >= delay:
        j -= 1
    return j


def partial_fractions(stages: tuple[tuple[float, int], ...]) -> list[tuple[float, float, int]]:
    """Weights of ``prod_i (1 + s b_i)^-n_i = sum_i sum_p c_ip (1 + s b_i)^-p`` (distinct ``b_i``).

    Parameters
    ----------
    stages : tuple of (float, int)
        ``(b_i [s], n_i)`` with distinct stage times.

    Returns
    -------
    list of (float, float, int)
        ``(c_ip, b_i, p)`` for ``p = 1 .. n_i``: the chain is the weighted sum of gamma laws of
        shape ``p`` and scale ``b_i`` (the weights sum to 1).
    """
    if len(stages) == 1:
        b, n = stages[0]
        return [(1.0, b, n)]
    terms = []
    for i, (bi, ni) in enumerate(stages):
        # with u = 1 + s b_i, every other factor is (alpha + beta u)^-n_j: expand it in powers
        # of u up to u^(n_i - 1); the coefficient of u^k weighs the gamma of shape n_i - k
        series = np.zeros(ni)
        series[0] = 1.0
        for j, (bj, nj) in enumerate(stages):
            if j == i:
                continue
            # b_i - b_j is exact for close stage times (Sterbenz): no cancellation in 1 - b_j/b_i
            alpha = (bi - bj) / bi
            ratio = -bj / (bi - bj)
            k = np.arange(ni)
            factor = np.exp(-nj * math.log(abs(alpha))) * np.array(
                [math.comb(nj + kk - 1, kk) for kk in range(ni)], dtype=np.float64) * ratio**k
            if alpha < 0.0 and nj % 2:
                factor = -factor
            series = np.convolve(series, factor)[:ni]
        terms.extend((float(series[ni - p]), bi, p) for p in range(1, ni + 1))
    return terms


def plan_for(form: RecursiveForm | None, dt: float) -> _Plan | None:
    """The recursive plan of a form at time step ``dt``, or None when only the FIR path is exact."""
    if form is None:
        return None
    if not form.stages:
        return _Plan(_kernel_delay_ticks(form.delay, dt), ())
    ratio = form.delay / dt
    ticks = round(ratio)
    if abs(ratio - ticks) > WHOLE_TICK_RTOL * max(1.0, ratio):
        return None
    if max(n for _, n in form.stages) > MAX_RECURSIVE_TANKS:
        return None
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is a gain of inf or NaN
        terms = partial_fractions(form.stages)
    if not math.fsum(abs(c) for c, _, _ in terms) <= MAX_PARTIAL_FRACTION_GAIN:
        return None
    return _Plan(int(ticks), tuple(terms))


def _run_tanks(terms: tuple[tuple[float, float, int], ...], x: np.ndarray, dt: float) -> np.ndarray:
    """Sum of the weighted equal-tank chains applied to ``x`` (zero initial state)."""
    c0, b0, n0 = terms[0]
    y = TanksInSeriesFilter(n0 * b0, n0, dt).step(x)
    if len(terms) == 1:
        return y
    y *= c0
    buf = np.empty_like(y)
    for c, b, n in terms[1:]:
        TanksInSeriesFilter(n * b, n, dt).step(x, out=buf)
        buf *= c
        y += buf
    if x.min() >= 0.0:  # weights of both signs: clip round-off below an exact zero
        np.maximum(y, 0.0, out=y)
    return y


def _run_plan(plan: _Plan, x: np.ndarray, dt: float) -> np.ndarray:
    n = x.shape[-1]
    d = plan.shift
    if d >= n:
        return np.zeros(x.shape)
    head = x[..., : n - d]
    body = _run_tanks(plan.terms, head, dt) if plan.terms else head
    if d == 0:
        return body if plan.terms else body.copy()
    y = np.empty(x.shape)
    y[..., :d] = 0.0
    y[..., d:] = body
    return y


def apply_path(model: Any, dt: float) -> str:
    """``"recursive"`` or ``"fir"``: the path :func:`apply_model` takes for ``method="auto"``."""
    dt = _validate.positive("dt", dt)
    return "recursive" if plan_for(model._recursive_form(), dt) is not None else "fir"


def apply_model(model: Any, x: Any, dt: float, method: str = "auto",
                tail: float = 1e-12) -> np.ndarray:
    """Implementation of :meth:`cmsim.rtd.RTDModel.apply` (see there)."""
    from cmsim.rtd.convolution import convolve

    dt = _validate.positive("dt", dt)
    tail = _validate.probability("tail", tail)
    if method not in _METHODS:
        raise ParameterError("method", method, f"must be one of {_METHODS}")
    xa = _float_array("x", x, ndim=(1, 2))  # finiteness: checked by each path below
    plan = None if method == "fir" else plan_for(model._recursive_form(), dt)
    if plan is None and method == "recursive":
        raise ParameterError(
            "method", method,
            f"{model!r} has no exact recursion at dt={dt!r} (only plug flow, CSTR, integer tanks "
            "in series and series of them, with a plug-flow delay that is a whole number of ticks "
            "when tanks follow it); use method='auto' or 'fir'")
    if plan is None:
        return convolve(xa, model.kernel(dt, tail=tail))  # names a non-finite "x" itself
    if not plan.terms:
        _finite_array("x", xa, ndim=(1, 2))
    try:
        return _run_plan(plan, np.ascontiguousarray(xa), dt)
    except ParameterError:
        # the tank filter checks its state after the run (no extra pass over the data); name
        # the first bad element of "x" rather than the filter's "chunk"
        _validate.finite_array("x", xa)
        raise
