"""In-process checks of the distributed executor's parts: partition, local weights, culprit naming, CLI input."""

from __future__ import annotations

import datetime

import numpy as np
import pytest
import torch
import torch.distributed as dist

from proxgt._validation import ProxGTValueError
from proxgt.cli import main
from proxgt.executors.distributed import DistributedCommunicator, FaultMonitor, partition_nodes
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
