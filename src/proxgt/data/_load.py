"""``load_dataset``: one string names a built-in data set (looked up in :data:`proxgt.registry.DATASETS`) or a
file."""

from __future__ import annotations

import os
from pathlib import Path

from proxgt._validation import ProxGTValueError, param_error
from proxgt.registry import DATASETS

from ._dataset import Dataset, check_seed
from ._libsvm import load_libsvm
from ._npz import load_npz

__all__ = ["load_dataset", "BUILTIN_DATASETS"]

#: Names :func:`load_dataset` knows without a file (the built-ins registered in
#: :data:`proxgt.registry.DATASETS`; aliases such as ``"synthetic"`` are not listed, ``DATASETS.names()`` is the
#: live list with names registered later).
BUILTIN_DATASETS: tuple[str, ...] = tuple(DATASETS.names())


def _resolve(spec: str, data_dir: str | None) -> Path | None:
    p = Path(spec).expanduser()
    if p.exists():
        return p
    if data_dir is not None and not p.is_absolute():
        q = Path(data_dir).expanduser() / p
        if q.exists():
            return q
    return None


def _load_registered(spec: str, seed: int, data_dir: str | None) -> tuple[Dataset, Dataset | None]:
    name = DATASETS.canonical(spec)
    out = DATASETS.get(name)(seed=seed, data_dir=data_dir)
    if (
        not isinstance(out, tuple)
        or len(out) != 2
        or not isinstance(out[0], Dataset)
        or not (out[1] is None or isinstance(out[1], Dataset))
    ):
        got = type(out).__name__ if not isinstance(out, tuple) else f"({', '.join(type(o).__name__ for o in out)})"
        raise ProxGTValueError(
            f"the loader registered for data set {name!r} must return (train Dataset, test Dataset or None); "
            f"it returned {got}"
        )
    return out


def load_dataset(spec: str, *, seed: int = 0, data_dir: str | None = None) -> tuple[Dataset, Dataset | None]:
    """Load ``spec`` and return ``(train, test)``; ``test`` is ``None`` where the source has no test part.

    ``spec`` is one of

    - a name registered in :data:`proxgt.registry.DATASETS` (case-insensitive, ``-`` and ``_`` alike), whose
      loader is called as ``load(seed=seed, data_dir=data_dir)``. Built in:

      - ``"a9a"``: LIBSVM's a9a built from the UCI Adult files shipped with the package, with its published
        train/test split (:func:`proxgt.data._adult.load_a9a`);
      - ``"a9a-synthetic"`` (alias ``"synthetic"``): :func:`synthetic_a9a` with ``seed``;
      - ``"breast_cancer"``, ``"digits"``, ``"iris"``, ``"wine"``: :func:`load_sklearn`;
      - ``"fashion-mnist"`` (alias ``"fashion_mnist"``): :func:`load_fashion_mnist` from ``data_dir`` (or its
        default places), with the 10000 ``t10k`` images as the test set;
    - a file path (also looked up under ``data_dir`` when relative): ``.npz`` via :func:`load_npz`, anything
      else (``.svm``, ``.libsvm``, ``.txt``, ``.svmlight``, ...) via :func:`load_libsvm`. A sibling test file
      (``a9a.t``) is not picked up: the test part is ``None``. IDX files are not read here; use
      ``"fashion-mnist"`` with ``data_dir`` or :func:`load_mnist_idx`.

    Registered names take precedence over files of the same name.

    Example:
        >>> train, test = load_dataset("synthetic", seed=1)
        >>> train.X.shape, test
        (torch.Size([32561, 123]), None)
    """
    if not isinstance(spec, str | os.PathLike):
        raise param_error("load_dataset", "spec", "a str", spec)
    spec = os.fspath(spec)
    seed = check_seed(seed, "load_dataset")
    if spec in DATASETS:
        return _load_registered(spec, seed, data_dir)

    path = _resolve(spec, data_dir)
    if path is None:
        looked = f"'{spec}'" + (f" (nor under data_dir '{data_dir}')" if data_dir is not None else "")
        raise ProxGTValueError(
            f"unknown dataset {spec!r}: not a built-in name ({', '.join(DATASETS.names())}) "
            f"and file {looked} does not exist"
        )
    if not path.is_file():
        raise ProxGTValueError(f"{path}: not a regular file (a dataset file must be .npz or LIBSVM text)")
    if path.suffix.lower() == ".npz":
        return load_npz(path), None
    with path.open("rb") as fh:
        head = fh.read(2)
    if head == b"\x1f\x8b" or head == b"\x00\x00":
        raise ProxGTValueError(
            f"{path}: looks like a gzip or IDX file; a data file must be .npz or LIBSVM text "
            f"(for MNIST-format folders use 'fashion-mnist' with data_dir, or load_mnist_idx)"
        )
    return load_libsvm(path), None
