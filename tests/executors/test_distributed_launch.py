"""Multi-process tests of the torch.distributed executor (gloo, 4 single-threaded processes).

One uninterrupted 4-process run (module fixture) is compared with the simulation of the same config and seed
(iterates, counters, measured bytes), then a run whose rank 2 dies is checked to fail everywhere, naming
rank 2, and to resume from its checkpoint to exactly the uninterrupted run's metrics.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from proxgt._io import read_metrics_csv
from proxgt.executors.checkpoint import latest_checkpoint
from proxgt.executors.distributed import partition_nodes
from proxgt.executors.simulation import run_simulation
from proxgt.topology import make_topology

NPROCS = 4
# 6 nodes on 4 processes: blocks [0, 1], [2, 3], [4], [5] (two ranks host a block, two host one node)
CFG = {
    "nodes": 6, "topology": "ring", "algorithm": "proxgt-sr-o", "batch": 8,
    "iters": 30, "log_every": 5, "seed": 3, "mixing": "chebyshev",
}
FLAGS = ["--nodes", "6", "--topology", "ring", "--algorithm", "proxgt-sr-o",
         "--batch", "8", "--iters", "30", "--log-every", "5", "--seed", "3", "--mixing", "chebyshev",
         "--no-progress"]
TIMEOUT_S = 10


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", **extra)
    env.pop("PROXGT_FAULT_INJECT", None)
    env.update(extra)
    return env


def _launch(args: list[str], env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "proxgt.cli", "launch", "--nprocs", str(NPROCS), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    """A small binary classification set (a file loads in milliseconds; named sets import scikit-learn)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 20)).astype(np.float32)
    y = (X[:, 0] - X[:, 1] + 0.5 * rng.normal(size=600) > 0).astype(np.int64)
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(path, X=X, y=y)
    return str(path)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, data_file):
    out = tmp_path_factory.mktemp("dist") / "full"
    res = _launch([*FLAGS, "--data", data_file, "--out", str(out), "--timeout", str(TIMEOUT_S)], _env())
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def _metrics(path):
    return read_metrics_csv(path / "metrics.csv")


def test_four_processes_match_the_simulation(full_run, data_file, tmp_path):
    sim = run_simulation(dict(CFG, data=data_file), out=tmp_path / "sim")
    cols_d, rows_d = _metrics(full_run)
    cols_s, rows_s = _metrics(tmp_path / "sim")
    assert cols_d == cols_s and len(rows_d) == len(rows_s) == 7
    for rd, rs in zip(rows_d, rows_s, strict=True):
        for c in ("iter", "ifo_per_node", "comm_rounds", "bytes_per_node"):  # counters: exactly equal
            assert rd[c] == rs[c], c
        for c in cols_s:
            if c not in ("wall_s",):
                assert rd[c] == pytest.approx(rs[c], rel=1e-4, abs=1e-6), (c, rd["iter"])
    x_d = np.load(full_run / "final.npz")["x"]
    x_s = sim.x.double().numpy()
    assert x_d.shape == x_s.shape == (6, 20)
    scale = max(1.0, float(np.abs(x_s).max()))
    np.testing.assert_allclose(x_d, x_s, rtol=0, atol=1e-5 * scale)
    assert not np.array_equal(x_s, 0 * x_s)


def test_measured_bytes_equal_the_accounting(full_run):
    summary = json.loads((full_run / "summary.json").read_text())
    info = summary["distributed"]
    assert info["world_size"] == NPROCS and info["backend"] == "gloo"
    blocks = partition_nodes(6, NPROCS)
    assert [tuple(b) for b in info["blocks"]] == blocks
    last = _metrics(full_run)[1][-1]
    rounds = int(last["comm_rounds"])
    d = np.load(full_run / "final.npz")["x"].shape[1]
    K = int(summary["rounds"])
    assert rounds == 2 * K * CFG["iters"]  # ProxGT: two K-round mixings per iteration
    topo = make_topology("ring", 6)
    owner = {i: r for r, blk in enumerate(blocks) for i in blk}
    for r, blk in enumerate(blocks):
        # rows actually needed by other ranks: one message row per (local node, neighbouring rank) pair
        rows_out = sum(len({owner[j] for j in topo.neighbors(i) if owner[j] != r}) for i in blk)
        assert info["bytes_sent_per_rank"][r] == rows_out * d * 4 * rounds
        accounted = sum(topo.degrees[i] for i in blk) * d * 4 * rounds
        assert info["bytes_accounted_per_rank"][r] == accounted
        if len(blk) == 1:  # one node per rank: measured == 2 K deg(i) d x 4 per iteration, as accounted
            (i,) = blk
            assert info["bytes_sent_per_rank"][r] == accounted == 2 * K * topo.degrees[i] * d * 4 * CFG["iters"]
        else:  # the intra-rank edge costs no message
            assert info["bytes_sent_per_rank"][r] < accounted
    assert last["bytes_per_node"] == pytest.approx(np.mean(topo.degrees) * d * 4 * rounds)


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory, data_file):
    """The same run with a checkpoint every 10 iterations, whose rank 2 dies (os._exit(17)) at iteration 25."""
    out = tmp_path_factory.mktemp("dist") / "faulty"
    args = [*FLAGS, "--data", data_file, "--out", str(out), "--timeout", str(TIMEOUT_S), "--checkpoint-every", "10"]
    res = _launch(args, _env(PROXGT_FAULT_INJECT="die:2:25"))
    return out, res


def test_dead_rank_makes_every_rank_exit_naming_it(faulty_run):
    out, res = faulty_run
    assert res.returncode == 1, res.stderr[-3000:]
    err = res.stderr
    assert "rank 2 exited with code 17 first" in err, err[-3000:]
    for r in (0, 1, 3):  # rank 0 is no neighbour of rank 2 (node 4): it learns the culprit through the store
        assert re.search(rf"proxgt: error: rank {r}: rank 2 failed", err), err[-3000:]
        m = re.search(rf"rank {r} exited with code 1 ([0-9.]+) s later", err)
        assert m, err[-3000:]
        assert float(m.group(1)) < TIMEOUT_S  # every other rank stopped on its own, within the timeout
    assert "killed rank" not in err
    assert not (out / "summary.json").exists()
    assert (out / "metrics.csv").exists()


def test_resumed_distributed_run_ends_with_the_uninterrupted_metrics(full_run, faulty_run):
    out, _ = faulty_run
    assert latest_checkpoint(out)[0] == 20
    res = _launch(["--resume", str(out)], _env())  # iterations 21..25 were lost; the checkpoint at 20 is used
    assert res.returncode == 0, res.stderr[-3000:]
    cols_a, rows_a = _metrics(full_run)
    cols_b, rows_b = _metrics(out)
    assert cols_a == cols_b and len(rows_a) == len(rows_b)
    for ra, rb in zip(rows_a, rows_b, strict=True):
        assert {c: v for c, v in ra.items() if c != "wall_s"} == {c: v for c, v in rb.items() if c != "wall_s"}
    np.testing.assert_array_equal(np.load(full_run / "final.npz")["x"], np.load(out / "final.npz")["x"])


def test_hung_rank_is_named_after_the_timeout(data_file, tmp_path):
    timeout = 3
    args = [*FLAGS, "--data", data_file, "--out", str(tmp_path / "hung"), "--timeout", str(timeout)]
    res = _launch(args, _env(PROXGT_FAULT_INJECT="hang:2:5"))
    assert res.returncode == 1, res.stderr[-3000:]
    err = res.stderr
    # the launcher reports what the workers agreed on, whichever worker exited first
    assert "launch failed: rank 2 failed or stopped answering (no answer within 3 s" in err, err[-3000:]
    for r in (0, 1, 3):
        assert re.search(rf"proxgt: error: rank {r}: rank 2 failed or stopped answering", err), err[-3000:]
    assert "proxgt: error: rank 2: the other ranks report this process" in err  # its watchdog ended it
    assert "killed rank" not in err
