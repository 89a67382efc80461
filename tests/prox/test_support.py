"""The fixed-support constraint (reg = support): its prox, and its support read from an .npz (support_file or
init), for sparse fine-tuning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from proxgt.errors import ProxGTValueError
from proxgt.executors.simulation import run_simulation
from proxgt.prox import make_regularizer


def test_prox_zeroes_exactly_the_coordinates_outside_the_support():
    reg = make_regularizer("support", 0.0, support=torch.tensor([True, False, True]))
    X = torch.tensor([[1.0, 2.0, -3.0], [0.5, -0.5, 0.0]])
    assert reg.prox(X, 0.3).tolist() == [[1.0, 0.0, -3.0], [0.5, 0.0, 0.0]]
    assert reg.value(reg.prox(X, 0.3)).tolist() == [0.0, 0.0]
    assert reg.value(X).tolist() == [float("inf"), float("inf")]


def test_fine_tuning_keeps_every_zero_of_the_starting_point(tmp_path):
    base = {"data": "breast_cancer", "nodes": 4, "iters": 60, "log_every": 20, "dtype": "float64"}
    sparse = run_simulation({**base, "order": "mix-prox", "reg": "l1", "reg_strength": 0.05}, out=tmp_path / "l1")
    x = np.load(tmp_path / "l1" / "final.npz")["x"]
    pattern = (x != 0).any(axis=0)
    assert 0 < pattern.sum() < pattern.size  # the l1 phase did sparsify
    tuned = run_simulation({**base, "reg": "support", "init": str(tmp_path / "l1" / "final.npz"), "iters": 40})
    assert (tuned.x.numpy()[:, ~pattern] == 0).all()
    assert not np.allclose(tuned.x.numpy()[:, pattern], x[:, pattern])  # and trained on inside it
    assert tuned.rows[-1]["objective"] < sparse.rows[-1]["objective"]  # without the l1 penalty's shrinkage


def test_support_needs_a_file_or_an_init_and_the_right_width(tmp_path):
    with pytest.raises(ProxGTValueError, match="support_file .* or init"):
        run_simulation({"data": "breast_cancer", "nodes": 2, "reg": "support"})
    np.savez(tmp_path / "bad.npz", x=np.ones(7))
    with pytest.raises(ProxGTValueError, match=r"shape \(7,\)"):
        run_simulation({"data": "breast_cancer", "nodes": 2, "reg": "support",
                        "support_file": str(tmp_path / "bad.npz")})
