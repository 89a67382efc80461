"""Seeded train/test splits and splits of a data set over the nodes of a network."""

from __future__ import annotations

import math

import numpy as np
import torch

from proxgt._validation import ProxGTValueError, check_choice, check_positive_float, check_positive_int, param_error

from ._dataset import Dataset, NodeData, count, csr_rows, is_sparse, make_rng

__all__ = ["train_test_split", "split_nodes", "SPLIT_SCHEMES"]

#: Ways :func:`split_nodes` can distribute samples over nodes.
SPLIT_SCHEMES: tuple[str, ...] = ("iid", "sorted", "dirichlet", "shards", "pairs")

_DIRICHLET_REDRAWS = 20


def train_test_split(ds: Dataset, test_fraction: float = 0.2, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Seeded random split into ``(train, test)``.

    The rows are shuffled with ``numpy.random.default_rng(seed)``; the test part holds
    ``round(N * test_fraction)`` rows (at most ``N - 1``, so train is never empty), the train part the rest.
    ``test_fraction=0`` gives an empty test set.

    Example:
        >>> from proxgt.data import synthetic_a9a
        >>> tr, te = train_test_split(synthetic_a9a(100), 0.25, seed=3)
        >>> len(tr), len(te)
        (75, 25)
    """
    if (
        isinstance(test_fraction, bool)
        or not isinstance(test_fraction, int | float)
        or not (0.0 <= test_fraction < 1.0)
    ):
        raise param_error("train_test_split", "test_fraction", "a float in [0, 1)", test_fraction)
    rng = make_rng(seed, "train_test_split")
    n = len(ds)
    if n == 0:
        raise ProxGTValueError(f"train_test_split: dataset {ds.name!r} has no samples")
    n_test = min(int(math.floor(n * test_fraction + 0.5)), n - 1)
    perm = rng.permutation(n)
    return ds.subset(perm[n_test:]), ds.subset(perm[:n_test])


def _near_equal_chunks(order: np.ndarray, n_nodes: int) -> list[np.ndarray]:
    return list(np.array_split(order, n_nodes))


def _dirichlet(
    y: np.ndarray, n_classes: int, n_nodes: int, alpha: float, rng: np.random.Generator
) -> list[np.ndarray]:
    by_class = [rng.permutation(np.flatnonzero(y == c)) for c in range(n_classes)]
    for _ in range(_DIRICHLET_REDRAWS):
        parts: list[list[np.ndarray]] = [[] for _ in range(n_nodes)]
        for idx in by_class:
            if idx.size == 0:
                continue
            props = rng.dirichlet(np.full(n_nodes, alpha))
            cuts = np.floor(np.cumsum(props)[:-1] * idx.size + 1e-9).astype(np.int64)
            for k, piece in enumerate(np.split(idx, cuts)):
                parts[k].append(piece)
        nodes = [np.sort(np.concatenate(p)) for p in parts]
        if min(v.size for v in nodes) >= 1:
            return nodes
    # every draw left a node empty (tiny alpha, many nodes): top up deterministically, moving one sample at a
    # time from the currently largest node (its last index) to each empty node.
    for k in range(n_nodes):
        if nodes[k].size == 0:
            donor = max(range(n_nodes), key=lambda j: (nodes[j].size, -j))
            nodes[k] = nodes[donor][-1:]
            nodes[donor] = nodes[donor][:-1]
    return nodes


def _shards(y: np.ndarray, n_nodes: int, per_node: int, rng: np.random.Generator) -> list[np.ndarray]:
    perm = rng.permutation(y.size)
    order = perm[np.argsort(y[perm], kind="stable")]
    shards = np.array_split(order, n_nodes * per_node)
    owner = rng.permutation(n_nodes * per_node).reshape(n_nodes, per_node)
    return [np.sort(np.concatenate([shards[s] for s in owner[k]])) for k in range(n_nodes)]


def _class_pairs(y: np.ndarray, n_classes: int, n_nodes: int, rng: np.random.Generator) -> list[np.ndarray]:
    """DProxSGT's label skew (Xin et al.): class pairs {i, C - 1 - i}, P = ceil(C / 2) of them; with n = P nodes
    node i holds the whole pair i. With n < P node k holds the pairs p with p mod n = k; with n > P the nodes k with
    k mod P = p share pair p in near-equal chunks of its seeded shuffle. Each node's samples are in seeded order."""
    n_pairs = (n_classes + 1) // 2
    pair_of = np.array([min(c, n_classes - 1 - c) for c in range(n_classes)])
    by_pair = [rng.permutation(np.flatnonzero(pair_of[y] == p)) for p in range(n_pairs)]
    if n_nodes <= n_pairs:
        parts = [rng.permutation(np.concatenate([by_pair[p] for p in range(k, n_pairs, n_nodes)]))
                 for k in range(n_nodes)]
    else:
        parts = [np.empty(0, dtype=np.int64)] * n_nodes
        for p in range(n_pairs):
            sharing = list(range(p, n_nodes, n_pairs))
            for k, chunk in zip(sharing, np.array_split(by_pair[p], len(sharing)), strict=True):
                parts[k] = chunk
    # data too small for its pairs (a pair without samples, or with fewer than the nodes sharing it): top up each
    # empty node with one sample of the currently largest node, as the dirichlet split does
    for k in range(n_nodes):
        if parts[k].size == 0:
            donor = max(range(n_nodes), key=lambda j: (parts[j].size, -j))
            parts[k], parts[donor] = parts[donor][-1:], parts[donor][:-1]
    return parts


def _pack(ds: Dataset, parts: list[np.ndarray]) -> NodeData:
    counts = np.array([p.size for p in parts], dtype=np.int64)
    m_max = int(counts.max())
    index = np.zeros((len(parts), m_max), dtype=np.int64)
    for k, p in enumerate(parts):
        index[k, : p.size] = p
    idx = torch.from_numpy(index)
    counts_t = torch.from_numpy(counts)
    mask = torch.arange(m_max).unsqueeze(0) < counts_t.unsqueeze(1)
    if is_sparse(ds.X):  # padding rows are empty CSR rows
        X = csr_rows(ds.X, torch.where(mask, idx, -1).reshape(-1))
        y = ds.y[idx.reshape(-1)].reshape(len(parts), m_max)
        y[~mask] = 0
        return NodeData(X, y, counts_t, ds.n_classes, tuple(range(len(parts))), ds.name)
    X = ds.X[idx.reshape(-1)].reshape(len(parts), m_max, *ds.feature_shape)
    y = ds.y[idx.reshape(-1)].reshape(len(parts), m_max)
    X[~mask] = 0
    y[~mask] = 0
    return NodeData(X, y, counts_t, ds.n_classes, tuple(range(len(parts))), ds.name)


def split_nodes(
    ds: Dataset,
    n_nodes: int,
    scheme: str = "iid",
    *,
    alpha: float = 0.5,
    seed: int = 0,
    classes_per_node: int | None = None,
) -> NodeData:
    """Distribute the samples of ``ds`` over ``n_nodes`` nodes; every node gets at least one sample.

    Schemes (:data:`SPLIT_SCHEMES`):

    - ``"iid"``: seeded shuffle, then contiguous chunks whose sizes differ by at most one.
    - ``"sorted"``: stable sort by label (by target value for regression), then near-equal contiguous
      chunks; with about as many nodes as classes each node sees one or two classes. Uses no randomness.
    - ``"dirichlet"``: for each class ``c`` the shares ``q_c ~ Dirichlet(alpha * 1_n)`` over nodes, and node
      ``k`` gets ``floor``-rounded ``q_ck * N_c`` samples of that class; small ``alpha`` is strongly skewed.
      If a draw leaves a node empty it is redrawn (up to 20 times), then empty nodes are topped up with one
      sample taken from the largest node. Classification only.
    - ``"shards"``: label skew as in FedAvg (McMahan et al., 2017): sort by label, cut into
      ``n_nodes * classes_per_node`` near-equal shards (default ``classes_per_node=2``), give each node
      ``classes_per_node`` random shards. Classification only.
    - ``"pairs"``: the label skew of DProxSGT's experiments: node ``i`` holds all samples of classes ``i`` and
      ``C - 1 - i`` (C classes; meant for n = C / 2 nodes, e.g. 5 nodes on Fashion-MNIST). With fewer nodes node
      ``k`` holds the pairs ``p`` with ``p mod n = k``; with more, the nodes ``k`` with ``k mod P = p`` (P pairs)
      share pair ``p`` in near-equal chunks (a node left empty by too few samples is topped up with one sample
      of the largest node). The seed orders the samples. Classification only.

    ``alpha`` is used only by ``"dirichlet"``, ``classes_per_node`` only by ``"shards"``. The same
    ``seed`` gives the same split.

    Returns:
        :class:`NodeData` with shards padded with zero rows to the largest one and ``node_ids = range(n)``.

    Example:
        >>> from proxgt.data import load_sklearn
        >>> nd = split_nodes(load_sklearn("iris"), 4, "iid", seed=0)
        >>> nd.counts.tolist()
        [38, 38, 37, 37]
    """
    n_nodes = check_positive_int(n_nodes, "n_nodes", "split_nodes")
    scheme = check_choice(scheme, "scheme", SPLIT_SCHEMES, "split_nodes")
    alpha = check_positive_float(alpha, "alpha", "split_nodes")
    rng = make_rng(seed, "split_nodes")
    n = len(ds)
    if n_nodes > n:
        raise ProxGTValueError(
            f"cannot split {count(n, 'sample')} over {count(n_nodes, 'node')}: each node needs at least one "
            f"sample"
        )
    if scheme in ("dirichlet", "shards", "pairs") and ds.n_classes == 0:
        raise ProxGTValueError(
            f"split scheme {scheme!r} needs class labels, but dataset {ds.name!r} is regression "
            f"(n_classes=0); use 'iid' or 'sorted'"
        )
    y = ds.y.numpy()
    if scheme == "iid":
        parts = _near_equal_chunks(rng.permutation(n), n_nodes)
    elif scheme == "sorted":
        parts = _near_equal_chunks(np.argsort(y, kind="stable"), n_nodes)
    elif scheme == "dirichlet":
        parts = _dirichlet(y, ds.n_classes, n_nodes, alpha, rng)
    elif scheme == "pairs":
        parts = _class_pairs(y, ds.n_classes, n_nodes, rng)
    else:
        per_node = (
            2
            if classes_per_node is None
            else check_positive_int(classes_per_node, "classes_per_node", "split_nodes")
        )
        if n_nodes * per_node > n:
            raise ProxGTValueError(
                f"cannot cut {count(n, 'sample')} into {count(n_nodes * per_node, 'shard')} "
                f"(n_nodes={n_nodes} x classes_per_node={per_node}): each shard needs at least one sample"
            )
        parts = _shards(y, n_nodes, per_node, rng)
    return _pack(ds, parts)
