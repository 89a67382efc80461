"""The two containers of the data package: a pooled :class:`Dataset` and per-node :class:`NodeData`.

Also the one label rule every loader shares (:func:`make_dataset`) and the one place seeds are normalized
(:func:`make_rng`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from proxgt._validation import ProxGTValueError

__all__ = ["Dataset", "NodeData", "MAX_CLASSES", "make_dataset", "make_rng", "check_seed", "count"]

#: Integer labels with at most this many distinct values are read as class labels, anything else as
#: regression targets.
MAX_CLASSES = 1000


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and ``noun`` with the right number, for messages: ``count(1, "label") == "1 label"``,
    ``count(3, "label") == "3 labels"``; ``plural`` for irregular nouns.

    >>> count(1, "sample"), count(0, "sample"), count(2, "dimension")
    ('1 sample', '0 samples', '2 dimensions')
    """
    return f"{n} {noun}" if n == 1 else f"{n} {plural if plural is not None else noun + 's'}"


def check_seed(seed: object, owner: str = "") -> int:
    """Return ``seed`` as an ``int >= 0`` or raise :class:`ProxGTValueError`."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        where = f" of {owner}" if owner else ""
        raise ProxGTValueError(f"The 'seed' parameter{where} must be an int >= 0. Got {seed!r} instead.")
    return int(seed)


def make_rng(seed: object, owner: str = "") -> np.random.Generator:
    """The seeded generator every random choice of this package draws from (numpy PCG64)."""
    return np.random.default_rng(check_seed(seed, owner))


@dataclass(frozen=True, eq=False)
class Dataset:
    """A pooled data set: features ``X`` (N, *feature_shape) float32 and labels ``y`` (N,).

    ``y`` holds int64 class ids ``0..n_classes-1`` for classification (``n_classes >= 1``) and float32
    targets for regression (``n_classes == 0``).

    Example:
        >>> ds = Dataset(torch.zeros(4, 3), torch.tensor([0, 1, 1, 0]), 2, "toy")
        >>> len(ds), ds.feature_shape, ds.n_features
        (4, (3,), 3)
    """

    X: torch.Tensor
    y: torch.Tensor
    n_classes: int
    name: str

    def __post_init__(self) -> None:
        where = f"Dataset {self.name!r}"
        if not isinstance(self.X, torch.Tensor) or not isinstance(self.y, torch.Tensor):
            raise ProxGTValueError(f"{where}: X and y must be torch tensors")
        if self.X.dtype != torch.float32 or self.X.ndim < 2:
            raise ProxGTValueError(
                f"{where}: X must be a float32 tensor of shape (N, *feature_shape); "
                f"got {self.X.dtype} of shape {tuple(self.X.shape)}"
            )
        if self.y.ndim != 1 or self.y.shape[0] != self.X.shape[0]:
            raise ProxGTValueError(
                f"{where}: y must have shape ({self.X.shape[0]},) to match X; got {tuple(self.y.shape)}"
            )
        if isinstance(self.n_classes, bool) or not isinstance(self.n_classes, int) or self.n_classes < 0:
            raise ProxGTValueError(f"{where}: n_classes must be an int >= 0; got {self.n_classes!r}")
        if self.n_classes > 0:
            if self.y.dtype != torch.int64:
                raise ProxGTValueError(f"{where}: class labels must be int64; got {self.y.dtype}")
            if self.y.numel() and (int(self.y.min()) < 0 or int(self.y.max()) >= self.n_classes):
                raise ProxGTValueError(
                    f"{where}: class labels must lie in 0..{self.n_classes - 1}; "
                    f"got {int(self.y.min())}..{int(self.y.max())}"
                )
        elif self.y.dtype != torch.float32:
            raise ProxGTValueError(
                f"{where}: regression targets (n_classes=0) must be float32; got {self.y.dtype}"
            )

    def __len__(self) -> int:
        return int(self.X.shape[0])

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """Shape of one sample, e.g. ``(123,)`` for a9a or ``(1, 28, 28)`` for Fashion-MNIST."""
        return tuple(int(s) for s in self.X.shape[1:])

    @property
    def n_features(self) -> int:
        """Number of scalar features of one sample (product of :attr:`feature_shape`)."""
        return math.prod(self.feature_shape)

    @property
    def is_classification(self) -> bool:
        return self.n_classes > 0

    def subset(self, index: np.ndarray | torch.Tensor | Sequence[int], name: str | None = None) -> Dataset:
        """The rows ``index`` (in that order) as a new :class:`Dataset`."""
        idx = torch.as_tensor(np.asarray(index, dtype=np.int64))
        return Dataset(self.X[idx], self.y[idx], self.n_classes, self.name if name is None else name)


@dataclass(frozen=True, eq=False)
class NodeData:
    """Per-node shards, padded to the largest shard so all nodes are one batched tensor.

    Node ``k`` (row ``k``) owns the samples ``X[k, :counts[k]]``, ``y[k, :counts[k]]``; the padding rows
    after them are zeros and must never be sampled. ``node_ids`` are the global ids of the rows: ``range(n)``
    for a full split, the hosted block after :meth:`shard`.

    Example:
        >>> nd = NodeData(torch.zeros(2, 3, 4), torch.zeros(2, 3, dtype=torch.int64),
        ...               torch.tensor([3, 2]), 2, (0, 1))
        >>> nd.n_nodes, nd.m_max, nd.total
        (2, 3, 5)
    """

    X: torch.Tensor
    y: torch.Tensor
    counts: torch.Tensor
    n_classes: int
    node_ids: tuple[int, ...]
    name: str = ""

    def __post_init__(self) -> None:
        if self.X.ndim < 3 or self.y.ndim != 2 or tuple(self.y.shape) != tuple(self.X.shape[:2]):
            raise ProxGTValueError(
                f"NodeData: X must be (n, m_max, *feature_shape) and y (n, m_max); "
                f"got X {tuple(self.X.shape)} and y {tuple(self.y.shape)}"
            )
        n, m_max = int(self.X.shape[0]), int(self.X.shape[1])
        if self.counts.dtype != torch.int64 or tuple(self.counts.shape) != (n,):
            raise ProxGTValueError(f"NodeData: counts must be an int64 tensor of shape ({n},)")
        if n and (int(self.counts.min()) < 0 or int(self.counts.max()) > m_max):
            raise ProxGTValueError(f"NodeData: counts must lie in 0..m_max={m_max}")
        if len(self.node_ids) != n:
            raise ProxGTValueError(
                f"NodeData: {count(len(self.node_ids), 'node id')} given for {count(n, 'node')}"
            )

    @property
    def n_nodes(self) -> int:
        return int(self.X.shape[0])

    @property
    def m_max(self) -> int:
        """Rows per node in the padded tensors (the largest shard of the split)."""
        return int(self.X.shape[1])

    @property
    def total(self) -> int:
        """Number of real samples over these nodes (sum of ``counts``)."""
        return int(self.counts.sum())

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.X.shape[2:])

    @property
    def n_features(self) -> int:
        return math.prod(self.feature_shape)

    def mask(self) -> torch.Tensor:
        """Boolean (n, m_max): True on real rows, False on padding."""
        return torch.arange(self.m_max).unsqueeze(0) < self.counts.unsqueeze(1)

    def shard(self, node_ids: Sequence[int]) -> NodeData:
        """The nodes with global ids ``node_ids`` (in that order), e.g. the block one process hosts.

        The padded width ``m_max`` is kept, so ``nd.shard(nd.node_ids)`` equals ``nd``.
        """
        ids = [int(i) for i in node_ids]
        if not ids:
            raise ProxGTValueError("NodeData.shard: node_ids is empty; give at least one node id")
        if len(set(ids)) != len(ids):
            raise ProxGTValueError(f"NodeData.shard: node_ids contains duplicates: {ids}")
        pos = {g: k for k, g in enumerate(self.node_ids)}
        missing = [i for i in ids if i not in pos]
        if missing:
            raise ProxGTValueError(
                f"NodeData.shard: node ids {missing} are not in this NodeData "
                f"(it holds {list(self.node_ids)})"
            )
        rows = torch.tensor([pos[i] for i in ids], dtype=torch.int64)
        return NodeData(
            self.X[rows].clone(),
            self.y[rows].clone(),
            self.counts[rows].clone(),
            self.n_classes,
            tuple(ids),
            self.name,
        )

    def pooled(self) -> Dataset:
        """All real rows concatenated in node order, as a :class:`Dataset` (for centralized references)."""
        m = self.mask()
        return Dataset(self.X[m], self.y[m], self.n_classes, self.name)


def make_dataset(X: np.ndarray, y: np.ndarray, name: str, where: str) -> Dataset:
    """Build a :class:`Dataset` from numpy arrays, applying the shared label rule.

    Label rule: if every label is a (finite) integer value and there are at most :data:`MAX_CLASSES`
    distinct values, the data is classification and the labels are mapped to ``0..C-1`` in sorted label
    order (so ``-1/+1`` become ``0/1``); otherwise it is regression with float32 targets.
    ``where`` prefixes error messages (usually the file path).
    """
    X = np.asarray(X)
    y = np.asarray(y)
    if X.dtype.kind not in "biuf":
        raise ProxGTValueError(f"{where}: X must be numeric; got dtype {X.dtype}")
    if y.dtype.kind not in "biuf":
        raise ProxGTValueError(f"{where}: y must be numeric; got dtype {y.dtype}")
    if X.ndim == 0 or X.shape[0] == 0:
        raise ProxGTValueError(f"{where}: no samples (X has shape {X.shape})")
    if X.ndim == 1:
        X = X.reshape(-1, 1)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ProxGTValueError(f"{where}: y must be one-dimensional (N,); got shape {y.shape}")
    if y.shape[0] != X.shape[0]:
        raise ProxGTValueError(
            f"{where}: X has {count(X.shape[0], 'row')} but y has {count(y.shape[0], 'label')}"
        )
    Xf = np.ascontiguousarray(X, dtype=np.float32)
    if not np.isfinite(Xf).all():
        raise ProxGTValueError(f"{where}: X contains NaN or Inf")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise ProxGTValueError(f"{where}: y contains NaN or Inf")
    yt, n_classes = _encode_labels(y)
    return Dataset(torch.from_numpy(Xf), yt, n_classes, name)


def _encode_labels(y: np.ndarray) -> tuple[torch.Tensor, int]:
    integral = y.dtype.kind in "biu" or bool(np.all(y == np.round(y)))
    if integral:
        classes, codes = np.unique(y, return_inverse=True)
        if classes.size <= MAX_CLASSES:
            return torch.from_numpy(codes.reshape(-1).astype(np.int64)), int(classes.size)
    return torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32)), 0


def read_file_bytes(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a user's data file; a missing path or a folder is a one-line ProxGTValueError."""
    p = Path(path)
    if not p.exists():
        raise ProxGTValueError(f"{path}: file does not exist")
    if not p.is_file():
        raise ProxGTValueError(f"{path}: not a regular file")
    return p.read_bytes()
