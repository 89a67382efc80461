"""Aggregation of logged runs (mean and spread over seeds, cost to reach a target), their plots, tables and
reports.

Everything here reads plain rows (the content of ``metrics.csv``), so plots and tables can be made from run
folders long after the runs, without re-running anything.

- :mod:`proxgt.reporting.curves`: :class:`Curve`, :func:`mean_curve`, :func:`cost_to_target`,
  :func:`curves_figure`, :func:`plot_curves` (re-exported here);
- :mod:`proxgt.reporting.runs`: reading run folders back, series and their tables;
- :mod:`proxgt.reporting.report`: ``report.md`` with plots and a table for a folder of runs.
"""

from proxgt.reporting.curves import Curve, cost_to_target, curves_figure, mean_curve, plot_curves, series_style

__all__ = ["Curve", "mean_curve", "cost_to_target", "curves_figure", "plot_curves", "series_style"]
