"""Unit operations of the line: LIW feeders, continuous blender, tablet press, RTD stages.

Numpy/numba only; constructors take plain SI floats (s, kg, kg/s, fractions), so every unit is
usable alone from Python. Stream chunks are ``(n_channels, n_ticks)`` arrays of mass flows
[kg/s] laid out by a :class:`cmsim.streams.ChannelMap`.
"""

from cmsim.unitops.blender import ContinuousBlender
from cmsim.unitops.feeder import Hopper, LossInWeightFeeder
from cmsim.unitops.press import TabletPress
from cmsim.unitops.stage import SPEED_CAPABLE_MODELS, RTDStage
from cmsim.unitops.tablets import api_content, sample_tablets

__all__ = [
    "SPEED_CAPABLE_MODELS",
    "ContinuousBlender",
    "Hopper",
    "LossInWeightFeeder",
    "RTDStage",
    "TabletPress",
    "api_content",
    "sample_tablets",
]
