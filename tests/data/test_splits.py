"""Splits of proxgt.data: train/test and over nodes (iid, sorted, dirichlet, shards), NodeData."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from proxgt._validation import ProxGTValueError
from proxgt.data import (
    SPLIT_SCHEMES,
    Dataset,
    NodeData,
    load_sklearn,
    split_nodes,
    synthetic_a9a,
    train_test_split,
)


def _toy(n: int = 200, n_classes: int = 5, seed: int = 0) -> Dataset:
    """Rows are their own index in feature 0, so every sample can be traced through a split."""
    rng = np.random.default_rng(seed)
    X = torch.zeros(n, 3)
    X[:, 0] = torch.arange(1, n + 1, dtype=torch.float32)  # 1-based: never equal to padding zeros
    X[:, 1:] = torch.from_numpy(rng.normal(size=(n, 2)).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, n_classes, size=n).astype(np.int64))
    return Dataset(X, y, n_classes, "toy")


def _node_rows(nd: NodeData, k: int) -> list[int]:
    return [int(v) - 1 for v in nd.X[k, : int(nd.counts[k]), 0].tolist()]


def _node_classes(nd: NodeData, k: int) -> set[int]:
    return set(nd.y[k, : int(nd.counts[k])].tolist())


@pytest.mark.parametrize("scheme", SPLIT_SCHEMES)
def test_every_sample_lands_on_exactly_one_node(scheme: str) -> None:
    ds = _toy()
    nd = split_nodes(ds, 7, scheme, alpha=0.3, seed=1)
    assert nd.n_nodes == 7 and nd.node_ids == tuple(range(7))
    assert int(nd.counts.sum()) == len(ds) == nd.total
    assert int(nd.counts.min()) >= 1 and nd.m_max == int(nd.counts.max())
    assert nd.X.shape == (7, nd.m_max, 3) and nd.y.shape == (7, nd.m_max) and nd.counts.dtype == torch.int64
    rows = sorted(r for k in range(7) for r in _node_rows(nd, k))
    assert rows == list(range(len(ds)))
    for k in range(7):  # labels travel with their rows
        assert nd.y[k, : int(nd.counts[k])].tolist() == ds.y[_node_rows(nd, k)].tolist()


@pytest.mark.parametrize("scheme", SPLIT_SCHEMES)
def test_padding_rows_are_zero(scheme: str) -> None:
    nd = split_nodes(_toy(203), 6, scheme, alpha=0.2, seed=4)
    mask = nd.mask()
    assert mask.sum() == nd.total
    assert torch.all(nd.X[~mask] == 0) and torch.all(nd.y[~mask] == 0)
    assert torch.all(nd.X[mask][:, 0] > 0)


@pytest.mark.parametrize("scheme", SPLIT_SCHEMES)
def test_same_seed_same_split(scheme: str) -> None:
    ds = _toy()
    a = split_nodes(ds, 5, scheme, alpha=0.5, seed=11)
    b = split_nodes(ds, 5, scheme, alpha=0.5, seed=11)
    assert torch.equal(a.X, b.X) and torch.equal(a.y, b.y) and torch.equal(a.counts, b.counts)
    if scheme != "sorted":  # "sorted" uses no randomness
        c = split_nodes(ds, 5, scheme, alpha=0.5, seed=12)
        assert not (c.X.shape == a.X.shape and torch.equal(c.X, a.X))


def test_iid_sizes_differ_by_at_most_one_and_mix_classes() -> None:
    ds = _toy(203)
    nd = split_nodes(ds, 8, "iid", seed=0)
    assert int(nd.counts.max() - nd.counts.min()) <= 1
    assert all(len(_node_classes(nd, k)) == 5 for k in range(8))
    rows0 = _node_rows(nd, 0)
    assert rows0 != sorted(rows0) or rows0 != list(range(rows0[0], rows0[0] + len(rows0)))  # shuffled


def _balanced(n_per_class: int = 60, n_classes: int = 10) -> Dataset:
    n = n_per_class * n_classes
    y = torch.arange(n) % n_classes
    X = torch.arange(1, n + 1, dtype=torch.float32).reshape(n, 1)
    return Dataset(X, y, n_classes, "balanced")


def test_sorted_split_gives_each_node_few_classes() -> None:
    ds = _balanced()
    one = split_nodes(ds, 10, "sorted")
    assert [sorted(_node_classes(one, k)) for k in range(10)] == [[k] for k in range(10)]
    nd = split_nodes(ds, 8, "sorted")
    assert int(nd.counts.max() - nd.counts.min()) <= 1
    assert all(1 <= len(_node_classes(nd, k)) <= 2 for k in range(8))
    firsts = [min(_node_classes(nd, k)) for k in range(8)]
    assert firsts == sorted(firsts)
    digits = split_nodes(load_sklearn("digits"), 10, "sorted")  # classes of 174..183 samples
    assert all(len(_node_classes(digits, k)) <= 3 for k in range(10))


def test_sorted_split_regression_sorts_by_target() -> None:
    y = torch.tensor([3.0, -1.0, 2.5, 0.0, 10.0, -7.0])
    ds = Dataset(torch.arange(1, 7, dtype=torch.float32).reshape(6, 1), y, 0, "reg")
    nd = split_nodes(ds, 3, "sorted")
    assert nd.y.dtype == torch.float32
    assert nd.y.reshape(-1).tolist() == sorted(y.tolist())
    assert split_nodes(ds, 2, "iid", seed=0).total == 6


def test_dirichlet_small_alpha_is_skewed_large_alpha_is_not() -> None:
    ds = synthetic_a9a(4000, seed=0)
    ds = Dataset(ds.X, torch.arange(len(ds)) % 10, 10, "ten")  # 10 balanced classes

    def mean_classes(alpha: float) -> float:
        nd = split_nodes(ds, 8, "dirichlet", alpha=alpha, seed=3)
        assert int(nd.counts.min()) >= 1
        shares = []
        for k in range(8):
            hist = torch.bincount(nd.y[k, : int(nd.counts[k])], minlength=10).float()
            shares.append(float(hist.max() / hist.sum()))
        return float(np.mean(shares))

    skewed, even = mean_classes(0.05), mean_classes(100.0)
    assert skewed > 0.6  # most of a node's data is one class
    assert even < 0.2  # close to the uniform 0.1


def test_dirichlet_tops_up_empty_nodes() -> None:
    ds = _toy(40, n_classes=2)
    for seed in range(5):
        nd = split_nodes(ds, 40, "dirichlet", alpha=0.01, seed=seed)
        assert nd.counts.tolist() == [1] * 40


def test_shards_give_each_node_few_classes() -> None:
    ds = _balanced()
    nd = split_nodes(ds, 10, "shards", seed=0)  # 20 shards of 30 samples: exactly one class each
    assert nd.counts.tolist() == [60] * 10
    assert all(1 <= len(_node_classes(nd, k)) <= 2 for k in range(10))
    assert len({frozenset(_node_classes(nd, k)) for k in range(10)}) > 1  # random shard assignment
    one = split_nodes(ds, 10, "shards", seed=0, classes_per_node=1)
    assert sorted(min(_node_classes(one, k)) for k in range(10)) == list(range(10))
    assert all(len(_node_classes(one, k)) == 1 for k in range(10))
    three = split_nodes(_balanced(60, 5), 5, "shards", seed=1, classes_per_node=3)  # 15 shards of 20
    assert three.total == 300 and all(len(_node_classes(three, k)) <= 3 for k in range(5))
    digits = split_nodes(load_sklearn("digits"), 10, "shards", seed=0)
    assert np.mean([len(_node_classes(digits, k)) for k in range(10)]) <= 3


def test_shard_picks_the_right_rows() -> None:
    nd = split_nodes(_toy(), 6, "dirichlet", alpha=0.5, seed=2)
    sub = nd.shard([4, 1])
    assert sub.node_ids == (4, 1) and sub.n_nodes == 2 and sub.m_max == nd.m_max
    assert torch.equal(sub.X[0], nd.X[4]) and torch.equal(sub.X[1], nd.X[1])
    assert torch.equal(sub.y[1], nd.y[1]) and sub.counts.tolist() == [int(nd.counts[4]), int(nd.counts[1])]
    again = sub.shard([1])  # ids stay global
    assert again.node_ids == (1,) and torch.equal(again.X[0], nd.X[1])
    whole = nd.shard(nd.node_ids)
    assert torch.equal(whole.X, nd.X) and torch.equal(whole.counts, nd.counts)
    with pytest.raises(ProxGTValueError, match=r"node ids \[0\] are not in this NodeData"):
        sub.shard([0])
    with pytest.raises(ProxGTValueError, match="duplicates"):
        nd.shard([1, 1])
    with pytest.raises(ProxGTValueError, match="empty"):
        nd.shard([])


def test_pooled_returns_real_rows_in_node_order() -> None:
    ds = _toy()
    nd = split_nodes(ds, 4, "iid", seed=9)
    pooled = nd.pooled()
    order = [r for k in range(4) for r in _node_rows(nd, k)]
    assert len(pooled) == len(ds) and pooled.n_classes == ds.n_classes
    assert torch.equal(pooled.X, ds.X[order]) and torch.equal(pooled.y, ds.y[order])
    images = Dataset(torch.rand(10, 1, 4, 4), torch.arange(10) % 2, 2, "img")
    ndi = split_nodes(images, 3, "iid")
    assert ndi.X.shape[2:] == (1, 4, 4) and ndi.pooled().feature_shape == (1, 4, 4)


def test_split_errors() -> None:
    ds = _toy(100)
    with pytest.raises(ProxGTValueError) as info:
        split_nodes(ds, 200)
    assert str(info.value) == "cannot split 100 samples over 200 nodes: each node needs at least one sample"
    with pytest.raises(ProxGTValueError, match="'n_nodes' parameter of split_nodes must be an int >= 1"):
        split_nodes(ds, 0)
    with pytest.raises(ProxGTValueError, match="'scheme' parameter of split_nodes must be one of"):
        split_nodes(ds, 4, "random")
    for alpha in (0.0, -1.0):
        with pytest.raises(
            ProxGTValueError, match="'alpha' parameter of split_nodes must be a finite float > 0"
        ):
            split_nodes(ds, 4, "dirichlet", alpha=alpha)
    with pytest.raises(ProxGTValueError, match="classes_per_node"):
        split_nodes(ds, 4, "shards", classes_per_node=0)
    with pytest.raises(ProxGTValueError, match="cannot cut 100 samples into 120 shards"):
        split_nodes(ds, 60, "shards")
    with pytest.raises(ProxGTValueError, match="seed"):
        split_nodes(ds, 4, seed=-1)
    reg = Dataset(torch.zeros(10, 2), torch.linspace(0, 1, 10), 0, "reg")
    for scheme in ("dirichlet", "shards"):
        with pytest.raises(ProxGTValueError, match=f"split scheme '{scheme}' needs class labels"):
            split_nodes(reg, 2, scheme)


def test_train_test_split() -> None:
    ds = _toy(101)
    tr, te = train_test_split(ds, 0.2, seed=5)
    assert len(tr) == 81 and len(te) == 20
    rows = sorted(int(v) - 1 for v in torch.cat([tr.X[:, 0], te.X[:, 0]]).tolist())
    assert rows == list(range(101))
    tr2, te2 = train_test_split(ds, 0.2, seed=5)
    assert torch.equal(tr.X, tr2.X) and torch.equal(te.y, te2.y)
    _, te3 = train_test_split(ds, 0.2, seed=6)
    assert not torch.equal(te.X, te3.X)
    tr0, te0 = train_test_split(ds, 0.0)
    assert len(tr0) == 101 and len(te0) == 0 and te0.feature_shape == (3,)
    tiny = _toy(2)
    tr1, te1 = train_test_split(tiny, 0.9)
    assert len(tr1) == 1 and len(te1) == 1
    for bad in (1.0, -0.1, 1.5, True):
        with pytest.raises(ProxGTValueError, match="'test_fraction' parameter of train_test_split"):
            train_test_split(ds, bad)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 60),
    n_nodes=st.integers(1, 60),
    scheme=st.sampled_from(SPLIT_SCHEMES),
    alpha=st.floats(0.01, 10.0),
    seed=st.integers(0, 2**31),
)
def test_split_invariants_property(n: int, n_nodes: int, scheme: str, alpha: float, seed: int) -> None:
    ds = _toy(n, n_classes=3, seed=seed % 7)
    needed = n_nodes * 2 if scheme == "shards" else n_nodes
    if needed > n:
        with pytest.raises(ProxGTValueError, match="cannot"):
            split_nodes(ds, n_nodes, scheme, alpha=alpha, seed=seed)
        return
    nd = split_nodes(ds, n_nodes, scheme, alpha=alpha, seed=seed)
    assert nd.total == n and int(nd.counts.min()) >= 1 and nd.m_max == int(nd.counts.max())
    assert sorted(r for k in range(n_nodes) for r in _node_rows(nd, k)) == list(range(n))
    assert torch.all(nd.X[~nd.mask()] == 0)
