"""PAT monitoring building blocks: sensors, control charts, multivariate SPC, diversion windows.

Pure numpy/scipy/numba domain objects, usable alone from Python and by the line engine.
"""

from cmsim.monitor.charts import CUSUMChart, EWMAChart, MovingAverageChart, ShewhartChart
from cmsim.monitor.mspc import MSPCResult, PCAMonitor, jackson_mudholkar_limit
from cmsim.monitor.sensors import LoadCellSignal, NIRSensor, TabletWeightSignal
from cmsim.monitor.state import (
    StartupQualifier,
    StateOfControl,
    evaluate_state_of_control,
    sustained,
)
from cmsim.monitor.windows import (
    DiversionWindow,
    default_margin,
    merge_windows,
    oos_intervals,
    pat_window,
    predicted_window,
    quantile_window,
    rtd_envelope,
    scale_residence_times,
)

__all__ = [
    "CUSUMChart",
    "DiversionWindow",
    "EWMAChart",
    "LoadCellSignal",
    "MSPCResult",
    "MovingAverageChart",
    "NIRSensor",
    "PCAMonitor",
    "ShewhartChart",
    "StartupQualifier",
    "StateOfControl",
    "TabletWeightSignal",
    "default_margin",
    "evaluate_state_of_control",
    "jackson_mudholkar_limit",
    "merge_windows",
    "oos_intervals",
    "pat_window",
    "predicted_window",
    "quantile_window",
    "rtd_envelope",
    "scale_residence_times",
    "sustained",
]
