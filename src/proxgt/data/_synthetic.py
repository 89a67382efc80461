"""Seeded synthetic data shaped like the LIBSVM benchmark a9a (Adult census, binarized)."""

from __future__ import annotations

import numpy as np
import torch

from proxgt._validation import ProxGTValueError

from ._dataset import Dataset, make_rng

__all__ = ["synthetic_a9a", "A9A_GROUP_SIZES"]

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
    if isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer) or n_samples < 1:
        raise ProxGTValueError(
            f"The 'n_samples' parameter of synthetic_a9a must be an int >= 1. Got {n_samples!r} instead."
        )
    n = int(n_samples)
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
