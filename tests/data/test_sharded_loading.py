"""Sharded loading (proxgt.data._shard): a process's rows equal the full load + split cut to its nodes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import proxgt.data._shard as shard_module
from proxgt.data import load_dataset, split_nodes, train_test_split
from proxgt.data._shard import ShardRequest, _npz_member, distributed_lambda_max_gram, load_node_shard
from proxgt.errors import ProxGTValueError
from proxgt.executors.p2p import partition_nodes
from proxgt.problems.linear import lambda_max_gram
from proxgt.settings import RunConfig
from proxgt.training import build_run


def _write_libsvm(path, X, y) -> None:
    lines = ["# a comment line", ""]
    for row, label in zip(X, y, strict=True):
        feats = " ".join(f"{j + 1}:{v:.6g}" for j, v in enumerate(row) if v != 0)
        lines.append(f"{int(label)} {feats}")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(97, 7)).astype(np.float32)
    X[rng.random(X.shape) < 0.5] = 0.0
    X[:, -1] = 0.0  # the last feature never used by some rows; width must still be the file's
    X[5, -1] = 1.5
    y = rng.integers(0, 3, size=97) * 2 - 1  # labels -1, 1, 3 (3 classes)
    d = tmp_path_factory.mktemp("shard")
    _write_libsvm(d / "toy.svm", X, y)
    np.savez(d / "toy.npz", X=X, y=y)
    np.savez_compressed(d / "toyz.npz", X=X, y=y)
    return d


def _cfg(data, **kw) -> RunConfig:
    base = {"data": str(data), "nodes": 5, "seed": 4, "problem": "softmax", "iters": 2}
    return RunConfig.from_dict({**base, **kw}).validate()


def _request(rank: int, world: int) -> ShardRequest:
    return ShardRequest(hosted=lambda n: partition_nodes(n, world)[rank], sum_over_processes=lambda t: t)


def _full(cfg: RunConfig):
    train, test = load_dataset(cfg.data, seed=cfg.seed)
    if test is None and cfg.test_fraction > 0:
        train, test = train_test_split(train, cfg.test_fraction, seed=cfg.seed)
    return split_nodes(train, cfg.nodes, cfg.split, alpha=cfg.alpha, seed=cfg.seed), test


@pytest.mark.parametrize("name, split, test_fraction", [
    ("toy.svm", "iid", 0.2), ("toy.svm", "sorted", 0.2), ("toy.svm", "dirichlet", 0.0), ("toy.svm", "shards", 0.2),
    ("toy.npz", "iid", 0.2), ("toy.npz", "sorted", 0.0), ("toyz.npz", "iid", 0.2),
])
def test_a_process_gets_exactly_its_nodes_rows_of_the_full_split(files, name, split, test_fraction):
    cfg = _cfg(files / name, split=split, test_fraction=test_fraction)
    full, test = _full(cfg)
    world = 3
    for rank in range(world):
        got = load_node_shard(cfg, _request(rank, world))
        assert got is not None
        block = partition_nodes(cfg.nodes, world)[rank]
        want = full.shard(block)
        assert got.node_data.node_ids == want.node_ids == block
        assert torch.equal(got.node_data.X, want.X)  # same rows, same order, same padding width
        assert torch.equal(got.node_data.y, want.y) and got.node_data.n_classes == want.n_classes == 3
        assert torch.equal(got.node_data.counts, want.counts)
        assert torch.equal(got.counts, full.counts) and got.n_train == full.total
        assert len(got.train) == int(want.counts.sum())
        if test is None:
            assert got.test is None
        else:
            assert torch.equal(got.test.X, test.X) and torch.equal(got.test.y, test.y)


@pytest.mark.parametrize("block", [37, 400])
def test_small_blocks_give_the_same_rows_and_line_numbers(files, tmp_path, monkeypatch, block):
    """The stream cuts the file into blocks of whole lines (some shorter than a line: 37 bytes)."""
    monkeypatch.setattr(shard_module, "BLOCK_BYTES", block)
    cfg = _cfg(files / "toy.svm", split="iid")
    full, test = _full(cfg)
    got = load_node_shard(cfg, _request(1, 2))
    want = full.shard(partition_nodes(cfg.nodes, 2)[1])
    assert torch.equal(got.node_data.X, want.X) and torch.equal(got.test.X, test.X)
    path = tmp_path / "bad.svm"
    text = (files / "toy.svm").read_text().splitlines()
    text[60] = "1 3:0.5 zz"
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(ProxGTValueError, match=r"bad\.svm line 61: cannot parse 'zz'"):
        load_node_shard(_cfg(path), _request(0, 2))


def test_sharded_build_equals_the_full_build_on_one_process(files):
    cfg = _cfg(files / "toy.svm", problem="softmax", split="sorted", batch=8)
    full = build_run(cfg)
    one = build_run(cfg, shard=_request(0, 1))
    assert torch.equal(one.node_data.X, full.node_data.X) and torch.equal(one.test.X, full.test.X)
    # L of all rows (summed in node order, not file order: equal up to rounding)
    assert one.smoothness == pytest.approx(full.smoothness, rel=1e-12) and one.step == pytest.approx(full.step)
    drop = ("smoothness_L",)
    assert {k: v for k, v in one.meta.items() if k not in drop} == {k: v for k, v in full.meta.items() if k not in drop}


def test_the_lambda_max_of_rows_split_over_processes_is_the_one_of_all_rows():
    A = torch.randn(60, 9, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    parts = [A[:25], A[25:41], A[41:]]
    seen = []

    def sum_fn(t: torch.Tensor) -> torch.Tensor:
        """Process 0's all_reduce: its term plus the other processes' terms for the same v (every process runs
        the same iteration), v recovered from A_0^T A_0 v (A_0 has full column rank)."""
        v = torch.linalg.solve(parts[0].T @ parts[0], t)
        seen.append(v)
        return t + sum(Aq.T @ (Aq @ v) for Aq in parts[1:])

    got = distributed_lambda_max_gram(parts[0], 60, sum_fn)
    assert got == pytest.approx(lambda_max_gram(A), rel=1e-9)
    assert got != pytest.approx(lambda_max_gram(parts[0]), rel=1e-3)  # not the local rows' value
    assert len(seen) > 1


def test_a_bad_line_names_the_users_file_and_line(files, tmp_path):
    path = tmp_path / "bad.svm"
    text = (files / "toy.svm").read_text().splitlines()
    text[6] = "1 3:0.5 zz"
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(ProxGTValueError, match=r"bad\.svm line 7: cannot parse 'zz'"):
        load_node_shard(_cfg(path), _request(0, 2))


def test_a_built_in_data_set_is_not_sharded():
    assert load_node_shard(_cfg("breast_cancer"), _request(0, 2)) is None


def test_uncompressed_npz_is_memory_mapped_and_compressed_read_whole(files):
    mapped = _npz_member(files / "toy.npz", "X.npy")
    whole = _npz_member(files / "toyz.npz", "X.npy")
    assert isinstance(mapped, np.memmap) and not isinstance(whole, np.memmap)
    np.testing.assert_array_equal(np.asarray(mapped), whole)


@pytest.mark.parametrize("split", ["iid", "sorted"])
def test_sparse_libsvm_shards_are_the_full_splits_rows(files, monkeypatch, split):
    """A LIBSVM file that loads as sparse CSR (wide files: here every file, by a dense limit of 0 bytes) is sharded
    like a dense one; before, cutting the CSR rows failed with "Sparse CSR tensors do not have strides"."""
    import proxgt.data._libsvm as libsvm_module

    monkeypatch.setattr(libsvm_module, "AUTO_DENSE_BYTES", 0)
    cfg = _cfg(files / "toy.svm", split=split, problem="least_squares", test_fraction=0.2, batch=8)
    full, test = _full(cfg)
    assert full.is_sparse
    world = 3
    for rank in range(world):
        got = load_node_shard(cfg, _request(rank, world))
        want = full.shard(partition_nodes(cfg.nodes, world)[rank])
        assert got.node_data.is_sparse and got.train.X.layout == torch.sparse_csr
        assert torch.equal(got.node_data.X.to_dense(), want.X.to_dense())
        assert torch.equal(got.node_data.y, want.y) and torch.equal(got.node_data.counts, want.counts)
        assert torch.equal(got.test.X.to_dense(), test.X.to_dense()) and torch.equal(got.test.y, test.y)
        assert len(got.train) == int(want.counts.sum())
    one = build_run(cfg, shard=_request(0, 1))  # the step from the rows' A^T A, sparse: the full build's
    assert one.smoothness == pytest.approx(build_run(cfg).smoothness, rel=1e-12)
