"""``load_dataset`` looks built-in names up in ``proxgt.registry.DATASETS``; other names are file paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import proxgt.data._load as load_mod
from proxgt._validation import ProxGTValueError
from proxgt.data import BUILTIN_DATASETS, Dataset, load_dataset
from proxgt.errors import UnknownNameError
from proxgt.registry import DATASETS, Registry

BUILTINS = ("a9a-synthetic", "breast_cancer", "digits", "iris", "wine", "fashion-mnist", "a9a", "rcv1-synthetic")


def test_builtins_are_registered_with_summaries_and_aliases() -> None:
    assert tuple(DATASETS.names()[: len(BUILTINS)]) == BUILTINS
    assert BUILTIN_DATASETS == BUILTINS
    for name in BUILTINS:
        assert DATASETS.summary(name)
        assert callable(DATASETS.get(name))
    assert DATASETS.canonical("synthetic") == "a9a-synthetic"
    assert DATASETS.canonical("fashion_mnist") == "fashion-mnist"
    with pytest.raises(UnknownNameError, match="'nope'"):
        DATASETS.canonical("nope")


def test_registered_loader_signature() -> None:
    train, test = DATASETS.get("iris")(seed=5, data_dir=None)
    assert test is None and train.X.shape == (150, 4) and train.name == "iris"
    train, test = DATASETS.get("synthetic")(seed=1, data_dir="/nowhere")
    assert test is None and train.X.shape == (32561, 123)


def test_names_are_case_and_dash_insensitive() -> None:
    a, _ = load_dataset("IRIS")
    b, _ = load_dataset("Breast-Cancer")
    assert a.X.shape == (150, 4) and b.X.shape == (569, 30)


def _toy_loader(*, seed: int, data_dir: str | None) -> tuple[Dataset, Dataset]:
    X = torch.full((3, 2), float(seed))
    y = torch.tensor([0, 1, 0])
    return Dataset(X, y, 2, f"toy:{data_dir}"), Dataset(X[:1], y[:1], 2, "toy-test")


def test_load_dataset_uses_the_registry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    reg: Registry = Registry("data set", "data")
    reg.register("toy", _toy_loader, aliases=("tiny",), summary="three rows")
    monkeypatch.setattr(load_mod, "DATASETS", reg)
    train, test = load_dataset("tiny", seed=4, data_dir="somewhere")
    assert train.name == "toy:somewhere" and float(train.X[0, 0]) == 4.0
    assert test is not None and len(test) == 1
    # a name the registry does not know is a file path; the message lists the registry's names
    with pytest.raises(ProxGTValueError) as info:
        load_dataset("iris")
    msg = str(info.value)
    assert msg == "unknown dataset 'iris': not a built-in name (toy) and file 'iris' does not exist"
    np.savez(tmp_path / "iris", X=np.ones((2, 2)), y=np.array([0, 1]))
    tr, te = load_dataset("iris.npz", data_dir=str(tmp_path))
    assert te is None and tr.X.shape == (2, 2)


def test_registered_names_win_over_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "iris").write_text("1 1:1\n")
    monkeypatch.chdir(tmp_path)
    train, _ = load_dataset("iris")
    assert train.X.shape == (150, 4)


def test_a_loader_that_returns_the_wrong_thing(monkeypatch: pytest.MonkeyPatch) -> None:
    reg: Registry = Registry("data set", "data")
    reg.register("bad", lambda *, seed, data_dir: "oops")
    reg.register("half", lambda *, seed, data_dir: (None, None))
    monkeypatch.setattr(load_mod, "DATASETS", reg)
    with pytest.raises(ProxGTValueError, match=r"data set 'bad' must return \(train Dataset, test Dataset or "
                                                r"None\); it returned str"):
        load_dataset("bad")
    with pytest.raises(ProxGTValueError, match=r"it returned \(NoneType, NoneType\)"):
        load_dataset("half")


def test_the_old_module_name_is_gone() -> None:
    import importlib.util

    assert importlib.util.find_spec("proxgt.data._registry") is None  # it is no registry: see data/_load.py
    assert importlib.util.find_spec("proxgt.data._load") is not None
