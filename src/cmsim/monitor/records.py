"""The audit record of every diversion event: what diverted it, and on what evidence.

One record per run of diverted gate ticks (``summary.json`` ``diversion_events`` and the
``diversion`` records of the event log): the window, the triggers (start-up / shut-down rules,
the risk, the windows of alarms), tablets and mass, the decision time of its first tick, the
largest risk with the two estimates behind it (NIR-corrected and load cells only) and which
of them gave it, the range of the estimated content, and the windows' own records.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cmsim.monitor.risk import content_risk

__all__ = ["diversion_records"]


def _num(x: float) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def _estimate(content: np.ndarray, sd: np.ndarray, k: int) -> dict[str, float | None]:
    return {"content": _num(content[k]), "sd": _num(sd[k])}


def diversion_records(monitor: Any, gate_flow: np.ndarray, diverted: np.ndarray,
                      tablet_mass: float) -> list[dict[str, Any]]:
    """One record per run of diverted ticks.

    Parameters
    ----------
    monitor : cmsim.monitor.line_monitor.LineMonitor
        The monitor after the run (its per-tick ``risk``, ``content``, ``sd``,
        ``content_model``, ``sd_model``, phase intervals and policy requests).
    gate_flow : ndarray, shape (n_channels, n_ticks)
        Gate outflow [kg/s].
    diverted : ndarray of bool, shape (n_ticks,)
        Actual gate positions.
    tablet_mass : float
        Nominal tablet mass [kg].

    Returns
    -------
    list of dict
        ``start_s``, ``end_s`` [s], ``trigger``, ``tablets`` [-], ``mass_kg`` [kg],
        ``decision_s`` [s], ``max_risk`` [-], ``max_risk_time_s`` [s],
        ``estimate_at_max_risk`` and ``model_estimate_at_max_risk`` (content and SD,
        fractions of target), ``risk_from`` (``"nir_corrected"`` or ``"load_cells"``: the
        estimate whose risk was the larger there), ``content_range`` and ``windows``.
    """
    dt = monitor.dt
    mask = np.asarray(diverted, dtype=bool)
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    mass_tick = np.asarray(gate_flow).sum(axis=0) * dt
    g = monitor.estimator.settings.gate_ticks
    policy = monitor.policy
    reqs = getattr(getattr(policy, "manager", None), "requests", {})
    lo, hi = monitor.limits
    out = []
    for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
        triggers = [r.reason for r in monitor.phases.intervals  # (a pause shorter than
                    if r.first < b and (r.end is None or r.end > max(a, r.first))]  # t_alpha:
        if (monitor.risk[a:b] > getattr(policy, "max_risk", np.inf)).any():     # none)
            triggers.append("risk")
        windows = [policy.manager.request_record(r) for r in reqs.values()
                   if r.k_lo < b and r.k_hi > a]
        triggers += [w["trigger"] for w in windows if w["trigger"] not in triggers]
        mass = float(mass_tick[a:b].sum())
        risk = monitor.risk[a:b]
        content = monitor.content[a:b]
        k = a + int(np.argmax(risk))
        nir_risk, lc_risk = (content_risk(c[k:k + 1], s[k:k + 1], lo, hi)[0]
                             for c, s in ((monitor.content, monitor.sd),
                                          (monitor.content_model, monitor.sd_model)))
        out.append({
            "start_s": float(a * dt), "end_s": float(b * dt),
            "trigger": "+".join(dict.fromkeys(triggers)) or "manual",
            "tablets": mass / tablet_mass, "mass_kg": mass,
            "decision_s": float((a - g + 1) * dt),
            "max_risk": float(risk.max()),
            "max_risk_time_s": float(k * dt),
            "estimate_at_max_risk": _estimate(monitor.content, monitor.sd, k),
            "model_estimate_at_max_risk": _estimate(monitor.content_model, monitor.sd_model, k),
            "risk_from": "load_cells" if lc_risk > nir_risk else "nir_corrected",
            "content_range": [_num(np.nanmin(content)) if np.isfinite(content).any() else None,
                              _num(np.nanmax(content)) if np.isfinite(content).any() else None],
            "windows": windows,
        })
    return out
