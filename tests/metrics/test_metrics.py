"""Metrics at the network average against their definitions (spec section 2), computed by hand here."""

from __future__ import annotations

import pytest
import torch

from proxgt.data import load_dataset, split_nodes
from proxgt.metrics import MetricsEvaluator
from proxgt.mixing import SimulatedCommunicator
from proxgt.problems import LogisticRegression
from proxgt.problems.oracle import GradientOracle
from proxgt.prox import L1, NoReg
from proxgt.topology import make_topology

D = torch.float64


def _setup(reg, n=4):
    train, _ = load_dataset("breast_cancer")
    nd = split_nodes(train, n, "sorted")
    prob = LogisticRegression(train.n_features, rho=0.01)
    oracle = GradientOracle(prob, nd, 0, dtype=D)
    t = make_topology("ring", n)
    comm = SimulatedCommunicator(t.W, t.degrees)
    return train, nd, prob, oracle, comm, MetricsEvaluator(prob, reg, oracle, comm, step=0.5)


def _global_grad(prob, nd, x):
    """grad f(x) = (1/n) sum_i grad f_i(x), each f_i the mean over node i's samples."""
    grads, losses = [], []
    for i in range(nd.n_nodes):
        m = int(nd.counts[i])
        w = torch.full((1, m), 1.0 / m, dtype=D)
        loss, g = prob.loss_grad(x[None], nd.X[i : i + 1, :m].to(D), nd.y[i : i + 1, :m], w)
        grads.append(g[0])
        losses.append(loss[0])
    return torch.stack(grads).mean(0), torch.stack(losses).mean()


def test_h_zero_gradient_mapping_is_the_gradient():
    _, nd, prob, _, _, metrics = _setup(NoReg())
    X = torch.randn(4, 30, dtype=D, generator=torch.Generator().manual_seed(0)) * 0.1
    row = metrics(X, 7, 1.5)
    xbar = X.mean(0)
    g, f = _global_grad(prob, nd, xbar)
    dev = ((X - xbar) ** 2).sum()
    assert row["iter"] == 7 and row["wall_s"] == 1.5
    assert row["grad_mapping_sq"] == pytest.approx(float(g @ g), rel=1e-10)
    assert row["consensus"] == pytest.approx(float(dev) / 4, rel=1e-10)
    assert row["total_opt"] == pytest.approx(float(g @ g) + float(dev), rel=1e-10)
    assert row["objective"] == pytest.approx(float(f), rel=1e-10)


def test_l1_gradient_mapping_total_opt_and_density():
    lam = 0.05
    _, nd, prob, _, _, metrics = _setup(L1(lam))
    X = torch.randn(4, 30, dtype=D, generator=torch.Generator().manual_seed(1)) * 0.1
    row = metrics(X, 0, 0.0)
    xbar = X.mean(0)
    g, f = _global_grad(prob, nd, xbar)

    def soft(v, thr):
        return torch.sign(v) * torch.clamp(v.abs() - thr, min=0)

    z = soft(xbar - 0.5 * g, 0.5 * lam)
    s = (xbar - z) / 0.5
    z1 = soft(xbar - g, lam)
    dev = ((X - xbar) ** 2).sum()
    assert row["grad_mapping_sq"] == pytest.approx(float(s @ s), rel=1e-10)
    assert row["total_opt"] == pytest.approx(float(((xbar - z1) ** 2).sum() + dev), rel=1e-10)
    assert row["objective"] == pytest.approx(float(f + lam * xbar.abs().sum()), rel=1e-10)
    assert row["density"] == pytest.approx(float((z != 0).double().mean()))
    assert 0 < row["density"] < 1  # this point has both zero and non-zero coordinates


def test_train_accuracy_counts_every_real_sample_once():
    train, nd, prob, _, _, metrics = _setup(NoReg())
    x = torch.randn(30, dtype=D, generator=torch.Generator().manual_seed(2))
    row = metrics(x.expand(4, 30).clone(), 0, 0.0)
    pred = (train.X.to(D) @ x > 0).long()
    assert row["train_accuracy"] == pytest.approx(float((pred == train.y).double().mean()))
