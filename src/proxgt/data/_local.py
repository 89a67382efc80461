"""Local test data: each node (site) holds out part of its own samples (``local_test_fraction``).

Node ``g`` keeps ``local_test_count(m_g, F)`` of its ``m_g`` samples out of training: the first entries of a
permutation drawn from a generator seeded by ``(seed, g)`` only, so a distributed process holding some nodes
(sharded loading included) cuts exactly the samples the simulation cuts. Label-skewed splits give each node its
own label mix, and its local test data has the same mix: what a site would measure on data it keeps.
"""

from __future__ import annotations

import numpy as np
import torch

from proxgt.data._dataset import NodeData, csr_rows
from proxgt.errors import ProxGTValueError

__all__ = ["hold_out_local", "local_test_counts"]


def local_test_counts(counts: torch.Tensor, fraction: float) -> torch.Tensor:
    """Samples each node holds out: ``round(F m)``, at least one and at most ``m - 1`` (it keeps one to train)."""
    c = counts.to(torch.int64)
    return torch.clamp(torch.round(c.double() * float(fraction)).to(torch.int64), min=1).minimum(c - 1)


def _perm(seed: int, node: int, m: int) -> np.ndarray:
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(node), 0x10CA1]))
    return rng.permutation(m)


def _gather(nd: NodeData, parts: list[np.ndarray]) -> NodeData:
    """The samples ``parts[k]`` (positions in node k's shard) of every node, padded to the largest part."""
    counts = torch.tensor([p.size for p in parts], dtype=torch.int64)
    width = max(1, int(counts.max()))
    pos = torch.zeros((nd.n_nodes, width), dtype=torch.int64)
    for k, p in enumerate(parts):
        pos[k, : p.size] = torch.from_numpy(p)
    real = torch.arange(width).unsqueeze(0) < counts.unsqueeze(1)
    y = torch.gather(nd.y, 1, pos)
    y[~real] = 0
    if nd.is_sparse:  # flat CSR rows of node k: k * m_max + position; -1 gives an empty padding row
        flat = torch.where(real, pos + (torch.arange(nd.n_nodes) * nd.m_max).unsqueeze(1), -1)
        X = csr_rows(nd.X, flat.reshape(-1))
    else:
        X = nd.X[torch.arange(nd.n_nodes).unsqueeze(1), pos]
        X[~real] = 0
    return NodeData(X, y, counts, nd.n_classes, nd.node_ids, nd.name)


def hold_out_local(nd: NodeData, fraction: float, seed: int) -> tuple[NodeData, NodeData]:
    """(training shards, local test shards) of every node of ``nd`` (module docstring); samples keep their order.

    Raises ProxGTValueError (one line) when a node has fewer than two samples to share between the two.
    """
    counts = nd.counts.tolist()
    small = [g for g, m in zip(nd.node_ids, counts, strict=True) if m < 2]
    if small:
        raise ProxGTValueError(
            f"local_test_fraction: node {small[0]} has {counts[nd.node_ids.index(small[0])]} sample(s); every node "
            "needs at least 2 to keep one for training and one for its local test"
        )
    n_test = local_test_counts(nd.counts, fraction).tolist()
    train, test = [], []
    for g, m, t in zip(nd.node_ids, counts, n_test, strict=True):
        perm = _perm(seed, g, m)
        test.append(np.sort(perm[:t]))
        train.append(np.sort(perm[t:]))
    return _gather(nd, train), _gather(nd, test)
