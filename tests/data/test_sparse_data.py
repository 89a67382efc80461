"""Sparse feature matrices in the data package: LIBSVM and .npz loading, splits, shards, rcv1-synthetic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from proxgt._validation import ProxGTValueError
from proxgt.data import _dataset as dataset_mod
from proxgt.data import load_dataset, load_libsvm, load_npz, split_nodes, train_test_split
from proxgt.data._dataset import csr_rows, densify, is_sparse, make_dataset
from proxgt.data._synthetic import synthetic_rcv1

TEXT = "1 1:0.5 7:2\n-1 3:1.5\n# comment\n1 2:1 3:-1 7:0.25\n-1 5:4\n"


def _dense(X: torch.Tensor) -> torch.Tensor:
    return X.to_dense() if is_sparse(X) else X


def test_libsvm_sparse_and_dense_layouts_hold_the_same_matrix(tmp_path: Path) -> None:
    path = tmp_path / "t.svm"
    path.write_text(TEXT)
    s, d = load_libsvm(path, layout="sparse"), load_libsvm(path, layout="dense")
    assert is_sparse(s.X) and not is_sparse(d.X)
    assert s.X.values().numel() == 7  # memory is the non-zeros
    torch.testing.assert_close(s.X.to_dense(), d.X)
    assert torch.equal(s.y, d.y) and s.n_classes == d.n_classes == 2
    assert not is_sparse(load_libsvm(path).X)  # auto: this small file stays dense
    with pytest.raises(ProxGTValueError, match="The 'layout' parameter of load_libsvm must be one of"):
        load_libsvm(path, layout="csr")


def test_libsvm_with_a_huge_index_loads_sparse_without_allocating_dense(tmp_path: Path) -> None:
    path = tmp_path / "wide.svm"
    path.write_text("1 3:1 500000000:2\n-1 1:1\n")
    ds = load_libsvm(path)  # dense would be 2 x 5e8 float32 = 3.7 GiB
    assert is_sparse(ds.X) and tuple(ds.X.shape) == (2, 500_000_000)
    assert ds.X.col_indices().tolist() == [2, 499_999_999, 0] and ds.X.values().tolist() == [1.0, 2.0, 1.0]


def test_densify_refuses_with_the_size_before_allocating(monkeypatch: pytest.MonkeyPatch) -> None:
    X = make_dataset(sp.csr_matrix((2000, 500_000_000), dtype=np.float32), np.zeros(2000), "w", "w").X
    monkeypatch.setattr(dataset_mod, "available_memory", lambda: 64 * 2**30)
    with pytest.raises(ProxGTValueError) as info:
        densify(X, "problem 'mlp'")
    msg = str(info.value)
    assert msg.startswith("a dense 2000 x 500000000 float32 matrix needs 3.6 TiB, more than the 64.0 GiB")
    assert "\n" not in msg


@pytest.mark.parametrize("form", ["save_npz", "keys"])
def test_npz_holding_a_scipy_sparse_matrix(tmp_path: Path, form: str) -> None:
    X = sp.random(30, 50, density=0.1, format="csr", random_state=0, dtype=np.float64)
    y = np.arange(30) % 3
    path = tmp_path / "s.npz"
    if form == "save_npz":
        sp.save_npz(path, X)
        arrays = dict(np.load(path))
        np.savez(path, y=y, **arrays)
    else:
        np.savez(path, data=X.data, indices=X.indices, indptr=X.indptr, shape=X.shape, y=y)
    ds = load_npz(path)
    assert is_sparse(ds.X) and ds.n_classes == 3
    np.testing.assert_allclose(ds.X.to_dense().numpy(), X.toarray().astype(np.float32))
    np.savez(path, data=X.data, shape=X.shape, y=y)
    with pytest.raises(ProxGTValueError, match="sparse csr X is missing 'indices', 'indptr'"):
        load_npz(path)


def test_splits_shards_and_pooling_keep_sparse_rows() -> None:
    rng = np.random.default_rng(0)
    Xd = (rng.random((41, 9)) < 0.3) * rng.standard_normal((41, 9))
    y = rng.integers(0, 2, 41)
    dense = make_dataset(Xd, y, "d", "d")
    sparse = make_dataset(sp.csr_matrix(Xd), y, "s", "s")
    for a, b in zip(train_test_split(dense, 0.25, seed=3), train_test_split(sparse, 0.25, seed=3), strict=True):
        assert is_sparse(b.X)
        torch.testing.assert_close(b.X.to_dense(), a.X)
    for scheme in ("iid", "sorted", "dirichlet"):
        nd, ns = split_nodes(dense, 5, scheme, seed=1), split_nodes(sparse, 5, scheme, seed=1)
        assert ns.is_sparse and ns.n_nodes == 5 and ns.m_max == nd.m_max and ns.feature_shape == (9,)
        torch.testing.assert_close(ns.X.to_dense().reshape(nd.X.shape), nd.X)
        sh, dh = ns.shard([4, 0]), nd.shard([4, 0])
        torch.testing.assert_close(sh.X.to_dense().reshape(dh.X.shape), dh.X)
        torch.testing.assert_close(ns.pooled().X.to_dense(), nd.pooled().X)
        torch.testing.assert_close(ns.densified("test").X, nd.X)


def test_csr_rows_gathers_repeats_and_empty_rows() -> None:
    M = torch.tensor([[0.0, 1.0, 0.0], [2.0, 0.0, 3.0], [0.0, 0.0, 0.0]])
    rows = csr_rows(M.to_sparse_csr(), torch.tensor([1, -1, 0, 1, 2]))
    torch.testing.assert_close(rows.to_dense(), torch.stack([M[1], torch.zeros(3), M[0], M[1], M[2]]))


def test_rcv1_synthetic_is_seeded_sparse_and_rcv1_shaped() -> None:
    a, b, c = synthetic_rcv1(300, 4000, seed=2), synthetic_rcv1(300, 4000, seed=2), synthetic_rcv1(300, 4000, seed=3)
    assert is_sparse(a.X) and tuple(a.X.shape) == (300, 4000) and a.n_classes == 2
    assert torch.equal(a.X.values(), b.X.values()) and torch.equal(a.X.col_indices(), b.X.col_indices())
    assert torch.equal(a.y, b.y) and not torch.equal(a.y, c.y)
    density = a.X.values().numel() / (300 * 4000)
    assert 0.001 < density < 0.003
    norms = torch.sqrt(torch.zeros(300).index_add_(0, torch.repeat_interleave(
        torch.arange(300), a.X.crow_indices().diff()), a.X.values() ** 2))
    torch.testing.assert_close(norms, torch.ones(300))  # unit rows, as rcv1's
    assert 0.3 < float(a.y.float().mean()) < 0.7
    full, test = load_dataset("rcv1-synthetic", seed=0)
    assert tuple(full.X.shape) == (20242, 47236) and test is None
