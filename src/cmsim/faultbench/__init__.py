"""The labelled fault benchmark of the PAT monitor (``cmsim bench-monitor``).

``scenarios/faults/manifest.toml`` labels each fault scenario with its kind, the ground-truth
start and end of the fault and whether it makes nonconforming tablets;
:func:`bench_monitor` runs seeded replicates of every fault through :func:`cmsim.sweep` and
reports, per fault and diversion policy, escapes, waste, false diversions, detection delay and
the monitor's expected escapes. Metric definitions: :mod:`cmsim.faultbench.metrics`.
:func:`stress_monitor` (``cmsim stress-monitor``) runs random disturbance campaigns on any
scenario's line (:mod:`cmsim.faultbench.stress`).

>>> import cmsim
>>> table = cmsim.bench_monitor(replicates=20)      # doctest: +SKIP
"""

from cmsim.faultbench.bench import bench_monitor, default_manifest, run_fault
from cmsim.faultbench.manifest import KINDS, Fault, ManifestError, load_manifest
from cmsim.faultbench.metrics import detection_time, read_run, summarize_case, wilson_interval
from cmsim.faultbench.report import to_markdown, write_outputs
from cmsim.faultbench.stress import STRESS_KINDS, stress_monitor

__all__ = [
    "KINDS",
    "STRESS_KINDS",
    "Fault",
    "ManifestError",
    "bench_monitor",
    "default_manifest",
    "detection_time",
    "load_manifest",
    "read_run",
    "run_fault",
    "stress_monitor",
    "summarize_case",
    "to_markdown",
    "wilson_interval",
    "write_outputs",
]
