"""``cmsim.sweep``: seeded Monte Carlo replicates over a grid of scenario overrides, at scale.

``cmsim.sweep(scenario, replicates=..., grid=..., seed=..., executor=..., out=...)`` returns a
:class:`SweepTable` (one row per case x replicate). Modules:

- :mod:`.runner`: :func:`sweep` and :func:`load` (seeding, chunks, resume, signals);
- :mod:`.grid`: :func:`expand_grid`;
- :mod:`.metrics`: :func:`case_metrics` (the built-in KPIs) and user metrics;
- :mod:`.worker`: what runs on a worker; :mod:`.backends`: pools, executors, Dask, chunk sizes;
- :mod:`.store`: the sweep directory (manifest, lock, Parquet parts);
- :mod:`.stats`: per grid point quantiles, escape probability and its confidence interval;
- :mod:`.plots`, :mod:`.table`: figures and the table type;
- :mod:`.command`: the ``cmsim sweep`` subcommand.

See ``docs/sweeps.md`` for the file layout, exit codes and the Dask recipe.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from cmsim.sweep.grid import expand_grid
from cmsim.sweep.metrics import case_metrics
from cmsim.sweep.runner import SweepInterrupted, load, sweep
from cmsim.sweep.stats import binomial_interval, summarize
from cmsim.sweep.store import SweepDefinitionError, SweepLockedError

__all__ = ["SweepDefinitionError", "SweepInterrupted", "SweepLockedError", "SweepTable",
           "binomial_interval", "case_metrics", "expand_grid", "load", "plot_hist",
           "plot_metric", "summarize", "sweep"]


def __getattr__(name: str) -> Any:
    # pandas and matplotlib load only when the table type or a figure is used
    if name == "SweepTable":
        from cmsim.sweep.table import SweepTable  # noqa: PLC0415

        return SweepTable
    if name in ("plot_hist", "plot_metric"):
        from cmsim.sweep import plots  # noqa: PLC0415

        return getattr(plots, name)
    raise AttributeError(f"module 'cmsim.sweep' has no attribute {name!r}")


class _CallableModule(types.ModuleType):
    """Importing ``cmsim.sweep`` binds this module to the attribute ``cmsim.sweep``, which
    would shadow the function; the module therefore calls :func:`sweep` when called."""

    def __call__(self, *args: Any, **kwargs: Any):
        return sweep(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
