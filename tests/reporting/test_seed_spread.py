"""Tables over several seeds: each seed's own final value as mean, standard deviation and range, and how many
seeds' own curves reach the target, beside the seed-mean table (``series_table``, CSV, the "Over seeds" section).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import pytest

from proxgt.reporting.runs import (
    RunRecord,
    seed_spread_markdown,
    series_table,
    spread_columns,
    table_csv,
    write_table,
)


def _rows(values, acc) -> list[dict[str, float]]:
    return [{"iter": 10.0 * i, "ifo_per_node": 100.0 * i, "comm_rounds": 8.0 * i, "bytes_per_node": 512.0 * i,
             "wall_s": 0.1 * i, "grad_mapping_sq": float(v), "test_accuracy": float(a)}
            for i, (v, a) in enumerate(zip(values, acc, strict=True))]


def _rec(seed: int, values, acc, status: str = "ok") -> RunRecord:
    cfg = {"algorithm": "a", "topology": "ring", "nodes": 4, "mixing": "chebyshev", "rounds": 2, "seed": seed}
    return RunRecord(Path(f"a{seed}"), cfg, _rows(values, acc), {"status": status}, {"series": "a"})


# five points each: the tail median is the last point; seed 0 settles below 0.1 from index 2, seed 1 from index
# 4, seed 2 never (its final 0.3 keeps the seed mean above the target too)
SEEDS = [
    _rec(0, [1.0, 0.5, 0.08, 0.06, 0.05], [0.1, 0.5, 0.7, 0.8, 0.80]),
    _rec(1, [1.0, 0.5, 0.3, 0.2, 0.07], [0.1, 0.5, 0.7, 0.8, 0.84]),
    _rec(2, [1.0, 0.5, 0.4, 0.3, 0.30], [0.1, 0.5, 0.7, 0.8, 0.82]),
]


def test_each_seeds_final_value_gives_mean_sd_and_range():
    (row,), _ = series_table({"a": SEEDS}, target=0.1)
    assert row["seeds"] == 3 and row["diverged"] == 0
    assert row["final_median"] == pytest.approx((0.05 + 0.07 + 0.30) / 3)  # the seed-mean curve, as before
    assert row["final_median_mean"] == pytest.approx(0.14)
    assert row["final_median_sd"] == pytest.approx(math.sqrt(((0.09) ** 2 + 0.07 ** 2 + 0.16 ** 2) / 2))
    assert (row["final_median_min"], row["final_median_max"]) == (0.05, 0.30)
    assert row["final_test_accuracy_mean"] == pytest.approx(0.82)
    assert row["final_test_accuracy_sd"] == pytest.approx(0.02)
    assert (row["final_test_accuracy_min"], row["final_test_accuracy_max"]) == (0.80, 0.84)
    # two of three seeds' own curves reach 0.1 and stay: seed 0 at 200 samples, seed 1 at 400
    assert row["seeds_at_target"] == 2
    assert (row["samples_to_target_min"], row["samples_to_target_max"]) == (200.0, 400.0)
    assert row["samples_to_target"] == math.inf  # the seed mean ends above the target


def test_diverged_seeds_are_counted_apart_and_one_seed_has_no_spread():
    blown = _rec(3, [1.0, 50.0, 1e9, 1e12, 1e15], [0.1, 0.1, 0.1, 0.1, 0.1], status="diverged")
    (row,), _ = series_table({"a": [SEEDS[0], blown]}, target=0.1)
    assert row["seeds"] == 1 and row["diverged"] == 1
    assert row["final_median_mean"] == row["final_median_min"] == row["final_median_max"] == 0.05
    assert math.isnan(row["final_median_sd"]) and row["seeds_at_target"] == 1
    assert seed_spread_markdown([row]) == ""  # no series with two seeds: no section


def test_the_over_seeds_section_and_the_csv_show_the_spread(tmp_path):
    rows, _ = series_table({"a": SEEDS, "b": [SEEDS[2]]}, target=0.1)
    md = seed_spread_markdown(rows)
    assert md.startswith("## Over seeds")
    header = next(line for line in md.splitlines() if line.startswith("| series |"))
    assert header == ("| series | seeds ok / diverged | final grad_mapping_sq | final_test_accuracy | seeds at target "
                      "| samples to target |")
    a = next(line for line in md.splitlines() if line.startswith("| a |"))
    assert a == "| a | 3 / 0 | 0.14 ± 0.14 [0.05, 0.3] | 0.82 ± 0.02 [0.8, 0.84] | 2 of 3 | 200-400 |"
    b = next(line for line in md.splitlines() if line.startswith("| b |"))
    assert b == "| b | 1 / 0 | 0.3 | 0.82 | 0 of 1 | - |"
    table = list(csv.DictReader(io.StringIO(table_csv(rows))))
    assert list(table[0])[-3:] == ["seeds_at_target", "samples_to_target_min", "samples_to_target_max"]
    assert set(spread_columns(rows)) <= set(table[0])
    assert float(table[0]["final_test_accuracy_sd"]) == pytest.approx(0.02)
    assert table[1]["final_median_sd"] == "" and table[1]["samples_to_target_min"] == "inf"
    _, md_path = write_table(rows, tmp_path / "table", caption="Target: 0.1.")
    text = md_path.read_text()
    assert text.index("| series | algorithm |") < text.index("## Over seeds")  # after the seed-mean table
