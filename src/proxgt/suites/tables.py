"""A suite's results: the table per series and its caption, and the cost model that prices them."""

from __future__ import annotations

import json
from typing import Any

from proxgt._io import atomic_write_text
from proxgt.settings import RunConfig
from proxgt.suites.cells import (
    Suite,
)

__all__ = ["suite_table", "suite_table_caption", "suite_cost_model"]


def suite_cost_model(suite: Suite):
    """The suite's cost model; ``sample_s`` measured on the first cell's problem when not given (cached in
    suite.json)."""
    from proxgt.costmodel import CostModel, measure_sample_time

    cost = dict(suite.cost)
    if "sample_s" not in cost:
        path = suite.out / "suite.json"
        info = json.loads(path.read_text()) if path.is_file() else {}
        if "measured_sample_s" not in info:
            info["measured_sample_s"] = measure_sample_time(RunConfig.from_dict(suite.cells[0].config))
            atomic_write_text(path, json.dumps(info, indent=2) + "\n")
        cost["sample_s"] = info["measured_sample_s"]
    return CostModel.from_dict(cost)


def suite_table(suite: Suite) -> list[dict[str, Any]]:
    """The aggregate table of the suite's finished cells; written to ``table.csv``/``table.md`` (the markdown
    headed by :func:`suite_table_caption`).

    Costs ``*_to_target`` are read where the seed-mean metric gets to the suite's target and stays at or below
    it to the end (``inf``: not reached), ``first_dip_*`` where it first gets there, and ``final_median`` is
    the median of the seed mean over the last 20% of the logged points.
    """
    from proxgt.reporting.runs import group_series, load_run, series_table, write_table

    recs = [load_run(suite.folder(c)) for c in suite.cells if (suite.folder(c) / "metrics.csv").is_file()]
    rows, _ = series_table(group_series(recs), target=suite.target, metric=suite.metric,
                           cost=suite_cost_model(suite))
    _, md = write_table(rows, suite.out / "table", caption=suite_table_caption(suite), metric=suite.metric)
    if suite.tune is not None:
        from proxgt.reporting.runs import tuning_markdown
        from proxgt.suites.tuning import read_tuning

        tuning = read_tuning(suite.out)
        if tuning is not None:
            atomic_write_text(md, md.read_text() + "\n" + tuning_markdown(tuning))
    return rows


def suite_table_caption(suite: Suite) -> str:
    """The one-sentence header of the suite's table: the target and how "to target" and "final" are read."""
    from proxgt.reporting.runs import table_caption

    return table_caption(suite.metric, suite.target)


