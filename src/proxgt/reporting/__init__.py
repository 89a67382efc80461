"""Aggregation of logged runs (mean and spread over seeds, cost to reach a target, final value), their plots,
tables and reports.

Everything here reads plain rows (the content of ``metrics.csv``), so plots and tables can be made from run
folders long after the runs, without re-running anything.

A target counts as reached where the seed-mean curve gets to it and stays there (:func:`sustained_cost`; the
first dip below it, :func:`first_dip_cost`, is a secondary figure), and a final value is the median of the
seed-mean curve over the last 20% of the logged points (:func:`final_median`).

- :mod:`proxgt.reporting.curves`: :class:`Curve`, :func:`mean_curve`, :func:`sustained_cost`,
  :func:`first_dip_cost`, :func:`final_median` (and their array forms :func:`sustained_index`,
  :func:`first_dip_index`, :func:`tail_median`), :func:`curves_figure`, :func:`plot_curves` (re-exported here);
- :mod:`proxgt.reporting.runs`: reading run folders back, series and their tables;
- :mod:`proxgt.reporting.report`: ``report.md`` with plots and a table for a folder of runs;
- :mod:`proxgt.reporting.load`: run folders as pandas DataFrames (``proxgt.load_run``, ``proxgt.load_suite``).
"""

from proxgt.reporting.curves import (
    FINAL_RULE,
    FIRST_DIP_RULE,
    TAIL_FRACTION,
    TO_TARGET_RULE,
    Curve,
    cost_to_target,
    curves_figure,
    final_median,
    first_dip_cost,
    first_dip_index,
    mean_curve,
    plot_curves,
    series_style,
    sustained_cost,
    sustained_index,
    tail_median,
)

__all__ = [
    "Curve",
    "mean_curve",
    "sustained_index",
    "first_dip_index",
    "tail_median",
    "sustained_cost",
    "first_dip_cost",
    "final_median",
    "TAIL_FRACTION",
    "TO_TARGET_RULE",
    "FIRST_DIP_RULE",
    "FINAL_RULE",
    "cost_to_target",
    "curves_figure",
    "plot_curves",
    "series_style",
]
