"""cmsim: continuous direct-compression line simulator with RTD tracing and PAT diversion.

Units inside cmsim are SI: seconds [s], kilograms [kg], mass flows [kg/s] and mass fractions [-].
"""

from cmsim import rtd
from cmsim._version import __version__

__all__ = ["__version__", "rtd"]
