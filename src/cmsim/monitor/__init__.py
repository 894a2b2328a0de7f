"""PAT monitoring building blocks: sensors, control charts, multivariate SPC, diversion windows.

Pure numpy/scipy/numba domain objects, usable alone from Python and by the line engine.
"""

from cmsim.monitor.charts import CUSUMChart, EWMAChart, MovingAverageChart, ShewhartChart
from cmsim.monitor.mspc import MSPCResult, PCAMonitor, jackson_mudholkar_limit

__all__ = [
    "CUSUMChart",
    "EWMAChart",
    "MSPCResult",
    "MovingAverageChart",
    "PCAMonitor",
    "ShewhartChart",
    "jackson_mudholkar_limit",
]
