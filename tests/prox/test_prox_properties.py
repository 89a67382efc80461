"""Property-based checks of the regularizers in proxgt.prox (hypothesis).

* prox is firmly nonexpansive: ||P - Q||^2 <= <P - Q, X - Z> (hence nonexpansive);
* prox is the argmin: no comparison point (random, or a small move away from the output) does better;
* row-wise: the prox of a stacked (k, d) tensor equals the prox of each row alone;
* masks and unregularized group coordinates pass through untouched;
* projections land in their sets and are idempotent; indicator values are +inf outside and 0 inside.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from proxgt.prox import (
    L1,
    Box,
    ElasticNet,
    GroupLasso,
    L1Ball,
    L2Ball,
    L2Squared,
    NonNegative,
    NoReg,
)

D = 6
MASK = torch.tensor([True, True, False, True, False, True])
BOX_LO = [-1.0, -2.0, 0.0, -0.5, -3.0, -math.inf]
BOX_UP = [1.0, 2.0, 0.5, 0.5, 3.0, 1.0]

REGS = {
    "none": NoReg(),
    "l1": L1(0.7),
    "l1_mask": L1(0.7, mask=MASK),
    "l2sq": L2Squared(1.3),
    "l2sq_mask": L2Squared(1.3, mask=MASK),
    "enet_mask": ElasticNet(0.9, l1_ratio=0.6, mask=MASK),
    "gl_ids": GroupLasso(0.5, groups=[0, 0, 1, 1, -1, 2]),
    "gl_blocks": GroupLasso(0.5, group_size=2),
    "gl_ragged": GroupLasso(0.5, group_size=4),
    "gl_lists": GroupLasso(0.5, groups=[[0, 3], [1]], weights=[1.0, 0.25]),
    "nonneg": NonNegative(),
    "box": Box(-1.0, 0.5),
    "box_vec": Box(BOX_LO, BOX_UP),
    "l2_ball": L2Ball(1.5),
    "l1_ball": L1Ball(2.0),
}
PROJECTIONS = ["nonneg", "box", "box_vec", "l2_ball", "l1_ball"]
UNREGULARIZED = {  # coordinates every prox must leave untouched
    "l1_mask": ~MASK,
    "l2sq_mask": ~MASK,
    "enet_mask": ~MASK,
    "gl_ids": torch.tensor([False, False, False, False, True, False]),
    "gl_lists": torch.tensor([False, False, True, False, True, True]),
}

FAST = settings(max_examples=25, deadline=None, derandomize=True)

coord = st.floats(-10.0, 10.0, allow_nan=False, allow_subnormal=False)
steps = st.floats(1e-3, 20.0, allow_nan=False)


def mats(k):
    return arrays(np.float64, (k, D), elements=coord).map(torch.from_numpy)


def _rowdot(A, B):
    return (A * B).sum(dim=1)


@pytest.mark.parametrize("key", sorted(REGS))
@FAST
@given(X=mats(3), Z=mats(3), t=steps)
def test_firmly_nonexpansive(key, X, Z, t):
    reg = REGS[key]
    P, Q = reg.prox(X, t), reg.prox(Z, t)
    dP, dX = P - Q, X - Z
    sq = _rowdot(dP, dP)
    tol = 1e-9 * (1.0 + _rowdot(dX, dX))
    assert (sq <= _rowdot(dP, dX) + tol).all()
    assert (torch.linalg.vector_norm(dP, dim=1) <= torch.linalg.vector_norm(dX, dim=1) + 1e-9).all()


@pytest.mark.parametrize("key", sorted(REGS))
@FAST
@given(X=mats(2), U=mats(2), t=steps, seed=st.integers(0, 2**16))
def test_prox_beats_comparison_points(key, X, U, t, seed):
    """phi(u) = h(u) + ||u - x||^2 / (2 t) is minimal at prox(x): compare with random points and small moves."""
    reg = REGS[key]
    P = reg.prox(X, t)

    def phi(V):
        return reg.value(V) + _rowdot(V - X, V - X) / (2 * t)

    base = phi(P)
    assert torch.isfinite(base).all()
    gen = torch.Generator().manual_seed(seed)
    for scale in (1e-3, 1e-1):
        V = P + scale * torch.randn(P.shape, generator=gen, dtype=P.dtype)
        if key in PROJECTIONS:
            V = reg.prox(V, 1.0)  # keep comparison points feasible
        assert (base <= phi(V) + 1e-9 * (1 + base.abs())).all()
    assert (base <= phi(U) + 1e-9 * (1 + base.abs())).all()


@pytest.mark.parametrize("key", sorted(REGS))
@FAST
@given(X=mats(4), t=steps)
def test_rowwise(key, X, t):
    reg = REGS[key]
    P, v = reg.prox(X, t), reg.value(X)
    for i in range(X.shape[0]):
        assert torch.allclose(reg.prox(X[i : i + 1], t)[0], P[i], rtol=1e-13, atol=1e-13)
        vi = reg.value(X[i : i + 1])[0]
        assert vi == v[i] or torch.isclose(vi, v[i], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("key", sorted(UNREGULARIZED))
@FAST
@given(X=mats(3), Y=mats(3), t=steps)
def test_unregularized_coordinates_untouched(key, X, Y, t):
    reg, free = REGS[key], UNREGULARIZED[key]
    P = reg.prox(X, t)
    assert torch.equal(P[:, free], X[:, free])
    # value does not depend on the unregularized coordinates
    X2 = torch.where(free, Y, X)
    assert torch.allclose(reg.value(X2), reg.value(X), rtol=1e-14, atol=0)


@pytest.mark.parametrize("key", PROJECTIONS)
@FAST
@given(X=mats(3), t=steps)
def test_projection_lands_in_set_and_is_idempotent(key, X, t):
    reg = REGS[key]
    P = reg.prox(X, t)
    assert (reg.value(P) == 0).all()
    assert torch.allclose(reg.prox(P, t), P, rtol=0, atol=1e-12)
    # a projection does not depend on the step
    assert torch.equal(reg.prox(X, 1.0), P)


def _distance_outside(key, x):
    """How far outside the set the point x is (<= 0 inside; the margin to the boundary when negative)."""
    if key == "nonneg":
        return float(-x.min())
    if key == "box":
        return float(torch.maximum(-1.0 - x, x - 0.5).max())
    if key == "box_vec":
        lo, up = torch.tensor(BOX_LO, dtype=x.dtype), torch.tensor(BOX_UP, dtype=x.dtype)
        return float(torch.maximum(lo - x, x - up).max())
    if key == "l2_ball":
        return float(torch.linalg.vector_norm(x) - 1.5)
    if key == "l1_ball":
        return float(x.abs().sum() - 2.0)
    raise AssertionError(key)


@pytest.mark.parametrize("key", PROJECTIONS)
@FAST
@given(X=arrays(np.float64, (1, D), elements=st.floats(-3.0, 3.0)).map(torch.from_numpy), shrink=st.floats(0, 1))
def test_indicator_value_inside_and_outside(key, X, shrink):
    reg = REGS[key]
    X = X * shrink if key in ("l2_ball", "l1_ball") else X  # reach the inside of the balls too
    dist = _distance_outside(key, X[0])
    assume(abs(dist) > 1e-4)
    value = float(reg.value(X)[0])
    assert value == (math.inf if dist > 0 else 0.0)


@pytest.mark.parametrize("key", sorted(REGS))
@settings(max_examples=10, deadline=None, derandomize=True)
@given(X=mats(2), t=steps)
def test_float32_matches_float64(key, X, t):
    reg = REGS[key]
    P64 = reg.prox(X, t)
    P32 = reg.prox(X.float(), t)
    assert P32.dtype == torch.float32
    assert torch.allclose(P32.double(), P64, rtol=1e-5, atol=1e-4)
    assert torch.isfinite(reg.value(P32)).all()


@pytest.mark.parametrize("key", ["l2_ball", "l1_ball"])
@settings(max_examples=10, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**16), d=st.integers(1, 3000), scale=st.floats(1e-3, 1e3))
def test_float32_ball_projection_is_feasible_in_high_dimension(key, seed, d, scale):
    reg = L2Ball(1.5) if key == "l2_ball" else L1Ball(2.0)
    gen = torch.Generator().manual_seed(seed)
    X = scale * torch.randn(3, d, generator=gen)
    P = reg.prox(X, 1.0)
    assert P.dtype == torch.float32 and torch.isfinite(reg.value(P)).all()
