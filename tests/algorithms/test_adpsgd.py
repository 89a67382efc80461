"""Prox-AD-PSGD: its iterates follow the paper's update written out here (random pairwise averaging, then the
proximal step with the gradient read before the averaging), the averaging keeps the network sum, and it runs on
the virtual clock with --async only."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.executors.resuming import stopped_and_resumed

from proxgt.cli import main
from proxgt.executors.simulation import run_simulation, simulated_communicator
from proxgt.mixing.asynchrony import async_network
from proxgt.mixing.pairwise import PairwiseGossip
from proxgt.problems.oracle import GradientOracle
from proxgt.settings import RunConfig
from proxgt.training import build_run

LAM, STEPS, NODES = 0.02, 6, 5
CFG = {"algorithm": "prox-adpsgd", "data": "breast_cancer", "nodes": NODES, "topology": "ring", "reg": "l1",
       "reg_strength": LAM, "dtype": "float64", "batch": 4, "iters": STEPS, "asynchronous": True, "seed": 3}


def _partner(seed: int, i: int, k: int, nbrs: list[int]) -> int:
    # the partner rule of proxgt.mixing.pairwise, written out: uniform over i's neighbours (those above i in
    # ascending order, then those below), drawn from SeedSequence([seed, 0xAD95, i, k])
    ordered = [j for j in sorted(nbrs) if j > i] + [j for j in sorted(nbrs) if j < i]
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xAD95, i, k]))
    return ordered[int(rng.integers(len(ordered)))]


def test_matches_the_update_rule_written_out():
    cfg = RunConfig(**CFG)
    b = build_run(cfg)
    ids = list(range(NODES))
    x0 = b.x0.to(torch.float64).unsqueeze(0).repeat(NODES, 1)
    # the algorithm on the asynchronous network with no delays: every node is active in every tick
    net = async_network(simulated_communicator(b), b)
    o = GradientOracle(b.problem, b.node_data.shard(ids), cfg.seed, dtype=torch.float64)
    st = b.algorithm.init(x0, o, net)
    for _ in range(STEPS):
        assert net.next_active().all()
        st = b.algorithm.update(st, o, net)
        net.end_tick()
    # the reference: x_i, x_j <- (x_i + x_j) / 2 for i = 0..n-1 in turn, then x <- soft(x - a g, a) with g the
    # minibatch gradient at the model before the averaging
    a, nbrs = b.step, {i: list(b.topology.graph.neighbors(i)) for i in ids}
    ro = GradientOracle(b.problem, b.node_data.shard(ids), cfg.seed, dtype=torch.float64)
    X = x0.clone()
    G = ro.grad(X, ro.sample(4))
    for k in range(STEPS):
        H = X.clone()
        for i in ids:
            j = _partner(cfg.seed, i, k, nbrs[i])
            H[i] = H[j] = 0.5 * (H[i] + H[j])
        Z = H - a * G
        X = torch.sign(Z) * torch.clamp(Z.abs() - a * LAM, min=0.0)
        G = ro.grad(X, ro.sample(4))
    assert torch.allclose(st.x, X, atol=1e-12, rtol=1e-10), (st.x - X).abs().max()
    assert not torch.allclose(X, x0)
    # it is not the W-mixing of Prox-DSGD: the same steps with one W per iteration end elsewhere
    W = torch.as_tensor(b.topology.W, dtype=torch.float64)
    ro2 = GradientOracle(b.problem, b.node_data.shard(ids), cfg.seed, dtype=torch.float64)
    Y = x0.clone()
    G = ro2.grad(Y, ro2.sample(4))
    for _ in range(STEPS):
        Z = W @ Y - a * G
        Y = torch.sign(Z) * torch.clamp(Z.abs() - a * LAM, min=0.0)
        G = ro2.grad(Y, ro2.sample(4))
    assert not torch.allclose(st.x, Y, atol=1e-8)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pairwise_averaging_keeps_the_network_sum(seed):
    # what every node holds after the averaging (its row if active, else a written average or its row) sums to
    # what they held before: every averaging is a doubly stochastic pairwise matrix
    rng = np.random.default_rng(seed)
    n = 7
    src = np.array([0, 1, 2, 3, 4, 5, 0, 2])
    dst = np.array([1, 2, 3, 4, 5, 6, 6, 5])
    pairs = PairwiseGossip(n, np.concatenate([src, dst]), np.concatenate([dst, src]), seed)
    Z = torch.as_tensor(rng.standard_normal((n, 3)))
    for k in range(5):
        active = rng.random(n) < 0.5
        before = torch.stack([pairs.writes.get("x", {}).get(j, Z[j]) for j in range(n)]).sum(0)
        out, used, sent = pairs.mix(Z, "x", active, np.full(n, k))
        held = torch.stack([out[j] if active[j] else pairs.writes["x"].get(j, Z[j]) for j in range(n)])
        assert torch.allclose(held.sum(0), before, atol=1e-12)
        assert len(used) == int(active.sum()) and sent.sum() == 2 * len(used)
        Z = torch.where(torch.as_tensor(active)[:, None], out, Z)


def test_runs_on_the_virtual_clock_with_async_and_repeats(tmp_path):
    speeds = tmp_path / "speeds.csv"
    speeds.write_text("node,s\n" + "".join(f"{i},{0.01 if i == 1 else 0.001}\n" for i in range(NODES)))
    cfg = dict(CFG, iters=60, log_every=20, batch=8, reg_strength=1e-3, node_speed=str(speeds),
               link_latency="exp:0.002")
    h = run_simulation(cfg)
    assert h.rows[-1]["grad_mapping_sq"] < h.rows[0]["grad_mapping_sq"] / 20
    times = [r["sim_time_s"] for r in h.rows]
    assert times == sorted(times) and times[-1] > 0
    again = run_simulation(cfg)
    assert [r["sim_time_s"] for r in again.rows] == times
    assert [r["grad_mapping_sq"] for r in again.rows] == [r["grad_mapping_sq"] for r in h.rows]


def test_resumes_exactly_with_averages_written_to_busy_partners(tmp_path, monkeypatch):
    # random compute times: partners are often not active when written to, so the checkpoint holds writes
    cfg = dict(CFG, iters=16, log_every=4, node_speed="exp:0.001", link_latency="exp:0.002")
    ref, resumed = stopped_and_resumed(cfg, tmp_path / "run", monkeypatch, stop_at=8, every=8)
    assert resumed.x.equal(ref.x)
    assert [{k: v for k, v in r.items() if k != "wall_s"} for r in resumed.rows] == \
        [{k: v for k, v in r.items() if k != "wall_s"} for r in ref.rows]


def test_without_async_is_one_line_exit_2(capsys):
    assert main(["run", "--algorithm", "prox-adpsgd", "--data", "breast_cancer", "--nodes", "4", "--iters", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--async" in err[0]
