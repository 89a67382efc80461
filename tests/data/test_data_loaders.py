"""Loaders of proxgt.data: LIBSVM, npz, sklearn, IDX, Fashion-MNIST, synthetic a9a, load_dataset."""

from __future__ import annotations

import gzip
import os
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from proxgt._validation import ProxGTValueError
from proxgt.data import (
    A9A_GROUP_SIZES,
    BUILTIN_DATASETS,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    Dataset,
    load_dataset,
    load_fashion_mnist,
    load_idx,
    load_libsvm,
    load_mnist_idx,
    load_npz,
    load_sklearn,
    synthetic_a9a,
)

FASHION_DIR = Path(os.environ.get("PROXGT_FASHION_MNIST") or "/usr/share/datasets/fashion-mnist")


# ----------------------------------------------------------------------------------------------- LIBSVM


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_libsvm_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = (rng.random((20, 7)) < 0.4) * rng.normal(size=(20, 7))
    labels = rng.choice([-1, 1], size=20)
    lines = ["# header comment", ""]
    for i in range(20):
        toks = [f"{j + 1}:{float(X[i, j])!r}" for j in np.flatnonzero(X[i])]
        lines.append(f"{labels[i]:+d} " + " ".join(toks) + ("  # trailing" if i == 3 else ""))
    path = _write(tmp_path / "toy.svm", "\n".join(lines) + "\n")
    ds = load_libsvm(path, n_features=7)
    assert isinstance(ds, Dataset)
    assert ds.X.dtype == torch.float32 and ds.X.shape == (20, 7)
    np.testing.assert_allclose(ds.X.numpy(), X.astype(np.float32))
    assert ds.n_classes == 2 and ds.y.dtype == torch.int64
    assert ds.y.tolist() == ((labels + 1) // 2).tolist()  # -1/+1 -> 0/1 in sorted order
    assert ds.name == "toy" and len(ds) == 20 and ds.feature_shape == (7,) and ds.n_features == 7


def test_libsvm_width_is_max_index_and_classes_sorted(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.txt", "3 2:1.5\n7 5:2\n3 1:-1 qid:4\n10\n")
    ds = load_libsvm(path)
    assert ds.X.shape == (4, 5)
    assert ds.y.tolist() == [0, 1, 0, 2] and ds.n_classes == 3
    assert ds.X[2].tolist() == [-1, 0, 0, 0, 0]
    assert ds.X[3].abs().sum() == 0


def test_libsvm_regression_labels(tmp_path: Path) -> None:
    ds = load_libsvm(_write(tmp_path / "r.txt", "0.5 1:1\n-2.25 2:1\n3 1:2\n"))
    assert ds.n_classes == 0 and ds.y.dtype == torch.float32
    assert ds.y.tolist() == [0.5, -2.25, 3.0]


def test_libsvm_many_integer_labels_are_regression(tmp_path: Path) -> None:
    text = "".join(f"{i} 1:1\n" for i in range(1001))
    assert load_libsvm(_write(tmp_path / "r.txt", text)).n_classes == 0
    text = "".join(f"{i} 1:1\n" for i in range(1000))
    assert load_libsvm(_write(tmp_path / "c.txt", text)).n_classes == 1000


@pytest.mark.parametrize(
    ("line", "pattern"),
    [
        ("1 x:y", "line 3: cannot parse 'x:y'"),
        ("1 3", "line 3: cannot parse '3'"),
        ("1 2:", "line 3: cannot parse '2:'"),
        ("1 2:3:4", "line 3: cannot parse '2:3:4'"),
        ("abc 1:2", "line 3: cannot parse label 'abc'"),
        ("1 0:2", "line 3: feature index 0 < 1"),
        ("1 -4:2", "line 3: feature index -4 < 1"),
        ("nan 1:2", "line 3: label"),
        ("1 1:inf", "line 3: value of feature 1 is not finite"),
    ],
)
def test_libsvm_malformed_line_names_file_and_line(tmp_path: Path, line: str, pattern: str) -> None:
    path = _write(tmp_path / "data.txt", f"1 1:1\n# comment\n{line}\n0 2:1\n")
    with pytest.raises(ProxGTValueError) as info:
        load_libsvm(path)
    msg = str(info.value)
    assert pattern in msg and str(path) in msg and "\n" not in msg


def test_libsvm_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ProxGTValueError, match="does not exist"):
        load_libsvm(tmp_path / "nope.txt")
    with pytest.raises(ProxGTValueError, match="empty file"):
        load_libsvm(_write(tmp_path / "empty.txt", ""))
    with pytest.raises(ProxGTValueError, match="no data lines"):
        load_libsvm(_write(tmp_path / "comments.txt", "# only\n\n# comments\n"))
    with pytest.raises(ProxGTValueError, match="line 2: feature index 9 exceeds n_features=4"):
        load_libsvm(_write(tmp_path / "wide.txt", "1 1:1\n0 9:1\n"), n_features=4)
    with pytest.raises(ProxGTValueError, match="n_features"):
        load_libsvm(_write(tmp_path / "ok.txt", "1 1:1\n"), n_features=0)
    bad = tmp_path / "bin.txt"
    bad.write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(ProxGTValueError, match="UTF-8"):
        load_libsvm(bad)


def test_libsvm_a9a_sized_file_is_fast(tmp_path: Path) -> None:
    ds = synthetic_a9a(seed=2)
    cols = np.nonzero(ds.X.numpy())[1].reshape(len(ds), 14) + 1  # exactly 14 ones per row
    signs = (2 * ds.y.numpy() - 1).tolist()
    lines = [
        f"{sg:+d} " + " ".join(f"{c}:1" for c in row) for sg, row in zip(signs, cols.tolist(), strict=True)
    ]
    path = _write(tmp_path / "a9a", "\n".join(lines) + "\n")
    t0 = time.perf_counter()
    back = load_libsvm(path)
    elapsed = time.perf_counter() - t0
    assert torch.equal(back.X, ds.X) and torch.equal(back.y, ds.y)
    assert elapsed < 5.0  # about 0.35 s here; generous for loaded CI machines


# ------------------------------------------------------------------------------------------------- npz


def test_npz_round_trip_images_and_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(6, 1, 4, 4))
    y = np.array([5, 9, 5, 7, 9, 9])
    np.savez(tmp_path / "img.npz", X=X, y=y)
    ds = load_npz(tmp_path / "img.npz")
    assert ds.X.shape == (6, 1, 4, 4) and ds.feature_shape == (1, 4, 4) and ds.n_features == 16
    np.testing.assert_allclose(ds.X.numpy(), X.astype(np.float32))
    assert ds.y.tolist() == [0, 2, 0, 1, 2, 2] and ds.n_classes == 3 and ds.name == "img"


def test_npz_regression_and_column_labels(tmp_path: Path) -> None:
    np.savez(tmp_path / "r.npz", X=np.ones((3, 2)), y=np.array([[0.1], [0.2], [0.3]]))
    ds = load_npz(tmp_path / "r.npz")
    assert ds.n_classes == 0 and ds.y.dtype == torch.float32 and ds.y.shape == (3,)


def test_npz_errors(tmp_path: Path) -> None:
    with pytest.raises(ProxGTValueError, match="does not exist"):
        load_npz(tmp_path / "missing.npz")
    np.savez(tmp_path / "a.npz", X=np.ones((3, 2)), labels=np.ones(3))
    with pytest.raises(ProxGTValueError, match=r"missing array 'y' \(found: X, labels\)"):
        load_npz(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", X=np.ones((3, 2)), y=np.ones(4))
    with pytest.raises(ProxGTValueError, match="X has 3 rows but y has 4 labels"):
        load_npz(tmp_path / "b.npz")
    np.savez(tmp_path / "c.npz", X=np.array([["a", "b"]] * 2), y=np.ones(2))
    with pytest.raises(ProxGTValueError, match="X must be numeric"):
        load_npz(tmp_path / "c.npz")
    np.savez(tmp_path / "d.npz", X=np.ones((2, 2)), y=np.array(["u", "v"]))
    with pytest.raises(ProxGTValueError, match="y must be numeric"):
        load_npz(tmp_path / "d.npz")
    np.savez(tmp_path / "e.npz", X=np.ones((2, 2)), y=np.ones((2, 2)))
    with pytest.raises(ProxGTValueError, match="one-dimensional"):
        load_npz(tmp_path / "e.npz")
    np.savez(tmp_path / "f.npz", X=np.full((2, 2), np.nan), y=np.ones(2))
    with pytest.raises(ProxGTValueError, match="NaN or Inf"):
        load_npz(tmp_path / "f.npz")
    np.savez(tmp_path / "g.npz", X=np.ones((2, 2)), y=np.array([1, None], dtype=object))
    with pytest.raises(ProxGTValueError, match="cannot read"):
        load_npz(tmp_path / "g.npz")
    (tmp_path / "h.npz").write_bytes(b"not a zip")
    with pytest.raises(ProxGTValueError, match="h.npz: cannot read as .npz"):
        load_npz(tmp_path / "h.npz")


# --------------------------------------------------------------------------------------------- sklearn


@pytest.mark.parametrize(
    ("name", "shape", "classes"),
    [
        ("breast_cancer", (569, 30), 2),
        ("digits", (1797, 64), 10),
        ("iris", (150, 4), 3),
        ("wine", (178, 13), 3),
    ],
)
def test_sklearn_sets(name: str, shape: tuple[int, int], classes: int) -> None:
    ds = load_sklearn(name)
    assert tuple(ds.X.shape) == shape and ds.n_classes == classes and ds.name == name
    assert ds.X.dtype == torch.float32 and ds.y.dtype == torch.int64
    if name in ("breast_cancer", "wine"):
        np.testing.assert_allclose(ds.X.mean(0).numpy(), 0.0, atol=1e-5)
        np.testing.assert_allclose(ds.X.std(0, unbiased=False).numpy(), 1.0, atol=1e-4)
    if name == "digits":
        assert float(ds.X.min()) == 0.0 and float(ds.X.max()) == 1.0


def test_sklearn_unknown_name() -> None:
    with pytest.raises(ProxGTValueError, match="'name' parameter of load_sklearn must be one of"):
        load_sklearn("mnist")


# ------------------------------------------------------------------------------------------ synthetic


def test_synthetic_a9a_shape_sparsity_and_balance() -> None:
    t0 = time.perf_counter()
    ds = synthetic_a9a()
    elapsed = time.perf_counter() - t0
    assert ds.X.shape == (32561, 123) and ds.n_classes == 2 and ds.y.dtype == torch.int64
    assert sum(A9A_GROUP_SIZES) == 123 and len(A9A_GROUP_SIZES) == 14
    assert set(torch.unique(ds.X).tolist()) == {0.0, 1.0}
    assert torch.all(ds.X.sum(1) == 14)
    # exactly one per one-hot group
    start = 0
    for size in A9A_GROUP_SIZES:
        assert torch.all(ds.X[:, start : start + size].sum(1) == 1)
        start += size
    rate = float(ds.y.float().mean())
    assert 0.15 < rate < 0.35
    # skewed category frequencies: the 41-way group has a dominant category and rare ones
    freq = ds.X[:, -41:].mean(0)
    assert float(freq.max()) > 0.15 and float(freq.min()) < 0.01
    assert elapsed < 2.0  # ~0.1 s; generous for loaded machines


def test_synthetic_a9a_deterministic_per_seed() -> None:
    a, b, c = synthetic_a9a(2000, seed=5), synthetic_a9a(2000, seed=5), synthetic_a9a(2000, seed=6)
    assert torch.equal(a.X, b.X) and torch.equal(a.y, b.y)
    assert not torch.equal(a.X, c.X)


def test_synthetic_labels_are_learnable_not_noise() -> None:
    # the planted model makes labels depend on features: some feature has a clearly different positive rate
    ds = synthetic_a9a(20000, seed=0)
    pos = ds.y.float()
    on = ds.X.sum(0)
    rate_on = (ds.X * pos[:, None]).sum(0) / on.clamp(min=1)
    common = on > 1000
    spread = rate_on[common].max() - rate_on[common].min()
    assert float(spread) > 0.2


@pytest.mark.parametrize(("kw", "pattern"), [({"n_samples": 0}, "n_samples"), ({"seed": -1}, "seed")])
def test_synthetic_errors(kw: dict, pattern: str) -> None:
    with pytest.raises(ProxGTValueError, match=pattern):
        synthetic_a9a(**kw)


# ------------------------------------------------------------------------------------------------- IDX


def _idx_bytes(arr: np.ndarray, code: int) -> bytes:
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize(
    ("dtype", "code"),
    [
        (np.uint8, 0x08),
        (np.int8, 0x09),
        (np.int16, 0x0B),
        (np.int32, 0x0C),
        (np.float32, 0x0D),
        (np.float64, 0x0E),
    ],
)
def test_idx_round_trip(tmp_path: Path, dtype: type, code: int, compress: bool) -> None:
    arr = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    if dtype is np.uint8:
        arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4) * 10
    raw = _idx_bytes(arr, code)
    path = tmp_path / "blob.bin"  # name says nothing: gzip is detected by magic bytes
    path.write_bytes(gzip.compress(raw) if compress else raw)
    back = load_idx(path)
    assert back.shape == (2, 3, 4) and back.dtype == np.dtype(dtype) and back.dtype.isnative
    np.testing.assert_array_equal(back, arr)


def test_idx_truncated_and_trailing(tmp_path: Path) -> None:
    raw = _idx_bytes(np.zeros((3, 5), dtype=np.uint8), 0x08)
    (tmp_path / "t.idx").write_bytes(raw[:-4])
    with pytest.raises(ProxGTValueError) as info:
        load_idx(tmp_path / "t.idx")
    assert str(info.value) == f"{tmp_path / 't.idx'}: truncated IDX file: expected 15 bytes of data, found 11"
    (tmp_path / "t.gz").write_bytes(gzip.compress(raw[:-1]))
    with pytest.raises(ProxGTValueError, match="truncated IDX file: expected 15 bytes of data, found 14"):
        load_idx(tmp_path / "t.gz")
    (tmp_path / "h.idx").write_bytes(raw[:6])
    with pytest.raises(ProxGTValueError, match="truncated IDX file: header needs 12 bytes"):
        load_idx(tmp_path / "h.idx")
    (tmp_path / "s.idx").write_bytes(raw[:2])
    with pytest.raises(ProxGTValueError, match="truncated IDX file"):
        load_idx(tmp_path / "s.idx")
    (tmp_path / "x.idx").write_bytes(raw + b"\x00\x00")
    with pytest.raises(ProxGTValueError, match="2 bytes after"):
        load_idx(tmp_path / "x.idx")


def test_idx_bad_magic_type_and_gzip(tmp_path: Path) -> None:
    raw = _idx_bytes(np.zeros((2,), dtype=np.uint8), 0x08)
    (tmp_path / "m.idx").write_bytes(b"\x08\x03" + raw[2:])
    with pytest.raises(ProxGTValueError, match=r"m.idx: not an IDX file: magic number starts with 0x08 0x03"):
        load_idx(tmp_path / "m.idx")
    (tmp_path / "c.idx").write_bytes(raw[:2] + b"\x07" + raw[3:])
    with pytest.raises(ProxGTValueError, match="unknown IDX type code 0x07"):
        load_idx(tmp_path / "c.idx")
    (tmp_path / "z.idx").write_bytes(gzip.compress(raw)[:12])
    with pytest.raises(ProxGTValueError, match="corrupt gzip data"):
        load_idx(tmp_path / "z.idx")
    with pytest.raises(ProxGTValueError, match="does not exist"):
        load_idx(tmp_path / "none.idx")


def _write_mnist_folder(root: Path, n: int, *, gz: bool, split: str = "train") -> np.ndarray:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    labels[:10] = np.arange(10)
    for stem, arr, code in (
        (f"{split}-images-idx3-ubyte", images, 0x08),
        (f"{split}-labels-idx1-ubyte", labels, 8),
    ):
        raw = _idx_bytes(arr, code)
        if gz:
            (root / f"{stem}.gz").write_bytes(gzip.compress(raw))
        else:
            (root / stem).write_bytes(raw)
    return images


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_format_folder(tmp_path: Path, gz: bool) -> None:
    images = _write_mnist_folder(tmp_path, 12, gz=gz)
    ds = load_fashion_mnist(str(tmp_path), train=True)
    assert ds.X.shape == (12, 1, 28, 28) and ds.n_classes == 10 and ds.y.dtype == torch.int64
    expect = (images.astype(np.float32) / 255.0 - FASHION_MNIST_MEAN) / FASHION_MNIST_STD
    np.testing.assert_allclose(ds.X[:, 0].numpy(), expect, rtol=1e-5, atol=1e-5)
    generic = load_mnist_idx(tmp_path, train=True)
    np.testing.assert_allclose(
        generic.X[:, 0].numpy(), (images / 255.0 - 0.1307) / 0.3081, rtol=1e-5, atol=1e-5
    )
    assert generic.name == "mnist"


def test_fashion_mnist_env_var_and_missing_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_mnist_folder(tmp_path, 10, gz=True, split="t10k")
    monkeypatch.setenv("PROXGT_FASHION_MNIST", str(tmp_path))
    assert load_fashion_mnist(train=False).X.shape == (10, 1, 28, 28)
    with pytest.raises(ProxGTValueError) as info:
        load_fashion_mnist(train=True)  # only t10k files there
    msg = str(info.value)
    assert msg.startswith(f"Fashion-MNIST not found in {tmp_path}")
    assert (
        "apt-get install dataset-fashion-mnist" in msg
        and "--data-dir" in msg
        and "PROXGT_FASHION_MNIST" in msg
    )
    with pytest.raises(ProxGTValueError, match="Fashion-MNIST not found in"):
        load_fashion_mnist(str(tmp_path / "absent"))


def test_mnist_label_count_mismatch(tmp_path: Path) -> None:
    _write_mnist_folder(tmp_path, 12, gz=False)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(11, dtype=np.uint8), 8))
    with pytest.raises(ProxGTValueError, match="expected 12 labels"):
        load_fashion_mnist(str(tmp_path))


def _need_fashion() -> None:
    if (
        not (FASHION_DIR / "t10k-labels-idx1-ubyte.gz").exists()
        and not (FASHION_DIR / "t10k-labels-idx1-ubyte").exists()
    ):
        pytest.skip(f"Fashion-MNIST not installed in {FASHION_DIR}")


def test_fashion_mnist_installed_files_headers() -> None:
    _need_fashion()
    # the train files: read only the labels fully (60 kB) and the image header, to stay fast
    labels = load_idx(next(FASHION_DIR.glob("train-labels-idx1-ubyte*")))
    assert labels.shape == (60000,) and set(np.unique(labels).tolist()) == set(range(10))
    img_path = next(FASHION_DIR.glob("train-images-idx3-ubyte*"))
    opener = gzip.open if img_path.read_bytes()[:2] == b"\x1f\x8b" else open
    with opener(img_path, "rb") as fh:
        head = fh.read(16)
    assert head[:4] == b"\x00\x00\x08\x03" and struct.unpack(">3I", head[4:]) == (60000, 28, 28)


def test_fashion_mnist_test_split_loads() -> None:
    _need_fashion()
    ds = load_fashion_mnist(str(FASHION_DIR), train=False)
    assert ds.X.shape == (10000, 1, 28, 28) and ds.y.shape == (10000,)
    assert ds.n_classes == 10 and ds.X.dtype == torch.float32 and ds.name == "fashion-mnist"
    assert abs(float(ds.X.mean())) < 0.05 and abs(float(ds.X.std()) - 1.0) < 0.05


# -------------------------------------------------------------------------------------------- registry


def test_load_dataset_builtins() -> None:
    train, test = load_dataset("synthetic", seed=3)
    assert test is None and train.X.shape == (32561, 123)
    again, _ = load_dataset("a9a-synthetic", seed=3)
    assert torch.equal(again.X, train.X)
    iris, none = load_dataset("iris")
    assert none is None and iris.X.shape == (150, 4)
    assert set(BUILTIN_DATASETS) >= {"a9a-synthetic", "breast_cancer", "digits", "iris", "wine", "fashion-mnist"}


def test_load_dataset_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    np.savez(tmp_path / "set.npz", X=np.ones((4, 2)), y=np.array([0, 1, 0, 1]))
    _write(tmp_path / "set.libsvm", "1 1:1\n-1 2:1\n")
    _write(tmp_path / "set.libsvm.t", "1 1:1\n")
    _write(tmp_path / "plain", "1 1:1\n-1 3:1\n")
    tr, te = load_dataset(str(tmp_path / "set.npz"))
    assert te is None and tr.X.shape == (4, 2)
    tr, te = load_dataset(str(tmp_path / "set.libsvm"))
    assert te is None and tr.X.shape == (2, 2)
    tr, _ = load_dataset(str(tmp_path / "plain"))
    assert tr.X.shape == (2, 3)
    tr, _ = load_dataset("set.npz", data_dir=str(tmp_path))  # relative path under data_dir
    assert len(tr) == 4
    (tmp_path / "img.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x00"))
    with pytest.raises(ProxGTValueError, match="looks like a gzip or IDX file"):
        load_dataset(str(tmp_path / "img.gz"))
    with pytest.raises(ProxGTValueError, match="not a regular file"):
        load_dataset(str(tmp_path))


def test_load_dataset_unknown() -> None:
    with pytest.raises(ProxGTValueError) as info:
        load_dataset("no-such-set.svm")
    msg = str(info.value)
    assert "unknown dataset 'no-such-set.svm'" in msg and "does not exist" in msg
    for name in ("a9a-synthetic", "breast_cancer", "digits", "iris", "wine", "fashion-mnist"):
        assert name in msg
    with pytest.raises(ProxGTValueError, match="seed"):
        load_dataset("iris", seed=-2)


def test_load_dataset_fashion_mnist_from_data_dir(tmp_path: Path) -> None:
    _write_mnist_folder(tmp_path, 15, gz=True, split="train")
    _write_mnist_folder(tmp_path, 11, gz=False, split="t10k")
    train, test = load_dataset("fashion-mnist", data_dir=str(tmp_path))
    assert train.X.shape == (15, 1, 28, 28) and test is not None and test.X.shape == (11, 1, 28, 28)


# ----------------------------------------------------------------------------------------- containers


def test_dataset_validation() -> None:
    with pytest.raises(ProxGTValueError, match="float32"):
        Dataset(torch.zeros(3, 2, dtype=torch.float64), torch.zeros(3, dtype=torch.int64), 2, "d")
    with pytest.raises(ProxGTValueError, match="y must have shape"):
        Dataset(torch.zeros(3, 2), torch.zeros(4, dtype=torch.int64), 2, "d")
    with pytest.raises(ProxGTValueError, match="class labels must lie in 0..1"):
        Dataset(torch.zeros(3, 2), torch.tensor([0, 1, 2]), 2, "d")
    with pytest.raises(ProxGTValueError, match="regression targets"):
        Dataset(torch.zeros(3, 2), torch.tensor([0, 1, 2]), 0, "d")
    ok = Dataset(torch.zeros(3, 1, 2, 2), torch.tensor([0.5, 1.0, 2.0]), 0, "d")
    assert ok.feature_shape == (1, 2, 2) and ok.n_features == 4 and len(ok) == 3
