"""The linear problems on sparse CSR features give the dense path's gradients, losses and metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from proxgt.data import split_nodes
from proxgt.data._dataset import make_dataset
from proxgt.data._synthetic import synthetic_a9a
from proxgt.executors.simulation import run_simulation
from proxgt.problems.linear import LeastSquares, LogisticRegression, SoftmaxRegression, lambda_max_gram
from proxgt.problems.oracle import GradientOracle


def _pair(n_nodes: int = 5):
    base = synthetic_a9a(240, seed=1)
    Xd, y = base.X.numpy(), base.y.numpy()
    dense, sparse = make_dataset(Xd, y, "d", "d"), make_dataset(sp.csr_matrix(Xd), y, "s", "s")
    return dense, sparse, split_nodes(dense, n_nodes, "iid", seed=0), split_nodes(sparse, n_nodes, "iid", seed=0)


@pytest.mark.parametrize("problem", [LogisticRegression(123, rho=0.01), SoftmaxRegression(123, 2), LeastSquares(123)],
                         ids=["logistic", "softmax", "least_squares"])
def test_sparse_and_dense_oracles_agree(problem) -> None:
    _, _, nd, ns = _pair()
    od = GradientOracle(problem, nd, 3, dtype=torch.float64)
    os_ = GradientOracle(problem, ns, 3, dtype=torch.float64)
    assert os_.sparse and not od.sparse
    X = torch.randn(5, problem.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    idx = od.sample(7)
    assert torch.equal(idx, os_.sample(7))  # the same sample streams
    torch.testing.assert_close(os_.grad(X, idx), od.grad(X, idx))
    for a, b in zip(os_.grad_pair(X, 2 * X, idx), od.grad_pair(X, 2 * X, idx), strict=True):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(os_.full_loss_grad(X), od.full_loss_grad(X))
    torch.testing.assert_close(os_.predictions(X), od.predictions(X))
    chunked = GradientOracle(problem, ns, 3, chunk_size=13, dtype=torch.float64)
    torch.testing.assert_close(chunked.full_loss_grad(X), od.full_loss_grad(X))
    torch.testing.assert_close(os_.subsample(20, 0).full_loss_grad(X), od.subsample(20, 0).full_loss_grad(X))
    assert np.array_equal(os_.ifo, od.ifo)


def test_sparse_gram_matches_dense() -> None:
    dense, sparse, _, _ = _pair()
    assert lambda_max_gram(sparse.X) == pytest.approx(lambda_max_gram(dense.X), rel=1e-6)
    wide = make_dataset(sp.random(30, 2000, density=0.01, format="csr", random_state=1), np.arange(30) % 2, "w", "w")
    assert lambda_max_gram(wide.X) == pytest.approx(lambda_max_gram(wide.X.to_dense()), rel=1e-6)  # p > N


def test_a_run_on_sparse_data_logs_the_dense_runs_metrics(tmp_path: Path) -> None:
    dense, _, _, _ = _pair()
    Xd, y = dense.X.numpy().astype(np.float64), dense.y.numpy()
    C = sp.csr_matrix(Xd)
    np.savez(tmp_path / "d.npz", X=Xd, y=y)
    np.savez(tmp_path / "s.npz", data=C.data, indices=C.indices, indptr=C.indptr, shape=C.shape, y=y)
    cfg = dict(nodes=4, topology="ring", iters=6, log_every=3, dtype="float64", algorithm="proxgt-sr-e", batch=8,
               reg="l1", reg_strength=1e-3, test_fraction=0.2)
    rows = [run_simulation({**cfg, "data": str(tmp_path / f)}).rows for f in ("d.npz", "s.npz")]
    assert len(rows[0]) == len(rows[1]) >= 2
    for a, b in zip(*rows, strict=True):
        for key in ("grad_mapping_sq", "consensus", "objective", "train_accuracy", "test_accuracy", "test_loss"):
            assert b[key] == pytest.approx(a[key], rel=1e-9, abs=1e-12), key
