"""Every shipped problem declares the capability attributes of the Problem protocol; the registered builders."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from proxgt._validation import ProxGTValueError
from proxgt.data import Dataset
from proxgt.problems import (
    LeastSquares,
    LogisticRegression,
    Problem,
    SoftmaxRegression,
    build_least_squares,
    build_logistic,
    build_softmax,
)
from proxgt.problems.nn import MLP, NN_DEFAULT_STEP, LeNet5, TorchModelProblem, build_lenet, build_mlp
from proxgt.registry import PROBLEMS

CAPABILITIES = ("default_step", "reg_mask", "density_mask", "chunk_size", "metrics_samples", "per_sample_gradients",
                "recursion_ratio")


def _settings(**kw):
    base = dict(rho=1e-3, nn_grad="auto", activation="relu", hidden=8, reg_bias=False, metrics_samples=None)
    base.update(kw)
    return SimpleNamespace(**base)


def _classes(n_classes=3, shape=(16,), n=24):
    g = torch.Generator().manual_seed(0)
    return Dataset(torch.randn(n, *shape, generator=g), torch.arange(n) % n_classes, n_classes, "toy")


def _real(n=24):
    g = torch.Generator().manual_seed(0)
    return Dataset(torch.randn(n, 5, generator=g), torch.randn(n, generator=g), 0, "toy")


def _shipped():
    return [
        LogisticRegression(5),
        LogisticRegression(5, gram_lambda_max=2.0),
        SoftmaxRegression(5, 3),
        LeastSquares(5),
        TorchModelProblem(MLP(16, 3, hidden=4)),
        TorchModelProblem(LeNet5((1, 12, 12), 3), reg_bias=True, metrics_samples=7, chunk_size=None),
        build_logistic(_settings(), _classes(2)),
        build_softmax(_settings(), _classes(3)),
        build_least_squares(_settings(), _real()),
        build_mlp(_settings(), _classes(3)),
        build_lenet(_settings(), _classes(3, shape=(1, 12, 12))),
    ]


@pytest.mark.parametrize("problem", _shipped(), ids=lambda p: type(p).__name__)
def test_shipped_problem_declares_every_capability(problem):
    assert isinstance(problem, Problem)
    declared = [vars(k) for k in type(problem).__mro__ if k is not object] + [vars(problem)]
    for name in (*CAPABILITIES, "default_step_for"):  # declared by the library's classes, not a getattr fallback
        assert any(name in d for d in declared), name
    d = problem.dim
    assert problem.default_step is None or (isinstance(problem.default_step, float) and problem.default_step > 0)
    for mask in (problem.reg_mask, problem.density_mask):
        assert mask is None or (mask.dtype == torch.bool and tuple(mask.shape) == (d,))
    for size in (problem.chunk_size, problem.metrics_samples):
        assert size is None or (isinstance(size, int) and not isinstance(size, bool) and size >= 1)
    assert problem.recursion_ratio is None or (isinstance(problem.recursion_ratio, float)
                                               and problem.recursion_ratio > 0)
    L = problem.smoothness()
    assert L is None or L > 0
    if L is None and isinstance(problem, TorchModelProblem):
        assert problem.default_step == NN_DEFAULT_STEP  # a network needs a step without L


def test_linear_problems_declare_none():
    for problem in (LogisticRegression(5), SoftmaxRegression(5, 3), LeastSquares(5)):
        assert all(getattr(problem, name) is None for name in CAPABILITIES if name != "per_sample_gradients")
        assert problem.per_sample_gradients  # so differential privacy can run on them


def test_network_capabilities_follow_the_settings():
    p = build_mlp(_settings(metrics_samples=11), _classes(3))
    assert p.metrics_samples == 11 and p.chunk_size == 2048 and p.default_step == NN_DEFAULT_STEP
    assert int(p.reg_mask.sum()) == 16 * 8 + 8 * 3 and torch.equal(p.reg_mask, p.density_mask)
    assert bool(build_mlp(_settings(reg_bias=True), _classes(3)).reg_mask.all())
    assert build_lenet(_settings(), _classes(3, shape=(1, 12, 12))).chunk_size == 512


def test_protocol_requires_the_capabilities():
    class Bare:
        dim, task = 3, "regression"

        def loss_grad(self, X, feats, labels, weights, *, with_penalty=True): ...
        def predict(self, X, feats): ...
        def init_params(self, generator): ...
        def smoothness(self): ...
        def clipped_grad_sum(self, X, feats, labels, mask, clip): ...

    assert not isinstance(Bare(), Problem)
    for name in CAPABILITIES:
        setattr(Bare, name, None)
    assert not isinstance(Bare(), Problem)  # default_step_for is part of the protocol too
    Bare.default_step_for = lambda self, estimator: None
    assert isinstance(Bare(), Problem)


def test_registry_points_at_the_builders():
    assert PROBLEMS.get("logistic") is build_logistic
    assert PROBLEMS.get("softmax") is build_softmax
    assert PROBLEMS.get("least_squares") is build_least_squares
    assert PROBLEMS.get("mlp") is build_mlp
    assert PROBLEMS.get("lenet") is build_lenet


def test_builders_use_settings_and_data():
    p = build_logistic(_settings(rho=0.25), _classes(2))
    assert p.rho == 0.25 and p.dim == 16 and p.smoothness() > 2 * 0.25
    assert build_softmax(_settings(), _classes(4)).dim == 16 * 4
    assert build_least_squares(_settings(), _real()).smoothness() > 0
    mlp = build_mlp(_settings(hidden=5, activation="tanh", nn_grad="vmap"), _classes(3))
    assert mlp.dim == 16 * 5 + 5 + 5 * 3 + 3 and mlp.grad_mode == "vmap"
    assert isinstance(mlp.model[2], torch.nn.Tanh)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: build_logistic(_settings(), _classes(3)), "problem 'logistic' needs 2 classes"),
        (lambda: build_softmax(_settings(), _real()), "problem 'softmax' needs class labels"),
        (lambda: build_mlp(_settings(), _real()), "problem 'mlp' is a classifier"),
        (lambda: build_mlp(_settings(hidden=0), _classes()), "The 'hidden' setting must be an int >= 1"),
        (lambda: build_mlp(_settings(nn_grad="fast"), _classes()), "The 'nn_grad' setting must be one of"),
        (lambda: build_mlp(_settings(activation="gelu"), _classes()), "The 'activation' setting must be one of"),
        (lambda: build_mlp(_settings(reg_bias="yes"), _classes()), "The 'reg_bias' setting must be true or false"),
        (lambda: build_mlp(_settings(metrics_samples=0), _classes()), "The 'metrics_samples' setting must be"),
        (lambda: build_lenet(_settings(), _classes(shape=(10,))), "problem 'lenet' needs images of at least 12"),
    ],
)
def test_builder_errors(call, message):
    with pytest.raises(ProxGTValueError, match=message):
        call()
