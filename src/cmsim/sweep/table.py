"""The table a sweep returns: a pandas DataFrame with the sweep's study tools attached."""

from __future__ import annotations

import html
from typing import Any

import pandas as pd

__all__ = ["SweepTable"]


class SweepTable(pd.DataFrame):
    """One row per case x replicate (a :class:`pandas.DataFrame`), plus

    - ``grid_axes``: the grid's field paths (list of str);
    - ``definition``: the sweep's definition (scenario SHA-256, grid, replicates, seed, cmsim
      version, metric names);
    - ``results``: the kept results by ``(case, replicate)``
      (:class:`cmsim.sweep.store.KeptResults`);
    - ``run_info``: how the last start ran (backend, tasks, chunk sizes, median compute time
      per case [s], round trip of an empty task [s], wall time [s]);
    - :meth:`summary`, :meth:`plot_metric`, :meth:`plot_hist` and an HTML view in notebooks
      (the per grid point statistics above the rows).
    """

    _metadata = ["grid_axes", "definition", "results", "run_info"]

    @property
    def _constructor(self) -> type[SweepTable]:
        return SweepTable

    @property
    def failed(self) -> pd.DataFrame:
        """The rows of the cases that raised (``error_type`` is set)."""
        if "error_type" not in self.columns:
            return self.iloc[0:0]
        return self[self["error_type"].notna()]

    def summary(self, metrics: list[str] | None = None, **kwargs: Any) -> pd.DataFrame:
        """Per grid point statistics (:func:`cmsim.sweep.stats.summarize`)."""
        from cmsim.sweep.stats import summarize  # noqa: PLC0415

        return summarize(self, metrics, **kwargs)

    def plot_metric(self, metric: str, x: str | None = None, **kwargs: Any) -> Any:
        """A metric against a grid axis, with its interval
        (:func:`cmsim.sweep.plots.plot_metric`)."""
        from cmsim.sweep.plots import plot_metric  # noqa: PLC0415

        return plot_metric(self, metric, x, **kwargs)

    def plot_hist(self, metric: str, **kwargs: Any) -> Any:
        """Histograms of a metric per grid point (:func:`cmsim.sweep.plots.plot_hist`)."""
        from cmsim.sweep.plots import plot_hist  # noqa: PLC0415

        return plot_hist(self, metric, **kwargs)

    def _is_whole_sweep(self) -> bool:
        return {"case", "replicate", "error_type"} <= set(self.columns) and len(self) > 0 \
            and getattr(self, "grid_axes", None) is not None

    def _repr_html_(self) -> str | None:
        """Header (scenario, runs, failures), the per grid point statistics, then the rows."""
        rows_html = super()._repr_html_()
        if not self._is_whole_sweep():
            return rows_html
        d = getattr(self, "definition", None) or {}
        n_cases = self["case"].nunique()
        n_failed = int(self["error_type"].notna().sum())
        head = (f"<p><b>cmsim sweep</b> of <code>{html.escape(str(d.get('scenario')))}</code>: "
                f"{len(self)} runs = {n_cases} grid point(s) x "
                f"{html.escape(str(d.get('replicates', '?')))} replicate(s), root seed "
                f"{html.escape(str(d.get('seed', '?')))}; "
                + (f"<span style='color:#b00'>{n_failed} failed</span>" if n_failed
                   else "none failed") + "</p>")
        stats = self.summary(metrics=[m for m in ("escapes", "waste", "api_content_rsd")
                                      if m in self.columns], quantiles=(0.5, 0.95))
        show = ["case", *self.grid_axes, "replicates", "failed"]
        show += [c for c in stats.columns if c.startswith("escape_")]
        show += [c for c in stats.columns if c.endswith(("_mean", "_q95"))
                 and not c.startswith("escape_")]
        table = pd.DataFrame(stats[show]).to_html(index=False, float_format=lambda v: f"{v:.4g}",
                                                  max_rows=20)
        return (f"<div>{head}<p>Per grid point (escape probability: Wilson 95 % interval):"
                f"</p>{table}<p>Runs:</p>{rows_html}</div>")
