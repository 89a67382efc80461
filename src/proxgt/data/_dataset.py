"""The two containers of the data package: a pooled :class:`Dataset` and per-node :class:`NodeData`.

Also the one label rule every loader shares (:func:`make_dataset`) and the one place seeds are normalized
(:func:`make_rng`).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from proxgt._validation import ProxGTValueError, check_int

__all__ = [
    "Dataset",
    "NodeData",
    "MAX_CLASSES",
    "make_dataset",
    "make_rng",
    "check_seed",
    "count",
    "is_sparse",
    "csr_tensor",
    "csr_rows",
    "row_block",
    "densify",
    "size_text",
    "available_memory",
]

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
    return check_int(seed, "seed", owner, low=0)


def make_rng(seed: object, owner: str = "") -> np.random.Generator:
    """The seeded generator every random choice of this package draws from (numpy PCG64)."""
    return np.random.default_rng(check_seed(seed, owner))


# ---------------------------------------------------------------------------------------------- sparse features
# Sparse feature matrices are torch sparse CSR float32 tensors of shape (rows, p): a Dataset's X (N, p) and a
# NodeData's X (n * m_max, p), node k's rows at k * m_max ... (k + 1) * m_max - 1, padding rows empty. Memory is
# proportional to the non-zeros; the linear problems multiply with them directly (proxgt.problems.linear).


def is_sparse(X: object) -> bool:
    """Whether ``X`` is a torch sparse CSR feature matrix."""
    return isinstance(X, torch.Tensor) and X.layout == torch.sparse_csr


def csr_tensor(crow: torch.Tensor, col: torch.Tensor, val: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """A torch sparse CSR tensor (int64 indices), without torch's "CSR support is in beta" warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow.to(torch.int64), col.to(torch.int64), val, size=shape)


def csr_rows(X: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows ``index`` (1-D int64, in that order, repeats allowed; -1 gives an empty row) of a sparse CSR ``X``.

    O(rows + non-zeros gathered): row starts and lengths are gathered, then one ``repeat_interleave`` places
    each gathered non-zero.
    """
    crow, col, val = X.crow_indices(), X.col_indices(), X.values()
    index = index.to(device=crow.device, dtype=torch.int64).reshape(-1)
    empty = index < 0
    safe = index.clamp(min=0)
    starts = crow[safe]
    lens = torch.where(empty, torch.zeros_like(starts), crow[safe + 1] - starts)
    new_crow = torch.zeros(index.numel() + 1, dtype=torch.int64, device=crow.device)
    torch.cumsum(lens, 0, out=new_crow[1:])
    total = int(new_crow[-1])
    shift = torch.repeat_interleave(starts - new_crow[:-1], lens, output_size=total)
    pos = torch.arange(total, device=crow.device) + shift
    return csr_tensor(new_crow, col[pos], val[pos], (index.numel(), int(X.shape[1])))


def row_block(X: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Rows ``start:stop`` of a pooled feature matrix as one node's batch: ``X[start:stop].unsqueeze(0)``
    (1, b, ...) for dense ``X``, the CSR rows (b, p) for sparse ``X`` (the problems read b off the labels)."""
    if is_sparse(X):
        stop = min(int(stop), int(X.shape[0]))
        return csr_rows(X, torch.arange(int(start), stop))
    return X[start:stop].unsqueeze(0)


def size_text(n_bytes: float) -> str:
    """``3.6 TiB``, ``74.5 GiB``, ``1.5 MiB``, ``1000 bytes`` (binary units, for messages)."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{int(n_bytes)} bytes"


def available_memory() -> int | None:
    """Bytes of memory available for new allocations (Linux ``MemAvailable``), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return None


def densify(X: torch.Tensor, what: str) -> torch.Tensor:
    """``X`` as a dense tensor; a sparse ``X`` whose dense float32 form would not fit in the memory available
    is refused first, with one line giving the size (``what`` says why it is being densified)."""
    if not is_sparse(X):
        return X
    rows, p = int(X.shape[0]), int(X.shape[1])
    need = 4 * rows * p
    avail = available_memory()
    if avail is not None and need > avail:
        raise ProxGTValueError(
            f"a dense {rows} x {p} float32 matrix needs {size_text(need)}, more than the {size_text(avail)} of "
            f"memory available; {what} needs dense features: use a linear problem (logistic, softmax, "
            "least_squares), which keeps them sparse"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return X.to_dense()


@dataclass(frozen=True, eq=False)
class Dataset:
    """A pooled data set: features ``X`` (N, *feature_shape) float32 and labels ``y`` (N,).

    ``X`` is dense, or a torch sparse CSR matrix (N, p) (:func:`is_sparse`; LIBSVM files too large to hold
    dense, .npz files holding a scipy sparse matrix, ``rcv1-synthetic``).

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
        X = csr_rows(self.X, idx) if is_sparse(self.X) else self.X[idx]
        return Dataset(X, self.y[idx], self.n_classes, self.name if name is None else name)


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
        if is_sparse(self.X):
            if self.y.ndim != 2 or int(self.X.shape[0]) != int(self.y.shape[0]) * int(self.y.shape[1]):
                raise ProxGTValueError(
                    f"NodeData: sparse X must be (n * m_max, p) for y (n, m_max); "
                    f"got X {tuple(self.X.shape)} and y {tuple(self.y.shape)}"
                )
        elif self.X.ndim < 3 or self.y.ndim != 2 or tuple(self.y.shape) != tuple(self.X.shape[:2]):
            raise ProxGTValueError(
                f"NodeData: X must be (n, m_max, *feature_shape) and y (n, m_max); "
                f"got X {tuple(self.X.shape)} and y {tuple(self.y.shape)}"
            )
        n, m_max = int(self.y.shape[0]), int(self.y.shape[1])
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
        return int(self.y.shape[0])

    @property
    def m_max(self) -> int:
        """Rows per node in the padded tensors (the largest shard of the split)."""
        return int(self.y.shape[1])

    @property
    def is_sparse(self) -> bool:
        """Whether X is a sparse CSR matrix (n * m_max, p) rather than a dense (n, m_max, ...) tensor."""
        return is_sparse(self.X)

    @property
    def total(self) -> int:
        """Number of real samples over these nodes (sum of ``counts``)."""
        return int(self.counts.sum())

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.X.shape[1 if self.is_sparse else 2 :])

    def flat_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Rows of a sparse X for the node positions ``rows`` (local node index), whole padded blocks."""
        base = (rows.to(torch.int64) * self.m_max).unsqueeze(1) + torch.arange(self.m_max).unsqueeze(0)
        return csr_rows(self.X, base.reshape(-1))

    def densified(self, what: str) -> NodeData:
        """This NodeData with dense X (itself if already dense); refused with the size if it cannot fit."""
        if not self.is_sparse:
            return self
        X = densify(self.X, what).reshape(self.n_nodes, self.m_max, -1)
        return NodeData(X, self.y, self.counts, self.n_classes, self.node_ids, self.name)

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
        if tuple(ids) == self.node_ids:  # all of them, in order: nothing to copy (NodeData is immutable)
            return self
        rows = torch.tensor([pos[i] for i in ids], dtype=torch.int64)
        return NodeData(
            self.flat_rows(rows) if self.is_sparse else self.X[rows].clone(),
            self.y[rows].clone(),
            self.counts[rows].clone(),
            self.n_classes,
            tuple(ids),
            self.name,
        )

    def pooled(self) -> Dataset:
        """All real rows concatenated in node order, as a :class:`Dataset` (for centralized references)."""
        m = self.mask()
        X = csr_rows(self.X, torch.nonzero(m.reshape(-1)).reshape(-1)) if self.is_sparse else self.X[m]
        return Dataset(X, self.y[m], self.n_classes, self.name)


def make_dataset(X: np.ndarray | sp.spmatrix, y: np.ndarray, name: str, where: str) -> Dataset:
    """Build a :class:`Dataset` from numpy arrays (or a scipy sparse X, kept sparse), applying the shared label
    rule.

    Label rule: if every label is a (finite) integer value and there are at most :data:`MAX_CLASSES`
    distinct values, the data is classification and the labels are mapped to ``0..C-1`` in sorted label
    order (so ``-1/+1`` become ``0/1``); otherwise it is regression with float32 targets.
    ``where`` prefixes error messages (usually the file path).
    """
    if sp.issparse(X):
        return _make_sparse_dataset(X, np.asarray(y), name, where)
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


def _check_labels(y: np.ndarray, n_rows: int, where: str) -> np.ndarray:
    if y.dtype.kind not in "biuf":
        raise ProxGTValueError(f"{where}: y must be numeric; got dtype {y.dtype}")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ProxGTValueError(f"{where}: y must be one-dimensional (N,); got shape {y.shape}")
    if y.shape[0] != n_rows:
        raise ProxGTValueError(f"{where}: X has {count(n_rows, 'row')} but y has {count(y.shape[0], 'label')}")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise ProxGTValueError(f"{where}: y contains NaN or Inf")
    return y


def _make_sparse_dataset(X: sp.spmatrix, y: np.ndarray, name: str, where: str) -> Dataset:
    """:func:`make_dataset` for a scipy sparse X (N, p): kept sparse, as a torch CSR float32 tensor."""
    if X.ndim != 2 or X.shape[0] == 0:
        raise ProxGTValueError(f"{where}: no samples (X has shape {X.shape})")
    if X.dtype.kind not in "biuf":
        raise ProxGTValueError(f"{where}: X must be numeric; got dtype {X.dtype}")
    y = _check_labels(y, X.shape[0], where)
    C = sp.csr_matrix(X, dtype=np.float32)
    C.sum_duplicates()
    C.sort_indices()
    if not np.isfinite(C.data).all():
        raise ProxGTValueError(f"{where}: X contains NaN or Inf")
    Xt = csr_tensor(torch.from_numpy(C.indptr.astype(np.int64)), torch.from_numpy(C.indices.astype(np.int64)),
                    torch.from_numpy(C.data), (int(C.shape[0]), int(C.shape[1])))
    yt, n_classes = _encode_labels(y)
    return Dataset(Xt, yt, n_classes, name)


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
