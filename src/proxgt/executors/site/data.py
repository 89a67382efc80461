"""A site's own data: its file, cut into its nodes, shaped as the simulator's split of the whole data would be.

``--data LOCAL`` is any file ``proxgt run --data`` reads (``.npz``, LIBSVM, ...). An ``.npz`` may carry an int
array ``node_counts`` (samples per node of this site, in order): the site's nodes then get exactly those
contiguous slices, which is what ``proxgt rehearse`` writes so that the simulator's split is reproduced row for
row. Without it the site splits its rows over its nodes as the settings' ``split`` says.

What the sites tell each other at the start (by flooding along the site graph, no central server): every node's
number of samples (padding, estimator sizes and privacy accounting use them, as in the simulator), the class
labels present (so that every site encodes labels alike), and the number of features. With a linear problem,
the smoothness bound ``lambda_max(A^T A) / N`` is computed by a power iteration whose products are summed over
the sites (:meth:`proxgt.data._shard.NodeShard.gram_lambda_max`): 100 vectors of the model's size, derived from
the sites' data, cross the links then (not under differential privacy, where ``step`` must be given).
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from proxgt.data import Dataset, NodeData, load_dataset, split_nodes
from proxgt.data._dataset import csr_rows, csr_tensor, is_sparse
from proxgt.data._shard import NodeShard, ShardRequest
from proxgt.errors import ProxGTValueError

__all__ = ["load_site_shard"]

#: ``gather(tag, meta) -> {site: meta}``: every site's JSON-safe value (flooded)
Gather = Callable[[str, dict[str, Any]], dict[str, dict[str, Any]]]


def _node_counts(path: Path, k: int, n_rows: int) -> np.ndarray | None:
    if path.suffix.lower() != ".npz":
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "node_counts" not in archive.files:
                return None
            counts = np.asarray(archive["node_counts"])
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ProxGTValueError(f"{path}: cannot read node_counts ({exc})") from None
    if counts.dtype.kind not in "iu" or counts.shape != (k,) or (counts < 1).any() or int(counts.sum()) != n_rows:
        raise ProxGTValueError(f"{path}: node_counts must be {k} int(s) >= 1 (one per node of this site) summing to "
                               f"the {n_rows} rows of X; got {counts.tolist()}")
    return counts.astype(np.int64)


def _raw_classes(path: Path, ds: Dataset) -> list[float] | None:
    """The label values of the file, sorted (None: regression); a file's codes are positions in this list."""
    if ds.n_classes == 0:
        return None
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            y = np.asarray(archive["y"]).reshape(-1)
    else:  # LIBSVM: the first token of each data line
        y = np.array([float(ln.split(None, 1)[0]) for ln in path.read_text().splitlines()
                      if ln.strip() and not ln.lstrip().startswith("#")])
    classes = np.unique(y)
    if classes.size != ds.n_classes:
        raise ProxGTValueError(f"{path}: could not read its class labels back ({classes.size} values for "
                               f"{ds.n_classes} classes)")
    return [float(c) for c in classes]


def load_site_shard(cfg: Any, node_ids: tuple[int, ...], gather: Gather, request: ShardRequest) -> NodeShard:
    """This site's rows as a :class:`~proxgt.data._shard.NodeShard` for ``build_run``: its nodes padded to the
    largest node of the whole network, every node's sample count, labels encoded over every site's classes."""
    path = Path(str(cfg.data)).expanduser()
    if not path.is_file():
        raise ProxGTValueError(f"--data {cfg.data}: no such file (a site reads its own data file)")
    train, _ = load_dataset(str(path), seed=cfg.seed)
    k = len(node_ids)
    if len(train) < k:
        raise ProxGTValueError(f"--data {path}: {len(train)} rows cannot fill this site's {k} nodes")
    counts = _node_counts(path, k, len(train))
    if counts is not None:
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rows = [np.arange(s, s + c) for s, c in zip(starts, counts, strict=True)]
    else:  # the settings' split over this site's nodes, replayed on row ids
        ids = Dataset(torch.arange(len(train), dtype=torch.float32).unsqueeze(1), train.y, train.n_classes, "ids")
        nd = split_nodes(ids, k, cfg.split, alpha=cfg.alpha, seed=cfg.seed)
        rows = [nd.X[a, : int(nd.counts[a]), 0].to(torch.int64).numpy() for a in range(k)]
    classes = _raw_classes(path, train)
    mine = {"counts": [int(len(r)) for r in rows], "classes": classes, "features": list(train.feature_shape),
            "sparse": is_sparse(train.X), "node_ids": list(node_ids)}
    every = gather("data", mine)
    n = sum(len(m["node_ids"]) for m in every.values())
    all_counts = np.zeros(n, dtype=np.int64)
    for m in every.values():
        all_counts[m["node_ids"]] = m["counts"]
    shapes = {tuple(m["features"]) for m in every.values()}
    y = train.y
    n_classes = train.n_classes
    if classes is not None:
        union = sorted({c for m in every.values() for c in (m["classes"] or [])})
        y = torch.from_numpy(np.searchsorted(np.asarray(union), np.asarray(classes))[train.y.numpy()])
        n_classes = len(union)
    X = train.X
    if is_sparse(X):
        width = max(int(s[0]) for s in shapes)
        X = csr_tensor(X.crow_indices(), X.col_indices(), X.values(), (int(X.shape[0]), width))
    elif len(shapes) > 1:
        raise ProxGTValueError(f"the sites' data have different feature shapes {sorted(shapes)}: every site needs the "
                               "same features")
    m_max = int(all_counts.max())
    idx = np.full((k, m_max), -1, dtype=np.int64)
    for a, r in enumerate(rows):
        idx[a, : len(r)] = r
    mask = torch.from_numpy(idx >= 0)
    flat = torch.from_numpy(np.where(idx >= 0, idx, 0).reshape(-1))
    yn = y[flat].reshape(k, m_max)
    yn[~mask] = 0
    if is_sparse(X):
        Xn = csr_rows(X, torch.from_numpy(idx.reshape(-1)))
    else:
        Xn = X[flat].reshape(k, m_max, *X.shape[1:]).clone()
        Xn[~mask] = 0
    kept = torch.from_numpy(np.concatenate(rows))
    pooled = Dataset(csr_rows(X, kept) if is_sparse(X) else X[kept], y[kept], n_classes, path.stem)
    node_data = NodeData(Xn, yn, torch.as_tensor([len(r) for r in rows], dtype=torch.int64), n_classes,
                         tuple(node_ids), path.stem)
    return NodeShard(train=pooled, test=None, node_data=node_data, counts=torch.from_numpy(all_counts),
                     n_train=int(all_counts.sum()), request=request)
