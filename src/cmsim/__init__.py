"""cmsim: continuous direct-compression line simulator with RTD tracing and PAT diversion.

Units inside cmsim are SI: seconds [s], kilograms [kg], mass flows [kg/s] and mass fractions [-].

>>> import cmsim
>>> result = cmsim.run("scenarios/baseline.toml")   # doctest: +SKIP
>>> result.summary()["tablets"]["produced"]          # doctest: +SKIP
"""

from cmsim import rtd
from cmsim._version import __version__
from cmsim.api import run
from cmsim.results import SimulationResult

__all__ = ["SimulationResult", "__version__", "bench_monitor", "rtd", "run", "stress_monitor",
           "sweep"]


def __getattr__(name: str):
    # lazy: ``cmsim.sweep`` imports pandas only when used
    if name == "sweep":
        from cmsim.sweep import sweep  # noqa: PLC0415

        return sweep
    if name == "bench_monitor":
        from cmsim.faultbench import bench_monitor  # noqa: PLC0415

        return bench_monitor
    if name == "stress_monitor":
        from cmsim.faultbench.stress import stress_monitor  # noqa: PLC0415

        return stress_monitor
    raise AttributeError(f"module 'cmsim' has no attribute {name!r}")
