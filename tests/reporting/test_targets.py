"""Reaching a target means getting there and staying; a final value is a median over the tail.

The functions of ``proxgt.reporting.curves`` and every table built on them (series tables, plan candidates).
"""

from __future__ import annotations

import csv
import doctest
import io
import math
from pathlib import Path

import numpy as np
import pytest

import proxgt.costmodel as costmodel_mod
import proxgt.reporting.curves as curves_mod
import proxgt.reporting.runs as runs_mod
from proxgt.costmodel import CostModel, candidate_from_runs, recommend
from proxgt.reporting import (
    Curve,
    cost_to_target,
    final_median,
    first_dip_cost,
    first_dip_index,
    mean_curve,
    sustained_cost,
    sustained_index,
    tail_median,
)
from proxgt.reporting.runs import RunRecord, series_table, table_caption, table_csv, table_markdown

DIP_THEN_RISE = [1.0, 0.5, 0.05, 0.3, 0.4, 0.5, 0.6]  # below 0.1 once (index 2), ends far above
SETTLES = [1.0, 0.05, 0.5, 0.2, 0.08, 0.06, 0.05, 0.04]  # dips at index 1, settles below 0.1 from index 4


def _curve(values, *, samples_per_point: float = 100.0, rounds_per_point: float = 8.0) -> Curve:
    m = np.asarray(values, dtype=float)
    x = {"iter": 10.0 * np.arange(m.size), "ifo_per_node": samples_per_point * np.arange(m.size),
         "comm_rounds": rounds_per_point * np.arange(m.size)}
    return Curve("c", x, m, m, m, 1)


def _rows(values, *, b: float = 100.0, k: float = 8.0) -> list[dict[str, float]]:
    return [{"iter": 10.0 * i, "ifo_per_node": b * i, "comm_rounds": k * i, "bytes_per_node": 64.0 * k * i,
             "wall_s": 0.1 * i, "grad_mapping_sq": float(v)} for i, v in enumerate(values)]


def test_dip_then_rise_has_a_first_dip_but_is_not_reached():
    c = _curve(DIP_THEN_RISE)
    assert first_dip_index(c.mean, 0.1) == 2
    assert first_dip_cost(c, 0.1, "ifo_per_node") == 200.0
    assert first_dip_cost(c, 0.1, "comm_rounds") == 16.0
    assert sustained_index(c.mean, 0.1) is None
    assert sustained_cost(c, 0.1, "ifo_per_node") == math.inf
    assert sustained_cost(c, 0.1, "comm_rounds") == math.inf
    assert cost_to_target(c, 0.1, "ifo_per_node") == 200.0  # the old first-dip figure, kept for compatibility


def test_a_curve_that_settles_is_reached_at_the_settling_point():
    c = _curve(SETTLES)
    assert sustained_index(c.mean, 0.1) == 4
    assert sustained_cost(c, 0.1, "ifo_per_node") == 400.0
    assert sustained_cost(c, 0.1, "iter") == 40.0
    assert first_dip_cost(c, 0.1, "ifo_per_node") == 100.0  # the first dip comes earlier
    # a monotone curve: both measures agree; a target at a point's exact value counts as reached there
    mono = _curve([1.0, 0.5, 0.1, 0.05])
    assert sustained_cost(mono, 0.1, "ifo_per_node") == first_dip_cost(mono, 0.1, "ifo_per_node") == 200.0
    assert sustained_cost(_curve([0.01, 0.02]), 0.1, "iter") == 0.0  # below from the start


def test_edge_cases_of_the_sustained_measure():
    assert sustained_index([], 1.0) is None and first_dip_index([], 1.0) is None
    assert sustained_index([0.5, float("nan"), 0.5], 1.0) == 2  # nan counts as above the target
    assert sustained_index([0.5, 0.5, float("nan")], 1.0) is None
    assert first_dip_cost(_curve([1.0, 2.0]), 0.1, "comm_rounds") == math.inf
    with pytest.raises(KeyError, match="no cost axis 'wall_s'"):
        sustained_cost(_curve(SETTLES), 0.1, "wall_s")


def test_final_median_is_robust_to_a_noisy_last_point():
    # 20 points settling at 1e-3 with a noisy tail: the last point is a spike 10x above the level
    values = [1.0 / (i + 1) for i in range(15)] + [1.1e-3, 0.9e-3, 1.0e-3, 1.2e-3, 1.0e-2]
    c = _curve(values)
    assert c.mean[-1] == pytest.approx(1.0e-2)
    assert final_median(c) == pytest.approx(1.1e-3)  # median of the last 4 of 20 points
    # a lucky low last point does not make the final value look better either
    low = _curve([*values[:-1], 1e-5])
    assert final_median(low) == pytest.approx(0.95e-3)


def test_tail_median_takes_twenty_percent_rounded_up_and_at_least_one_point():
    assert tail_median([3.0]) == 3.0
    assert tail_median([1.0, 2.0, 3.0, 4.0]) == 4.0  # 0.8 point -> 1
    assert tail_median(list(range(10))) == 8.5  # 2 points: 8, 9
    assert tail_median([100.0] * 12 + [1.0, 2.0, 3.0]) == 2.0  # 15 * 0.2 = 3 points (not 4 by rounding error)
    assert tail_median([1.0, 2.0, 30.0, 4.0, 5.0, 6.0], fraction=0.5) == 5.0
    assert math.isnan(tail_median([]))
    with pytest.raises(ValueError):
        tail_median([1.0], fraction=0.0)


def test_the_measures_act_on_the_seed_mean():
    # seed 0 settles below the target, seed 1 only dips: their mean ends above it
    runs = [_rows([1.0, 0.01, 0.01, 0.01]), _rows([1.0, 0.01, 0.5, 0.5])]
    c = mean_curve(runs)
    assert first_dip_cost(c, 0.1, "ifo_per_node") == 100.0
    assert sustained_cost(c, 0.1, "ifo_per_node") == math.inf
    assert final_median(c) == pytest.approx(0.255)


@pytest.mark.parametrize("module", [curves_mod, runs_mod, costmodel_mod])
def test_docstring_examples_hold(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def _record(name: str, values, seed: int = 0) -> RunRecord:
    cfg = {"algorithm": name, "topology": "ring", "nodes": 4, "mixing": "chebyshev", "rounds": 2, "seed": seed}
    return RunRecord(Path(name), cfg, _rows(values), {"status": "ok"}, {"series": name})


def test_series_table_uses_the_sustained_measure_and_the_tail_median():
    series = {"dips": [_record("dips", DIP_THEN_RISE)], "settles": [_record("settles", SETTLES)]}
    rows, curves = series_table(series, target=0.1, cost=CostModel(latency_s=0.5, bandwidth_Bps=1e9, sample_s=1e-3))
    dips, settles = rows
    assert dips["samples_to_target"] == math.inf and dips["rounds_to_target"] == math.inf
    assert dips["first_dip_samples"] == 200.0 and dips["first_dip_rounds"] == 16.0
    assert dips["final_median"] == pytest.approx(0.55)  # last 2 of 7 points: 0.5, 0.6
    assert settles["samples_to_target"] == 400.0 and settles["iters_to_target"] == 40.0
    assert settles["rounds_to_target"] == 32.0 and settles["first_dip_samples"] == 100.0
    assert settles["modeled_s_to_target"] == pytest.approx(400 * 1e-3 + 32 * 0.5 + 64 * 32 / 1e9)
    assert settles["final_median"] == pytest.approx(0.045)
    assert [c.label for c in curves] == ["dips", "settles"]
    assert list(runs_mod.TABLE_COLUMNS[8:]) == [
        "iters_to_target", "samples_to_target", "rounds_to_target", "bytes_to_target", "wall_s_to_target",
        "modeled_s_to_target", "first_dip_samples", "first_dip_rounds", "first_dip_modeled_s", "final_median",
    ]
    md = table_markdown(rows)
    dips_line = next(line for line in md.splitlines() if line.startswith("| dips |"))
    assert dips_line.count("not reached") == 6 and "| 200 | 16 |" in dips_line
    table = list(csv.DictReader(io.StringIO(table_csv(rows))))
    assert table[0]["samples_to_target"] == "inf" and float(table[0]["first_dip_samples"]) == 200.0
    assert float(table[1]["samples_to_target"]) == 400.0


def test_series_without_finished_runs_show_no_numbers():
    rec = _record("running", SETTLES)
    rec.summary = None
    rows, curves = series_table({"running": [rec]}, target=0.1)
    assert not curves and math.isnan(rows[0]["samples_to_target"])
    line = table_markdown(rows).splitlines()[-1]
    assert "not reached" not in line and "| - |" in line
    assert table_csv(rows).splitlines()[1].endswith(",,")  # nan written empty


def test_caption_says_how_to_target_and_final_are_measured():
    cap = table_caption("grad_mapping_sq", 1e-4)
    assert cap.count(". ") == 0 and cap.endswith(".")  # one sentence
    assert "<= 0.0001" in cap and "stays at or below the target to the end of the run" in cap
    assert "first_dip_" in cap and "medians of the seed-mean curve over the last 20%" in cap


def test_plan_candidates_need_the_target_to_hold():
    cost = CostModel(latency_s=0.01, bandwidth_Bps=1e30, sample_s=1e-3)
    dips = candidate_from_runs("plain", 1, 0.5, [_rows(DIP_THEN_RISE, k=2)], target=0.1,
                               metric="grad_mapping_sq", cost=cost)
    assert not dips.reached and dips.samples_per_node == math.inf and dips.first_dip_samples == 200.0
    settles = candidate_from_runs("plain", 4, 0.1, [_rows(SETTLES, k=8)], target=0.1, metric="grad_mapping_sq",
                                  cost=cost)
    assert settles.reached and (settles.samples_per_node, settles.comm_rounds, settles.iters) == (400.0, 32.0, 40.0)
    assert settles.first_dip_samples == 100.0 and settles.final_median == pytest.approx(0.045)
    # the option that only dipped is cheaper at its first dip, but it never held the target: the other wins
    assert recommend([dips, settles]) is settles
    assert recommend([dips]) is None
