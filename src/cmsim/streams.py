"""Stream chunks: mass flows per (material, lot) channel.

A stream chunk is a float64 array of shape ``(n_channels, n_ticks)`` holding tick-averaged mass
flows [kg/s]. A *channel* is one ``(material, lot)`` pair; the :class:`ChannelMap` names the
channels and provides the derived quantities:

* component flow of a material = sum of its lot channels [kg/s];
* lot share = channel flow / component flow [-];
* mass fraction of a material = component flow / total flow [-].

Every linear RTD stage acts identically on every channel, so lot genealogy is exact and
mass-conserving by construction. This module is numpy-only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from cmsim.errors import ParameterError

__all__ = ["ChannelMap", "zeros"]


@dataclass(frozen=True)
class ChannelMap:
    """Names of the channels of a stream chunk.

    Parameters
    ----------
    materials : tuple of str
        Material (component) names, in a fixed order. No order is implied for the API: use
        ``api_material``.
    channels : tuple of (str, str)
        ``(material, lot)`` per channel (row of a chunk). Every material must have at least one
        channel and every channel's material must be listed in ``materials``.
    api_material : str
        Name of the active ingredient; must be in ``materials``.

    Raises
    ------
    cmsim.errors.ParameterError
        On duplicate names, unknown materials, materials without channels or an unknown API.
    """

    materials: tuple[str, ...]
    channels: tuple[tuple[str, str], ...]
    api_material: str
    _index: dict[tuple[str, str], int] = field(init=False, repr=False, compare=False)
    _rows: dict[str, np.ndarray] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        materials = tuple(str(m) for m in self.materials)
        channels = tuple((str(m), str(lot)) for m, lot in self.channels)
        object.__setattr__(self, "materials", materials)
        object.__setattr__(self, "channels", channels)
        if not materials:
            raise ParameterError("materials", materials, "must name at least one material")
        if len(set(materials)) != len(materials):
            raise ParameterError("materials", materials, "names must be unique")
        if len(set(channels)) != len(channels):
            raise ParameterError("channels", channels, "(material, lot) pairs must be unique")
        known = set(materials)
        for ch in channels:
            if ch[0] not in known:
                raise ParameterError("channels", ch, f"material must be one of {materials}")
        if self.api_material not in known:
            raise ParameterError("api_material", self.api_material,
                                 f"must be one of {materials}")
        index = {ch: i for i, ch in enumerate(channels)}
        rows = {}
        for m in materials:
            r = np.array([i for i, ch in enumerate(channels) if ch[0] == m], dtype=np.intp)
            if r.size == 0:
                raise ParameterError("channels", channels, f"material {m!r} has no lot channel")
            r.setflags(write=False)
            rows[m] = r
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "_rows", rows)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_lots(cls, lots: Mapping[str, Iterable[str]], *, api_material: str) -> ChannelMap:
        """Build a map from ``{material: [lot, ...]}``.

        Parameters
        ----------
        lots : mapping of str to iterable of str
            Lots per material, in channel order (materials in mapping order).
        api_material : str
            Name of the active ingredient.

        Returns
        -------
        ChannelMap
        """
        materials = tuple(lots)
        channels = tuple((m, str(lot)) for m in materials for lot in lots[m])
        return cls(materials=materials, channels=channels, api_material=api_material)

    # ------------------------------------------------------------------ lookup
    @property
    def n_channels(self) -> int:
        """Number of channels (rows of a chunk)."""
        return len(self.channels)

    @property
    def n_materials(self) -> int:
        """Number of materials."""
        return len(self.materials)

    def index(self, material: str, lot: str) -> int:
        """Row of the channel ``(material, lot)``.

        Raises
        ------
        cmsim.errors.ParameterError
            If the channel does not exist.
        """
        try:
            return self._index[(material, str(lot))]
        except KeyError:
            raise ParameterError("channel", (material, lot),
                                 f"must be one of {self.channels}") from None

    def material_rows(self, material: str) -> np.ndarray:
        """Rows (int array, read-only) of the lot channels of ``material``."""
        try:
            return self._rows[material]
        except KeyError:
            raise ParameterError("material", material,
                                 f"must be one of {self.materials}") from None

    def lots(self, material: str) -> tuple[str, ...]:
        """Lots of ``material`` in channel order."""
        return tuple(self.channels[i][1] for i in self.material_rows(material))

    def material_of(self, row: int) -> str:
        """Material of channel ``row``."""
        return self.channels[row][0]

    @property
    def api_rows(self) -> np.ndarray:
        """Rows of the API lot channels."""
        return self.material_rows(self.api_material)

    # ------------------------------------------------------------------ derived quantities
    def _check(self, chunk: np.ndarray) -> np.ndarray:
        arr = np.asarray(chunk, dtype=np.float64)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2 or arr.shape[0] != self.n_channels:
            raise ParameterError("chunk", f"array of shape {np.shape(chunk)}",
                                 f"must have shape ({self.n_channels}, n_ticks)")
        return arr

    def component_flows(self, chunk: np.ndarray) -> np.ndarray:
        """Component (material) flows, shape ``(n_materials, n)`` [kg/s], in ``materials`` order.

        A 1-D ``chunk`` of length ``n_channels`` is treated as one tick.
        """
        arr = self._check(chunk)
        out = np.empty((self.n_materials, arr.shape[1]))
        for i, m in enumerate(self.materials):
            np.sum(arr[self._rows[m]], axis=0, out=out[i])
        return out

    def component_flow(self, chunk: np.ndarray, material: str) -> np.ndarray:
        """Flow of one material, shape ``(n,)`` [kg/s]."""
        arr = self._check(chunk)
        return arr[self.material_rows(material)].sum(axis=0)

    def total_flow(self, chunk: np.ndarray) -> np.ndarray:
        """Total mass flow per tick, shape ``(n,)`` [kg/s]."""
        return self._check(chunk).sum(axis=0)

    def mass_fractions(self, chunk: np.ndarray) -> np.ndarray:
        """Mass fractions per material, shape ``(n_materials, n)`` [-].

        Ticks with zero total flow give NaN (composition undefined).
        """
        comp = self.component_flows(chunk)
        total = comp.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = comp / total
        frac[:, total <= 0.0] = np.nan
        return frac

    def lot_shares(self, chunk: np.ndarray, material: str) -> dict[str, np.ndarray]:
        """Share of each lot in the flow of ``material``, ``{lot: (n,) array}`` [-].

        Shares sum to 1 where the material flows; ticks with zero material flow give NaN.
        """
        arr = self._check(chunk)
        rows = self.material_rows(material)
        comp = arr[rows].sum(axis=0)
        zero = comp <= 0.0
        out = {}
        with np.errstate(invalid="ignore", divide="ignore"):
            for r in rows:
                s = arr[r] / comp
                s[zero] = np.nan
                out[self.channels[r][1]] = s
        return out

    def zeros(self, n_ticks: int) -> np.ndarray:
        """A zero chunk of shape ``(n_channels, n_ticks)``."""
        return np.zeros((self.n_channels, int(n_ticks)))


def zeros(channel_map: ChannelMap, n_ticks: int) -> np.ndarray:
    """A zero chunk of shape ``(channel_map.n_channels, n_ticks)`` [kg/s]."""
    return channel_map.zeros(n_ticks)
