"""Linear models as ProxGT problems: binary logistic regression with a non-convex penalty, multinomial
(softmax) regression and least squares, and their builders for the problem registry.

Each loss is ``f_i(x) = sum_j w_ij l(x; a_ij, y_ij) + r(x)`` evaluated for many nodes at once (see
:class:`proxgt.problems.base.Problem`). Their smoothness constants come from the largest eigenvalue of the
data's Gram matrix (:func:`lambda_max_gram`), so a run can take the step 1/L. Neural networks live in
:mod:`proxgt.problems.nn`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from proxgt._validation import ProxGTValueError, check_nonneg_float

if TYPE_CHECKING:
    from proxgt.data import Dataset

__all__ = [
    "LogisticRegression",
    "SoftmaxRegression",
    "LeastSquares",
    "lambda_max_gram",
    "build_logistic",
    "build_softmax",
    "build_least_squares",
]


def lambda_max_gram(A: torch.Tensor, iters: int = 100, seed: int = 0) -> float:
    """Largest eigenvalue of A^T A / N by power iteration (A is N x p). Exact enough for a step size."""
    A = A.reshape(A.shape[0], -1).to(torch.float64)
    N, p = A.shape
    if N == 0 or p == 0:
        return 0.0
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(p, dtype=torch.float64, generator=g)
    v /= v.norm()
    est = 0.0
    for _ in range(iters):
        w = A.T @ (A @ v) / N
        est_new = float(v @ w)
        nrm = float(w.norm())
        if nrm == 0.0:
            return 0.0
        v = w / nrm
        if abs(est_new - est) <= 1e-8 * max(1.0, est_new):
            est = est_new
            break
        est = est_new
    return float(est) * 1.0001  # power iteration approaches from below


def _flat(feats: torch.Tensor) -> torch.Tensor:
    return feats.reshape(feats.shape[0], feats.shape[1], -1)


class _LinearCapabilities:
    """What the linear problems declare on :class:`proxgt.problems.base.Problem`: L is known (so no default
    step), every coordinate is regularized and counted, full passes run at once on all local data."""

    default_step: float | None = None
    reg_mask: torch.Tensor | None = None
    density_mask: torch.Tensor | None = None
    chunk_size: int | None = None
    metrics_samples: int | None = None

    def default_step_for(self, estimator: str | None) -> float | None:
        return None


class LogisticRegression(_LinearCapabilities):
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

    def _penalty(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.rho == 0.0:
            return X.new_zeros(X.shape[0]), torch.zeros_like(X)
        sq = X * X
        val = self.rho * (sq / (1.0 + sq)).sum(dim=1)
        grad = (2.0 * self.rho) * X / (1.0 + sq).square()
        return val, grad

    def loss_grad(self, X, feats, labels, weights, *, with_penalty=True):
        A = _flat(feats)
        z = torch.bmm(A, X.unsqueeze(2)).squeeze(2)  # (k, b)
        s = labels.to(X.dtype) * 2.0 - 1.0
        margin = s * z
        loss = (weights * torch.nn.functional.softplus(-margin)).sum(dim=1)
        coef = weights * (-s) * torch.sigmoid(-margin)  # d loss / d z, weighted
        grad = torch.bmm(coef.unsqueeze(1), A).squeeze(1)
        if not with_penalty:
            return loss, grad
        pval, pgrad = self._penalty(X)
        return loss + pval, grad + pgrad

    def predict(self, X, feats):
        z = torch.bmm(_flat(feats), X.unsqueeze(2)).squeeze(2)
        return (z > 0).to(torch.int64)

    def init_params(self, generator):
        return torch.zeros(self.dim)

    def smoothness(self):
        if self._gram is None:
            return None
        return self._gram / 4.0 + 2.0 * self.rho


class SoftmaxRegression(_LinearCapabilities):
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
        return torch.bmm(_flat(feats), W)  # (k, b, C)

    def loss_grad(self, X, feats, labels, weights, *, with_penalty=True):
        A = _flat(feats)
        logits = self._logits(X, feats)
        logp = torch.log_softmax(logits, dim=2)
        nll = -logp.gather(2, labels.unsqueeze(2)).squeeze(2)
        loss = (weights * nll).sum(dim=1)
        delta = logp.exp()
        delta.scatter_add_(2, labels.unsqueeze(2), -torch.ones_like(nll).unsqueeze(2))
        delta.mul_(weights.unsqueeze(2))
        grad = torch.bmm(A.transpose(1, 2), delta).reshape(X.shape[0], -1)
        if self.mu and with_penalty:
            loss = loss + 0.5 * self.mu * (X * X).sum(dim=1)
            grad = grad + self.mu * X
        return loss, grad

    def predict(self, X, feats):
        return self._logits(X, feats).argmax(dim=2)

    def init_params(self, generator):
        return torch.zeros(self.dim)

    def smoothness(self):
        if self._gram is None:
            return None
        return self._gram / 2.0 + self.mu


class LeastSquares(_LinearCapabilities):
    """``l(x; a, y) = (a^T x - y)^2 / 2``; ``L_f = lambda_max(A^T A) / N``."""

    task = "regression"

    def __init__(self, n_features: int, gram_lambda_max: float | None = None):
        self.dim = int(n_features)
        self._gram = gram_lambda_max

    def loss_grad(self, X, feats, labels, weights, *, with_penalty=True):
        A = _flat(feats)
        r = torch.bmm(A, X.unsqueeze(2)).squeeze(2) - labels.to(X.dtype)
        loss = 0.5 * (weights * r * r).sum(dim=1)
        grad = torch.bmm((weights * r).unsqueeze(1), A).squeeze(1)
        return loss, grad

    def predict(self, X, feats):
        return torch.bmm(_flat(feats), X.unsqueeze(2)).squeeze(2)

    def init_params(self, generator):
        return torch.zeros(self.dim)

    def smoothness(self):
        return self._gram


# ---------------------------------------------------------------------------------------------- builders
# Registered in proxgt.registry.PROBLEMS: builder(settings, train) -> Problem, where ``settings`` is the run's
# settings object (attributes such as ``settings.rho``) and ``train`` the training Dataset.


def _linear_gram(train: Dataset) -> float:
    return lambda_max_gram(train.X.reshape(len(train), -1))


def build_logistic(settings: Any, train: Dataset) -> LogisticRegression:
    """Binary logistic regression with the non-convex penalty of strength ``settings.rho``."""
    if train.n_classes != 2:
        raise ProxGTValueError(
            f"problem 'logistic' needs 2 classes; the data has {train.n_classes or 'real-valued'} labels "
            "(use --problem softmax or least_squares)"
        )
    return LogisticRegression(train.n_features, rho=settings.rho, gram_lambda_max=_linear_gram(train))


def build_softmax(settings: Any, train: Dataset) -> SoftmaxRegression:
    """Multinomial logistic regression over the data's classes."""
    if train.n_classes < 2:
        raise ProxGTValueError("problem 'softmax' needs class labels; the data is real-valued")
    return SoftmaxRegression(train.n_features, train.n_classes, gram_lambda_max=_linear_gram(train))


def build_least_squares(settings: Any, train: Dataset) -> LeastSquares:
    """Least squares on the data's (real-valued or class-id) labels."""
    return LeastSquares(train.n_features, gram_lambda_max=_linear_gram(train))
