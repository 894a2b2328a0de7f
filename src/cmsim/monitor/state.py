"""State of control as simulator logic (docs/monitor.md#start-up-and-shut-down).

:func:`evaluate_state_of_control` is a pure function over condition series on the tick grid.
Each tick is in one of four states:

``startup`` (0)
    before feeding starts, and after a start (or a set-point change, or a restart after a
    stop) until the line has settled (feeder-to-diverter ``F >= 0.999`` since the change)
    **and** ``k`` consecutive in-limit PAT readings were taken after settling;
``in_control`` (1)
    start-up complete and every condition true (7.6: feeders gravimetric and within
    tolerance, operating point inside the RTD-model validity range, PAT available, no active
    SPC alarm, no open diversion: whatever conditions the caller supplies);
``out_of_control`` (2)
    start-up complete but at least one condition false;
``shutdown`` (3)
    from a feed stop plus the line's ``t_alpha`` (the hold-up emitted after feeding stops has
    no guaranteed composition) until the restart, if any.

Precedence: shutdown > startup > in/out of control.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cmsim._validate import finite_array, non_negative, probability
from cmsim.errors import ParameterError
from cmsim.rtd.models import RTDModel

__all__ = [
    "IN_CONTROL",
    "OUT_OF_CONTROL",
    "SHUTDOWN",
    "STARTUP",
    "STATE_NAMES",
    "StartupQualifier",
    "StateOfControl",
    "evaluate_state_of_control",
    "sustained",
]

STARTUP, IN_CONTROL, OUT_OF_CONTROL, SHUTDOWN = 0, 1, 2, 3
STATE_NAMES = ("startup", "in_control", "out_of_control", "shutdown")


def _tick_widths(t: np.ndarray) -> np.ndarray:
    if t.size < 2:
        return np.zeros(t.size)
    d = np.diff(t)
    return np.append(d, d[-1])


@dataclass(frozen=True)
class StateOfControl:
    """State of control per tick, with the reasons.

    Attributes
    ----------
    t : ndarray, shape (n,)
        Tick times [s].
    state : ndarray of int8, shape (n,)
        :data:`STARTUP`, :data:`IN_CONTROL`, :data:`OUT_OF_CONTROL` or :data:`SHUTDOWN`.
    failed : dict of str to ndarray of bool
        Per condition, the ticks where it was false.
    settle_time_s : float
        Time after a change until the line counts as settled [s].
    shutdown_delay_s : float
        Delay from a feed stop to the start of the shutdown state [s].
    startup_complete_s : tuple of float
        Times at which a start-up (or transition) completed.
    """

    t: np.ndarray
    state: np.ndarray
    failed: Mapping[str, np.ndarray] = field(default_factory=dict)
    settle_time_s: float = 0.0
    shutdown_delay_s: float = 0.0
    startup_complete_s: tuple[float, ...] = ()

    @property
    def in_control(self) -> np.ndarray:
        """Boolean mask of in-control ticks."""
        return self.state == IN_CONTROL

    def time_in_state(self) -> dict[str, float]:
        """Total time per state [s] (each tick counts until the next tick)."""
        w = _tick_widths(self.t)
        return {name: float(np.sum(w[self.state == code]))
                for code, name in enumerate(STATE_NAMES)}

    def intervals(self) -> list[tuple[float, float, str]]:
        """Runs of equal state as ``(start_s, end_s, state_name)``; ``end_s`` is the start of
        the next run (or the end of the last tick)."""
        if self.t.size == 0:
            return []
        w = _tick_widths(self.t)
        change = np.flatnonzero(np.diff(self.state)) + 1
        starts = np.concatenate([[0], change])
        ends = np.concatenate([change, [self.t.size]])
        return [(float(self.t[a]), float(self.t[b - 1] + w[b - 1]),
                 STATE_NAMES[int(self.state[a])]) for a, b in zip(starts, ends, strict=True)]

    @property
    def n_excursions(self) -> int:
        """Number of transitions from in control to out of control."""
        s = self.state
        return int(np.sum((s[1:] == OUT_OF_CONTROL) & (s[:-1] == IN_CONTROL)))


def sustained(t: Any, condition: Any, min_duration: float) -> np.ndarray:
    """True where ``condition`` has held continuously for at least ``min_duration``.

    Parameters
    ----------
    t : array_like, shape (n,)
        Tick times [s], strictly increasing.
    condition : array_like of bool, shape (n,)
        The raw condition (e.g. feeder within +-x % of set point).
    min_duration : float
        Required holding time [s], >= 0, measured from the first tick of the current run.

    Returns
    -------
    ndarray of bool
        For 7.5-style rules such as "every feeder gravimetric and within tolerance for >= T".

    Examples
    --------
    >>> sustained([0, 1, 2, 3, 4, 5], [1, 1, 0, 1, 1, 1], 1.5).tolist()
    [False, False, False, False, False, True]
    """
    tt = finite_array("t", t, ndim=1)
    c = _bool_series("condition", condition, tt.size)
    d = non_negative("min_duration", min_duration)
    out = np.zeros(tt.size, dtype=bool)
    if tt.size == 0:
        return out
    run_start = np.where(c & ~np.concatenate([[False], c[:-1]]), tt, -np.inf)
    run_start = np.maximum.accumulate(run_start)
    out = c & (tt - run_start >= d - 1e-12)
    return out


def _bool_series(name: str, value: Any, n: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.shape != (n,):
        raise ParameterError(name, f"array of shape {arr.shape}", f"must have shape ({n},)")
    if arr.dtype != bool:
        if arr.dtype.kind not in "iuf" or not np.all((arr == 0) | (arr == 1)):
            raise ParameterError(name, f"array of dtype {arr.dtype}", "must be boolean")
        arr = arr.astype(bool)
    return arr


class StartupQualifier:
    """Streaming start-up qualification: when does a start-up (or transition) complete?

    Complete at the first PAT reading, taken at or after ``settled_s``, that ends a run of
    ``k`` consecutive in-limit readings all taken at or after ``settled_s``
    (docs/monitor.md#start-up-and-shut-down);
    with ``k = 0`` (no PAT qualification) complete at ``settled_s``. Feed readings in chunks
    of any size: the result depends only on the readings (chunk invariant).

    Parameters
    ----------
    settled_s : float
        Time the line counts as settled after the change [s].
    k : int
        Consecutive in-limit readings required, >= 0.

    Attributes
    ----------
    ready_s : float
        Completion time [s] (``inf`` until complete).

    Examples
    --------
    >>> q = StartupQualifier(10.0, 2)
    >>> q.update([8.0, 10.0, 12.0], [True, True, False])
    inf
    >>> q.update([14.0, 16.0], [True, True])
    16.0
    """

    def __init__(self, settled_s: float, k: int) -> None:
        self.settled_s = finite_array("settled_s", settled_s, ndim=0).item()
        if isinstance(k, bool) or int(k) != k or k < 0:
            raise ParameterError("k", k, "must be an int >= 0")
        self.k = int(k)
        self.ready_s = self.settled_s if self.k == 0 else math.inf
        self._run = 0

    def update(self, times: Any, in_limits: Any) -> float:
        """Take a chunk of readings; return :attr:`ready_s`.

        Parameters
        ----------
        times : array_like, shape (n,)
            Reading times [s], increasing across calls.
        in_limits : array_like of bool, shape (n,)
            Whether each reading was valid and in limits.

        Returns
        -------
        float
            Completion time [s], ``inf`` while not complete.
        """
        if math.isfinite(self.ready_s):
            return self.ready_s
        t = np.asarray(times, dtype=np.float64)
        ok = _bool_series("in_limits", in_limits, t.size)
        sel = t >= self.settled_s - 1e-12
        t, ok = t[sel], ok[sel]
        if t.size == 0:
            return self.ready_s
        idx = np.arange(1, t.size + 1)
        last_bad = np.where(~ok, idx, 0)
        np.maximum.accumulate(last_bad, out=last_bad)
        run = idx - last_bad
        run[last_bad == 0] += self._run
        self._run = int(run[-1])
        hit = np.flatnonzero(run >= self.k)
        if hit.size:
            self.ready_s = float(t[hit[0]])
        return self.ready_s


def evaluate_state_of_control(
    t: Any,
    conditions: Mapping[str, Any] | None = None,
    *,
    pat_times: Any = None,
    pat_in_limits: Any = None,
    k_consecutive: int = 3,
    line_model: RTDModel | None = None,
    settle_time: float | None = None,
    setpoint_changes: Iterable[float] = (0.0,),
    feed_stops: Sequence[tuple[float, float | None]] = (),
    alpha: float = 0.005,
    shutdown_delay: float | None = None,
) -> StateOfControl:
    """Classify every tick as start-up, in control, out of control or shutdown.

    Parameters
    ----------
    t : array_like, shape (n,)
        Tick times [s], strictly increasing.
    conditions : mapping of str to bool array (n,), optional
        Conditions that must all hold for control (e.g. ``"feeders_ok"``, ``"model_valid"``,
        ``"pat_available"``, ``"no_spc_alarm"``, ``"no_diversion"``).
    pat_times : array_like, optional
        Times of the PAT readings [s]; ``None``: the strategy has no PAT qualification step.
    pat_in_limits : array_like of bool, optional
        Whether each reading was in limits (required with ``pat_times``).
    k_consecutive : int
        In-limit readings in a row, taken after the line has settled, that complete a
        start-up (>= 0).
    line_model : RTDModel, optional
        Feeder-to-diverter RTD: settle time ``= quantile(0.999)`` and shutdown delay
        ``= quantile(alpha)`` unless given explicitly.
    settle_time : float, optional
        Time after a change until the line has settled [s] (overrides ``line_model``).
    setpoint_changes : iterable of float
        Times of feeding start and set-point changes [s]; each starts a transition.
    feed_stops : sequence of (stop_s, restart_s or None)
        Feed stops; a restart also starts a transition.
    alpha : float
        Quantile for the shutdown delay.
    shutdown_delay : float, optional
        Delay from a stop to the shutdown state [s] (overrides ``line_model``).

    Returns
    -------
    StateOfControl

    Examples
    --------
    >>> t = np.arange(0.0, 10.0)
    >>> s = evaluate_state_of_control(t, {"ok": t != 7}, settle_time=3.0)
    >>> s.state.tolist()
    [0, 0, 0, 1, 1, 1, 1, 2, 1, 1]
    """
    tt = finite_array("t", t, ndim=1)
    n = tt.size
    if n > 1 and not np.all(np.diff(tt) > 0):
        raise ParameterError("t", "not strictly increasing", "must be strictly increasing")
    conds = {str(k): _bool_series(f"conditions[{k!r}]", v, n)
             for k, v in (conditions or {}).items()}
    if line_model is not None and not isinstance(line_model, RTDModel):
        raise ParameterError("line_model", line_model, "must be a cmsim.rtd model")
    a = probability("alpha", alpha)
    if settle_time is None:
        if line_model is None:
            raise ParameterError("settle_time", None, "give settle_time or line_model")
        settle = float(line_model.quantile(0.999))
    else:
        settle = non_negative("settle_time", settle_time)
    if shutdown_delay is None:
        delay = float(line_model.quantile(a)) if line_model is not None else 0.0
    else:
        delay = non_negative("shutdown_delay", shutdown_delay)
    if isinstance(k_consecutive, bool) or int(k_consecutive) != k_consecutive \
            or k_consecutive < 0:
        raise ParameterError("k_consecutive", k_consecutive, "must be an int >= 0")
    k = int(k_consecutive)

    if pat_times is None:
        p_t = None
        p_ok = None
    else:
        p_t = finite_array("pat_times", pat_times, ndim=1)
        if pat_in_limits is None:
            raise ParameterError("pat_in_limits", None, "required with pat_times")
        p_ok = _bool_series("pat_in_limits", pat_in_limits, p_t.size)
        if p_t.size > 1 and not np.all(np.diff(p_t) > 0):
            raise ParameterError("pat_times", "not strictly increasing",
                                 "must be strictly increasing")

    stops = []
    for i, item in enumerate(feed_stops):
        try:
            stop, restart = item
        except (TypeError, ValueError):
            raise ParameterError(f"feed_stops[{i}]", item,
                                 "must be a (stop_s, restart_s or None) pair") from None
        s = finite_array(f"feed_stops[{i}][0]", stop, ndim=0).item()
        r = math.inf if restart is None else finite_array(f"feed_stops[{i}][1]", restart,
                                                          ndim=0).item()
        if r < s:
            raise ParameterError(f"feed_stops[{i}][1]", restart, f"must be >= stop {stop}")
        stops.append((s, r))
    changes = sorted({*(float(finite_array("setpoint_changes", c, ndim=0).item())
                        for c in setpoint_changes),
                      *(r for _, r in stops if math.isfinite(r))})

    def ready_time(change: float) -> float:
        q = StartupQualifier(change + settle, 0 if p_t is None else k)
        return q.ready_s if p_t is None else q.update(p_t, p_ok)

    all_ok = np.ones(n, dtype=bool)
    for v in conds.values():
        all_ok &= v
    state = np.where(all_ok, IN_CONTROL, OUT_OF_CONTROL).astype(np.int8)
    completed = []
    if changes:
        ch = np.asarray(changes)
        idx = np.searchsorted(ch, tt, side="right") - 1  # last change at or before t
        ready = np.array([ready_time(c) for c in changes])
        for r, c in zip(ready, changes, strict=True):
            if math.isfinite(r):
                nxt = ch[ch > c]
                if nxt.size == 0 or r < nxt[0]:
                    completed.append(float(r))
        before_ready = (idx < 0) | (tt < ready[np.clip(idx, 0, None)] - 1e-12)
        state[before_ready] = STARTUP
    else:
        state[:] = STARTUP
    for s, r in stops:
        state[(tt >= s + delay - 1e-12) & (tt < r)] = SHUTDOWN
    return StateOfControl(t=tt, state=state, failed={k_: ~v for k_, v in conds.items()},
                          settle_time_s=settle, shutdown_delay_s=delay,
                          startup_complete_s=tuple(completed))
