"""The "pairs" split: node i holds exactly the classes i and C - 1 - i (DProxSGT's label skew)."""

import numpy as np
import torch

from proxgt.data._dataset import Dataset
from proxgt.data._split import SPLIT_SCHEMES, split_nodes


def _ten_classes(per_class: int = 7) -> Dataset:
    y = torch.arange(10).repeat_interleave(per_class)
    X = torch.randn(y.numel(), 3)
    return Dataset(X, y, 10, "toy")


def test_pairs_gives_node_i_classes_i_and_9_minus_i():
    assert "pairs" in SPLIT_SCHEMES
    ds = _ten_classes()
    nd = split_nodes(ds, 5, "pairs")
    for i in range(5):
        labels = nd.y[i, : int(nd.counts[i])].numpy()
        assert set(np.unique(labels).tolist()) == {i, 9 - i}
    assert int(nd.counts.sum()) == len(ds)  # every sample dealt once


def test_pairs_more_nodes_share_a_pair_fewer_nodes_hold_several():
    ds = _ten_classes(per_class=6)
    nd = split_nodes(ds, 7, "pairs")  # 5 pairs: nodes 5 and 6 share pairs 0 and 1 with nodes 0 and 1
    for k in range(7):
        labels = set(nd.y[k, : int(nd.counts[k])].tolist())
        assert labels <= {k % 5, 9 - k % 5} and labels
    nd = split_nodes(ds, 2, "pairs")  # node 0: pairs 0, 2, 4; node 1: pairs 1, 3
    assert set(nd.y[1, : int(nd.counts[1])].tolist()) == {1, 8, 3, 6}


def test_pairs_too_few_samples_still_fills_every_node():
    nd = split_nodes(_ten_classes(per_class=1), 10, "pairs")  # 5 pairs of 2 samples, 2 nodes per pair
    assert nd.counts.tolist() == [1] * 10
    for k in range(10):
        assert set(nd.y[k, :1].tolist()) <= {k % 5, 9 - k % 5}
