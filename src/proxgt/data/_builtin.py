"""The built-in data sets as loaders ``load(*, seed, data_dir) -> (train, test or None)``.

:data:`proxgt.registry.DATASETS` names these functions (one registration line per data set); a new data set
is one more loader of this shape and one more registration line, in the library or in user code.
"""

from __future__ import annotations

from ._dataset import Dataset
from ._idx import load_fashion_mnist
from ._sklearn import load_sklearn
from ._synthetic import synthetic_a9a

__all__ = ["load_a9a_synthetic", "load_sklearn_set", "load_fashion_mnist_set"]


def load_a9a_synthetic(*, seed: int, data_dir: str | None = None) -> tuple[Dataset, None]:
    """:func:`~proxgt.data.synthetic_a9a` with ``seed`` (32561 x 123, no test part); ``data_dir`` is unused."""
    return synthetic_a9a(seed=seed), None


def load_sklearn_set(*, seed: int, data_dir: str | None = None, which: str) -> tuple[Dataset, None]:
    """scikit-learn's bundled set ``which`` via :func:`~proxgt.data.load_sklearn` (no test part); the data are
    fixed, so ``seed`` and ``data_dir`` are unused. The registration line binds ``which``."""
    return load_sklearn(which), None


def load_fashion_mnist_set(*, seed: int, data_dir: str | None = None) -> tuple[Dataset, Dataset]:
    """Fashion-MNIST from ``data_dir`` (or its default places): the 60000 training images and the 10000
    ``t10k`` images as the test part; ``seed`` is unused."""
    return load_fashion_mnist(data_dir, train=True), load_fashion_mnist(data_dir, train=False)
