"""Per-site results in a launched run: every process evaluates its own nodes' local test data, and the writing
process writes the same per_node.csv as the simulation."""

from __future__ import annotations

import sys

import pytest

from proxgt._io import read_metrics_csv
from proxgt.executors.launch.launcher import launch
from proxgt.executors.simulation import run_simulation

from .launching import captured as _captured
from .launching import deadline as _deadline
from .launching import tiny_classification

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forked workers: Linux")

CFG = {"nodes": 4, "topology": "ring", "algorithm": "proxgt-sr-e", "batch": "full", "iters": 30, "log_every": 10,
       "seed": 5, "split": "sorted", "local_test_fraction": 0.3}


def test_launched_per_node_rows_equal_the_simulations(tmp_path):
    data = tiny_classification(tmp_path, 400, 12)
    flags = [x for k, v in CFG.items() for x in (f"--{k.replace('_', '-')}", str(v))]
    with _captured() as got, _deadline(120):
        code = launch(2, [*flags, "--data", data, "--out", str(tmp_path / "dist"), "--timeout", "10",
                          "--no-progress"], timeout_s=10)
    assert code == 0, (got["out"] + got["err"])[-3000:]
    run_simulation({**CFG, "data": data}, out=tmp_path / "sim")
    cols_d, rows_d = read_metrics_csv(tmp_path / "dist" / "per_node.csv")
    cols_s, rows_s = read_metrics_csv(tmp_path / "sim" / "per_node.csv")
    assert cols_d == cols_s and len(rows_d) == len(rows_s) == 4 * 4
    for a, b in zip(rows_d, rows_s, strict=True):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-7)
    m_d = read_metrics_csv(tmp_path / "dist" / "metrics.csv")[1][-1]
    m_s = read_metrics_csv(tmp_path / "sim" / "metrics.csv")[1][-1]
    for c in ("local_accuracy_worst", "local_worst_node", "own_loss_mean"):
        assert m_d[c] == pytest.approx(m_s[c], rel=1e-5)
