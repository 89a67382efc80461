"""The data set ``a9a``: LIBSVM's a9a rebuilt from the UCI Adult files that ship inside the package.

The figures checked here are the ones the recipe is known to give (32,561 x 123, 13.869 ones per row, 24.08%
positive, about 84.97% test accuracy for scikit-learn's default logistic regression); the raw files are read
independently (csv) to check the features row by row.
"""

from __future__ import annotations

import csv
import gzip
import io
import time
import tomllib
import warnings
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch

import proxgt
import proxgt.data._adult as adult
from proxgt._validation import ProxGTValueError
from proxgt.data import A9A_GROUP_SIZES, load_dataset
from proxgt.registry import DATASETS

ROOT = Path(__file__).resolve().parents[2]
N_TRAIN, N_TEST, N_FEATURES = 32561, 16281, 123
# where each attribute's block starts and ends (a9a's layout, the same as the synthetic stand-in's)
BOUNDS = np.cumsum((0, *A9A_GROUP_SIZES))


@pytest.fixture(scope="module")
def a9a():
    return adult.load_a9a(seed=0)


def _shipped(name: str) -> bytes:
    return gzip.decompress(resources.files("proxgt.data").joinpath("adult", f"{name}.gz").read_bytes())


def _raw_rows(name: str) -> list[list[str]]:
    text = _shipped(name).decode()
    rows = [[f.strip() for f in r] for r in csv.reader(io.StringIO(text)) if r and not r[0].startswith("|")]
    assert all(len(r) == 15 for r in rows)
    return rows


def _block(X: torch.Tensor, j: int) -> np.ndarray:
    return X[:, BOUNDS[j] : BOUNDS[j + 1]].numpy()


# ----------------------------------------------------------------------------------------------- shipped files


def test_files_ship_in_the_package() -> None:
    folder = resources.files("proxgt.data").joinpath("adult")
    sizes = {name: len(folder.joinpath(name).read_bytes()) for name in ("adult.data.gz", "adult.test.gz")}
    assert all(100_000 < s < 1_000_000 for s in sizes.values()), sizes
    notice = folder.joinpath("NOTICE.md").read_text()
    assert "Kohavi" in notice and "Becker" in notice and "CC BY 4.0" in notice
    assert len(_shipped("adult.data").splitlines()) >= N_TRAIN
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert {"data/adult/*.gz", "data/adult/*.md"} <= set(package_data["proxgt"])


# ----------------------------------------------------------------------------------------------- the figures


def test_shapes_dtypes_and_labels(a9a) -> None:
    train, test = a9a
    assert train.X.shape == (N_TRAIN, N_FEATURES) and test.X.shape == (N_TEST, N_FEATURES)
    for ds in (train, test):
        assert ds.X.dtype == torch.float32 and ds.y.dtype == torch.int64
        assert ds.n_classes == 2 and ds.name == "a9a"
        assert set(ds.y.unique().tolist()) == {0, 1}
    assert round(100 * train.y.double().mean().item(), 2) == 24.08
    assert round(100 * test.y.double().mean().item(), 2) == 23.62


def test_labels_follow_the_raw_files(a9a) -> None:
    train, test = a9a
    for ds, name in ((train, "adult.data"), (test, "adult.test")):
        raw = np.array([r[14].rstrip(".") == ">50K" for r in _raw_rows(name)], dtype=np.int64)
        assert np.array_equal(ds.y.numpy(), raw)


def test_binary_features_and_nonzeros_per_row(a9a) -> None:
    train, test = a9a
    for ds in (train, test):
        assert bool(((ds.X == 0) | (ds.X == 1)).all())
    nnz = train.X.sum(dim=1).double()
    assert f"{nnz.mean().item():.3f}" == "13.869"
    # one 1 per attribute, less one per missing value of the row
    for ds, name in ((train, "adult.data"), (test, "adult.test")):
        missing = np.array([r[:14].count("?") for r in _raw_rows(name)])
        assert np.array_equal(ds.X.sum(dim=1).numpy().astype(np.int64), 14 - missing)


def test_attribute_blocks(a9a) -> None:
    train, test = a9a
    raw = _raw_rows("adult.data")
    assert [n for n, _ in adult.ADULT_ATTRIBUTES][0] == "age" and len(adult.ADULT_ATTRIBUTES) == 14
    assert BOUNDS[-1] == N_FEATURES
    for j, (attribute, kind) in enumerate(adult.ADULT_ATTRIBUTES):
        for ds in (train, test):
            per_row = _block(ds.X, j).sum(axis=1)
            assert per_row.max() <= 1, attribute  # at most one 1 per attribute and row
            if kind != "category":
                assert per_row.min() == 1, attribute
        values = [r[j] for r in raw]
        got = _block(train.X, j)
        if kind == "category":
            categories = sorted(set(values) - {"?"})
            assert len(categories) == got.shape[1], attribute
            expect = np.array([categories.index(v) if v != "?" else -1 for v in values])
            assert np.array_equal(np.where(got.any(axis=1), got.argmax(axis=1), -1), expect), attribute
        elif kind == "nonzero":
            assert np.array_equal(got.argmax(axis=1), (np.array(values, dtype=float) != 0).astype(int)), attribute
        else:
            x = np.array(values, dtype=float)
            edges = np.quantile(x, [0.2, 0.4, 0.6, 0.8])
            assert np.array_equal(got.argmax(axis=1), np.searchsorted(edges, x, side="right")), attribute
    # fnlwgt is continuous: its five quantile bins hold a fifth of the training rows each
    assert np.allclose(_block(train.X, 2).mean(axis=0), 0.2, atol=1e-3)
    # Holand-Netherlands occurs once in adult.data and never in adult.test: its test column is all zeros
    assert _block(test.X, 13).sum(axis=0).min() == 0


def test_logistic_regression_reaches_the_known_accuracy(a9a) -> None:
    from sklearn.linear_model import LogisticRegression

    train, test = a9a
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a ConvergenceWarning would not change the check
        model = LogisticRegression().fit(train.X.numpy(), train.y.numpy())
    accuracy = 100 * model.score(test.X.numpy(), test.y.numpy())
    assert abs(accuracy - 84.97) <= 0.5, accuracy
    assert abs(100 * model.score(train.X.numpy(), train.y.numpy()) - 84.94) <= 0.5


def test_short_decentralized_run_on_a9a(tmp_path: Path) -> None:
    hist = proxgt.run({"data": "a9a", "nodes": 4, "iters": 300, "log_every": 100, "seed": 0}, out=tmp_path / "run")
    assert hist.rows[-1]["iter"] == 300
    assert hist.rows[-1]["test_accuracy"] > 0.80


# ----------------------------------------------------------------------------------------------- loading


def test_registered_and_loaded_by_name() -> None:
    assert "a9a" in DATASETS and DATASETS.canonical("A9A") == "a9a"
    assert "UCI Adult" in DATASETS.summary("a9a")
    train, test = load_dataset("a9a", seed=3)
    assert test is not None and train.X.shape == (N_TRAIN, N_FEATURES) and test.X.shape == (N_TEST, N_FEATURES)


def test_loads_are_cached_and_independent(a9a) -> None:
    t = time.perf_counter()
    again, _ = adult.load_a9a(seed=1)
    assert time.perf_counter() - t < 0.5
    assert torch.equal(again.X, a9a[0].X) and torch.equal(again.y, a9a[0].y)
    again.X[0, 0] = 7.0  # a caller changing its copy leaves the next load untouched
    third, _ = adult.load_a9a(seed=2)
    assert float(third.X[0, 0]) == float(a9a[0].X[0, 0]) != 7.0


def test_data_dir_with_uncompressed_files(a9a, tmp_path: Path) -> None:
    (tmp_path / "adult.data").write_bytes(_shipped("adult.data"))
    (tmp_path / "adult.test.gz").write_bytes(gzip.compress(_shipped("adult.test")))
    train, test = adult.load_a9a(seed=0, data_dir=str(tmp_path))
    assert torch.equal(train.X, a9a[0].X) and torch.equal(test.X, a9a[1].X) and torch.equal(test.y, a9a[1].y)
    # a folder holding neither file: the shipped copies
    empty = tmp_path / "empty"
    empty.mkdir()
    train, _ = adult.load_a9a(seed=0, data_dir=str(empty))
    assert train.X.shape == (N_TRAIN, N_FEATURES)
    # one file without the other is refused
    one = tmp_path / "one"
    one.mkdir()
    (one / "adult.data").write_bytes(b"")
    with pytest.raises(ProxGTValueError, match="holds adult.data but not adult.test"):
        adult.load_a9a(seed=0, data_dir=str(one))


def test_malformed_files_name_the_line(tmp_path: Path) -> None:
    good = "39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 2174, 0, 40"
    (tmp_path / "adult.test").write_text(f"|1x3 Cross validator\n{good}, United-States, >50K.\n")
    (tmp_path / "adult.data").write_text(f"{good}, United-States, <=50K\n{good}, >50K\n")
    with pytest.raises(ProxGTValueError, match=r"adult.data line 2: expected 15 comma-separated fields.*got 14"):
        adult.load_a9a(seed=0, data_dir=str(tmp_path))
    (tmp_path / "adult.data").write_text(f"{good}, United-States, <=50K\n{good}, United-States, maybe\n")
    with pytest.raises(ProxGTValueError, match="adult.data line 2: the label must be"):
        adult.load_a9a(seed=0, data_dir=str(tmp_path))
    (tmp_path / "adult.data").write_text(f"{good}, United-States, <=50K\n{good.replace('39', '?')}, Cuba, >50K\n")
    with pytest.raises(ProxGTValueError, match="adult.data line 2: attribute 'age' must be a number, got '\\?'"):
        adult.load_a9a(seed=0, data_dir=str(tmp_path))
    # a small well-formed pair loads: features fitted on the two training rows
    (tmp_path / "adult.data").write_text(f"{good}, United-States, <=50K\n\n{good}, Cuba, >50K\n")
    train, test = adult.load_a9a(seed=0, data_dir=str(tmp_path))
    assert train.y.tolist() == [0, 1] and test.y.tolist() == [1] and train.X.shape[1] == test.X.shape[1]
