"""The restart safeguard of the SARAH estimators and the row-restricted oracle calls it uses (why the recursion
blows up on networks, and that the default sizes cure it: tests/problems/test_sarah_networks.py).

The toy problem: 1-D least squares whose per-sample curvature a_j^2 is 1 for 95% of the samples and 100 for 5%.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from proxgt._validation import ProxGTValueError
from proxgt.data import Dataset, split_nodes
from proxgt.estimators import SarahFinite, SarahOnline
from proxgt.problems import LeastSquares
from proxgt.problems.oracle import GradientOracle


def _stiff_oracle(nodes: int = 1, seed: int = 0, full_batch: bool = False) -> GradientOracle:
    g = torch.Generator().manual_seed(0)
    m = 400 * nodes
    a = torch.ones(m, 1)
    a[torch.randperm(m, generator=g)[: m // 20]] = 10.0  # curvature 100 on 5% of the samples
    y = torch.randn(m, generator=g) * a[:, 0]
    shards = split_nodes(Dataset(a, y, 0, "stiff"), nodes, "iid", seed=0)
    return GradientOracle(LeastSquares(1), shards, seed=seed, full_batch=full_batch)


def _descend(est, steps: int = 96, step: float = 0.005, full_batch: bool = False):
    """Plain x <- x - a v on one node; returns (final state, oracle)."""
    oracle = _stiff_oracle(1, full_batch=full_batch)
    X = torch.zeros(1, 1)
    V, state = est.init(oracle, X)
    for t in range(1, steps + 1):
        X_new = X - step * V
        V, state = est.update(state, oracle, X_new, X, V, t)
        X = X_new
    return state, oracle


def test_safeguard_restarts_only_the_rows_that_jump():
    """Node 1's estimate is blown up by hand: only it restarts, at its own stream's next samples, and only it
    pays; node 0 gets exactly the plain recursion and its sample stream does not move."""
    est = SarahOnline(batch=4, big_batch=32, period=10, restart=4.0)
    oracle, twin = _stiff_oracle(2, seed=3), _stiff_oracle(2, seed=3)
    X0 = torch.zeros(2, 1)
    V, state = est.init(oracle, X0)
    V_twin, _ = est.init(twin, X0)
    V_old = V.clone()
    V_old[1] *= 1e3
    X1 = X0 - 0.01 * V
    V_new, new_state = est.update(state, oracle, X1, X0, V_old, 1)
    plain = SarahOnline(batch=4, big_batch=32, period=10, restart=0.0)
    V_plain, _ = plain.update(state, twin, X1, X0, V_old, 1)
    assert new_state.restarts.tolist() == [0, 1]
    torch.testing.assert_close(V_new[0], V_plain[0])
    fresh = twin.grad(X1, twin.sample(32, np.array([False, True])), np.array([False, True]))
    torch.testing.assert_close(V_new[1], fresh[1])
    assert oracle.ifo.tolist() == [32 + 8, 32 + 8 + 32]
    assert float(new_state.ref[1]) == pytest.approx(float(fresh[1].norm()))
    assert float(new_state.ref[0]) == float(state.ref[0])
    # node 0's stream did not move for the restart: its next draws agree with an oracle that never restarted
    torch.testing.assert_close(oracle.sample(5)[0], twin.sample(5)[0])


def test_safeguard_restarts_a_non_finite_estimate():
    est = SarahFinite(batch=2, period=50, restart=4.0)
    oracle = _stiff_oracle(2)
    X0 = torch.zeros(2, 1)
    V, state = est.init(oracle, X0)
    bad = V.clone()
    bad[0] = float("nan")
    V_new, state = est.update(state, oracle, X0 + 0.01, X0, bad, 1)
    assert bool(torch.isfinite(V_new).all()) and state.restarts.tolist() == [1, 0]
    torch.testing.assert_close(V_new[0], oracle.full_loss_grad(X0 + 0.01)[1][0])


@pytest.mark.parametrize("cls", [SarahOnline, SarahFinite])
def test_safeguard_never_acts_in_deterministic_mode(cls):
    est = cls(batch=1, big_batch=256, period=32, restart=1.0) if cls is SarahOnline else cls(batch=1, period=32,
                                                                                               restart=1.0)
    state, oracle = _descend(est, full_batch=True)
    assert int(state.restarts.sum()) == 0
    assert int(oracle.ifo[0]) == 400 * (1 + 96 // 32) + 2 * 400 * (96 - 96 // 32)  # exact gradients only


def test_a_stable_recursion_is_not_restarted():
    state, oracle = _descend(SarahOnline(batch=8, big_batch=64, period=4))
    assert int(state.restarts.sum()) == 0
    assert int(oracle.ifo[0]) == 64 * (1 + 96 // 4) + 2 * 8 * (96 - 96 // 4)


def test_restart_ratio_is_validated():
    with pytest.raises(ProxGTValueError, match="restart"):
        SarahOnline(batch=1, big_batch=2, period=2, restart=-1.0)
    with pytest.raises(ProxGTValueError, match="restart"):
        SarahFinite(batch=1, period=2, restart=float("inf"))


def test_oracle_rows_draw_and_count_only_those_rows():
    oracle, twin = _stiff_oracle(3, seed=1), _stiff_oracle(3, seed=1)
    rows = np.array([True, False, True])
    idx = oracle.sample(6, rows)
    assert idx[1].tolist() == [0] * 6
    twin_idx = twin.sample(6)
    assert torch.equal(idx[rows], twin_idx[rows])
    X = torch.zeros(3, 1)
    oracle.grad(X, idx, rows)
    oracle.full_grad(X, np.array([False, True, False]))
    assert oracle.ifo.tolist() == [6, 400, 6]
    # node 1 drew nothing: its next draw is a fresh oracle's first
    assert torch.equal(oracle.sample(4)[1], _stiff_oracle(3, seed=1).sample(4)[1])
