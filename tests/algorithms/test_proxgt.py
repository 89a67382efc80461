"""ProxGT: tracker invariant, equality with a hand-written reference loop, convergence, cost accounting."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import proxgt
from proxgt.algorithms import ProxGT
from proxgt.data import load_dataset, split_nodes
from proxgt.estimators import Minibatch, SarahFinite, SarahOnline, make_estimator
from proxgt.mixing import Mixer, SimulatedCommunicator
from proxgt.problems import LogisticRegression
from proxgt.problems.oracle import GradientOracle
from proxgt.prox import make_regularizer
from proxgt.settings import RunConfig
from proxgt.topology import make_topology

SMALL = {"data": "breast_cancer", "nodes": 4, "topology": "ring", "test_fraction": 0.0, "dtype": "float64"}


def _setup(n=4, seed=0, dtype=torch.float64):
    train, _ = load_dataset("breast_cancer")
    nd = split_nodes(train, n, "sorted", seed=seed)
    prob = LogisticRegression(train.n_features, rho=1e-3)
    oracle = GradientOracle(prob, nd, seed, dtype=dtype)
    t = make_topology("ring", n)
    comm = SimulatedCommunicator(t.W, t.degrees)
    return train, nd, prob, oracle, t, comm


@pytest.mark.parametrize(
    "estimator", [Minibatch(8), SarahOnline(batch=4, big_batch=32, period=5), SarahFinite(batch=4, period=7)]
)
@pytest.mark.parametrize("order", ["prox-mix", "mix-prox"])
@pytest.mark.parametrize("kind", ["plain", "chebyshev"])
def test_tracker_invariant_every_iteration(estimator, order, kind):
    """mean over nodes of Y_t equals mean of V_t at every t (mixing preserves averages, Y_0 = V_0)."""
    _, _, _, oracle, t, comm = _setup()
    mix = Mixer(comm, kind, 3, lam=t.lam)
    alg = ProxGT(estimator, make_regularizer("l1", 1e-2), step=0.05, order=order)
    state = alg.init(torch.zeros(4, 30, dtype=torch.float64), oracle, mix)
    assert torch.equal(state.y, state.v)
    for _ in range(25):
        state = alg.update(state, oracle, mix)
        torch.testing.assert_close(state.y.mean(0), state.v.mean(0), rtol=0, atol=1e-12)


def _logistic_grads(X, nd, rho):
    """Full local gradients written out by hand: mean_j -y a / (1 + exp(y a^T x)) + 2 rho x / (1 + x^2)^2."""
    G = torch.zeros_like(X)
    for i in range(X.shape[0]):
        m = int(nd.counts[i])
        A = nd.X[i, :m].to(X.dtype)
        s = nd.y[i, :m].to(X.dtype) * 2 - 1
        z = A @ X[i]
        G[i] = (A * (-s / (1 + torch.exp(s * z))).unsqueeze(1)).mean(0) + 2 * rho * X[i] / (1 + X[i] ** 2) ** 2
    return G


@pytest.mark.parametrize("order", ["prox-mix", "mix-prox"])
def test_full_batch_run_equals_reference_loop(order):
    """SR-E with period 1 is deterministic full-batch ProxGT; compare with a plain loop over W^K."""
    _, nd, prob, oracle, t, comm = _setup()
    K, a, lam1, T = 3, 0.1, 0.02, 30
    mix = Mixer(comm, "plain", K, lam=t.lam)
    alg = ProxGT(SarahFinite(batch=1, period=1), make_regularizer("l1", lam1), step=a, order=order)
    state = alg.init(torch.zeros(4, 30, dtype=torch.float64), oracle, mix)
    for _ in range(T):
        state = alg.update(state, oracle, mix)

    MK = torch.linalg.matrix_power(t.W, K)

    def soft(Z, thr):
        return torch.sign(Z) * torch.clamp(Z.abs() - thr, min=0)

    X = torch.zeros(4, 30, dtype=torch.float64)
    V = _logistic_grads(X, nd, 1e-3)
    Y = V.clone()
    for _ in range(T):
        if order == "prox-mix":
            X_new = MK @ soft(X - a * Y, a * lam1)
        else:
            X_new = soft(MK @ (X - a * Y), a * lam1)
        V_new = _logistic_grads(X_new, nd, 1e-3)
        Y = MK @ (Y + V_new - V)
        X, V = X_new, V_new
    torch.testing.assert_close(state.x, X, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(state.y, Y, rtol=1e-9, atol=1e-10)
    # cost: m_i per node at init and each of the T iterations
    np.testing.assert_array_equal(oracle.ifo, nd.counts.numpy() * (T + 1))
    assert comm.counter.rounds == 2 * K * T


@pytest.mark.parametrize("algorithm", ["proxgt-sa", "proxgt-sr-o", "proxgt-sr-e"])
def test_each_instance_drives_stationarity_down(algorithm):
    h = proxgt.run({**SMALL, "algorithm": algorithm, "iters": 150, "log_every": 50, "seed": 1})
    gm = h.column("grad_mapping_sq")
    assert gm[-1] < 0.05 * gm[0], gm
    assert h.rows[-1]["consensus"] < 1e-3
    assert all(math.isfinite(v) for v in gm)


def test_costs_are_counted_as_specified():
    T, K, b = 20, 2, 8
    h = proxgt.run({**SMALL, "algorithm": "proxgt-sa", "iters": T, "log_every": T, "rounds": K, "batch": b,
                    "mixing": "plain", "dtype": "float32"})
    last = h.rows[-1]
    assert last["ifo_per_node"] == b * (T + 1)
    assert last["comm_rounds"] == 2 * K * T
    d = h.x.shape[1]
    assert last["bytes_per_node"] == 2 * K * T * 2 * d * 4  # ring: degree 2, float32


def test_sr_e_and_sr_o_cost_accounting():
    cfg = {**SMALL, "iters": 10, "log_every": 10, "batch": 3, "period": 4}
    h = proxgt.run({**cfg, "algorithm": "proxgt-sr-e"})
    m = h.config["meta"]["local_sizes"]
    # refresh (m) at t = 0, 4, 8 and SARAH differences (2b) at t = 1, 2, 3, 5, 6, 7, 9, 10
    assert h.rows[-1]["ifo_per_node"] == pytest.approx(np.mean(m) * 3 + 2 * 3 * 8)
    h = proxgt.run({**cfg, "algorithm": "proxgt-sr-o", "big_batch": 16})
    assert h.rows[-1]["ifo_per_node"] == 16 * 3 + 2 * 3 * 8


def test_same_seed_same_metrics_and_different_seed_differs():
    cfg = {**SMALL, "algorithm": "proxgt-sr-o", "iters": 30, "log_every": 10, "dtype": "float32"}
    a, b = proxgt.run(cfg), proxgt.run(cfg)
    c = proxgt.run({**cfg, "seed": 7})
    strip = lambda h: [{k: v for k, v in r.items() if k != "wall_s"} for r in h.rows]  # noqa: E731
    assert strip(a) == strip(b)
    assert torch.equal(a.x, b.x)
    assert strip(a) != strip(c)


def test_defaults_follow_spec():
    assert make_estimator("sa", n_nodes=16, local_size=2035) == Minibatch(32)
    assert make_estimator("sr-o", n_nodes=16, local_size=2035) == SarahOnline(batch=8, big_batch=256, period=32)
    assert make_estimator("sr-e", n_nodes=16, local_size=2035) == SarahFinite(batch=12, period=170)
    assert make_estimator("sr-o", n_nodes=4, local_size=100).big_batch == 100


def test_single_node_is_centralized_prox_gradient():
    h = proxgt.run({**SMALL, "nodes": 1, "algorithm": "proxgt-sr-e", "iters": 50, "log_every": 50})
    assert h.rows[-1]["comm_rounds"] == 100  # rounds are still counted; a lone node sends nothing
    assert h.rows[-1]["bytes_per_node"] == 0
    assert h.rows[-1]["consensus"] == 0


def test_resolved_config_round_trips(tmp_path):
    h = proxgt.run({**SMALL, "iters": 5, "log_every": 5}, out=tmp_path / "r")
    from proxgt.settings import load_config_file

    d = load_config_file(tmp_path / "r" / "config.toml")
    assert d["meta"]["version"] == proxgt.__version__
    d.pop("meta")
    cfg = RunConfig.from_dict(d)
    assert cfg.step == pytest.approx(h.config["step"]) and cfg.rounds == h.config["rounds"]
    h2 = proxgt.run(cfg)
    assert [r["grad_mapping_sq"] for r in h2.rows] == [r["grad_mapping_sq"] for r in h.rows]


def test_history_reaching_needs_the_curve_to_stay_below():
    from proxgt.training import History

    rows = [{"iter": i, "m": v} for i, v in enumerate([5.0, 0.5, 2.0, 0.8, 0.4, 0.9])]
    h = History(columns=["iter", "m"], rows=rows, x=torch.zeros(1, 1), config={}, summary={})
    assert h.first_reaching("m", 1.0)["iter"] == 1
    assert h.reaching("m", 1.0)["iter"] == 3
    assert h.reaching("m", 0.45) is None
