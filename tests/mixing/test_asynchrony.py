"""Asynchronous ProxGT on the virtual clock: zero delays are the synchronous run, a slow node no longer sets the
pace, the staleness bound holds, tracking stays exact, and what it cannot honour is a one-line error."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.executors.resuming import stopped_and_resumed

from proxgt.cli import main
from proxgt.executors.simulation import run_simulation, simulated_communicator
from proxgt.mixing.asynchrony import async_network
from proxgt.settings import RunConfig
from proxgt.training import build_run, train

FAST = {"data": "breast_cancer", "nodes": 6, "topology": "ring", "iters": 24, "log_every": 4, "dtype": "float64",
        "algorithm": "proxgt-sa", "batch": 4, "rounds": 1, "mixing": "plain"}


def _rows(history, drop=("wall_s", "sim_time_s")):
    return [{k: v for k, v in r.items() if k not in drop} for r in history.rows]


# SR-E and SR-O with a short period, so that the 24 iterations hold several refreshes
_ESTIMATORS = [{}, {"algorithm": "proxgt-sr-e", "period": 5}, {"algorithm": "proxgt-sr-o", "big_batch": 16,
                                                                 "period": 5}]


@pytest.mark.parametrize("clock", [{}, {"node_speed": 0.001}, {"node_speed": "exp:0.001", "link_latency": 0.0}])
@pytest.mark.parametrize("est", _ESTIMATORS, ids=["sa", "sr-e", "sr-o"])
def test_zero_delays_give_the_synchronous_iterates_exactly(clock, est):
    """Equal constant speeds (or none) and instant links: every node is active in every tick and every message
    is the one just sent. Random speeds make the nodes finish at different times, so they are asynchronous; so
    do SR-E's refreshes at a constant speed (a full local gradient costs m_i, and the shards differ in size)."""
    sync = run_simulation(dict(FAST, **est, **clock))
    asyn = run_simulation(dict(FAST, **est, **clock, asynchronous=True))
    if "exp" in str(clock.get("node_speed")) or (clock and est.get("algorithm") == "proxgt-sr-e"):
        assert not asyn.x.equal(sync.x)
        return
    assert asyn.x.equal(sync.x) and _rows(asyn) == _rows(sync)
    if clock:
        assert [r["sim_time_s"] for r in asyn.rows] == pytest.approx([r["sim_time_s"] for r in sync.rows])


def _slow_node(tmp_path, node=2, factor=10.0, s=1e-3):
    f = tmp_path / "speeds.csv"
    f.write_text("".join(f"{i},{factor * s if i == node else s}\n" for i in range(FAST["nodes"])))
    return str(f)


def test_a_slow_node_no_longer_sets_the_pace(tmp_path):
    cfg = dict(FAST, node_speed=_slow_node(tmp_path), link_latency=0.002)
    sync = run_simulation(dict(cfg)).rows[-1]
    asyn = run_simulation(dict(cfg, asynchronous=True, max_staleness=3)).rows[-1]
    # both ran until every node did 24 iterations; the fast nodes did not wait for the slow one each round
    assert asyn["iter"] == sync["iter"] == 24
    assert asyn["sim_time_s"] < sync["sim_time_s"]
    assert asyn["ifo_per_node"] > sync["ifo_per_node"]  # the fast nodes kept computing meanwhile


def _drive(cfg):
    """Run ``cfg`` with an AsyncNetwork we can inspect after every tick."""
    spec = build_run(RunConfig(**cfg))
    comm = simulated_communicator(spec)
    oracle = spec.make_oracle(list(comm.node_ids))
    net = async_network(comm, spec)
    seen = []

    def inspect(state, wall):  # trackers are push-sum ratios: the invariant is on the mass the nodes hold
        seen.append((net.iters.copy(), net.held_mass("y", state.y), net.in_flight_sum("y"), state.v.sum(0)))

    state, _ = train(spec, comm, oracle, after_iteration=inspect, mixer=net)
    return spec, net, seen, state, oracle


def test_staleness_bound_and_exact_tracking(tmp_path):
    """A node never mixes without a message from each neighbour sent since the start of its own iteration k - S
    (the age bound, in its own iterations); the slow node does not hold the others to within S iterations of it;
    the trackers' mass stays exact."""
    S = 2
    cfg = dict(FAST, node_speed=_slow_node(tmp_path), link_latency="exp:0.002", asynchronous=True, max_staleness=S)
    spec = build_run(RunConfig(**cfg))
    comm = simulated_communicator(spec)
    oracle = spec.make_oracle(list(comm.node_ids))
    net = async_network(comm, spec)
    newest = np.full(2 * net.E, -np.inf)  # per link: when the newest message its receiver took was sent
    exchange = net._exchange

    def recording(*args, **kwargs):
        out = exchange(*args, **kwargs)
        for d, _, taken, _ in out:
            newest[d] = max([newest[d], *(m.sent for m in taken)])
        return out

    net._exchange = recording
    starts: list[list[float]] = [[] for _ in range(net.n)]  # every node's iteration start times
    seen, violations, mixed = [], 0, 0
    end_tick = net.end_tick

    def checked_end_tick():
        nonlocal violations, mixed
        for i in np.flatnonzero(net.active):
            starts[i].append(net.starts[i][-1])
            k = len(starts[i])  # the iteration i is finishing
            if k > S:
                for d in np.flatnonzero(net.dst == i):
                    mixed += 1
                    violations += newest[d] < starts[i][k - 1 - S]
        end_tick()

    net.end_tick = checked_end_tick

    def inspect(state, wall):
        seen.append((net.iters.copy(), net.held_mass("y", state.y), net.in_flight_sum("y"), state.v.sum(0)))

    train(spec, comm, oracle, after_iteration=inspect, mixer=net)
    assert mixed > 100 and violations == 0
    edges = np.asarray(spec.topology.edges)
    assert max(int(np.abs(it[edges[:, 0]] - it[edges[:, 1]]).max()) for it, *_ in seen) > 3 * S
    gaps = []
    for _, y_sum, flying, v_sum in seen:
        total = y_sum + (flying if flying is not None else 0.0)
        gaps.append(float((total - v_sum).abs().max() / v_sum.abs().max()))
    assert max(gaps) < 1e-12
    assert any(flying is not None for _, _, flying, _ in seen)  # messages were in flight at some ticks


@pytest.mark.parametrize("est", _ESTIMATORS[1:], ids=["sr-e", "sr-o"])
def test_sarah_nodes_refresh_on_their_own_iterations_and_are_counted_per_node(tmp_path, est):
    """Each node refreshes at its own iterations q, 2q, ...: its gradient count is (1 + its refreshes) refreshes
    and 2b per other iteration, whatever the other nodes did meanwhile."""
    q, b = est["period"], FAST["batch"]
    cfg = dict(FAST, **est, node_speed=_slow_node(tmp_path), link_latency="exp:0.002", asynchronous=True,
               max_staleness=3)
    spec, net, _, state, oracle = _drive(cfg)
    done = net.iters
    assert done.max() > done.min() + 3  # the fast nodes ran ahead of the slow one
    assert state.est.iters.tolist() == done.tolist()
    fresh = oracle.counts.numpy() if est["algorithm"] == "proxgt-sr-e" else np.full(len(done), est["big_batch"])
    refreshes = done // q
    restarts = state.est.restarts.numpy()  # the safeguard's refreshes (none expected here)
    assert oracle.ifo.tolist() == (fresh * (1 + refreshes + restarts) + 2 * b * (done - refreshes)).tolist()


def test_async_times_are_seeded():
    cfg = dict(FAST, node_speed="exp:0.001", link_latency="exp:0.002", asynchronous=True)
    a, b = run_simulation(dict(cfg)), run_simulation(dict(cfg))
    c = run_simulation(dict(cfg, seed=3))
    assert a.x.equal(b.x) and [r["sim_time_s"] for r in a.rows] == [r["sim_time_s"] for r in b.rows]
    assert [r["sim_time_s"] for r in a.rows] != [r["sim_time_s"] for r in c.rows]


def test_counts_only_what_the_active_nodes_sent(tmp_path):
    cfg = dict(FAST, node_speed=_slow_node(tmp_path), link_latency=0.002, asynchronous=True)
    row = run_simulation(cfg).rows[-1]
    # per iteration a node sends its iterate to both neighbours, and a tracker share to each neighbour that has
    # answered its last one: bytes follow its own iterations, not the ticks
    d_bytes = 8 * build_run(RunConfig(**FAST)).problem.dim
    per_node_iters = (row["ifo_per_node"] - 4) / 4  # SA: b = 4 gradients per iteration, 4 at the start
    assert per_node_iters * 2 * d_bytes < row["bytes_per_node"] < per_node_iters * 2 * 2 * d_bytes
    assert torch.isfinite(torch.tensor(row["grad_mapping_sq"]))


@pytest.mark.parametrize(("flags", "message"), [
    (["--max-staleness", "0"], "max_staleness = 0 with --async is the synchronous run"),
    (["--algorithm", "prox-dsgt"], "cannot run asynchronously"),
    (["--mixing", "chebyshev"], "use --mixing plain --rounds 1"),
    (["--rounds", "2"], "use --mixing plain --rounds 1"),
    (["--message-loss", "0.1"], "--async does not combine with"),
])
def test_what_async_cannot_honour_is_a_one_line_error(flags, message, capsys, tmp_path):
    argv = ["run", "--data", "breast_cancer", "--nodes", "4", "--mixing", "plain", "--rounds", "1", "--async",
            *flags, "--out", str(tmp_path / "o")]
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "\n" not in err, err


def test_the_distributed_executor_refuses_async(tmp_path, capsys):
    code = main(["launch", "--nprocs", "2", "--data", "breast_cancer", "--nodes", "4", "--async",
                 "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "asynchronous (--async)" in err and "\n" not in err


def test_deterministic_async_tracking_is_unbiased():
    """Nodes that mix more often push more tracker mass away; with the masses alone the trackers settle on a
    biased split and the gradient mapping stalls near 1.1e-3 here (measured before the push-sum weights)."""
    cfg = dict(FAST, batch="full", reg_strength=1e-2, iters=400, log_every=400, node_speed="exp:0.001",
               link_latency="exp:0.002", asynchronous=True, max_staleness=2)
    rows = run_simulation(cfg).rows
    assert rows[-1]["grad_mapping_sq"] < 2e-4


@pytest.mark.parametrize("est", _ESTIMATORS[:2], ids=["sa", "sr-e"])
def test_resume_continues_an_async_run(tmp_path, monkeypatch, est):
    cfg = dict(FAST, **est, iters=16, node_speed=_slow_node(tmp_path), link_latency="exp:0.002", asynchronous=True,
               max_staleness=2)
    ref, resumed = stopped_and_resumed(cfg, tmp_path / "run", monkeypatch, stop_at=8, every=8)
    assert resumed.x.equal(ref.x)
    assert [{k: v for k, v in r.items() if k != "wall_s"} for r in resumed.rows] == \
        [{k: v for k, v in r.items() if k != "wall_s"} for r in ref.rows]
