"""Seeded synthetic data shaped like the LIBSVM benchmark a9a (Adult census, binarized)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from proxgt._validation import check_int, is_number, param_error

from ._dataset import Dataset, make_dataset, make_rng

__all__ = ["synthetic_a9a", "synthetic_rcv1", "load_rcv1_synthetic", "A9A_GROUP_SIZES"]

#: One-hot group sizes of a9a's 14 categorical/binned attributes (age, workclass, fnlwgt, education,
#: education-num, marital-status, occupation, relationship, race, sex, capital-gain, capital-loss,
#: hours-per-week, native-country); they sum to a9a's 123 features.
A9A_GROUP_SIZES: tuple[int, ...] = (5, 8, 5, 16, 5, 7, 14, 6, 5, 2, 2, 2, 5, 41)

_POSITIVE_RATE = 0.24  # share of class 1 (income > 50K) in a9a


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def synthetic_a9a(n_samples: int = 32561, seed: int = 0) -> Dataset:
    """Seeded stand-in for LIBSVM a9a: ``n_samples x 123`` binary features, 2 classes, ~24% positive.

    Construction (all draws from ``numpy.random.default_rng(seed)``):

    1. The 123 features are 14 one-hot groups with the sizes of a9a (:data:`A9A_GROUP_SIZES`). In each group
       the category probabilities are Zipf-like, ``p_k ~ 1/k^1.3``, over a seeded order of the categories,
       so some categories are common and many rare. Each row picks one category per group, so it has
       exactly 14 ones (11.4% non-zero, as in a9a).
    2. A planted weight vector ``w*``: each coordinate is non-zero with probability 0.4, with value
       ``N(0, 1)``.
    3. An intercept ``c`` is found by bisection so that the mean of ``sigmoid(a_i^T w* + c)`` is 0.24, and
       label ``y_i = 1`` with probability ``sigmoid(a_i^T w* + c)``, else ``0``.

    The same ``(n_samples, seed)`` always gives identical tensors.

    Example:
        >>> ds = synthetic_a9a(1000, seed=1)
        >>> ds.X.shape, ds.n_classes, int(ds.X.sum(1).min())
        (torch.Size([1000, 123]), 2, 14)
    """
    n = check_int(n_samples, "n_samples", "synthetic_a9a")
    rng = make_rng(seed, "synthetic_a9a")
    p = sum(A9A_GROUP_SIZES)

    # one category per group and row, drawn by inverse CDF on one block of uniforms
    u = rng.random((n, len(A9A_GROUP_SIZES)))
    active = np.empty((n, len(A9A_GROUP_SIZES)), dtype=np.int64)
    offset = 0
    for g, size in enumerate(A9A_GROUP_SIZES):
        probs = 1.0 / np.arange(1, size + 1) ** 1.3
        probs = probs[rng.permutation(size)]
        cdf = np.cumsum(probs / probs.sum())
        cdf[-1] = 1.0
        active[:, g] = offset + np.minimum(np.searchsorted(cdf, u[:, g], side="right"), size - 1)
        offset += size

    w = rng.standard_normal(p) * (rng.random(p) < 0.4)
    score = w[active].sum(axis=1)

    lo, hi = -20.0, 20.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if _sigmoid(score + mid).mean() < _POSITIVE_RATE:
            lo = mid
        else:
            hi = mid
    prob = _sigmoid(score + 0.5 * (lo + hi))
    y = (rng.random(n) < prob).astype(np.int64)

    X = torch.zeros(n, p, dtype=torch.float32)
    X.scatter_(1, torch.from_numpy(active), 1.0)
    return Dataset(X, torch.from_numpy(y), 2, "a9a-synthetic")


def synthetic_rcv1(n_samples: int = 20242, n_features: int = 47236, density: float = 0.0016, seed: int = 0) -> Dataset:
    """Seeded sparse stand-in for LIBSVM rcv1.binary: ``n_samples x n_features`` (default 20,242 x 47,236),
    about ``density`` non-zero (0.16%, ~76 terms per document), 2 classes, X a sparse CSR matrix.

    Construction (all draws from ``numpy.random.default_rng(seed)``):

    1. Term frequencies are Zipf-like, term k has weight ``1 / (k + 10)^1.1`` over a seeded order of the
       terms. Each row draws ``max(1, Poisson(density * n_features))`` distinct terms by these weights
       (duplicates dropped), so common terms appear in many rows and most terms in few.
    2. Values are tf-idf-like: ``1 + log(count)`` with counts ``1 + Geometric``, then each row scaled to unit
       Euclidean norm (as rcv1's rows are).
    3. A sparse planted model ``w*``: 5% of the terms non-zero, ``N(0, 1)`` values scaled so scores have unit
       spread; label ``y_i = 1`` with probability ``sigmoid(4 * a_i^T w*)``, else 0 (about half positive).

    The same arguments always give identical tensors.

    Example:
        >>> ds = synthetic_rcv1(200, 5000, seed=1)
        >>> tuple(ds.X.shape), ds.n_classes, ds.X.layout
        ((200, 5000), 2, torch.sparse_csr)
    """
    n, p = check_int(n_samples, "n_samples", "synthetic_rcv1"), check_int(n_features, "n_features", "synthetic_rcv1")
    if not is_number(density) or not 0.0 < density <= 1.0:
        raise param_error("synthetic_rcv1", "density", "a float in (0, 1]", density)
    rng = make_rng(seed, "synthetic_rcv1")
    weights = 1.0 / (np.arange(p) + 10.0) ** 1.1
    weights = weights[rng.permutation(p)]
    cdf = np.cumsum(weights / weights.sum())
    cdf[-1] = 1.0
    per_row = np.maximum(1, rng.poisson(density * p, size=n))
    rows = np.repeat(np.arange(n, dtype=np.int64), per_row)
    cols = np.minimum(np.searchsorted(cdf, rng.random(rows.size), side="right"), p - 1).astype(np.int64)
    vals = 1.0 + np.log(1.0 + rng.geometric(0.5, size=rows.size) - 1.0)
    key = np.unique(rows * p + cols, return_index=True)[1]  # drop repeated terms of a row (first draw kept)
    rows, cols, vals = rows[key], cols[key], vals[key]
    X = sp.csr_matrix((vals, (rows, cols)), shape=(n, p), dtype=np.float64)
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    X = sp.diags(1.0 / np.maximum(norms, 1e-12)) @ X
    w = rng.standard_normal(p) * (rng.random(p) < 0.05)
    score = X @ w
    score = (score - score.mean()) / max(float(score.std()), 1e-12)
    y = (rng.random(n) < _sigmoid(4.0 * score)).astype(np.int64)
    ds = make_dataset(X.tocsr(), y, "rcv1-synthetic", "synthetic_rcv1")
    return ds


def load_rcv1_synthetic(*, seed: int, data_dir: str | None = None) -> tuple[Dataset, None]:
    """:func:`synthetic_rcv1` with ``seed`` (20,242 x 47,236 sparse, no test part); ``data_dir`` is unused. The
    registered loader of ``rcv1-synthetic``."""
    return synthetic_rcv1(seed=seed), None
