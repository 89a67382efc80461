"""Linear models as ProxGT problems: binary logistic regression with a non-convex penalty, multinomial
(softmax) regression and least squares, and their builders for the problem registry.

Each loss is ``f_i(x) = sum_j w_ij l(x; a_ij, y_ij) + r(x)`` evaluated for many nodes at once (see
:class:`proxgt.problems.base.Problem`). Their smoothness constants come from the largest eigenvalue of the
data's Gram matrix (:func:`lambda_max_gram`), so a run can take the step 1/L. Neural networks live in
:mod:`proxgt.problems.nn`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import scipy.sparse as sp
import torch

from proxgt._validation import ProxGTValueError, check_nonneg_float
from proxgt.problems.per_sample import clipped_grad_sum

if TYPE_CHECKING:
    from proxgt.data import Dataset

__all__ = [
    "LogisticRegression",
    "SoftmaxRegression",
    "LeastSquares",
    "lambda_max_gram",
    "gram_product",
    "power_iteration",
    "build_logistic",
    "build_softmax",
    "build_least_squares",
]


# entries per block of rows where a (rows, d) temporary is made: the penalty's evaluation
# (LogisticRegression._add_penalty) and the float64 blocks of gram_product
_BLOCK_ENTRIES = 2**20


def lambda_max_gram(A: torch.Tensor, iters: int = 100, seed: int = 0) -> float:
    """Largest eigenvalue of A^T A / N by power iteration (A is N x p, dense or sparse CSR). Exact enough for a
    step size."""
    N, p = int(A.shape[0]), math.prod(A.shape[1:])
    if N == 0 or p == 0:
        return 0.0
    gram = gram_product(A)
    v = torch.randn(p, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return power_iteration(lambda u: gram(u) / N, v, iters)


def gram_product(A: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """The map ``u -> A^T A u`` in float64 for A (N x ...) flattened to N x p, with no float64 copy of a dense A.

    A sparse CSR A is multiplied with scipy (memory O(non-zeros + p)). For a dense A the products run a block of
    rows at a time: a float64 copy of all of A would double the data's memory. Small blocks (2 MiB) and
    (B u)^T B rather than B^T (B u): measured on a9a, larger blocks and the transposed product left 15-31 MiB more
    resident memory behind (freed blocks kept in the C heap, BLAS buffers)."""
    if A.layout == torch.sparse_csr:
        M = sp.csr_matrix((A.values().double().numpy(), A.col_indices().numpy(), A.crow_indices().numpy()),
                          shape=(int(A.shape[0]), int(A.shape[1])))
        return lambda u: torch.from_numpy(M.T @ (M @ u.numpy()))
    A = A.reshape(A.shape[0], -1)
    N, p = A.shape
    rows = max(1, _BLOCK_ENTRIES // 4 // max(1, p))

    def gram(u: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(p, dtype=torch.float64)
        for r in range(0, N, rows):
            B = A[r : r + rows].to(torch.float64)
            out += (B @ u) @ B
        return out

    return gram


def power_iteration(gram: Callable[[Any], Any], v: Any, iters: int) -> float:
    """Largest eigenvalue of the symmetric PSD operator ``gram`` from the start ``v`` (a torch or numpy vector),
    stopping when the Rayleigh quotient changes by <= 1e-8 relative; a 1e-4 margin on top, because the power
    iteration approaches the eigenvalue from below. 0 when ``gram`` maps to 0."""
    v = v / _norm(v)
    est = 0.0
    for _ in range(iters):
        w = gram(v)
        est_new = float(v @ w)
        nrm = _norm(w)
        if nrm == 0.0:
            return 0.0
        v = w / nrm
        if abs(est_new - est) <= 1e-8 * max(1.0, est_new):
            est = est_new
            break
        est = est_new
    return float(est) * 1.0001


def _norm(v: Any) -> float:
    return float(v.norm()) if isinstance(v, torch.Tensor) else float(np.linalg.norm(v))


def _flat(feats: torch.Tensor) -> torch.Tensor:
    return feats.reshape(feats.shape[0], feats.shape[1], -1)


# Sparse features: ``feats`` is a torch sparse CSR matrix (k * b, p) whose row i * b + j is sample j of node i
# (b read off ``labels``, (k, b)). Products touch only the non-zeros: each non-zero (row r, column c, value v)
# of node i = r // b adds v * x_i[c] to the score of row r, and v * coef_r to the gradient's entry c of node i.


def _is_sparse(feats: torch.Tensor) -> bool:
    return feats.layout == torch.sparse_csr


def _nonzeros(feats: torch.Tensor, b: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row, node, column, value) of every non-zero of a sparse batch."""
    crow, col, val = feats.crow_indices(), feats.col_indices(), feats.values()
    row = torch.repeat_interleave(torch.arange(int(feats.shape[0]), device=crow.device), crow.diff(),
                                  output_size=int(val.numel()))
    return row, torch.div(row, b, rounding_mode="floor"), col, val


def _sparse_scores(X: torch.Tensor, feats: torch.Tensor, b: int) -> torch.Tensor:
    """(k, b, C) scores a_ij^T X_i of a sparse batch, X (k, p, C)."""
    row, node, col, val = _nonzeros(feats, b)
    k, C = X.shape[0], X.shape[2]
    out = X.new_zeros(k * b, C)
    out.index_add_(0, row, val.to(X.dtype).unsqueeze(1) * X[node, col])
    return out.view(k, b, C)


def _sparse_grad(coef: torch.Tensor, feats: torch.Tensor, p: int) -> torch.Tensor:
    """(k, p, C) gradients sum_j a_ij coef_ij^T of a sparse batch, coef (k, b, C)."""
    k, b, C = coef.shape
    row, node, col, val = _nonzeros(feats, b)
    out = coef.new_zeros(k * p, C)
    out.index_add_(0, node * p + col, val.to(coef.dtype).unsqueeze(1) * coef.reshape(k * b, C)[row])
    return out.view(k, p, C)


def _scores(X: torch.Tensor, feats: torch.Tensor, b: int) -> torch.Tensor:
    """(k, b) scores a_ij^T x_i, dense or sparse feats."""
    if _is_sparse(feats):
        return _sparse_scores(X.unsqueeze(2), feats, b).squeeze(2)
    return torch.bmm(_flat(feats), X.unsqueeze(2)).squeeze(2)


def _weighted_sum(coef: torch.Tensor, feats: torch.Tensor, p: int) -> torch.Tensor:
    """(k, p) sums sum_j coef_ij a_ij, dense or sparse feats."""
    if _is_sparse(feats):
        return _sparse_grad(coef.unsqueeze(2), feats, p).squeeze(2)
    return torch.bmm(coef.unsqueeze(1), _flat(feats)).squeeze(1)


def _batch_size(X: torch.Tensor, feats: torch.Tensor) -> int:
    return int(feats.shape[0]) // X.shape[0] if _is_sparse(feats) else int(feats.shape[1])


class LinearProblem:
    """What the linear problems share and declare on :class:`proxgt.problems.base.Problem`: L is known (so no
    default step), every coordinate is regularized and counted, full passes run at once on all local data.

    Their smoothness bound comes from ``gram_lambda_max`` = lambda_max(A^T A / N) of the training rows; a
    process that loaded only its nodes' rows (sharded loading) gets the value of all rows with
    :meth:`with_gram_lambda_max`.
    """

    _gram: float | None = None

    default_step: float | None = None
    reg_mask: torch.Tensor | None = None
    density_mask: torch.Tensor | None = None
    chunk_size: int | None = None
    metrics_samples: int | None = None
    recursion_ratio: float | None = None
    per_sample_gradients: bool = True

    def default_step_for(self, estimator: str | None) -> float | None:
        return None

    def clipped_grad_sum(self, X: torch.Tensor, feats: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor,
                         clip: float) -> torch.Tensor:
        return clipped_grad_sum(self, X, feats, labels, mask, clip)

    @property
    def gram_lambda_max(self) -> float | None:
        return self._gram

    def with_gram_lambda_max(self, value: float) -> Self:
        """A copy whose smoothness bound uses ``value`` for lambda_max(A^T A / N)."""
        other = copy.copy(self)
        other._gram = float(value)
        return other


class LogisticRegression(LinearProblem):
    """Binary logistic loss with the non-convex penalty of the decentralized-optimization literature.

    ``l(x; a, y) = log(1 + exp(-y a^T x))`` with y in {-1, +1} (class id 1 -> +1, 0 -> -1), and
    ``r(x) = rho * sum_k x_k^2 / (1 + x_k^2)`` (non-convex, 2 rho-smooth). No intercept: add a constant
    feature if you need one. ``L_f <= lambda_max(A^T A) / (4 N) + 2 rho``.
    """

    task = "classification"

    def __init__(self, n_features: int, rho: float = 1e-3, gram_lambda_max: float | None = None):
        self.dim = int(n_features)
        self.rho = check_nonneg_float(rho, "rho", "LogisticRegression")
        self._gram = gram_lambda_max

    def _add_penalty(self, X: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """r(x_i) of every row (k,); adds grad r(x_i) into ``grad`` in place. Evaluated a block of rows at a time,
        so the temporaries stay near _BLOCK_ENTRIES entries: for a wide model (10^6 features) a (k, d)
        temporary is as large as a node state, and the plain expressions held five of them."""
        val = X.new_zeros(X.shape[0])
        if self.rho == 0.0:
            return val
        rows = max(1, _BLOCK_ENTRIES // max(1, X.shape[1]))
        for r in range(0, X.shape[0], rows):
            x = X[r : r + rows]
            sq = x.square()
            den = sq + 1.0
            val[r : r + rows] = self.rho * torch.div(sq, den).sum(dim=1)
            grad[r : r + rows].addcdiv_(x, den.square_(), value=2.0 * self.rho)
        return val

    def loss_grad(self, X, feats, labels, weights, *, with_penalty=True):
        z = _scores(X, feats, labels.shape[1])  # (k, b)
        s = labels.to(X.dtype) * 2.0 - 1.0
        margin = s * z
        loss = (weights * torch.nn.functional.softplus(-margin)).sum(dim=1)
        coef = weights * (-s) * torch.sigmoid(-margin)  # d loss / d z, weighted
        grad = _weighted_sum(coef, feats, self.dim)
        if not with_penalty:
            return loss, grad
        return loss + self._add_penalty(X, grad), grad  # grad is this call's own tensor

    def per_sample_grads(self, X, feats, labels):
        """Gradients (k, b, d) of each sample's own loss (no penalty): ``-s sigmoid(-s a^T x) a`` (DP training)."""
        A = _flat(feats).to(X.dtype)
        s = labels.to(X.dtype) * 2.0 - 1.0
        coef = -s * torch.sigmoid(-s * torch.bmm(A, X.unsqueeze(2)).squeeze(2))
        return coef.unsqueeze(2) * A

    def predict(self, X, feats):
        return (_scores(X, feats, _batch_size(X, feats)) > 0).to(torch.int64)

    def init_params(self, generator):
        return torch.zeros(self.dim)

    def smoothness(self):
        if self._gram is None:
            return None
        return self._gram / 4.0 + 2.0 * self.rho


class SoftmaxRegression(LinearProblem):
    """Multinomial logistic regression, parameters a p x C matrix flattened row-major (feature-major).

    ``l(x; a, y) = -log softmax(a^T X)_y``, optional ``(mu/2)||x||^2`` smooth term. The Hessian is bounded by
    ``(1/2) A^T A / N`` (Kronecker the identity), so ``L_f <= lambda_max(A^T A) / (2 N) + mu``.
    """

    task = "classification"

    def __init__(self, n_features: int, n_classes: int, mu: float = 0.0, gram_lambda_max: float | None = None):
        if n_classes < 2:
            raise ProxGTValueError(f"softmax regression needs at least 2 classes; the data has {n_classes}")
        self.n_features, self.n_classes = int(n_features), int(n_classes)
        self.dim = self.n_features * self.n_classes
        self.mu = check_nonneg_float(mu, "mu", "SoftmaxRegression")
        self._gram = gram_lambda_max

    def _logits(self, X, feats):
        W = X.reshape(X.shape[0], self.n_features, self.n_classes)
        if _is_sparse(feats):
            return _sparse_scores(W, feats, _batch_size(X, feats))
        return torch.bmm(_flat(feats), W)  # (k, b, C)

    def loss_grad(self, X, feats, labels, weights, *, with_penalty=True):
        logits = self._logits(X, feats)
        logp = torch.log_softmax(logits, dim=2)
        nll = -logp.gather(2, labels.unsqueeze(2)).squeeze(2)
        loss = (weights * nll).sum(dim=1)
        delta = logp.exp()
        delta.scatter_add_(2, labels.unsqueeze(2), -torch.ones_like(nll).unsqueeze(2))
        delta.mul_(weights.unsqueeze(2))
        if _is_sparse(feats):
            grad = _sparse_grad(delta, feats, self.n_features).reshape(X.shape[0], -1)
        else:
            grad = torch.bmm(_flat(feats).transpose(1, 2), delta).reshape(X.shape[0], -1)
        if self.mu and with_penalty:
            loss = loss + 0.5 * self.mu * (X * X).sum(dim=1)
            grad = grad.add_(X, alpha=self.mu)  # grad is this call's own tensor
        return loss, grad

    def per_sample_grads(self, X, feats, labels):
        """Gradients (k, b, d) of each sample's own loss (no penalty): ``a (softmax - onehot(y))^T``, flattened
        feature-major like x (DP training)."""
        A = _flat(feats).to(X.dtype)
        delta = torch.softmax(self._logits(X, feats.to(X.dtype)), dim=2)
        delta.scatter_add_(2, labels.unsqueeze(2), -torch.ones_like(delta[..., :1]))
        return (A.unsqueeze(3) * delta.unsqueeze(2)).reshape(A.shape[0], A.shape[1], -1)

    def predict(self, X, feats):
        return self._logits(X, feats).argmax(dim=2)

    def init_params(self, generator):
        return torch.zeros(self.dim)

    def smoothness(self):
        if self._gram is None:
            return None
        return self._gram / 2.0 + self.mu


class LeastSquares(LinearProblem):
    """``l(x; a, y) = (a^T x - y)^2 / 2``; ``L_f = lambda_max(A^T A) / N``."""

    task = "regression"

    def __init__(self, n_features: int, gram_lambda_max: float | None = None):
        self.dim = int(n_features)
        self._gram = gram_lambda_max

    def loss_grad(self, X, feats, labels, weights, *, with_penalty=True):
        r = _scores(X, feats, labels.shape[1]) - labels.to(X.dtype)
        loss = 0.5 * (weights * r * r).sum(dim=1)
        grad = _weighted_sum(weights * r, feats, self.dim)
        return loss, grad

    def per_sample_grads(self, X, feats, labels):
        """Gradients (k, b, d) of each sample's own loss: ``(a^T x - y) a`` (DP training)."""
        A = _flat(feats).to(X.dtype)
        r = torch.bmm(A, X.unsqueeze(2)).squeeze(2) - labels.to(X.dtype)
        return r.unsqueeze(2) * A

    def predict(self, X, feats):
        return _scores(X, feats, _batch_size(X, feats))

    def init_params(self, generator):
        return torch.zeros(self.dim)

    def smoothness(self):
        return self._gram


# ---------------------------------------------------------------------------------------------- builders
# Registered in proxgt.registry.PROBLEMS: builder(settings, train) -> Problem, where ``settings`` is the run's
# settings object (attributes such as ``settings.rho``) and ``train`` the training Dataset.


#: Node-stacked (n x d) tensors a run holds at once (iterates, tracking and estimator states, gradients, mixing
#: buffers), for the memory check of wide problems.
_STATE_COPIES = 10


def _check_state_memory(settings: Any, problem: str, dim: int) -> None:
    """Refuse, before anything n x d is allocated, a width whose node states cannot fit in memory (sparse data
    makes the data cheap, not the parameters: a feature index of 5e8 means 5e8 parameters per node)."""
    from proxgt.data._dataset import available_memory, size_text

    nodes = int(getattr(settings, "nodes", 1) or 1)
    itemsize = 8 if getattr(settings, "dtype", "float32") == "float64" else 4
    need = _STATE_COPIES * nodes * int(dim) * itemsize
    avail = available_memory()
    if avail is not None and need > avail:
        raise ProxGTValueError(
            f"problem '{problem}' has {dim} parameters per node: the node states ({nodes} nodes x {dim}, "
            f"{'float64' if itemsize == 8 else 'float32'}, about {_STATE_COPIES} copies) need {size_text(need)}, "
            f"more than the {size_text(avail)} of memory available; use fewer nodes or renumber the features 1..p"
        )


def _linear_gram(train: Dataset) -> float:
    X = train.X
    return lambda_max_gram(X if X.layout == torch.sparse_csr else X.reshape(len(train), -1))


def build_logistic(settings: Any, train: Dataset) -> LogisticRegression:
    """Binary logistic regression with the non-convex penalty of strength ``settings.rho``."""
    if train.n_classes != 2:
        raise ProxGTValueError(
            f"problem 'logistic' needs 2 classes; the data has {train.n_classes or 'real-valued'} labels "
            "(use --problem softmax or least_squares)"
        )
    _check_state_memory(settings, "logistic", train.n_features)
    return LogisticRegression(train.n_features, rho=settings.rho, gram_lambda_max=_linear_gram(train))


def build_softmax(settings: Any, train: Dataset) -> SoftmaxRegression:
    """Multinomial logistic regression over the data's classes."""
    if train.n_classes < 2:
        raise ProxGTValueError("problem 'softmax' needs class labels; the data is real-valued")
    _check_state_memory(settings, "softmax", train.n_features * train.n_classes)
    return SoftmaxRegression(train.n_features, train.n_classes, gram_lambda_max=_linear_gram(train))


def build_least_squares(settings: Any, train: Dataset) -> LeastSquares:
    """Least squares on the data's (real-valued or class-id) labels."""
    _check_state_memory(settings, "least_squares", train.n_features)
    return LeastSquares(train.n_features, gram_lambda_max=_linear_gram(train))
