"""LIBSVM defects (a huge feature index, an index twice on one line) and message grammar of proxgt.data."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import proxgt.data._libsvm as libsvm_mod
from proxgt._validation import ProxGTValueError
from proxgt.data import Dataset, NodeData, load_idx, load_libsvm, load_npz, split_nodes
from proxgt.data._dataset import count, make_dataset


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _error(call) -> str:
    with pytest.raises(ProxGTValueError) as info:
        call()
    msg = str(info.value)
    assert "\n" not in msg
    return msg


# ------------------------------------------------------------------------------------- huge feature index


def test_huge_feature_index_is_refused_before_allocating(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(libsvm_mod, "available_memory", lambda: 64 * 2**30)  # the 8 GiB cap binds
    path = _write(tmp_path / "wide.svm", "1 99999999999:1\n")
    msg = _error(lambda: load_libsvm(path, layout="dense"))
    assert msg == (
        f"{path} line 1: feature index 99999999999 would make a dense 1 x 99999999999 matrix (373 GiB); "
        f"layout='dense' keeps features dense (float32) and refuses more than 8 GiB; check the index, renumber "
        f"the features 1..p, or use layout='sparse'"
    )
    assert load_libsvm(path).X.shape == (1, 99999999999)  # the default keeps it sparse: one stored entry


def test_huge_index_names_its_line_and_counts_all_rows(tmp_path: Path) -> None:
    path = _write(tmp_path / "wide.svm", "1 1:1\n# note\n0 2:1 3000000000:1\n1 4:1\n")
    msg = _error(lambda: load_libsvm(path, layout="dense"))
    assert msg.startswith(f"{path} line 3: feature index 3000000000 would make a dense 3 x 3000000000 matrix")
    assert "(34 GiB)" in msg


def test_index_beyond_int64_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "wide.svm", "1 1:1\n-1 123456789012345678901234567890:1\n")
    msg = _error(lambda: load_libsvm(path))
    assert f"{path} line 2: feature index 123456789012345678901234567890 would make a dense 2 x " in msg
    path = _write(tmp_path / "neg.svm", "1 1:1\n-1 -123456789012345678901234567890:1\n")
    msg = _error(lambda: load_libsvm(path))
    assert msg == f"{path} line 2: feature index -123456789012345678901234567890 < 1 (LIBSVM indices are 1-based)"


def test_huge_n_features_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "ok.svm", "1 1:1\n0 2:1\n")
    msg = _error(lambda: load_libsvm(path, n_features=10**12, layout="dense"))
    assert msg.startswith(f"{path}: n_features=1000000000000 would make a dense 2 x 1000000000000 matrix (7,451 GiB)")
    assert msg.endswith("pass a smaller n_features, or layout='sparse'")


def test_dense_cap_and_available_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "d.svm", "1 1:1\n0 300:1\n")  # 2 x 300 float32 = 2400 bytes
    monkeypatch.setattr(libsvm_mod, "MAX_DENSE_BYTES", 2400)
    assert load_libsvm(path, layout="dense").X.shape == (2, 300)  # exactly at the cap: accepted
    monkeypatch.setattr(libsvm_mod, "MAX_DENSE_BYTES", 2399)
    assert "line 2: feature index 300 would make a dense 2 x 300 matrix" in _error(
        lambda: load_libsvm(path, layout="dense"))
    monkeypatch.setattr(libsvm_mod, "MAX_DENSE_BYTES", 8 * 2**30)
    monkeypatch.setattr(libsvm_mod, "available_memory", lambda: 1000)
    msg = _error(lambda: load_libsvm(path, layout="dense"))
    assert "refuses more than the 1000 bytes of memory available" in msg
    monkeypatch.setattr(libsvm_mod, "available_memory", lambda: None)
    assert load_libsvm(path, layout="dense").X.shape == (2, 300)


def test_available_memory_is_a_positive_number_or_unknown() -> None:
    avail = libsvm_mod.available_memory()
    assert avail is None or avail > 0


# ------------------------------------------------------------------------------------------ duplicates


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 3:1 3:2\n", "line 1: feature index 3 appears twice; each index may appear once per line"),
        ("1 1:1\n# c\n0 2:1 5:1 2:3 2:4\n", "line 3: feature index 2 appears 3 times; each index may appear once"),
        ("1 1:1\n0 qid:3 4:1 4:1\n", "line 2: feature index 4 appears twice"),  # the checked parser
    ],
)
def test_duplicate_index_on_a_line_is_refused(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path / "dup.svm", text)
    msg = _error(lambda: load_libsvm(path))
    assert msg.startswith(str(path)) and expected in msg


def test_same_index_on_different_lines_is_fine(tmp_path: Path) -> None:
    ds = load_libsvm(_write(tmp_path / "ok.svm", "1 3:1 1:2\n0 3:2 1:1\n"))
    assert ds.X.tolist() == [[2.0, 0.0, 1.0], [1.0, 0.0, 2.0]]


# -------------------------------------------------------------------------------------- message grammar


def test_count_helper() -> None:
    assert [count(n, "label") for n in (0, 1, 2)] == ["0 labels", "1 label", "2 labels"]
    assert count(1, "node id") == "1 node id" and count(3, "index", "indices") == "3 indices"


def _idx_bytes(arr: np.ndarray) -> bytes:
    return struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def test_messages_use_singular_for_one(tmp_path: Path) -> None:
    msg = _error(lambda: make_dataset(np.ones((1, 2)), np.array([0, 1]), "d", "here"))
    assert "X has 1 row but y has 2 labels" in msg
    msg = _error(lambda: make_dataset(np.ones((2, 2)), np.array([0]), "d", "here"))
    assert "X has 2 rows but y has 1 label" in msg
    one = Dataset(torch.zeros(1, 2), torch.zeros(1, dtype=torch.int64), 1, "one")
    assert "cannot split 1 sample over 2 nodes" in _error(lambda: split_nodes(one, 2))
    two = Dataset(torch.zeros(2, 2), torch.tensor([0, 1]), 2, "two")
    assert "cannot cut 2 samples into 3 shards" in _error(lambda: split_nodes(two, 1, "shards", classes_per_node=3))
    assert "cannot cut 1 sample into 2 shards" in _error(lambda: split_nodes(one, 1, "shards"))
    msg = _error(lambda: NodeData(torch.zeros(2, 1, 1), torch.zeros(2, 1, dtype=torch.int64),
                                  torch.ones(2, dtype=torch.int64), 1, (0,)))
    assert "1 node id given for 2 nodes" in msg
    np.savez(tmp_path / "none.npz", a=np.ones(2))
    assert "missing arrays 'X', 'y' (found: a)" in _error(lambda: load_npz(tmp_path / "none.npz"))
    np.savez(tmp_path / "nox.npz", y=np.ones(2))
    assert "missing array 'X' (found: y)" in _error(lambda: load_npz(tmp_path / "nox.npz"))
    (tmp_path / "short").write_bytes(b"\x00")
    assert "truncated IDX file: 1 byte, shorter" in _error(lambda: load_idx(tmp_path / "short"))
    (tmp_path / "hdr").write_bytes(b"\x00\x00\x08\x01\x00")
    assert "header needs 8 bytes for 1 dimension, found 5" in _error(lambda: load_idx(tmp_path / "hdr"))
    (tmp_path / "data").write_bytes(struct.pack(">BBBBI", 0, 0, 0x08, 1, 1))
    assert "expected 1 byte of data, found 0" in _error(lambda: load_idx(tmp_path / "data"))
    (tmp_path / "tail").write_bytes(_idx_bytes(np.zeros(1, dtype=np.uint8)) + b"\x00")
    assert "IDX file has 1 byte after the 1 byte of data" in _error(lambda: load_idx(tmp_path / "tail"))
    (tmp_path / "tail.gz").write_bytes(gzip.compress(_idx_bytes(np.zeros(2, dtype=np.uint8)) + b"\x00\x00"))
    assert "IDX file has 2 bytes after the 2 bytes of data" in _error(lambda: load_idx(tmp_path / "tail.gz"))


def test_image_folder_label_count_message(tmp_path: Path) -> None:
    from proxgt.data import load_mnist_idx

    (tmp_path / "train-images-idx3-ubyte").write_bytes(_idx_bytes(np.zeros((2, 28, 28), dtype=np.uint8)))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(1, dtype=np.uint8)))
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(_idx_bytes(np.zeros((1, 28, 28), dtype=np.uint8)))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(2, dtype=np.uint8)))
    assert "expected 2 labels to match" in _error(lambda: load_mnist_idx(str(tmp_path), train=True))
    assert "expected 1 label to match" in _error(lambda: load_mnist_idx(str(tmp_path), train=False))
