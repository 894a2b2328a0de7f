"""Diversion manager: turns diversion windows into per-tick gate positions
(docs/monitor.md#diversion-windows).

The manager owns a boolean *plan* (one entry per gate tick, True = divert) and a list of
committed windows. A window is a :class:`~cmsim.monitor.windows.DiversionWindow` in continuous
output time at the diverter, requested at a *decision time*:

* **Tick mapping.** Gate tick ``k`` covers ``[k dt, (k+1) dt)`` (the line's time-stamp
  convention). A window ``[start, end]`` diverts every tick that overlaps it,
  ``floor(start/dt) <= k < ceil(end/dt)``, so the diverted ticks cover the window (conservative
  by at most one tick at each end).
* **Causality.** A decision taken at time ``t_d`` moves the gate at ``t_d + gate_delay`` at the
  earliest: ticks before ``ceil((t_d + gate_delay)/dt)`` are never changed. Whatever part of a
  window lies before that is recorded as ``escaped_s`` (material the gate could not catch).
* **Never shorten.** Windows are only ever extended; an *open* window (trigger still active) is
  re-requested with a later end as the trigger persists, and the union of all requests is kept.
* **Merging.** Overlapping (or touching) committed windows form one diversion *event*; each
  event keeps every contributing request (trigger, window, method, margins, RTD parameters).

Counting (:meth:`DiversionManager.events`): tablets and mass diverted per event are the sums of
the gate flow over the event's diverted ticks (tablets = mass / nominal tablet mass).
Pure numpy; usable without the engine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cmsim._validate import non_negative, positive
from cmsim.errors import ParameterError
from cmsim.monitor.windows import DiversionWindow

__all__ = ["DiversionManager", "DiversionRequest", "window_ticks"]


def window_ticks(start_s: float, end_s: float, dt: float) -> tuple[int, int]:
    """Gate ticks ``[k_lo, k_hi)`` overlapping the window ``[start_s, end_s]``.

    Parameters
    ----------
    start_s, end_s : float
        Window in output time at the diverter [s].
    dt : float
        Tick length [s].

    Returns
    -------
    (int, int)
        ``floor(start/dt)`` and ``max(ceil(end/dt), k_lo + 1)`` (a window always diverts at least
        the tick containing its start).

    Examples
    --------
    >>> window_ticks(358.65, 440.89, 0.5)
    (717, 882)
    """
    d = positive("dt", dt)
    lo = math.floor(float(start_s) / d + 1e-9)
    hi = math.ceil(float(end_s) / d - 1e-9)
    return lo, max(hi, lo + 1)


@dataclass
class DiversionRequest:
    """One committed request: a window asked for at a decision time.

    Attributes
    ----------
    window : DiversionWindow
        The window as computed (before clipping to the decision time).
    decision_s : float
        Time the decision was taken [s].
    k_lo, k_hi : int
        Ticks actually planned ``[k_lo, k_hi)`` (after the causality clip).
    escaped_s : float
        Part of the window before the gate could act [s] (0 when the lead time sufficed).
    key : str
        Identifier of the trigger instance (an open window re-requested keeps its key).
    """

    window: DiversionWindow
    decision_s: float
    k_lo: int
    k_hi: int
    escaped_s: float
    key: str
    updates: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class DiversionManager:
    """Plan of the diverter, built from diversion windows requested over time.

    Parameters
    ----------
    n_ticks : int
        Length of the run [ticks].
    dt : float
        Tick length [s].
    gate_delay : float
        Actuation delay of the gate [s], >= 0.

    Attributes
    ----------
    plan : ndarray of bool, shape (n_ticks,)
        True where the gate is planned to divert.
    requests : dict of str to DiversionRequest
        Committed requests by key, in order of first request.

    Examples
    --------
    >>> from cmsim.monitor.windows import DiversionWindow
    >>> m = DiversionManager(100, 1.0, gate_delay=0.5)
    >>> r = m.request(DiversionWindow(20.0, 30.0, "test", "B"), decision_s=5.0)
    >>> int(m.plan.sum()), (r.k_lo, r.k_hi)
    (10, (20, 30))
    """

    def __init__(self, n_ticks: int, dt: float, gate_delay: float = 0.0) -> None:
        if isinstance(n_ticks, bool) or int(n_ticks) != n_ticks or n_ticks < 0:
            raise ParameterError("n_ticks", n_ticks, "must be an integer >= 0")
        self.n_ticks = int(n_ticks)
        self.dt = positive("dt", dt)
        self.gate_delay = non_negative("gate_delay", gate_delay)
        self.plan = np.zeros(self.n_ticks, dtype=bool)
        self.requests: dict[str, DiversionRequest] = {}
        self._changed: tuple[int, int] | None = None
        self._n = 0

    # ------------------------------------------------------------------ planning
    def earliest_tick(self, decision_s: float) -> int:
        """First tick the gate can still change after a decision at ``decision_s`` [-]."""
        return max(0, math.ceil((float(decision_s) + self.gate_delay) / self.dt - 1e-9))

    def request(self, window: DiversionWindow, decision_s: float, *, key: str | None = None,
                extra: dict[str, Any] | None = None) -> DiversionRequest:
        """Commit a window decided at ``decision_s``; extend the request ``key`` if it exists.

        Parameters
        ----------
        window : DiversionWindow
            Window at the diverter [s].
        decision_s : float
            Time the decision is taken [s].
        key : str, optional
            Trigger-instance identifier; a request with an existing key updates that request
            (its window is the union of the old and the new one: never shortened).
        extra : dict, optional
            Audit data stored with the request (plain JSON values).

        Returns
        -------
        DiversionRequest
            The committed request.
        """
        if not isinstance(window, DiversionWindow):
            raise ParameterError("window", window, "must be a DiversionWindow")
        d = float(decision_s)
        if not math.isfinite(d):
            raise ParameterError("decision_s", decision_s, "must be finite")
        k_min = self.earliest_tick(d)
        lo, hi = window_ticks(window.start_s, window.end_s, self.dt)
        escaped = max(0.0, min(k_min * self.dt, float(window.end_s)) - float(window.start_s))
        lo_c = min(max(lo, k_min), self.n_ticks)
        hi_c = min(max(hi, lo_c), self.n_ticks)
        if key is None:
            key = f"request-{self._n}"
        old = self.requests.get(key)
        if old is None:
            self._n += 1
            req = DiversionRequest(window, d, lo_c, hi_c, escaped if lo < k_min else 0.0,
                                   key, extra=dict(extra or {}))
            self.requests[key] = req
        else:
            req = old
            if hi_c > lo_c:
                req.k_lo = min(old.k_lo, lo_c) if old.k_hi > old.k_lo else lo_c
                req.k_hi = max(old.k_hi, hi_c)
            req.window = DiversionWindow(
                start_s=min(old.window.start_s, window.start_s),
                end_s=max(old.window.end_s, window.end_s), trigger=window.trigger,
                method=window.method, margins=window.margins, alpha=window.alpha,
                rtd_params=window.rtd_params, details={**old.window.details,
                                                       **window.details})
            req.updates += 1
            if extra:
                req.extra.update(extra)
        if hi_c > lo_c:  # only the newly requested ticks (never before the decision)
            self.plan[lo_c:hi_c] = True
            a, b = lo_c, hi_c
            if self._changed is not None:
                a, b = min(a, self._changed[0]), max(b, self._changed[1])
            self._changed = (a, b)
        return req

    def pop_changed(self) -> tuple[int, int] | None:
        """Tick range ``[a, b)`` of the plan changed since the last call (None if unchanged)."""
        out, self._changed = self._changed, None
        return out

    # ------------------------------------------------------------------ events
    def intervals(self, diverted: np.ndarray | None = None) -> list[tuple[int, int]]:
        """Runs ``[k_lo, k_hi)`` of consecutive diverted ticks of ``diverted`` (default plan)."""
        mask = self.plan if diverted is None else np.asarray(diverted, dtype=bool)
        if not mask.any():
            return []
        edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
        return list(zip(np.flatnonzero(edges == 1).tolist(),
                        np.flatnonzero(edges == -1).tolist(), strict=True))

    def events(self, gate_flow: np.ndarray, tablet_mass: float,
               diverted: np.ndarray | None = None) -> list[dict[str, Any]]:
        """One record per diversion event (run of diverted ticks) with its contributing requests.

        Parameters
        ----------
        gate_flow : ndarray, shape (n_channels, n_ticks)
            Gate outflow [kg/s].
        tablet_mass : float
            Nominal tablet mass [kg].
        diverted : ndarray of bool, optional
            Actual gate positions (default: the plan).

        Returns
        -------
        list of dict
            ``start_s``, ``end_s`` (edges of the diverted ticks) [s], ``trigger`` (contributing
            triggers joined with ``"+"``), ``tablets`` [-], ``mass_kg`` [kg], ``windows``
            (the requests' audit records: window, method, margins, alpha, RTD parameters,
            decision time, escaped time).
        """
        flow = np.asarray(gate_flow, dtype=np.float64)
        tm = positive("tablet_mass", tablet_mass)
        mass_tick = flow.sum(axis=0) * self.dt
        reqs = [r for r in self.requests.values() if r.k_hi > r.k_lo]
        out = []
        for a, b in self.intervals(diverted):
            inside = sorted((r for r in reqs if r.k_lo < b and r.k_hi > a),
                            key=lambda r: (r.k_lo, r.window.start_s, r.key))
            triggers: list[str] = []
            for r in inside:
                for t in r.window.triggers:
                    if t not in triggers:
                        triggers.append(t)
            mass = float(mass_tick[a:b].sum())
            out.append({
                "start_s": a * self.dt, "end_s": b * self.dt,
                "trigger": "+".join(triggers) if triggers else "manual",
                "tablets": mass / tm, "mass_kg": mass,
                "windows": [self.request_record(r) for r in inside],
            })
        return out

    def request_record(self, req: DiversionRequest) -> dict[str, Any]:
        """Audit record of a request (plain JSON)."""
        rec = req.window.to_record()
        rec.update({"key": req.key, "decision_s": req.decision_s,
                    "gate_start_s": req.k_lo * self.dt,
                    "gate_end_s": req.k_hi * self.dt, "escaped_s": req.escaped_s,
                    "gate_delay_s": self.gate_delay, "updates": req.updates})
        rec.update(req.extra)
        return rec
