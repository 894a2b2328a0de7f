"""Material traceability: lot shares, forward and backward genealogy queries.

Streams carry one channel per ``(material, lot)`` pair (see :mod:`cmsim.streams`). Because every
linear RTD stage acts identically on every channel, the share of lot :math:`L` in the flow of
material :math:`i` at the gate is simply

.. math:: \\phi_{i,L}(t) = \\frac{\\dot m_{i,L}(t)}{\\sum_{L'} \\dot m_{i,L'}(t)},

which equals the RTD convolution formula of docs/genealogy.md exactly, without a
separate convolution of lot indicators. A tick (a collection of tablets) *contains* a lot when
:math:`\\phi_{i,L} > \\varepsilon_{trace}` (default :math:`10^{-6}`, a recorded configuration
value).

This module is numpy-only (no pandas, simpy, pydantic or matplotlib); :class:`cmsim.results.
SimulationResult` wraps its answers in DataFrames.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cmsim import _validate
from cmsim.errors import ParameterError

__all__ = [
    "DEFAULT_TRACE_EPSILON",
    "lot_forward",
    "lot_shares",
    "lot_window",
    "lots_between",
]

#: Default trace threshold :math:`\varepsilon_{trace}` [-] (docs/genealogy.md, trace threshold).
DEFAULT_TRACE_EPSILON = 1e-6


def lot_shares(flow: np.ndarray, channels: Sequence[tuple[str, str]]) -> np.ndarray:
    """Share of each lot channel in the flow of its material, per tick.

    Parameters
    ----------
    flow : ndarray, shape (n_channels, n)
        Channel mass flows [kg/s].
    channels : sequence of (str, str)
        ``(material, lot)`` of each row of ``flow``.

    Returns
    -------
    ndarray, shape (n_channels, n)
        :math:`\\phi` [-]; the shares of one material sum to 1 in every tick where that material
        flows, and are NaN where it does not.

    Examples
    --------
    >>> import numpy as np
    >>> lot_shares(np.array([[1.0, 0.0], [3.0, 0.0]]), [("API", "A"), ("API", "B")])[:, 0]
    array([0.25, 0.75])
    """
    flow = np.asarray(flow, dtype=np.float64)
    if flow.ndim != 2 or flow.shape[0] != len(channels):
        raise ParameterError("flow", f"array of shape {flow.shape}",
                             f"must have shape ({len(channels)}, n)")
    out = np.full_like(flow, np.nan)
    for material in dict.fromkeys(m for m, _ in channels):
        rows = [i for i, (m, _) in enumerate(channels) if m == material]
        comp = flow[rows].sum(axis=0)
        ok = comp > 0.0
        out[np.ix_(rows, np.flatnonzero(ok))] = flow[np.ix_(rows, np.flatnonzero(ok))] / comp[ok]
    return out


def lot_forward(
    flow: np.ndarray,
    diverted: np.ndarray,
    channels: Sequence[tuple[str, str]],
    material: str,
    lot: str,
    *,
    dt: float,
    tablet_mass: float,
    holdup: np.ndarray | None = None,
    epsilon: float = DEFAULT_TRACE_EPSILON,
) -> dict[str, float | None]:
    """Forward genealogy query: where did a lot go?

    Parameters
    ----------
    flow : ndarray, shape (n_channels, n)
        Channel mass flows at the gate [kg/s], tick averages.
    diverted : ndarray of bool, shape (n,)
        Gate position per tick (True = to waste).
    channels : sequence of (str, str)
        ``(material, lot)`` per row.
    material, lot : str
        The lot asked about.
    dt : float
        Tick length [s].
    tablet_mass : float
        Nominal tablet mass [kg].
    holdup : ndarray, shape (n_channels,), optional
        Mass still inside the line at the end of the run per channel [kg].
    epsilon : float
        Trace threshold :math:`\\varepsilon_{trace}` [-].

    Returns
    -------
    dict
        ``accepted_kg``, ``diverted_kg``, ``holdup_kg`` [kg] (mass of the lot itself);
        ``accepted_tablets``, ``diverted_tablets`` (tablets formed in ticks where
        :math:`\\phi > \\varepsilon`, floats: tablets per tick = tick mass / tablet mass);
        ``first_time_s``, ``last_time_s`` [s] (start of the first and last tick with
        :math:`\\phi > \\varepsilon`; None when the lot never reached the gate).
    """
    dt = _validate.positive("dt", dt)
    tablet_mass = _validate.positive("tablet_mass", tablet_mass)
    epsilon = _validate.probability("epsilon", epsilon)
    channels = [(str(m), str(lt)) for m, lt in channels]
    key = (str(material), str(lot))
    if key not in channels:
        raise ParameterError("lot", key, f"must be one of {channels}")
    row = channels.index(key)
    flow = np.asarray(flow, dtype=np.float64)
    diverted = np.asarray(diverted, dtype=bool)
    phi = lot_shares(flow, channels)[row]
    contains = phi > epsilon  # NaN compares False
    tablets = flow.sum(axis=0) * dt / tablet_mass
    lot_mass = flow[row] * dt
    hit = np.flatnonzero(contains)
    return {
        "accepted_kg": float(lot_mass[~diverted].sum()),
        "diverted_kg": float(lot_mass[diverted].sum()),
        "holdup_kg": float(holdup[row]) if holdup is not None else 0.0,
        "accepted_tablets": float(tablets[contains & ~diverted].sum()),
        "diverted_tablets": float(tablets[contains & diverted].sum()),
        "first_time_s": float(hit[0] * dt) if hit.size else None,
        "last_time_s": float(hit[-1] * dt) if hit.size else None,
    }


def lots_between(
    flow: np.ndarray,
    channels: Sequence[tuple[str, str]],
    t0: float,
    t1: float,
    *,
    dt: float,
    epsilon: float = DEFAULT_TRACE_EPSILON,
) -> list[tuple[str, str, float, float]]:
    """Backward genealogy query: which lots are in the tablets made in ``[t0, t1)``?

    Parameters
    ----------
    flow : ndarray, shape (n_channels, n)
        Channel mass flows at the gate [kg/s].
    channels : sequence of (str, str)
        ``(material, lot)`` per row.
    t0, t1 : float
        Window of gate time [s]; tick ``k`` (time ``k dt``) is inside when ``t0 <= k dt < t1``.
    dt : float
        Tick length [s].
    epsilon : float
        Trace threshold [-]: a lot is listed when its share exceeds it in some tick of the window.

    Returns
    -------
    list of (material, lot, mass_kg, share)
        Mass of the lot in the window [kg] and its share of the material's mass there [-]; the
        shares of one material sum to 1 (up to the excluded lots below epsilon).
    """
    dt = _validate.positive("dt", dt)
    epsilon = _validate.probability("epsilon", epsilon)
    for name, value in (("t0", t0), ("t1", t1)):
        try:
            ok = not np.isnan(float(value))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ParameterError(name, value, "must be a time [s] (a real number; +-inf allowed)")
    t0, t1 = float(t0), float(t1)
    if not t1 > t0:
        raise ParameterError("t1", t1, f"must be > t0 = {t0}")
    flow = np.asarray(flow, dtype=np.float64)
    n = flow.shape[1]
    k0 = int(np.clip(np.ceil(t0 / dt - 1e-9), 0, n))  # clipped first: t0, t1 may be +-inf
    k1 = int(np.clip(np.ceil(t1 / dt - 1e-9), 0, n))
    channels = [(str(m), str(lt)) for m, lt in channels]
    if k1 <= k0:
        return []
    window = flow[:, k0:k1]
    phi = lot_shares(window, channels)
    mass = window.sum(axis=1) * dt
    out = []
    for material in dict.fromkeys(m for m, _ in channels):
        rows = [i for i, (m, _) in enumerate(channels) if m == material]
        total = mass[rows].sum()
        for r in rows:
            if np.any(phi[r] > epsilon):
                share = float(mass[r] / total) if total > 0 else float("nan")
                out.append((material, channels[r][1], float(mass[r]), share))
    return out


def lot_window(model, t_start: float, t_end: float,
               epsilon: float = DEFAULT_TRACE_EPSILON) -> tuple[float, float]:
    """Predicted window of gate time in which a lot fed during ``[t_start, t_end]`` appears.

    Parameters
    ----------
    model : cmsim.rtd.models.RTDModel
        RTD from the feeder to the gate (e.g. ``rtd.Series`` of the line's stages).
    t_start, t_end : float
        Feeding window of the lot [s].
    epsilon : float
        Trace threshold [-].

    Returns
    -------
    (float, float)
        ``(t_start + t_eps, t_end + t_{1-eps})`` [s] with ``t_q = model.quantile(q)``
        (docs/genealogy.md).
    """
    epsilon = _validate.probability("epsilon", epsilon)
    return (float(t_start + model.quantile(epsilon)),
            float(t_end + model.quantile(1.0 - epsilon)))
