"""Tablet and content model (docs/process.md), kept small.

* Mean API content of the tablets made in a tick, as a fraction of the target (label claim):
  ``api_content = w_api / w_target`` with ``w_api`` the API mass fraction of the flow at the dies.
* Individual tablets: mass ``m = m_sp (1 + eps_m)``, ``eps_m ~ N(0, mass_rsd^2)``; API content
  ``m w (1 + eps_h)`` with unit-dose heterogeneity ``eps_h ~ N(0, heterogeneity_rsd^2)``;
  potency (fraction of label claim) ``= content / (m_target w_target)``.
"""

from __future__ import annotations

import numpy as np

from cmsim import _validate as v
from cmsim.errors import ParameterError
from cmsim.streams import ChannelMap

__all__ = ["api_content", "sample_tablets"]


def api_content(chunk: np.ndarray, channel_map: ChannelMap, target_fraction: float) -> np.ndarray:
    """Mean API content per tick as a fraction of the target [-].

    Parameters
    ----------
    chunk : ndarray, shape (n_channels, n)
        Flow at the dies [kg/s].
    channel_map : cmsim.streams.ChannelMap
        Channel layout (gives the API rows).
    target_fraction : float
        Target API mass fraction [-], in (0, 1].

    Returns
    -------
    ndarray, shape (n,)
        ``w_api / target_fraction``; NaN in ticks without flow.
    """
    wt = v.probability("target_fraction", target_fraction, open_interval=False)
    if wt == 0.0:
        raise ParameterError("target_fraction", target_fraction, "must be > 0")
    x = np.asarray(chunk, dtype=np.float64)
    total = channel_map.total_flow(x)
    api = channel_map.component_flow(x, channel_map.api_material)
    out = np.full(total.shape, np.nan)
    ok = total > 0.0
    out[ok] = api[ok] / total[ok] / wt
    return out


def sample_tablets(api_fraction: np.ndarray, tablet_mass: float, target_fraction: float,
                   rng: np.random.Generator, *, mass_rsd: float = 0.01,
                   heterogeneity_rsd: float = 0.0,
                   mass_set_point: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Draw individual tablets for given API mass fractions at the dies.

    Parameters
    ----------
    api_fraction : array_like
        API mass fraction of the blend at each tablet's compression [-].
    tablet_mass : float
        Target tablet mass ``m_target`` [kg].
    target_fraction : float
        Target API mass fraction ``w_target`` [-].
    rng : numpy.random.Generator
        Random source.
    mass_rsd, heterogeneity_rsd : float
        Relative SDs of the tablet mass and of the unit-dose heterogeneity [-].
    mass_set_point : float, optional
        Tablet-mass set point ``m_sp`` [kg]; default ``tablet_mass``.

    Returns
    -------
    mass : ndarray
        Tablet masses [kg].
    potency : ndarray
        API content as a fraction of label claim [-] (1.0 = 100 % LC).
    """
    w = v.finite_array("api_fraction", api_fraction)
    m_t = v.positive("tablet_mass", tablet_mass)
    wt = v.positive("target_fraction", target_fraction)
    m_sp = m_t if mass_set_point is None else v.positive("mass_set_point", mass_set_point)
    s_m = v.non_negative("mass_rsd", mass_rsd)
    s_h = v.non_negative("heterogeneity_rsd", heterogeneity_rsd)
    if not isinstance(rng, np.random.Generator):
        raise ParameterError("rng", rng, "must be a numpy.random.Generator")
    mass = m_sp * (1.0 + s_m * rng.standard_normal(w.shape))
    content = mass * w * (1.0 + s_h * rng.standard_normal(w.shape))
    return mass, content / (m_t * wt)
