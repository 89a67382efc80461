"""Unreliable and time-varying networks in the simulation: round matrices, seeding, mixing, counters,
the tracking invariant under link failures and node dropout, and one-line errors for bad input."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch

from proxgt.cli import main
from proxgt.executors.simulation import simulated_communicator
from proxgt.mixing import Mixer, SimulatedCommunicator
from proxgt.mixing.dynamic import DynamicCommunicator, NetworkSchedule
from proxgt.settings import RunConfig
from proxgt.topology import make_topology, metropolis_weights
from proxgt.training import build_run
from proxgt.training.loop import train

GRID = make_topology("grid", 9)
GRID_EDGES = np.array(list(GRID.graph.edges()))

SCHEDULES = {
    "links": NetworkSchedule(9, GRID_EDGES, link_failure=0.4, seed=3),
    "links+dropout": NetworkSchedule(9, GRID_EDGES, link_failure=0.3, node_dropout=0.3, seed=3),
    "lazy+dropout": NetworkSchedule(9, GRID_EDGES, node_dropout=0.3, seed=1, lazy=True),
    "one-peer": NetworkSchedule(8, [], family="one-peer-exponential", link_failure=0.2, seed=0),
    "matching": NetworkSchedule(9, [], family="random-matching", node_dropout=0.2, seed=5),
}


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_every_round_matrix_is_symmetric_doubly_stochastic_on_the_links_up(name):
    s = SCHEDULES[name]
    for t in range(6):
        inactive = ~s.active(t)
        for k in range(4):
            up = s.edges_up(t, k, r=4 * t + k)
            W = s.round_matrix(t, k, r=4 * t + k).toarray()
            assert np.allclose(W, W.T) and np.allclose(W.sum(1), 1.0) and (W >= 0).all()
            support = {(int(i), int(j)) for i, j in np.argwhere(np.triu(W, 1) > 0)}
            assert support == {tuple(e) for e in up.tolist()}
            assert set(up.ravel().tolist()).isdisjoint(np.flatnonzero(inactive).tolist())
            for i in np.flatnonzero(inactive):  # a node that sits out is isolated: its row is e_i
                assert W[i, i] == 1.0
            if s.family is not None:  # a matching: every node has at most one peer, weight 1/2
                assert np.bincount(up.ravel(), minlength=s.n).max(initial=0) <= 1
                assert np.all(W[W < 1 - 1e-12][W[W < 1 - 1e-12] > 0] == 0.5)


def test_no_failure_round_is_the_static_metropolis_matrix():
    s = NetworkSchedule(9, GRID_EDGES, node_dropout=0.5, seed=0)
    assert np.allclose(s.round_matrix(0, 0).toarray(), metropolis_weights(GRID.graph).numpy())


def test_link_failures_are_seeded_independent_and_have_the_right_rate():
    a = NetworkSchedule(9, GRID_EDGES, link_failure=0.3, seed=7)
    b = NetworkSchedule(9, GRID_EDGES, link_failure=0.3, seed=7)
    c = NetworkSchedule(9, GRID_EDGES, link_failure=0.3, seed=8)
    # a pure function of (seed, t, k): asking in another order gives the same pattern
    late = b.edges_up(40, 2)
    assert np.array_equal(a.edges_up(40, 2), late)
    assert any(not np.array_equal(a.edges_up(t, 0), c.edges_up(t, 0)) for t in range(5))
    up = sum(a.edges_up(t, k).shape[0] for t in range(200) for k in range(3))
    rate = 1 - up / (600 * GRID_EDGES.shape[0])
    assert abs(rate - 0.3) < 0.02
    d = NetworkSchedule(9, GRID_EDGES, node_dropout=0.25, seed=7)
    off = 1 - np.mean([d.active(t).mean() for t in range(1, 400)])
    assert abs(off - 0.25) < 0.03 and d.active(0).all()


def test_one_peer_exponential_plain_rounds_average_exactly_in_log2_n():
    n = 16
    s = NetworkSchedule(n, [], family="one-peer-exponential")
    comm = DynamicCommunicator(torch.eye(n, dtype=torch.float64), [4] * n, s)
    comm.begin_iteration(1)
    Z = torch.randn(n, 3, dtype=torch.float64)
    M = Mixer(comm, "plain", 4, lam=0.5)(Z)
    assert torch.allclose(M, Z.mean(0).expand_as(M), atol=1e-14)
    partial = Mixer(comm, "plain", 3, lam=0.5)(Z)  # 3 of the 4 hop lengths: not yet the average
    assert not torch.allclose(partial, Z.mean(0).expand_as(partial), atol=1e-3)


@pytest.mark.parametrize("kind", ["plain", "chebyshev", "fastmix"])
@pytest.mark.parametrize("name", list(SCHEDULES))
def test_every_mixing_kind_preserves_the_average_under_changing_matrices(kind, name):
    s = SCHEDULES[name]
    comm = DynamicCommunicator(torch.eye(s.n, dtype=torch.float64), [1] * s.n, s)
    Z = torch.randn(s.n, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for t in range(1, 4):
        comm.begin_iteration(t)
        M = Mixer(comm, kind, 5, lam=0.7)(Z)
        assert torch.allclose(M.mean(0), Z.mean(0), atol=1e-13)
        inactive = ~s.active(t)
        # isolated rows: alpha_k z + beta_k z with alpha_k + beta_k = 1, equal up to rounding
        assert torch.allclose(M[torch.as_tensor(inactive)], Z[torch.as_tensor(inactive)], atol=1e-13, rtol=0)


def test_counters_count_the_messages_really_sent():
    s = SCHEDULES["links+dropout"]
    deg = GRID.degrees
    comm = DynamicCommunicator(GRID.W, deg, s)
    Z = torch.zeros(9, 7, dtype=torch.float32)
    sent = np.zeros(9, dtype=np.int64)
    for t in range(5):
        comm.begin_iteration(t)
        for k in range(3):
            comm.gossip(Z)
            W = s.round_matrix(t, k).toarray()  # direct count: the off-diagonal non-zeros of each row
            sent += ((W != 0).sum(1) - (np.diag(W) != 0)).astype(np.int64)
    assert np.array_equal(comm.counter.messages, sent)
    assert np.array_equal(comm.counter.bytes, sent * 7 * 4)
    assert sent.sum() < np.sum(deg) * 15  # some links were down
    state = comm.counter.state_dict()
    fresh = DynamicCommunicator(GRID.W, deg, s)
    fresh.counter.load_state_dict(state)
    assert np.array_equal(fresh.counter.bytes, comm.counter.bytes)


FAST = {"data": "breast_cancer", "nodes": 6, "topology": "ring", "iters": 12, "log_every": 12, "dtype": "float64"}


def test_a_reliable_static_graph_keeps_the_plain_communicator():
    spec = build_run(RunConfig(**FAST))
    assert spec.network is None
    assert type(simulated_communicator(spec)) is SimulatedCommunicator
    spec = build_run(RunConfig(**FAST, link_failure=0.1))
    assert isinstance(simulated_communicator(spec), DynamicCommunicator)


@pytest.mark.parametrize("algorithm, tracker, tracked, compress", [
    ("proxgt-sa", "y", "v", "none"), ("proxgt-sr-e", "y", "v", "none"), ("prox-dsgt", "y", "v", "none"),
    ("dproxsgt", "y", "v", "none"), ("deepstorm", "y", "d", "none"), ("prox-dasa-gt", "u", "v", "none"),
    # compressed gossip on the failing graph: per-link public copies keep the average exact too
    ("proxgt-sr-e", "y", "v", "topk:0.3"), ("proxgt-sa", "y", "v", "qsgd:4"), ("cdproxsgt", "y", "v", "sign"),
])
def test_tracking_invariant_holds_exactly_under_link_failure_and_dropout(algorithm, tracker, tracked, compress):
    spec = build_run(RunConfig(**FAST, algorithm=algorithm, link_failure=0.4, node_dropout=0.3, seed=2,
                               compress=compress))
    comm = simulated_communicator(spec)
    oracle = spec.make_oracle(list(range(6)))
    schedule = comm.schedule
    seen: list = []
    prev = {}

    def check(state, wall):
        gap = (getattr(state, tracker).mean(0) - getattr(state, tracked).mean(0)).abs().max()
        assert float(gap) < 1e-12, (state.t, float(gap))
        inactive = torch.as_tensor(~schedule.active(state.t))
        fields = ("x", tracker, tracked)
        if prev and inactive.any():
            for field in fields:
                assert torch.equal(getattr(state, field)[inactive], prev[field][inactive])
        prev.update({field: getattr(state, field).clone() for field in fields})
        seen.append(int(inactive.sum()))

    train(spec, comm, oracle, after_iteration=check)
    assert sum(seen) > 0  # some node did sit out


def test_a_node_that_sits_out_costs_no_gradient():
    spec = build_run(RunConfig(**FAST, algorithm="proxgt-sa", node_dropout=0.3, batch=5, seed=4))
    comm = simulated_communicator(spec)
    oracle = spec.make_oracle(list(range(6)))
    expect = np.zeros(6, dtype=np.int64)
    last = {"ifo": None}

    def hook(state, wall):
        if last["ifo"] is not None:
            expect[:] = last["ifo"] + 5 * comm.schedule.active(state.t)
            assert np.array_equal(oracle.ifo, expect)
        last["ifo"] = oracle.ifo.copy()

    train(spec, comm, oracle, after_iteration=hook)
    assert last["ifo"].min() < last["ifo"].max()  # nodes sat out different numbers of iterations


def test_runs_are_reproducible_and_differ_from_the_reliable_run():
    import proxgt

    a = proxgt.run({**FAST, "link_failure": 0.3, "node_dropout": 0.2})
    b = proxgt.run({**FAST, "link_failure": 0.3, "node_dropout": 0.2})
    c = proxgt.run(FAST)
    assert torch.equal(a.x, b.x) and not torch.allclose(a.x, c.x)


def test_time_varying_topologies_build_with_their_union_graph():
    spec = build_run(RunConfig(**{**FAST, "nodes": 8, "topology": "one-peer-exponential"}, mixing="plain"))
    assert nx.is_isomorphic(spec.topology.graph, nx.hypercube_graph(3)) and spec.rounds == 3
    spec = build_run(RunConfig(**{**FAST, "topology": "random_matching"}, mixing="plain"))
    assert spec.topology.num_edges == 15 and spec.topology.name == "random-matching"
    W = spec.topology.W.numpy()
    assert np.allclose(W.sum(0), 1) and np.allclose(W, W.T)


@pytest.mark.parametrize("args, words", [
    (["--link-failure", "1.5"], "link_failure"),
    (["--link-failure", "1"], "link_failure"),
    (["--node-dropout", "-0.1"], "node_dropout"),
    (["--topology", "one-peer-exponential", "--nodes", "6"], "power of 2"),
    (["--topology", "random-matching", "--topology-p", "0.5"], "topology_p"),
    (["--topology", "one-peer-exponential", "--nodes", "4", "--weights", "max_degree"], "cannot be honoured"),
    (["--topology", "random-matching", "--weights-file", "W.npy"], "cannot be honoured"),
    (["--link-failure", "0.2", "--weights", "max_degree"], "cannot be honoured"),
    (["--node-dropout", "0.2", "--on-failure", "continue"], "on_failure"),
])
def test_bad_input_exits_2_with_one_line(args, words, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "W.npy", np.full((16, 16), 1 / 16))
    code = main(["run", "--data", "breast_cancer", "--iters", "2", "--no-progress", *args])
    out, err = capsys.readouterr()
    assert code == 2
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert len(lines) == 1 and words in lines[0], err


def test_a_resumed_run_sees_the_same_failure_pattern(tmp_path):
    from proxgt.executors.simulation import run_simulation

    cfg = {**FAST, "nodes": 8, "topology": "one-peer-exponential", "mixing": "plain", "rounds": 1,
           "link_failure": 0.2, "node_dropout": 0.2, "checkpoint_every": 5}
    ref = run_simulation(cfg, out=tmp_path / "ref")

    class Stop(Exception):
        pass

    def stop(rank, t):
        if t == 7:
            raise Stop

    with pytest.raises(Stop):
        run_simulation(cfg, out=tmp_path / "cut", fault_hook=stop)
    resumed = run_simulation(None, resume=tmp_path / "cut")
    assert torch.equal(resumed.x, ref.x)
    assert resumed.rows[-1]["bytes_per_node"] == ref.rows[-1]["bytes_per_node"]
