"""Data for decentralized experiments: loaders, seeded synthetic data, and splits over nodes.

Everything runs offline. Loaders return a pooled :class:`Dataset` (``X`` float32 ``(N, *feature_shape)``,
``y`` int64 class ids or float32 targets); :func:`split_nodes` turns it into :class:`NodeData`, one padded
batched tensor with a leading node axis, which :meth:`NodeData.shard` cuts into the block one process hosts.

Example:
    >>> from proxgt.data import load_dataset, split_nodes
    >>> train, _ = load_dataset("synthetic", seed=0)
    >>> nodes = split_nodes(train, 8, "iid", seed=0)
    >>> nodes.X.shape
    torch.Size([8, 4071, 123])
"""

from ._dataset import MAX_CLASSES, Dataset, NodeData
from ._idx import (
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    MNIST_MEAN,
    MNIST_STD,
    load_fashion_mnist,
    load_idx,
    load_mnist_idx,
)
from ._libsvm import load_libsvm
from ._load import BUILTIN_DATASETS, load_dataset
from ._npz import load_npz
from ._sklearn import SKLEARN_NAMES, load_sklearn
from ._split import SPLIT_SCHEMES, split_nodes, train_test_split
from ._synthetic import A9A_GROUP_SIZES, synthetic_a9a

__all__ = [
    "Dataset",
    "NodeData",
    "load_dataset",
    "load_libsvm",
    "load_npz",
    "load_sklearn",
    "load_idx",
    "load_fashion_mnist",
    "load_mnist_idx",
    "synthetic_a9a",
    "train_test_split",
    "split_nodes",
    "SPLIT_SCHEMES",
    "BUILTIN_DATASETS",
    "SKLEARN_NAMES",
    "A9A_GROUP_SIZES",
    "MAX_CLASSES",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "MNIST_MEAN",
    "MNIST_STD",
]
