"""scikit-learn's bundled toy data sets (no download needed)."""

from __future__ import annotations

import numpy as np

from proxgt._validation import check_choice

from ._dataset import Dataset, make_dataset

__all__ = ["load_sklearn", "SKLEARN_NAMES"]

#: Names accepted by :func:`load_sklearn`.
SKLEARN_NAMES: tuple[str, ...] = ("breast_cancer", "digits", "iris", "wine")


def _standardize(X: np.ndarray) -> np.ndarray:
    mean = X.mean(axis=0)
    std = X.std(axis=0)
    std[std == 0] = 1.0
    return (X - mean) / std


def load_sklearn(name: str) -> Dataset:
    """One of scikit-learn's bundled data sets as a :class:`Dataset`.

    Preprocessing (fixed, so runs are comparable):

    - ``"breast_cancer"`` (569 x 30, 2 classes) and ``"wine"`` (178 x 13, 3 classes): every feature
      standardized to zero mean and unit variance over the whole set (population std; constant columns
      left at zero).
    - ``"digits"`` (1797 x 64, 10 classes): pixel counts 0..16 scaled by 1/16 into [0, 1].
    - ``"iris"`` (150 x 4, 3 classes): raw measurements in cm.

    Example:
        >>> load_sklearn("iris").X.shape
        torch.Size([150, 4])
    """
    check_choice(name, "name", SKLEARN_NAMES, "load_sklearn")
    from sklearn import datasets

    loader = {
        "breast_cancer": datasets.load_breast_cancer,
        "digits": datasets.load_digits,
        "iris": datasets.load_iris,
        "wine": datasets.load_wine,
    }[name]
    bunch = loader()
    X = np.asarray(bunch.data, dtype=np.float64)
    if name in ("breast_cancer", "wine"):
        X = _standardize(X)
    elif name == "digits":
        X = X / 16.0
    return make_dataset(X, np.asarray(bunch.target), name, f"sklearn {name}")
