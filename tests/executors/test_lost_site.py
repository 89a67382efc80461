"""``--on-failure continue``: 4-process runs (gloo, one single-threaded process per node) that lose a worker to
SIGKILL and go on with the survivors (docs/fault-tolerance.md).

The worker kills itself with ``os.kill(os.getpid(), SIGKILL)`` from the ``fault_hook(rank, t)`` of
:func:`proxgt.executors.launch.launcher.launch` (forked workers inherit it). Nothing here depends on timing: a SIGKILLed
peer is seen at once (gloo's connection is lost), and the survivors agree as soon as the launcher has reported
the dead process's exit, which it does within a poll of 50 ms.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable

import numpy as np
import pytest

from proxgt._io import read_metrics_csv
from proxgt.cli import main
from proxgt.executors.launch.launcher import launch

from .launching import CRASH_MARKS, tiny_classification
from .launching import captured as _captured
from .launching import deadline as _deadline

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forked workers: Linux")

NPROCS = 4
ITERS, KILL_AT = 120, 40
# a SIGKILLed peer is seen at once by its neighbours; the other survivors see their neighbours stop within this
TIMEOUT_S = 3
# one node per rank on the ring 0 - 1 - 2 - 3 - 0; full batches, so that the survivors converge to consensus
FLAGS = ["--nodes", "4", "--topology", "ring", "--algorithm", "proxgt-sr-e", "--batch", "full",
         "--iters", str(ITERS), "--log-every", "10", "--seed", "5", "--reg-strength", "1e-3",
         "--on-failure", "continue", "--timeout", str(TIMEOUT_S), "--no-progress"]


def _sigkill(ranks: tuple[int, ...], t: int) -> Callable[[int, int], None]:
    def hook(r: int, it: int) -> None:
        if r in ranks and it == t:
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def _launch(argv: list[str], hook: Callable[[int, int], None] | None) -> tuple[int, str]:
    with _captured() as got, _deadline(120):
        code = launch(NPROCS, argv, timeout_s=TIMEOUT_S, fault_hook=hook, on_failure="continue")
    return code, got["out"] + got["err"]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    return tiny_classification(tmp_path_factory.mktemp("data"), 400, 12)


def _check_lost_run(out, code: int, err: str, lost: int) -> None:
    assert code == 0, err[-3000:]
    assert not any(mark in err for mark in CRASH_MARKS), err[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "ok"
    (entry,) = summary["lost_nodes"]
    assert entry["node"] == lost and entry["rank"] == lost
    assert "SIGKILL" in entry["reason"]
    # the survivors redo the first iteration one of them had not finished: the one after the kill, or the
    # kill's own iteration when a neighbour had not yet received its last round of it
    assert entry["iteration"] in (KILL_AT, KILL_AT + 1)
    assert f"proxgt: lost rank {lost} at iteration {entry['iteration']}" in err
    cols, rows = read_metrics_csv(out / "metrics.csv")
    assert "active_nodes" in cols
    assert [r["iter"] for r in rows] == list(range(0, ITERS + 1, 10))
    assert [r["active_nodes"] for r in rows] == [4 if r["iter"] < entry["iteration"] else 3 for r in rows]
    x = np.load(out / "final.npz")["x"]
    assert x.shape == (4, 12) and np.isnan(x[lost]).all()
    alive = np.delete(x, lost, axis=0)
    assert np.isfinite(alive).all() and np.abs(alive).max() > 1e-3
    # consensus over the survivors: full-batch gradient tracking converges linearly (consensus column: < 1e-12)
    spread = np.abs(alive - alive.mean(axis=0)).max()
    assert spread < 1e-5 * np.abs(alive).max(), spread
    assert rows[-1]["consensus"] < 1e-10
    assert rows[-1]["consensus"] < rows[KILL_AT // 10 + 1]["consensus"]


def test_a_killed_worker_leaves_and_the_survivors_finish(data_file, tmp_path):
    out = tmp_path / "lost2"
    code, err = _launch([*FLAGS, "--data", data_file, "--out", str(out)], _sigkill((2,), KILL_AT))
    _check_lost_run(out, code, err, lost=2)


def test_losing_rank_0_moves_the_writer(data_file, tmp_path):
    out = tmp_path / "lost0"
    code, err = _launch([*FLAGS, "--data", data_file, "--out", str(out)], _sigkill((0,), KILL_AT))
    assert "proxgt: rank 1 writes" in err, err[-3000:]
    _check_lost_run(out, code, err, lost=0)
    info = json.loads((out / "summary.json").read_text())["distributed"]
    assert info["surviving_ranks"] == [1, 2, 3]


def test_a_disconnected_surviving_graph_ends_the_run_naming_its_components(data_file, tmp_path):
    out = tmp_path / "split"
    code, err = _launch([*FLAGS, "--data", data_file, "--out", str(out)], _sigkill((1, 3), KILL_AT))
    assert code == 1, err[-3000:]
    assert "launch failed: the surviving graph is disconnected: components {0} and {2}" in err, err[-3000:]
    assert not any(mark in err for mark in CRASH_MARKS), err[-3000:]
    assert not (out / "summary.json").exists()


def test_unknown_on_failure_is_a_one_line_error(data_file, capsys):
    # launch: run refuses --on-failure itself, whatever its value
    assert main(["launch", "--nprocs", "2", "--data", data_file, "--on-failure", "retry"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "on_failure" in err and "continue" in err, err


def test_a_hung_worker_is_dropped_after_the_timeout(data_file, tmp_path):
    """Rank 2 stops answering (it sleeps): its neighbours time out, the survivors agree without it once it has
    not answered them in 2 x timeout + 5 s, and its own watchdog ends it when it sees it was dropped."""

    def hang(r: int, it: int) -> None:
        if (r, it) == (2, KILL_AT):
            import time

            time.sleep(300)

    out = tmp_path / "hung"
    code, err = _launch([*FLAGS, "--data", data_file, "--out", str(out)], hang)
    assert code == 0, err[-3000:]
    (entry,) = json.loads((out / "summary.json").read_text())["lost_nodes"]
    assert entry["rank"] == 2 and entry["iteration"] in (KILL_AT, KILL_AT + 1)
    assert f"no answer within {TIMEOUT_S} s" in entry["reason"], entry
    assert "proxgt: error: rank 2: the other ranks went on without this process" in err, err[-3000:]
    cols, rows = read_metrics_csv(out / "metrics.csv")
    assert rows[-1]["active_nodes"] == 3 and rows[-1]["consensus"] < 1e-10


# ---------------------------------------------------------------------------------------- units (no processes)
def test_survivors_recompute_metropolis_weights_on_the_surviving_graph():
    import networkx as nx
    import torch

    from proxgt.executors.p2p import DistributedCommunicator, partition_nodes
    from proxgt.topology import make_topology

    topo = make_topology("ring", 6)
    blocks = partition_nodes(6, 4)  # [0, 1], [2, 3], [4], [5]
    survivors = (0, 1, 3)  # rank 2 (node 4) is lost: the path 5 - 0 - 1 - 2 - 3 is left
    alive = [0, 1, 2, 3, 5]
    path = nx.path_graph([5, 0, 1, 2, 3])
    W = np.zeros((6, 6))
    for r in survivors:
        comm = DistributedCommunicator(topo, blocks, r)
        comm.counter.record_round(10, 4)
        before = comm.counter.bytes.copy()
        comm.drop_ranks(survivors, topo.graph)
        assert comm.active_nodes == 5 and comm.active_mask.tolist() == [i in alive for i in range(6)]
        assert np.array_equal(comm.counter.bytes, before)  # what was sent stays counted
        comm.counter.record_round(10, 4)
        assert comm.counter.bytes.tolist() == [before[i] + 40 * path.degree(i) if i in alive else before[i]
                                              for i in range(6)]
        cols = list(comm.node_ids) + [j for q in comm.peers for j in comm._recv_ids[q]]
        assert 2 not in comm.peers and all(4 not in comm._recv_ids[q] for q in comm.peers)
        for a, i in enumerate(comm.node_ids):
            W[i, cols] = comm._W_local[a].numpy()
    sub = W[np.ix_(alive, alive)]
    np.testing.assert_allclose(sub, sub.T, atol=1e-15)
    np.testing.assert_allclose(sub.sum(axis=1), 1.0, atol=1e-15)
    assert W[4].sum() == 0 and W[:, 4].sum() == 0
    for i, j in path.edges:
        assert W[i, j] == pytest.approx(1.0 / (1 + max(path.degree(i), path.degree(j))))
    assert W[5, 0] == pytest.approx(1 / 3) and W[5, 5] == pytest.approx(2 / 3)
    assert torch.is_tensor(comm._W_local)


def test_the_survivors_agree_on_one_verdict(tmp_path):
    """Three members record what they saw (iterations 41, 41, 40) and the launcher reports the fourth's exit:
    every member returns the same verdict, redoing the smallest iteration in progress."""
    import datetime
    import threading

    import torch.distributed as dist

    from proxgt.executors.failures import FaultMonitor, PeerLost, Verdict, published_verdicts
    from proxgt.executors.launch.launcher import _free_port

    port = _free_port()
    host = dist.TCPStore("127.0.0.1", port, 1, is_master=True, wait_for_workers=False,
                         timeout=datetime.timedelta(seconds=30))
    prefix = "proxgt/0/"
    got: dict[int, Verdict] = {}

    def member(rank: int, iteration: int) -> None:
        store = dist.TCPStore("127.0.0.1", port, 1, is_master=False, timeout=datetime.timedelta(seconds=30))
        mon = FaultMonitor(store, rank, 4, timeout_s=30.0)
        mon.on_failure, mon.iteration = "continue", iteration
        got[rank] = mon.agree(PeerLost(2, "connection lost during gossip op 7"))
        assert mon.epoch == 1 and mon.members == (0, 1, 3)

    threads = [threading.Thread(target=member, args=a) for a in ((0, 41), (1, 41), (3, 40))]
    for th in threads:
        th.start()
    host.set(prefix + "exited/2", "was killed by signal 9 (SIGKILL)")
    for th in threads:
        th.join(timeout=30)
    assert sorted(got) == [0, 1, 3]
    assert len({v.to_json() for v in got.values()}) == 1
    v = got[0]
    assert v.survivors == (0, 1, 3) and v.iteration == 40
    assert v.lost == {2: "its process was killed by signal 9 (SIGKILL)"}
    assert published_verdicts(host, prefix) == [v]
    assert host.get(prefix + "lost/2").decode().startswith("at iteration 40")
