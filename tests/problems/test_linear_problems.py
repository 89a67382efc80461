"""Linear problems: batched losses/gradients against autograd, one node at a time; oracle sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from proxgt.data import NodeData
from proxgt.problems import LeastSquares, LogisticRegression, SoftmaxRegression, lambda_max_gram
from proxgt.problems.oracle import GradientOracle

D = torch.float64


def _autograd_reference(loss_fn, x, feats, labels, weights):
    x = x.clone().requires_grad_(True)
    val = loss_fn(x, feats, labels, weights)
    (g,) = torch.autograd.grad(val, x)
    return val.detach(), g


def _logistic_ref(rho):
    def f(x, A, y, w):
        s = y.double() * 2 - 1
        return (w * torch.log1p(torch.exp(-s * (A @ x)))).sum() + rho * (x**2 / (1 + x**2)).sum()

    return f


def _softmax_ref(p, C):
    def f(x, A, y, w):
        logits = A @ x.reshape(p, C)
        return -(w * torch.log_softmax(logits, 1).gather(1, y[:, None])[:, 0]).sum()

    return f


def _ls_ref(x, A, y, w):
    return 0.5 * (w * (A @ x - y) ** 2).sum()


@pytest.mark.parametrize("which", ["logistic", "softmax", "least_squares"])
def test_batched_gradients_match_autograd(which):
    g = torch.Generator().manual_seed(0)
    k, b, p, C = 3, 7, 5, 4
    feats = torch.randn(k, b, p, generator=g, dtype=D)
    weights = torch.rand(k, b, generator=g, dtype=D)
    weights /= weights.sum(1, keepdim=True)
    if which == "logistic":
        prob, ref = LogisticRegression(p, rho=0.1), _logistic_ref(0.1)
        labels = torch.randint(2, (k, b), generator=g)
    elif which == "softmax":
        prob, ref = SoftmaxRegression(p, C), _softmax_ref(p, C)
        labels = torch.randint(C, (k, b), generator=g)
    else:
        prob, ref = LeastSquares(p), _ls_ref
        labels = torch.randn(k, b, generator=g, dtype=D)
    X = torch.randn(k, prob.dim, generator=g, dtype=D)
    loss, grad = prob.loss_grad(X, feats, labels, weights)
    for i in range(k):
        v, gr = _autograd_reference(ref, X[i], feats[i], labels[i], weights[i])
        torch.testing.assert_close(loss[i], v)
        torch.testing.assert_close(grad[i], gr)


def test_smoothness_bound_holds_numerically():
    """L from lambda_max(A^T A)/(4N) + 2 rho bounds ||grad f(x) - grad f(z)|| / ||x - z|| on random pairs."""
    g = torch.Generator().manual_seed(1)
    A = torch.randn(200, 6, generator=g, dtype=D)
    y = torch.randint(2, (200,), generator=g)
    prob = LogisticRegression(6, rho=0.05, gram_lambda_max=lambda_max_gram(A))
    np.testing.assert_allclose(lambda_max_gram(A), np.linalg.eigvalsh((A.T @ A / 200).numpy()).max(), rtol=1e-3)
    w = torch.full((1, 200), 1 / 200, dtype=D)
    L = prob.smoothness()
    for _ in range(20):
        x, z = torch.randn(1, 6, generator=g, dtype=D), torch.randn(1, 6, generator=g, dtype=D)
        gx = prob.loss_grad(x, A[None], y[None], w)[1]
        gz = prob.loss_grad(z, A[None], y[None], w)[1]
        assert (gx - gz).norm() <= L * (x - z).norm() + 1e-12


def _node_data(counts, p=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    n, m = len(counts), max(counts)
    X = torch.zeros(n, m, p)
    y = torch.zeros(n, m, dtype=torch.int64)
    for i, c in enumerate(counts):
        X[i, :c] = torch.randn(c, p, generator=g, dtype=D)
        y[i, :c] = torch.randint(2, (c,), generator=g)
    return NodeData(X=X, y=y, counts=torch.tensor(counts), n_classes=2, node_ids=tuple(range(n)))


def test_oracle_samples_within_each_shard_and_per_node_streams_are_executor_independent():
    nd = _node_data([5, 9, 2])
    prob = LogisticRegression(3)
    full = GradientOracle(prob, nd, seed=3)
    idx = full.sample(400)
    for i, c in enumerate([5, 9, 2]):
        assert int(idx[i].max()) < c and set(idx[i].tolist()) == set(range(c))
    # node 1 alone (as a distributed process would host it) draws the same stream as in the full simulation
    alone = GradientOracle(prob, nd.shard([1]), seed=3)
    torch.testing.assert_close(alone.sample(400)[0], idx[1])


def test_chunked_full_gradient_equals_unchunked_and_adds_penalty_once():
    nd = _node_data([50, 31, 17])
    prob = LogisticRegression(3, rho=0.3)
    X = torch.randn(3, 3, dtype=D)
    a = GradientOracle(prob, nd, 0, dtype=torch.float64).full_loss_grad(X)
    b = GradientOracle(prob, nd, 0, dtype=torch.float64, chunk_size=8).full_loss_grad(X)
    torch.testing.assert_close(a, b)


def test_oracle_counts_ifo():
    nd = _node_data([5, 9, 2])
    o = GradientOracle(LogisticRegression(3), nd, 0)
    X = torch.zeros(3, 3, dtype=torch.float32)
    o.grad(X, o.sample(4))
    o.grad_pair(X, X, o.sample(3))
    o.full_grad(X)
    np.testing.assert_array_equal(o.ifo, [4 + 6 + 5, 4 + 6 + 9, 4 + 6 + 2])
