"""Plots of a :class:`cmsim.results.SimulationResult` (matplotlib, imported lazily).

Every helper takes ``ax=None`` (a new figure is made through pyplot when omitted) and returns
the Axes (or the Figure for :func:`overview`). Importing this module does not import matplotlib.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["api_content", "lot_shares", "mass_flow", "overview"]


def _axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt  # noqa: PLC0415

    _, ax = plt.subplots(layout="constrained")
    return ax


def _time_axis(result: Any) -> tuple[np.ndarray, str]:
    t = result.time_s
    if t.size and t[-1] > 3 * 3600:
        return t / 3600.0, "time [h]"
    if t.size and t[-1] > 600:
        return t / 60.0, "time [min]"
    return t, "time [s]"


def _shade_diverted(ax: Any, result: Any, t: np.ndarray) -> None:
    div = np.asarray(result.diverted, dtype=bool)
    if not div.any():
        return
    edges = np.flatnonzero(np.diff(np.concatenate(([0], div.astype(np.int8), [0]))))
    step = t[1] - t[0] if t.size > 1 else 1.0
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        ax.axvspan(t[a], t[b - 1] + step, color="tab:red", alpha=0.15, lw=0)


def api_content(result: Any, ax: Any = None) -> Any:
    """API content at the gate as a fraction of target, with the specification limits.

    Parameters
    ----------
    result : cmsim.results.SimulationResult
        The run.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into.

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = _axes(ax)
    t, label = _time_axis(result)
    ax.plot(t, 100.0 * result.api_content, lw=1.0, color="tab:blue", label="API content")
    lo, hi = result.api_content_limits
    for lim in (lo, hi):
        ax.axhline(100.0 * lim, color="tab:red", ls="--", lw=0.8)
    _shade_diverted(ax, result, t)
    ax.set_xlabel(label)
    ax.set_ylabel("API content [% of target]")
    ax.set_title("API content at the press gate")
    return ax


def mass_flow(result: Any, ax: Any = None) -> Any:
    """Total mass flow at the gate [kg/h].

    Parameters
    ----------
    result : cmsim.results.SimulationResult
        The run.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into.

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = _axes(ax)
    t, label = _time_axis(result)
    ax.plot(t, result.mass_flow * 3600.0, lw=1.0, color="tab:green")
    ax.set_xlabel(label)
    ax.set_ylabel("mass flow [kg/h]")
    return ax


def lot_shares(result: Any, ax: Any = None) -> Any:
    """Lot shares of each material at the gate (one line per lot; materials with one lot are
    drawn too, at 1).

    Parameters
    ----------
    result : cmsim.results.SimulationResult
        The run.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into.

    Returns
    -------
    matplotlib.axes.Axes
    """
    from cmsim import tracing  # noqa: PLC0415

    ax = _axes(ax)
    t, label = _time_axis(result)
    phi = tracing.lot_shares(result.gate_flow, result.channels)
    for i, (m, lot) in enumerate(result.channels):
        ax.plot(t, phi[i], lw=1.0, label=f"{m} / {lot}")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(label)
    ax.set_ylabel("lot share [-]")
    ax.set_title("Lot shares at the press gate")
    ax.legend(fontsize="small", loc="best")
    return ax


def overview(result: Any, fig: Any = None) -> Any:
    """Three stacked panels: API content vs limits, mass flow, lot shares.

    Parameters
    ----------
    result : cmsim.results.SimulationResult
        The run.
    fig : matplotlib.figure.Figure, optional
        Figure to draw into (a new pyplot figure by default).

    Returns
    -------
    matplotlib.figure.Figure
    """
    if fig is None:
        import matplotlib.pyplot as plt  # noqa: PLC0415

        fig = plt.figure(figsize=(9, 8), layout="constrained")
    axes = fig.subplots(3, 1, sharex=True)
    api_content(result, ax=axes[0])
    mass_flow(result, ax=axes[1])
    lot_shares(result, ax=axes[2])
    for ax in axes[:-1]:
        ax.set_xlabel("")
    return fig
