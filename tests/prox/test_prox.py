"""Regularizers of proxgt.prox checked against their definitions.

* ``value`` against independent numpy formulas;
* ``prox`` against a brute-force argmin of ``h(u) + ||u - x||^2 / (2 t)`` on a two-level grid (d = 1, 2);
* the Moreau identity ``x = prox_{t h}(x) + t prox_{h*/t}(x / t)`` with independently coded conjugate proxes;
* API contract (purity, dtype, shapes), validation messages and the factory.

Property-based checks (nonexpansiveness, projections, row-wise, masks) are in test_prox_properties.py.
"""

from __future__ import annotations

import dataclasses
import doctest
import importlib
import math
import pickle

import numpy as np
import pytest
import torch

from proxgt._validation import ProxGTValueError
from proxgt.prox import (
    L1,
    REGULARIZER_NAMES,
    Box,
    ElasticNet,
    GroupLasso,
    L1Ball,
    L2Ball,
    L2Squared,
    NonNegative,
    NoReg,
    Regularizer,
    make_regularizer,
)

# ------------------------------------------------------------------------------------------------------------
# Independent reference implementations of h (numpy, one point at a time or on a grid of points (N, d))
# ------------------------------------------------------------------------------------------------------------

FEAS_TOL = 1e-9


def _groups_as_lists(ids):
    ids = list(ids)
    labels = sorted({g for g in ids if g >= 0})
    return [[j for j, g in enumerate(ids) if g == lab] for lab in labels]


def ref_h(spec, U):
    """h evaluated on each row of U (N, d), from the textbook formulas; spec = (kind, params)."""
    kind, p = spec
    U = np.atleast_2d(np.asarray(U, dtype=np.float64))
    N, d = U.shape
    mask = np.ones(d, bool) if p.get("mask") is None else np.asarray(p["mask"], bool)
    if kind == "none":
        return np.zeros(N)
    if kind == "l1":
        return p["lam"] * np.abs(U[:, mask]).sum(1)
    if kind == "l2sq":
        return 0.5 * p["lam"] * (U[:, mask] ** 2).sum(1)
    if kind == "elastic_net":
        a, r = p["lam"], p["l1_ratio"]
        Um = U[:, mask]
        return a * (r * np.abs(Um).sum(1) + 0.5 * (1 - r) * (Um**2).sum(1))
    if kind == "group_lasso":
        lists = p["lists"]
        w = p.get("weights") or [math.sqrt(len(g)) for g in lists]
        return p["lam"] * sum(wg * np.linalg.norm(U[:, g], axis=1) for wg, g in zip(w, lists, strict=True))
    inf = np.full(N, np.inf)
    if kind == "nonneg":
        return np.where((U >= -FEAS_TOL).all(1), 0.0, inf)
    if kind == "box":
        lo, up = np.broadcast_to(p["lower"], (d,)), np.broadcast_to(p["upper"], (d,))
        return np.where(((U >= lo - FEAS_TOL) & (U <= up + FEAS_TOL)).all(1), 0.0, inf)
    if kind == "l2_ball":
        return np.where(np.linalg.norm(U, axis=1) <= p["radius"] + FEAS_TOL, 0.0, inf)
    if kind == "l1_ball":
        return np.where(np.abs(U).sum(1) <= p["radius"] + FEAS_TOL, 0.0, inf)
    raise AssertionError(kind)


def build(spec):
    kind, p = spec
    if kind == "none":
        return NoReg()
    if kind == "l1":
        return L1(p["lam"], mask=None if p.get("mask") is None else torch.tensor(p["mask"]))
    if kind == "l2sq":
        return L2Squared(p["lam"], mask=None if p.get("mask") is None else torch.tensor(p["mask"]))
    if kind == "elastic_net":
        m = None if p.get("mask") is None else torch.tensor(p["mask"])
        return ElasticNet(p["lam"], l1_ratio=p["l1_ratio"], mask=m)
    if kind == "group_lasso":
        return GroupLasso(p["lam"], groups=p["groups"], weights=p.get("weights"))
    if kind == "nonneg":
        return NonNegative()
    if kind == "box":
        return Box(p["lower"], p["upper"])
    if kind == "l2_ball":
        return L2Ball(p["radius"])
    if kind == "l1_ball":
        return L1Ball(p["radius"])
    raise AssertionError(kind)


def gl(lam, groups, weights=None):
    return ("group_lasso", {"lam": lam, "groups": groups, "lists": _groups_as_lists(groups), "weights": weights})


SPECS_1D = {
    "none": ("none", {}),
    "l1": ("l1", {"lam": 0.8}),
    "l2sq": ("l2sq", {"lam": 1.3}),
    "enet": ("elastic_net", {"lam": 1.1, "l1_ratio": 0.4}),
    "gl1": gl(0.9, [0]),
    "nonneg": ("nonneg", {}),
    "box": ("box", {"lower": -0.7, "upper": 1.2}),
    "l2ball": ("l2_ball", {"radius": 0.9}),
    "l1ball": ("l1_ball", {"radius": 1.4}),
}

SPECS_2D = {
    "none": ("none", {}),
    "l1": ("l1", {"lam": 0.6}),
    "l1_mask": ("l1", {"lam": 0.6, "mask": [True, False]}),
    "l2sq": ("l2sq", {"lam": 0.9}),
    "l2sq_mask": ("l2sq", {"lam": 0.9, "mask": [False, True]}),
    "enet": ("elastic_net", {"lam": 0.8, "l1_ratio": 0.7}),
    "enet_mask": ("elastic_net", {"lam": 0.8, "l1_ratio": 0.3, "mask": [True, False]}),
    "gl_one": gl(0.7, [0, 0]),
    "gl_two": gl(0.7, [3, 1]),
    "gl_partial": gl(0.7, [0, -1]),
    "gl_weights": gl(0.5, [0, 0], weights=[2.0]),
    "nonneg": ("nonneg", {}),
    "box": ("box", {"lower": -0.5, "upper": 1.0}),
    "box_vec": ("box", {"lower": [-1.0, 0.2], "upper": [0.5, 2.0]}),
    "l2ball": ("l2_ball", {"radius": 1.1}),
    "l1ball": ("l1_ball", {"radius": 1.3}),
}

POINTS_1D = [[-2.7], [-0.3], [0.0], [0.45], [1.9]]
POINTS_2D = [[2.1, -0.4], [0.2, 0.1], [-1.6, -2.2], [0.0, 2.8], [-0.05, 0.9], [1.0, 1.0]]
STEPS = [0.15, 0.8, 2.5]


def prox_objective(spec, U, x, t):
    return ref_h(spec, U) + ((U - x) ** 2).sum(1) / (2 * t)


def brute_force(spec, x, t):
    """Minimise the prox objective on a grid over [-4, 4]^d, then twice on finer grids centred at the best point
    so far (each contains that point, so the best objective only decreases)."""
    x = np.asarray(x, dtype=np.float64)
    d = x.size
    centre, best = np.zeros(d), np.inf
    levels = [(4.0, 80_001)] if d == 1 else [(4.0, 201), (0.12, 81), (0.006, 81)]  # spacings 1e-4 / 4e-2, 3e-3, 1.5e-4
    for half, n in levels:
        g = np.linspace(-half, half, n)
        U = centre + np.stack(np.meshgrid(*([g] * d), indexing="ij"), -1).reshape(-1, d)
        obj = prox_objective(spec, U, x, t)
        i = int(np.argmin(obj))
        if obj[i] <= best:
            centre, best = U[i], obj[i]
    return centre, best


# ------------------------------------------------------------------------------------------------------------
# value and prox against the definitions
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(SPECS_2D))
def test_value_matches_reference_formula(key):
    spec = SPECS_2D[key]
    reg = build(spec)
    gen = torch.Generator().manual_seed(0)
    X = 2.0 * torch.randn(50, 2, generator=gen, dtype=torch.float64)
    got = reg.value(X).numpy()
    want = ref_h(spec, X.numpy())
    assert got.shape == (50,)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("key", sorted(SPECS_1D))
def test_prox_is_argmin_1d(key):
    spec = SPECS_1D[key]
    reg = build(spec)
    for t in STEPS:
        X = torch.tensor(POINTS_1D, dtype=torch.float64)
        P = reg.prox(X, t).numpy()
        for x, p in zip(X.numpy(), P, strict=True):
            u_bf, obj_bf = brute_force(spec, x, t)
            obj_p = prox_objective(spec, p[None], x, t)[0]
            assert obj_p <= obj_bf + 1e-9, (key, t, x, p, u_bf)
            # the prox objective is (1/t)-strongly convex: obj(u) - obj(p*) >= |u - p*|^2 / (2 t)
            assert np.sum((u_bf - p) ** 2) <= 2 * t * (obj_bf - obj_p) + 1e-8, (key, t, x, p, u_bf)


@pytest.mark.parametrize("key", sorted(SPECS_2D))
def test_prox_is_argmin_2d(key):
    spec = SPECS_2D[key]
    reg = build(spec)
    X = torch.tensor(POINTS_2D, dtype=torch.float64)
    for t in STEPS:
        P = reg.prox(X, t).numpy()
        for x, p in zip(X.numpy(), P, strict=True):
            u_bf, obj_bf = brute_force(spec, x, t)
            obj_p = prox_objective(spec, p[None], x, t)[0]
            assert obj_p <= obj_bf + 1e-9, (key, t, x, p, u_bf)
            assert np.sum((u_bf - p) ** 2) <= 2 * t * (obj_bf - obj_p) + 1e-7, (key, t, x, p, u_bf)
            assert np.abs(u_bf - p).max() < 2e-2


def test_brute_force_check_catches_a_wrong_prox():
    """The argmin check above must be able to fail: soft-thresholding by the wrong amount is caught."""
    spec = SPECS_2D["l1"]
    x, t = np.array([2.1, -0.4]), 0.8
    wrong = np.sign(x) * np.maximum(np.abs(x) - 0.9 * t * 0.6, 0.0)
    u_bf, obj_bf = brute_force(spec, x, t)
    obj_w = prox_objective(spec, wrong[None], x, t)[0]
    assert not (np.sum((u_bf - wrong) ** 2) <= 2 * t * (obj_bf - obj_w) + 1e-7)


def test_known_values():
    X = torch.tensor([[3.0, -4.0, 0.5]], dtype=torch.float64)
    assert L1(1.0).prox(X, 1.0).tolist() == [[2.0, -3.0, 0.0]]
    assert L2Squared(1.0).prox(X, 1.0).tolist() == [[1.5, -2.0, 0.25]]
    np.testing.assert_allclose(L2Ball(1.0).prox(X[:, :2], 7.0).numpy(), [[0.6, -0.8]])
    np.testing.assert_allclose(L1Ball(2.0).prox(X, 1.0).numpy(), [[0.5, -1.5, 0.0]])
    np.testing.assert_allclose(GroupLasso(1.0, groups=[0, 0, -1], weights=[1.0]).prox(X, 2.0).numpy(),
                               [[1.8, -2.4, 0.5]])
    assert GroupLasso(10.0, group_size=3).prox(X, 1.0).abs().sum() == 0
    assert Box([-1.0, -2.0, 0.0], 1.0).prox(X, 1.0).tolist() == [[1.0, -2.0, 0.5]]
    assert NonNegative().prox(X, 3.0).tolist() == [[3.0, 0.0, 0.5]]


# ------------------------------------------------------------------------------------------------------------
# Moreau identity  x = prox_{t h}(x) + t prox_{h*/t}(x / t)
# ------------------------------------------------------------------------------------------------------------


def _np_block_soft(V, c):
    """prox of c ||.||_2, row-wise."""
    n = np.linalg.norm(V, axis=1, keepdims=True)
    return V * np.maximum(0.0, 1.0 - c / np.where(n > 0, n, 1.0))


def _np_prox_linf(V, c):
    """prox of c ||.||_inf, row-wise: clip to [-s, s] with sum(max(|v| - s, 0)) = c, s by bisection."""
    out = np.empty_like(V)
    for i, v in enumerate(V):
        a = np.abs(v)
        if a.sum() <= c:
            out[i] = 0.0
            continue
        lo, hi = 0.0, a.max()
        for _ in range(200):
            s = 0.5 * (lo + hi)
            if np.maximum(a - s, 0).sum() > c:
                lo = s
            else:
                hi = s
        out[i] = np.clip(v, -hi, hi)
    return out


def assert_close(a, b, atol=1e-12):
    assert a.shape == b.shape and a.dtype == b.dtype
    assert torch.allclose(a, b, rtol=1e-12, atol=atol), (a, b)


def _X(k=40, d=7, seed=1, scale=2.0):
    gen = torch.Generator().manual_seed(seed)
    return scale * torch.randn(k, d, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("t", [0.05, 0.7, 3.0])
def test_moreau_l1(t):
    lam, X = 0.45, _X()
    x = X.numpy()
    conj = np.clip(x / t, -lam, lam)  # h* = indicator of the l_inf ball of radius lam
    np.testing.assert_allclose(L1(lam).prox(X, t).numpy() + t * conj, x, atol=1e-12)


@pytest.mark.parametrize("t", [0.05, 0.7, 3.0])
def test_moreau_l1_masked(t):
    lam, X = 0.45, _X()
    mask = np.array([True, False, True, True, False, True, True])
    x = X.numpy()
    # h* = indicator of {|y_j| <= lam on masked coordinates, y_j = 0 elsewhere}
    conj = np.where(mask, np.clip(x / t, -lam, lam), 0.0)
    got = L1(lam, mask=torch.tensor(mask)).prox(X, t).numpy()
    np.testing.assert_allclose(got + t * conj, x, atol=1e-12)


@pytest.mark.parametrize("t", [0.05, 0.7, 3.0])
def test_moreau_l2sq(t):
    lam, X = 1.7, _X()
    x = X.numpy()
    conj = (x / t) / (1.0 + 1.0 / (t * lam))  # h* = ||y||^2 / (2 lam)
    np.testing.assert_allclose(L2Squared(lam).prox(X, t).numpy() + t * conj, x, atol=1e-12)


@pytest.mark.parametrize("t", [0.05, 0.7, 3.0])
@pytest.mark.parametrize("weights", [None, [0.5, 2.0, 1.0]])
def test_moreau_group_lasso(t, weights):
    lam, X = 0.6, _X()
    ids = [2, 0, 2, -1, 5, 0, 2]
    lists = _groups_as_lists(ids)  # groups ordered by id: 0, 2, 5
    w = weights or [math.sqrt(len(g)) for g in lists]
    x = X.numpy()
    # h* = indicator of {||y_g|| <= lam w_g for each group, y_j = 0 off the groups}
    conj = np.zeros_like(x)
    for g, wg in zip(lists, w, strict=True):
        v = x[:, g] / t
        n = np.linalg.norm(v, axis=1, keepdims=True)
        conj[:, g] = v * np.minimum(1.0, lam * wg / np.where(n > 0, n, 1.0))
    got = GroupLasso(lam, groups=ids, weights=weights).prox(X, t).numpy()
    np.testing.assert_allclose(got + t * conj, x, atol=1e-12)


@pytest.mark.parametrize("t", [0.05, 0.7, 3.0])
def test_moreau_l2_ball(t):
    r, X = 1.5, _X()
    x = X.numpy()
    conj = _np_block_soft(x / t, r / t)  # h* = r ||y||_2
    np.testing.assert_allclose(L2Ball(r).prox(X, t).numpy() + t * conj, x, atol=1e-12)
    # the same conjugate prox computed by GroupLasso with one group of weight 1 (step 1/t)
    gl_conj = GroupLasso(r, groups=[0] * X.shape[1], weights=[1.0]).prox(X / t, 1.0 / t)
    np.testing.assert_allclose((L2Ball(r).prox(X, t) + t * gl_conj).numpy(), x, atol=1e-12)


@pytest.mark.parametrize("t", [0.05, 0.7, 3.0])
def test_moreau_l1_ball(t):
    r, X = 1.2, _X(k=60)
    X[:5] *= 0.05  # a few rows inside the ball
    x = X.numpy()
    conj = _np_prox_linf(x / t, r / t)  # h* = r ||y||_inf
    np.testing.assert_allclose(L1Ball(r).prox(X, t).numpy() + t * conj, x, atol=1e-10)


def test_l1_ball_projection_matches_bisection_float32_large_d():
    """Float32, d large: the sorted projection agrees with a bisection reference and lands on the ball."""
    gen = torch.Generator().manual_seed(3)
    X = torch.randn(4, 5000, generator=gen)
    X[1] *= 1e-5
    X[2] = 1000.0 + torch.rand(5000, generator=gen)  # many coordinates just above the threshold
    r = 3.0
    P = L1Ball(r).prox(X, 1.0)
    assert P.dtype == torch.float32
    ref = X.double().numpy() - _np_prox_linf(X.double().numpy(), r)
    np.testing.assert_allclose(P.double().numpy(), ref, atol=1e-6, rtol=1e-5)
    assert torch.isfinite(L1Ball(r).value(P)).all()
    assert torch.equal(P[1], X[1])
    np.testing.assert_allclose(P.double().abs().sum(1)[[0, 2, 3]].numpy(), r, rtol=1e-5)


# ------------------------------------------------------------------------------------------------------------
# Contract: purity, shapes, dtype, immutability, protocol, describe / factory round trip
# ------------------------------------------------------------------------------------------------------------


def _examples_d6():
    mask = torch.tensor([True, True, False, True, False, True])
    return [
        NoReg(),
        L1(0.3),
        L1(0.3, mask=mask),
        L2Squared(0.5, mask=mask),
        ElasticNet(0.4, l1_ratio=0.25, mask=mask),
        GroupLasso(0.3, groups=[0, 0, 1, 1, -1, 2]),
        GroupLasso(0.3, group_size=2),
        GroupLasso(0.3, group_size=4),
        GroupLasso(0.3, groups=[[0, 3], [1]], weights=[1.0, 0.5]),
        NonNegative(),
        Box(-1.0, 0.5),
        Box([-1.0, -2.0, 0.0, -0.5, -3.0, -1.0], [1.0, 2.0, 0.5, 0.5, 3.0, math.inf]),
        L2Ball(1.5),
        L1Ball(2.0),
    ]


@pytest.mark.parametrize("reg", _examples_d6(), ids=lambda r: r.name)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_contract(reg, dtype):
    assert isinstance(reg, Regularizer)
    assert reg.name in REGULARIZER_NAMES
    X = _X(k=5, d=6, seed=7).to(dtype)
    X0 = X.clone()
    P = reg.prox(X, 0.5)
    v = reg.value(X)
    assert torch.equal(X, X0)  # pure
    assert P.shape == X.shape and P.dtype == dtype and P.device == X.device
    assert v.shape == (5,) and v.dtype == dtype
    assert (reg.value(P) < math.inf).all() and (reg.value(P) >= 0).all()
    P.add_(1.0)  # the output does not alias the input
    assert torch.equal(X, X0)
    # k = 1 and k = 0 work
    assert reg.prox(X[:1], 0.5).shape == (1, 6)
    assert reg.prox(X[:0], 0.5).shape == (0, 6) and reg.value(X[:0]).shape == (0,)
    # describe is plain data and rebuilds the regularizer through the factory (masks are only summarised)
    desc = reg.describe()
    assert desc["name"] == reg.name
    if "mask" not in desc:
        assert make_regularizer(**desc) == reg
    assert pickle.loads(pickle.dumps(reg)) == reg
    assert hash(pickle.loads(pickle.dumps(reg))) == hash(reg)
    with pytest.raises(dataclasses.FrozenInstanceError):
        reg.foo = 1  # type: ignore[attr-defined]


def test_equality_and_hash():
    assert L1(0.1) == L1(0.1) and hash(L1(0.1)) == hash(L1(0.1))
    assert L1(0.1) != L1(0.2) and L1(0.1) != L2Squared(0.1)
    m = torch.tensor([True, False])
    assert L1(0.1, mask=m) == L1(0.1, mask=m.clone())
    assert L1(0.1, mask=m) != L1(0.1, mask=~m) and L1(0.1, mask=m) != L1(0.1)
    assert GroupLasso(1.0, groups=[7, 7, 3]) == GroupLasso(1.0, groups=[1, 1, 0])
    assert Box(0.0, [1.0, 2.0]) == Box(0.0, torch.tensor([1.0, 2.0]))
    assert len({L1(0.1), L1(0.1), NoReg(), NoReg()}) == 2


def test_stored_tensors_are_copies():
    m = torch.tensor([True, False, True])
    reg = L1(1.0, mask=m)
    m[:] = False
    assert reg.mask.tolist() == [True, False, True]


def test_group_lasso_forms_agree():
    X = _X(k=6, d=6, seed=11)
    a = GroupLasso(0.5, groups=[5, 5, 2, 2, -1, 7], weights=[1.0, 2.0, 3.0])  # ids 2, 5, 7 in order
    b = GroupLasso(0.5, groups=[[2, 3], [0, 1], [5]], weights=[1.0, 2.0, 3.0])
    assert torch.equal(a.prox(X, 0.7), b.prox(X, 0.7))
    assert_close(a.value(X), b.value(X))
    # group_size: equal consecutive blocks (reshape path) and the scatter path agree
    c = GroupLasso(0.5, group_size=2)
    e = GroupLasso(0.5, groups=[0, 0, 1, 1, 2, 2])
    assert_close(c.prox(X, 0.7), e.prox(X, 0.7))
    assert_close(c.value(X), e.value(X))
    # last group shorter when the size does not divide d; its weight is sqrt(1)
    f = GroupLasso(0.5, group_size=4)
    g = GroupLasso(0.5, groups=[0, 0, 0, 0, 1, 1])
    assert_close(f.prox(X, 0.7), g.prox(X, 0.7))
    # index lists leave trailing coordinates unregularized
    h = GroupLasso(0.5, groups=[[0, 1]])
    assert torch.equal(h.prox(X, 0.7)[:, 2:], X[:, 2:])


def test_doctests():
    for mod in ["proxgt.prox", "proxgt.prox._penalties", "proxgt.prox._constraints", "proxgt.prox._factory"]:
        res = doctest.testmod(importlib.import_module(mod))
        assert res.failed == 0, mod


# ------------------------------------------------------------------------------------------------------------
# Factory and validation messages
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "strength", "params", "cls"),
    [
        ("none", 0.0, {}, NoReg),
        ("l1", 1e-4, {}, L1),
        ("l2sq", 0.1, {}, L2Squared),
        ("l2", 0.1, {}, L2Squared),
        ("elastic_net", 0.1, {"l1_ratio": 0.2}, ElasticNet),
        ("elasticnet", 0.1, {}, ElasticNet),
        ("Elastic-Net", 0.1, {}, ElasticNet),
        ("group_lasso", 0.1, {"group_size": 3}, GroupLasso),
        ("group_lasso", 0.1, {"groups": [0, 0, 1]}, GroupLasso),
        ("nonneg", 5.0, {}, NonNegative),
        ("nonnegative", 0.0, {}, NonNegative),
        ("box", -3.0, {"lower": -1.0, "upper": 1.0}, Box),
        ("l2_ball", 0.0, {"radius": 2.0}, L2Ball),
        ("l1_ball", 0.0, {"radius": 2.0}, L1Ball),
    ],
)
def test_factory_builds(name, strength, params, cls):
    reg = make_regularizer(name, strength, **params)
    assert type(reg) is cls
    if hasattr(reg, "lam"):
        assert reg.lam == strength


def test_factory_covers_all_names():
    params = {
        "group_lasso": {"group_size": 2},
        "box": {"lower": 0.0, "upper": 1.0},
        "l2_ball": {"radius": 1.0},
        "l1_ball": {"radius": 1.0},
        "support": {"support": torch.ones(4, dtype=torch.bool)},
    }
    for name in REGULARIZER_NAMES:
        assert make_regularizer(name, 0.1, **params.get(name, {})).name == name


def test_factory_bad_name_lists_valid_names():
    with pytest.raises(ProxGTValueError) as e:
        make_regularizer("lasso", 0.1)
    msg = str(e.value)
    assert "'lasso'" in msg and "\n" not in msg
    assert all(n in msg for n in REGULARIZER_NAMES)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: make_regularizer("l1", -1), "The 'strength' parameter of L1 must be a float >= 0. Got -1 instead."),
        (lambda: L1(-1), "The 'strength' parameter of L1 must be a float >= 0. Got -1 instead."),
        (lambda: make_regularizer("l2sq", -0.5),
         "The 'strength' parameter of L2Squared must be a float >= 0. Got -0.5 instead."),
        (lambda: make_regularizer("elastic_net", float("nan")),
         "The 'strength' parameter of ElasticNet must be a float >= 0. Got nan instead."),
        (lambda: make_regularizer("group_lasso", -2.0, group_size=2),
         "The 'strength' parameter of GroupLasso must be a float >= 0. Got -2.0 instead."),
        (lambda: make_regularizer("l1", "big"),
         "The 'strength' parameter of L1 must be a float >= 0. Got 'big' instead."),
        (lambda: make_regularizer("l2_ball", radius=0),
         "The 'radius' parameter of L2Ball must be a float > 0. Got 0 instead."),
        (lambda: make_regularizer("l1_ball", radius=-1.5),
         "The 'radius' parameter of L1Ball must be a float > 0. Got -1.5 instead."),
        (lambda: L1(math.inf), "The 'strength' parameter of L1 must be a finite float >= 0. Got inf instead."),
        (lambda: ElasticNet(0.1, l1_ratio=1.5),
         "The 'l1_ratio' parameter of ElasticNet must be a float in [0, 1]. Got 1.5 instead."),
        (lambda: make_regularizer("l2_ball"), "Regularizer 'l2_ball' needs the parameter(s) 'radius'."),
        (lambda: make_regularizer("box", lower=0.0), "Regularizer 'box' needs the parameter(s) 'upper'."),
        (lambda: make_regularizer("l1", 0.1, radius=1.0),
         "Unknown parameter(s) 'radius' for regularizer 'l1'; accepted: mask."),
        (lambda: Box(1.0, 0.0),
         "The 'lower' parameter of Box must be <= 'upper' entrywise (and the box non-empty). "
         "Got lower=1.0, upper=0.0 instead."),
        (lambda: Box([0.0, 1.0], [1.0, 2.0, 3.0]),
         "The 'lower' and 'upper' parameters of Box must have the same length. Got 2 and 3 instead."),
        (lambda: GroupLasso(1.0), "GroupLasso needs exactly one of 'groups' and 'group_size'."),
        (lambda: GroupLasso(1.0, groups=[[0, 1], [1, 2]]), "must list disjoint groups"),
        (lambda: GroupLasso(1.0, groups=[0, -2]), "ids >= -1"),
        (lambda: GroupLasso(1.0, groups=[-1, -1]), "at least one regularized coordinate"),
        (lambda: GroupLasso(1.0, groups=[0, 1], weights=[1.0]), "None or 2 finite floats >= 0"),
        (lambda: GroupLasso(1.0, groups=[0, 1], weights=[1.0, -1.0]), "None or 2 finite floats >= 0"),
        (lambda: GroupLasso(1.0, group_size=0), "The 'group_size' parameter of GroupLasso must be an int >= 1"),
        (lambda: GroupLasso(1.0, group_size=2, weights=[1.0]), "None when 'group_size' is used"),
        (lambda: L1(1.0, mask=[1, 0]), "The 'mask' parameter of L1 must be None or a 1-D bool tensor"),
    ],
)
def test_validation_messages(call, message):
    with pytest.raises(ProxGTValueError) as e:
        call()
    assert message in str(e.value)
    assert "\n" not in str(e.value)
    assert isinstance(e.value, ValueError)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: L1(0.1).prox(torch.zeros(2, 3), 0.0),
         "The 'step' parameter of L1.prox must be a finite float > 0. Got 0.0 instead."),
        (lambda: L1Ball(1.0).prox(torch.zeros(2, 3), -1), "The 'step' parameter of L1Ball.prox"),
        (lambda: L1(0.1).prox(torch.zeros(3), 1.0), "The 'X' parameter of L1.prox must be a floating tensor"),
        (lambda: L2Ball(1.0).value(torch.zeros(2, 3, dtype=torch.int64)), "The 'X' parameter of L2Ball.value"),
        (lambda: L1(0.1, mask=torch.ones(4, dtype=torch.bool)).prox(torch.zeros(2, 3), 1.0),
         "The 'mask' parameter of L1 has 4 entries but X has d=3 columns."),
        (lambda: GroupLasso(0.1, groups=[0, 0]).value(torch.zeros(2, 3)),
         "The 'groups' parameter of GroupLasso has 2 entries but X has d=3 columns."),
        (lambda: GroupLasso(0.1, groups=[[0], [4]]).prox(torch.zeros(2, 3), 1.0),
         "lists coordinate 4 but X has d=3 columns"),
        (lambda: Box(0.0, [1.0, 1.0]).prox(torch.zeros(2, 3), 1.0),
         "The 'upper' parameter of Box has 2 entries but X has d=3 columns."),
    ],
)
def test_call_time_validation(call, message):
    with pytest.raises(ProxGTValueError) as e:
        call()
    assert message in str(e.value)


def test_numpy_step_and_int_strength_accepted():
    X = torch.tensor([[1.0, -2.0]])
    assert torch.equal(L1(1).prox(X, np.float32(0.5)), L1(1.0).prox(X, 0.5))


@pytest.mark.parametrize("reg", _examples_d6(), ids=lambda r: r.name)
def test_parameters_follow_the_device_of_X(reg):
    """On the 'meta' device any parameter tensor left on the CPU would raise a device-mismatch error."""
    X = torch.empty(3, 6, device="meta")
    P, v = reg.prox(X, 0.5), reg.value(X)
    assert P.device.type == "meta" and P.shape == (3, 6) and v.shape == (3,)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("reg", _examples_d6(), ids=lambda r: r.name)
def test_cuda_matches_cpu(reg):
    X = _X(k=5, d=6, seed=5)
    for dtype in (torch.float32, torch.float64):
        Xc = X.to("cuda", dtype)
        P = reg.prox(Xc, 0.5)
        assert P.device == Xc.device and P.dtype == dtype
        assert torch.allclose(P.cpu(), reg.prox(X.to(dtype), 0.5), rtol=1e-5, atol=1e-6)
        assert torch.allclose(reg.value(Xc).cpu(), reg.value(X.to(dtype)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("runs", [3, 200])
def test_l1_masked_prox_by_runs_is_the_per_coordinate_threshold_exactly(runs):
    """A mask of a few runs (a network's weights between its biases) is clamped run by run with scalar bounds,
    one of many runs with a (d,) threshold: both give x - clamp(x, -thr_j, thr_j) bit for bit, NaN kept."""
    d = 1200
    mask = torch.zeros(d, dtype=torch.bool)
    edges = torch.linspace(0, d, runs + 1).long()
    for i in range(0, runs, 2):
        mask[edges[i]: edges[i + 1]] = True
    X = torch.randn(4, d, generator=torch.Generator().manual_seed(0)) * 1e-2
    X[1, 7] = float("nan")
    step, lam = 0.3, 0.02
    thr = mask.to(X.dtype) * (step * lam)
    expect = X - torch.clamp(X, min=-thr, max=thr)
    got = L1(lam, mask=mask).prox(X, step)
    assert torch.equal(got.nan_to_num(), expect.nan_to_num()) and bool(got[1, 7].isnan())
    assert torch.equal(got[:, ~mask].nan_to_num(), X[:, ~mask].nan_to_num()) and bool((got[:, mask] == 0).any())
