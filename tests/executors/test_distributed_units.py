"""In-process checks of the distributed executor's parts: partition, local weights, culprit naming, CLI input."""

from __future__ import annotations

import datetime
import time

import numpy as np
import pytest
import torch
import torch.distributed as dist

from proxgt._validation import ProxGTValueError
from proxgt.cli import main
from proxgt.executors.distributed import DistributedCommunicator, DistributedFailure, FaultMonitor, partition_nodes
from proxgt.executors.failures import describe_exit, publish_failure, published_failure, resolve_culprit
from proxgt.executors.launch.launcher import _first_failed
from proxgt.topology import make_topology


def test_partition_is_contiguous_and_balanced():
    assert partition_nodes(4, 4) == [(0,), (1,), (2,), (3,)]
    assert partition_nodes(7, 3) == [(0, 1, 2), (3, 4), (5, 6)]
    with pytest.raises(ProxGTValueError, match="at least one node"):
        partition_nodes(3, 4)


def test_exchange_plan_sends_only_rows_other_ranks_need():
    topo = make_topology("ring", 6)
    blocks = partition_nodes(6, 4)  # [0, 1], [2, 3], [4], [5]
    comm = DistributedCommunicator(topo, blocks, 0)
    assert comm.peers == [1, 3]
    assert comm._send_idx[1].tolist() == [1] and comm._recv_ids[1] == [2]  # node 1 -- node 2
    assert comm._send_idx[3].tolist() == [0] and comm._recv_ids[3] == [5]  # node 0 -- node 5
    # local weights: columns [0, 1 | 2 | 5] reproduce rows 0 and 1 of W
    W = topo.W
    expect = W[[0, 1]][:, [0, 1, 2, 5]]
    assert torch.equal(comm._W_local, expect)
    assert comm.counter.degrees.tolist() == [2] * 6


def test_gossip_on_a_single_process_group_is_w_times_z(tmp_path):
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1, timeout=datetime.timedelta(seconds=30))
    try:
        topo = make_topology("erdos_renyi", 7, seed=2)
        comm = DistributedCommunicator(topo, partition_nodes(7, 1), 0, timeout_s=30)
        Z = torch.randn(7, 5, dtype=torch.float64)
        Z0 = Z.clone()
        out = comm.gossip(Z)
        torch.testing.assert_close(out, topo.W @ Z)
        assert torch.equal(Z, Z0)  # input unmodified
        assert comm.bytes_sent == 0 and comm.counter.rounds == 1  # no peers: nothing sent, still one round
        assert comm.counter.bytes_per_node == pytest.approx(np.mean(topo.degrees) * 5 * 8)
        total = comm.sum_over_nodes(Z)
        torch.testing.assert_close(total, Z.sum(0))
        assert comm.logging_bytes == 5 * 8
        torch.testing.assert_close(comm.gather_rows(Z), Z)
    finally:
        dist.destroy_process_group()


def _monitor(store, rank):
    m = FaultMonitor(store, rank, 4, timeout_s=5)
    m.grace_s = 0.0
    return m


def test_culprit_is_the_peer_suspected_at_the_earliest_op():
    store = dist.HashStore()
    m1, m0 = _monitor(store, 1), _monitor(store, 0)
    m1.op, m0.op = 33, 34
    # rank 0 times out on rank 1 one op later than rank 1 timed out on rank 2; rank 0 happens to resolve first
    store.set(m0.prefix + "suspect/1", "33 2 no answer")
    err = m0.fail(1, "no answer within 5 s")
    assert str(err).startswith("rank 2 failed or stopped answering")
    assert str(m1.fail(2, "no answer")) == str(err)  # the published culprit is the same for everyone


def test_a_suspicion_against_a_rank_that_lost_contact_itself_is_a_cascade():
    """Rank 2 dies right after a collective, so ranks 0, 1 and 3 enter the same gossip op 188. Ranks 1 and 3
    lose rank 2; rank 0 then sees rank 1 stop at that same op 188. Ordering by (op, rank) alone named rank 1;
    rank 1 recorded a suspicion of its own at op 188, so it was alive and the suspicion of it is a cascade."""
    store = dist.HashStore()
    m0, m1, m3 = _monitor(store, 0), _monitor(store, 1), _monitor(store, 3)
    m0.op = m1.op = m3.op = 188
    m1._set("suspect/1", "188 2 connection lost")
    m3._set("suspect/3", "188 2 connection lost")
    assert str(m0.fail(1, "connection lost")) == "rank 2 failed or stopped answering (connection lost)"
    assert str(m1.fail(2, "connection lost")).startswith("rank 2 failed")


def test_culprit_rules():
    # a rank that reported itself wins
    assert resolve_culprit({1: (-1, 1, "ValueError: x"), 0: (5, 1, "lost")}, 4) == "rank 1 failed: ValueError: x"
    # earliest op among the non-cascades; a suspect whose own record is later is not excused
    assert resolve_culprit({1: (100, 2, "a"), 2: (101, 1, "b")}, 4).startswith("rank 2 failed or stopped")
    # failures seen only in collectives name no peer: the one rank that recorded nothing is named ...
    got = resolve_culprit({0: (188, 1, "lost"), 1: (187, -2, "x"), 3: (187, -2, "y")}, 4)
    assert got.startswith("rank 2 failed or stopped answering (every other rank lost contact")
    # ... once every other rank has recorded something; until then there is no verdict yet
    assert resolve_culprit({1: (187, -2, "x"), 3: (187, -2, "y")}, 4) is None
    assert resolve_culprit({}, 4) is None


def test_a_published_verdict_ends_the_wait_at_once():
    store = dist.HashStore()
    m = FaultMonitor(store, 1, 4, timeout_s=30)  # grace 2 s
    assert publish_failure(store, "rank 2 failed: its process exited with code 17", m.prefix)
    assert not publish_failure(store, "rank 3 failed: another verdict", m.prefix)  # the first one stays
    t0 = time.monotonic()
    assert str(m.fail(2, "connection lost")) == "rank 2 failed: its process exited with code 17"
    assert time.monotonic() - t0 < 1.0
    assert published_failure(store, m.prefix) == "rank 2 failed: its process exited with code 17"


def test_posting_to_a_lost_peer_names_it_and_still_posts_the_rest():
    """gloo raises when a message is posted on a connection already known lost: that names the peer, and the
    other messages of the round still go out (so the other neighbours do not stop at the same op)."""
    store = dist.HashStore()
    comm = DistributedCommunicator(make_topology("ring", 6), partition_nodes(6, 4), 1, monitor=_monitor(store, 1))
    comm._coalesce = False
    posted = []

    def post(t, q, group):
        if q == 2:
            raise RuntimeError("[../gloo/transport/tcp/pair.cc:553] Connection closed by peer [127.0.0.1]:1234. "
                               "This is typically caused by a remote worker crashing.")
        posted.append(q)
        return object()

    comm.monitor.op = 7
    t = torch.zeros(1, 2)
    with pytest.raises(DistributedFailure) as info:
        comm._post_p2p([(post, t, 0), (post, t, 2), (post, t, 0), (post, t, 2)], "gossip op 7")
    assert posted == [0, 0]
    assert str(info.value) == ("rank 2 failed or stopped answering (connection lost during gossip op 7: "
                               "Connection closed by peer [127.0.0.1]:1234)")
    assert store.get(comm.monitor.prefix + "suspect/1").decode().startswith("7 2 ")


def test_the_launcher_names_the_worker_that_ended_first():
    codes = [None, 1, -9, 1]
    assert _first_failed([1, 2], codes, "") == 2  # the same poll: a signal beats the 'stopped by another' code
    assert _first_failed([1, 3], codes, "rank 3 failed or stopped answering (x)") == 3  # what the workers agreed on
    assert _first_failed([1, 3], codes, "") == 1
    assert describe_exit(17) == "exited with code 17"
    assert describe_exit(-9) == "was killed by signal 9 (SIGKILL)"


def test_a_rank_that_fails_on_its_own_is_named():
    store = dist.HashStore()
    _monitor(store, 3).report_self("DivergenceError: iterates became NaN")
    m0 = _monitor(store, 0)
    m0.op = 2
    assert str(m0.fail(3, "connection lost")) == "rank 3 failed: DivergenceError: iterates became NaN"


def test_launch_rejects_more_processes_than_nodes(capsys):
    assert main(["launch", "--nprocs", "5", "--nodes", "4", "--data", "iris"]) == 2
    err = capsys.readouterr().err
    assert "--nprocs 5 exceeds --nodes 4" in err and err.count("\n") == 1
    assert main(["launch", "--nprocs", "0"]) == 2
