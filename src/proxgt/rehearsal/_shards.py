"""What a rehearsal hands each site: its rows of the data set, split as the simulator splits it."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from proxgt._io import atomic_write_with
from proxgt.data._dataset import NodeData, is_sparse
from proxgt.data._run_split import load_run_split
from proxgt.settings import RunConfig

__all__ = ["write_shards"]


def _savez(fh: BinaryIO, arrays: dict[str, np.ndarray]) -> None:
    np.savez(fh, **arrays)  # type: ignore[arg-type]


def _site_arrays(nd: NodeData, node_ids: Sequence[int]) -> dict[str, np.ndarray]:
    """The rows of ``node_ids`` node after node (as an ``.npz`` that :func:`proxgt.data.load_npz` reads) with
    ``node_counts`` (samples per node, in order); labels are the split's class codes."""
    part = nd.shard(node_ids)
    pooled = part.pooled()
    arrays: dict[str, np.ndarray] = {"y": pooled.y.numpy(), "node_counts": part.counts.numpy().astype(np.int64)}
    if is_sparse(pooled.X):  # CSR keys beside y, as load_npz reads them
        X = pooled.X
        arrays |= {"data": X.values().numpy(), "indices": X.col_indices().numpy(),
                   "indptr": X.crow_indices().numpy(), "shape": np.array(X.shape, dtype=np.int64)}
    else:
        arrays["X"] = pooled.X.to(torch.float32).numpy()
    return arrays


def write_shards(cfg: RunConfig, node_ids: Sequence[Sequence[int]], names: Sequence[str], folder: Path) -> list[Path]:
    """Split the data of ``cfg`` over ``cfg.nodes`` nodes as ``proxgt run`` does and write site ``k``'s nodes
    ``node_ids[k]`` to ``folder/<names[k]>.npz``; returns the paths."""
    _, _, nd = load_run_split(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, ids in zip(names, node_ids, strict=True):
        arrays = _site_arrays(nd, ids)
        path = folder / f"{name}.npz"
        atomic_write_with(path, partial(_savez, arrays=arrays))
        paths.append(path)
    return paths
