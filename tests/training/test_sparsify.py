"""The sparse path (proxgt.training.sparsify): the nodes agree bit for bit on the threshold and the support, the
density is the target within one bin, the switch leaves gradient tracking intact, bad settings are one-line
errors, and a run resumed across the switch ends as the uninterrupted one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from proxgt.cli import main
from proxgt.errors import ProxGTValueError
from proxgt.executors.simulation import run_simulation, simulated_communicator
from proxgt.mixing import SimulatedCommunicator
from proxgt.prox import L1, Support
from proxgt.topology import make_topology
from proxgt.training import build_run, train
from proxgt.training.sparsify import (
    BINS,
    agree_support,
    agree_threshold,
    averaging_rounds,
    flood_rounds,
    magnitude_bins,
)

from ..executors.launching import captured, deadline
from ..executors.resuming import stopped_and_resumed

DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits.npz"
PATH = {"problem": "mlp", "hidden": 8, "data": str(DIGITS), "nodes": 4, "topology": "ring", "iters": 40,
        "log_every": 5, "seed": 3, "reg": "l1", "reg_strength": 1e-3, "reg_warmup": 0.25,
        "sparsify_density": 0.3, "sparsify_at": 0.5}


def _ring(n: int):
    top = make_topology("ring", n)
    return top, SimulatedCommunicator(top.W, top.degrees)


def _rows(n: int, d: int, spread: float, seed: int = 0) -> torch.Tensor:
    """n node rows near one model: a shared heavy-tailed vector plus per-node noise of relative size ``spread``."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(d, generator=g, dtype=torch.float64) ** 3
    return (base + spread * torch.randn(n, d, generator=g, dtype=torch.float64) * base.abs()).float()


def _kept_share(X: torch.Tensor, j: int) -> float:
    """The share of all nodes' entries in bins >= j (the network's exact histogram)."""
    return float((magnitude_bins(X) >= j).double().mean())


def test_every_node_agrees_on_the_threshold_and_the_density_is_the_target_within_one_bin():
    top, comm = _ring(6)
    weights = torch.ones(4000, dtype=torch.bool)
    weights[:100] = False  # e.g. biases: never pruned, never counted
    for density, spread in [(0.05, 0.01), (0.1, 0.01), (0.2, 0.01), (0.5, 0.01), (0.1, 0.3)]:
        X = _rows(6, 4000, spread=spread)
        j = agree_threshold(X, comm, density, weights=weights, avg_rounds=averaging_rounds(top.lam),
                            flood=flood_rounds(top.W_csr))
        # the network's exact histogram: keeping bins >= j keeps at most the target, one bin lower keeps more
        share = _kept_share(X[:, weights], j)
        assert share <= density + 1e-3
        assert _kept_share(X[:, weights], j - 1) > density - 1e-3
        support = agree_support(X, comm, j, weights=weights, flood=flood_rounds(top.W_csr))
        assert support[:100].all()
        # the support: what every node keeps, so at most each node's own share, and near the target for near-equal rows
        own = (magnitude_bins(X[:, weights]) >= j).double().mean(1)
        counted = float(support[weights].double().mean())
        assert counted <= float(own.min()) + 1e-12
        if spread < 0.1:  # near-consensus rows, as after training: the support's share is the target's
            assert density - 0.01 < counted <= density + 1e-3


def test_nodes_that_disagree_are_brought_to_one_bin_and_too_few_rounds_are_caught():
    top, comm = _ring(8)
    X = _rows(8, 3000, spread=0.0)
    X = X * torch.linspace(0.5, 2.0, 8).unsqueeze(1)  # very different scales: each node's own quantile differs
    flood = flood_rounds(top.W_csr)
    assert flood == 4  # the diameter of an 8-ring
    # no averaging at all: every node's candidate is its own quantile; flooding still gives one bin, the highest
    j = agree_threshold(X, comm, 0.1, weights=None, avg_rounds=0, flood=flood)
    own = [agree_threshold(X[i:i + 1], SimulatedCommunicator(torch.ones(1, 1), [0]), 0.1, weights=None,
                           avg_rounds=0, flood=0) for i in range(8)]
    assert len(set(own)) > 1 and j == max(own)
    with pytest.raises(ProxGTValueError, match="did not agree"):
        agree_threshold(X, comm, 0.1, weights=None, avg_rounds=0, flood=flood - 2)


def test_bins_are_log_spaced_and_zeros_are_never_kept():
    x = torch.tensor([[0.0, 1e-12, 1e-9, 1.0, 1e5]], dtype=torch.float64)
    idx = magnitude_bins(x)[0].tolist()
    assert idx[0] == 0 and idx[1] == 0 and idx[2] == 1 and idx[4] == BINS
    assert idx[3] == 1 + int(9 * BINS / 12)


def _tracked_run(cfg: dict):
    """Run ``cfg``'s spec in this process, checking after every iteration what the path must keep."""
    spec = build_run(cfg)
    comm = simulated_communicator(spec)
    oracle = spec.make_oracle(comm.node_ids)
    seen = []

    def check(state, wall):
        # tracking: the trackers' average is the gradient estimates' average at every iteration, switch included
        torch.testing.assert_close(state.y.mean(0), state.v.mean(0), rtol=0, atol=1e-5)
        seen.append((int(state.t), state.x.clone()))

    state, _ = train(spec, comm, oracle, after_iteration=check)
    return spec, seen


def test_the_switch_composes_with_gradient_tracking_and_every_row_keeps_one_support():
    spec, seen = _tracked_run(dict(PATH))
    t_s = spec.reg_schedule.switch_iter
    assert t_s == 20
    mask = spec.problem.density_mask
    zeros_before = [(x[:, mask] == 0).double().mean() for t, x in seen if t <= t_s]
    after = [x for t, x in seen if t > t_s]
    pattern = after[0] != 0
    assert (pattern == pattern[:1]).all()  # every node: the same support
    density = float(pattern[0, mask].double().mean())
    assert density <= 0.3 + 1e-3 and density > 0.2
    assert max(zeros_before) < 0.5  # prox-mix: rows are not that sparse before the switch (the prune made them)
    for x in after:
        assert ((x != 0) <= pattern[:1]).all()  # never leave the support


def test_the_warmup_ramps_the_strength_then_the_support_replaces_the_penalty():
    spec = build_run(dict(PATH))
    path = spec.reg_schedule.start()
    assert spec.reg_schedule.warmup_iters == 10
    lams = [path.regularizer(t).lam for t in (1, 5, 10, 20)]
    assert isinstance(path.regularizer(1), L1)
    assert lams == pytest.approx([1e-4, 5e-4, 1e-3, 1e-3])
    assert path.algorithm(3).regularizer == path.regularizer(3)
    comm = simulated_communicator(spec)
    state = spec.algorithm.init(spec.initial_rows(comm.node_ids), spec.make_oracle(comm.node_ids), None)
    path.sparsify(state, comm)
    assert isinstance(path.regularizer(30), Support)
    again = spec.reg_schedule.start()
    again.load_state_dict(path.state_dict())
    assert torch.equal(again.support, path.support) and again.agreement == path.agreement


def test_gradual_pruning_nests_the_supports_on_the_cubic_schedule():
    cfg = dict(PATH, sparsify_steps=4)
    spec, seen = _tracked_run(cfg)
    prunes = spec.reg_schedule.prunes()
    assert [t for t, _ in prunes] == [5, 10, 15, 20]
    assert [d for _, d in prunes] == pytest.approx([0.3 + 0.7 * (1 - k / 4) ** 3 for k in range(1, 5)])
    mask = spec.problem.density_mask
    by_t = dict(seen)
    patterns = [by_t[t + 1] != 0 for t, _ in prunes]
    for (_, target), pattern, later in zip(prunes, patterns, patterns[1:] + patterns[-1:], strict=True):
        assert (pattern == pattern[:1]).all()
        assert float(pattern[0, mask].double().mean()) <= target + 1e-3
        assert (later <= pattern).all()  # each support inside the previous one


@pytest.mark.parametrize("stop_at, steps", [(15, 1), (25, 1), (15, 4)])  # before / after the switch at 20
def test_a_run_resumed_across_the_switch_ends_as_the_uninterrupted_one(tmp_path, monkeypatch, stop_at, steps):
    cfg = dict(PATH, sparsify_steps=steps)
    ref, resumed = stopped_and_resumed(cfg, tmp_path / "run", monkeypatch, stop_at=stop_at, every=5)
    assert torch.equal(ref.x, resumed.x)
    drop = ("wall_s",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in ref.rows] == \
           [{k: v for k, v in r.items() if k not in drop} for r in resumed.rows]
    assert resumed.summary["sparse_path"] == ref.summary["sparse_path"]


def test_the_summary_records_the_agreed_threshold():
    h = run_simulation(dict(PATH))
    s = h.summary["sparse_path"]
    assert s["switch_iter"] == 20 and s["target_density"] == 0.3
    assert 0.2 < s["support_density"] <= 0.3 + 1e-3 and s["threshold"] > 0
    assert h.rows[-1]["density"] == pytest.approx(s["support_density"], abs=2e-3)


@pytest.mark.parametrize("extra, message", [
    (["--sparsify-at", "0.5"], "needs sparsify_density"),
    (["--sparsify-density", "0"], "sparsify_density"),
    (["--sparsify-density", "1.5"], "sparsify_density"),
    (["--sparsify-density", "0.1", "--sparsify-at", "0.01"], "puts the switch at iteration 0"),
    (["--sparsify-density", "0.1", "--async"], "asynchronous"),
    (["--sparsify-density", "0.1", "--link-failure", "0.1"], "changing network"),
    (["--reg-warmup", "2"], "reg_warmup"),
    (["--sparsify-steps", "3"], "needs sparsify_density"),
    (["--sparsify-density", "0.1", "--sparsify-steps", "11"], "sparsify_steps = 11 prunes"),
])
def test_bad_settings_exit_2_with_one_line(tmp_path, capsys, extra, message):
    code = main(["run", "--problem", "mlp", "--hidden", "8", "--data", str(DIGITS), "--nodes", "4", "--iters", "20",
                 "--out", str(tmp_path / "run"), "--no-progress", *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1, err


def test_the_distributed_executor_agrees_on_the_same_support_as_the_simulation(tmp_path):
    """Two processes of two nodes each: the same threshold and support as the simulation, bit for bit."""
    cfg = dict(PATH, iters=30, log_every=10)
    flags = [x for k, v in cfg.items() for x in (f"--{k.replace('_', '-')}", str(v))]
    with captured() as got, deadline(120):
        code = main(["launch", "--nprocs", "2", *flags, "--out", str(tmp_path / "dist"), "--no-progress"])
    assert code == 0, (got["out"] + got["err"])[-3000:]
    sim = run_simulation(dict(cfg), out=tmp_path / "sim")
    dist = json.loads((tmp_path / "dist" / "summary.json").read_text())
    assert dist["sparse_path"] == sim.summary["sparse_path"]
    x = np.load(tmp_path / "dist" / "final.npz")["x"]
    assert np.array_equal(x != 0, sim.x.numpy() != 0)
    np.testing.assert_allclose(x, sim.x.double().numpy(), rtol=0, atol=1e-5)
