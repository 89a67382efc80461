"""Link failures and node dropout in the torch.distributed executor follow the simulation's schedule: the same
links are up in every round, with the same weights, so 4 processes reproduce the simulated iterates (float64)
and the counters exactly."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from proxgt._io import read_metrics_csv
from proxgt.executors.launch.launcher import launch
from proxgt.executors.simulation import run_simulation
from proxgt.training import build_run

from .launching import deadline as _deadline
from .launching import tiny_classification

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forked workers: Linux")

# 6 nodes on 4 processes: blocks [0, 1], [2, 3], [4], [5], so some links stay inside a process
CFG = {"nodes": 6, "topology": "grid", "algorithm": "proxgt-sr-e", "batch": 8, "iters": 16, "log_every": 4,
       "seed": 5, "dtype": "float64", "link_failure": 0.3, "node_dropout": 0.1}


def _flags(cfg: dict) -> list[str]:
    return [a for k, v in cfg.items() for a in (f"--{k.replace('_', '-')}", str(v))]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    return tiny_classification(tmp_path_factory.mktemp("data"), 300, 10)


@pytest.mark.parametrize("extra", [{}, {"topology": "random-matching", "mixing": "plain", "rounds": 2}])
def test_four_processes_follow_the_simulated_failure_pattern(data_file, tmp_path, extra):
    cfg = {**CFG, **extra, "data": data_file}
    out = tmp_path / "dist"
    with _deadline(120):
        code = launch(4, [*_flags(cfg), "--out", str(out), "--timeout", "20", "--no-progress"], timeout_s=20)
    assert code == 0
    sim = run_simulation(cfg, out=tmp_path / "sim")
    cols_d, rows_d = read_metrics_csv(out / "metrics.csv")
    cols_s, rows_s = read_metrics_csv(tmp_path / "sim" / "metrics.csv")
    assert cols_d == cols_s and len(rows_d) == len(rows_s) == 5
    for rd, rs in zip(rows_d, rows_s, strict=True):
        for c in ("iter", "ifo_per_node", "comm_rounds", "bytes_per_node"):  # counters: exactly equal
            assert rd[c] == rs[c], (c, rd["iter"])
    x_d = np.load(out / "final.npz")["x"]
    x_s = sim.x.numpy()
    np.testing.assert_allclose(x_d, x_s, rtol=0, atol=1e-10)
    assert float(np.abs(x_s).max()) > 1e-3
    # the pattern mattered: fewer bytes than with every link of the (union) graph up in every round
    spec = build_run(cfg)
    last = rows_s[-1]
    every_link = np.mean(spec.topology.degrees) * x_s.shape[1] * 8 * last["comm_rounds"]
    assert last["bytes_per_node"] < 0.9 * every_link
