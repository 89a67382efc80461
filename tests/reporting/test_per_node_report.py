"""Reports of runs with local test data: the worst node beside the mean (table and "Per-site results"), and a
per-node bar chart."""

from __future__ import annotations

import csv

import numpy as np
import pytest

import proxgt
from proxgt._io import read_metrics_csv
from proxgt.reporting.report import write_report

CFG = {"data": "breast_cancer", "nodes": 4, "split": "sorted", "iters": 30, "log_every": 10,
       "local_test_fraction": 0.25}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("sites")
    for alg in ("proxgt-sa", "prox-dsgd"):
        for seed in (0, 1):
            proxgt.run({**CFG, "algorithm": alg, "seed": seed}, out=root / f"{alg}-{seed}")
    write_report(root, target=1e-3, cost={"sample_s": 1e-6})
    return root


def _final_means(root, alg):
    """node -> seed mean of the average model's local accuracy at the last row, computed here from the files."""
    vals: dict[int, list[float]] = {}
    for seed in (0, 1):
        _, rows = read_metrics_csv(root / f"{alg}-{seed}" / "per_node.csv")
        last = max(r["iter"] for r in rows)
        for r in rows:
            if r["iter"] == last:
                vals.setdefault(r["node"], []).append(r["avg_accuracy"])
    return {i: float(np.mean(v)) for i, v in vals.items()}


def test_the_table_names_the_worst_node_beside_the_mean(folder):
    with open(folder / "table.csv", newline="") as fh:
        rows = {r["algorithm"]: r for r in csv.DictReader(fh)}
    header = list(next(iter(rows.values())))
    i = header.index("final_local_accuracy_mean")
    assert header[i : i + 3] == ["final_local_accuracy_mean", "final_local_accuracy_worst", "worst_node"]
    for alg in ("proxgt-sa", "prox-dsgd"):
        means = _final_means(folder, alg)
        worst = min(means, key=lambda k: (means[k], k))
        assert int(rows[alg]["worst_node"]) == worst
        assert float(rows[alg]["final_local_accuracy_worst"]) <= float(rows[alg]["final_local_accuracy_mean"])


def test_the_report_has_a_per_site_section_and_a_bar_chart(folder):
    md = (folder / "report.md").read_text()
    assert "## Per-site results" in md and "![per-node.png](per-node.png)" in md
    section = md.split("## Per-site results", 1)[1]
    for alg in ("proxgt-sa", "prox-dsgd"):
        means = _final_means(folder, alg)
        worst = min(means, key=lambda k: (means[k], k))
        line = next(ln for ln in section.splitlines() if ln.startswith(f"| algorithm={alg} "))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert float(cells[1]) == pytest.approx(np.mean(list(means.values())), abs=5e-4)
        assert int(cells[2]) == worst and float(cells[3]) == pytest.approx(means[worst], abs=5e-4)
    from PIL import Image

    with Image.open(folder / "per-node.png") as im:
        assert im.size[0] > 500 and im.size[1] > 300


def test_runs_without_local_test_data_have_no_per_site_parts(tmp_path):
    proxgt.run({"data": "breast_cancer", "nodes": 4, "iters": 10, "log_every": 5}, out=tmp_path / "r")
    write_report(tmp_path, target=1e-3, cost={"sample_s": 1e-6})
    assert "Per-site" not in (tmp_path / "report.md").read_text()
    assert not (tmp_path / "per-node.png").exists()
    assert "worst_node" not in (tmp_path / "table.csv").read_text()
