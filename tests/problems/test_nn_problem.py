"""TorchModelProblem: gradients batched over nodes equal per-node autograd, masks, init, errors."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from proxgt._validation import ProxGTValueError
from proxgt.problems import Problem
from proxgt.problems.nn import MLP, LeNet5, TorchModelProblem, grouped_supported, image_shape

K, B = 3, 5


def _reference(problem: TorchModelProblem, X, feats, labels, weights):
    """Loss and gradient of each node one by one: a plain module with the node's parameters and .backward()."""
    losses, grads = [], []
    for i in range(X.shape[0]):
        model = copy.deepcopy(problem.model).to(X.dtype)
        with torch.no_grad():
            for name, p in problem.unflatten(X[i]).items():
                model.get_parameter(name).copy_(p)
        x = feats[i] if problem.input_shape is None else feats[i].reshape(-1, *problem.input_shape)
        ce = nn.functional.cross_entropy(model(x.to(X.dtype)), labels[i], reduction="none")
        loss = (weights[i] * ce).sum()
        loss.backward()
        losses.append(loss.detach())
        grads.append(torch.cat([model.get_parameter(n).grad.reshape(-1) for n in problem.param_names]))
    return torch.stack(losses), torch.stack(grads)


def _inputs(problem: TorchModelProblem, shape, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x0 = problem.init_params(g).to(dtype)
    X = x0.repeat(K, 1) + 0.1 * torch.randn(K, problem.dim, generator=g, dtype=dtype)  # rows differ
    feats = torch.randn(K, B, *shape, generator=g, dtype=dtype)
    labels = torch.randint(10, (K, B), generator=g)
    w = torch.rand(K, B, generator=g, dtype=dtype) + 0.1
    return X, feats, labels, w / w.sum(dim=1, keepdim=True)


MODELS = {
    "mlp": (lambda: MLP(784, 10, hidden=16), (1, 28, 28), None),
    "mlp-flat": (lambda: MLP(784, 10, hidden=[12, 8], activation="tanh"), (784,), None),
    "lenet": (lambda: LeNet5((1, 16, 16), 10), (1, 16, 16), None),
    "lenet-flat": (lambda: LeNet5((1, 16, 16), 10, activation="tanh"), (256,), (1, 16, 16)),
}


@pytest.mark.parametrize("mode", ["grouped", "vmap"])
@pytest.mark.parametrize("name", list(MODELS))
def test_batched_gradients_equal_per_node_autograd(name, mode):
    make, shape, input_shape = MODELS[name]
    prob = TorchModelProblem(make(), input_shape=input_shape, grad_mode=mode)
    assert isinstance(prob, Problem) and prob.grad_mode == mode
    X, feats, labels, w = _inputs(prob, shape)
    loss, grad = prob.loss_grad(X, feats, labels, w)
    ref_loss, ref_grad = _reference(prob, X, feats, labels, w)
    assert grad.shape == (K, prob.dim) and grad.dtype == torch.float64
    torch.testing.assert_close(loss, ref_loss, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-9, atol=1e-12)
    assert float(grad.abs().sum()) > 0 and not torch.equal(grad[0], grad[1])


def test_float32_modes_agree_and_predict_is_argmax():
    make, shape, _ = MODELS["lenet"]
    g, v = (TorchModelProblem(make(), grad_mode=m) for m in ("grouped", "vmap"))
    X, feats, labels, w = _inputs(g, shape, dtype=torch.float32)
    torch.testing.assert_close(g.loss_grad(X, feats, labels, w)[1], v.loss_grad(X, feats, labels, w)[1],
                               rtol=1e-4, atol=1e-6)
    pred = g.predict(X, feats)
    assert pred.shape == (K, B) and pred.dtype == torch.int64
    assert torch.equal(pred, v.predict(X, feats))
    assert torch.equal(pred, g.logits(X, feats).argmax(dim=2))


def test_chunked_weights_add_up_to_the_full_gradient():
    prob = TorchModelProblem(MLP(784, 10, hidden=8))
    X, feats, labels, w = _inputs(prob, (784,))
    full = prob.loss_grad(X, feats, labels, w)
    parts = [prob.loss_grad(X, feats[:, s], labels[:, s], w[:, s]) for s in (slice(0, 2), slice(2, B))]
    torch.testing.assert_close(parts[0][0] + parts[1][0], full[0])
    torch.testing.assert_close(parts[0][1] + parts[1][1], full[1])


def test_loss_grad_works_under_no_grad():
    prob = TorchModelProblem(MLP(784, 10, hidden=8))
    X, feats, labels, w = _inputs(prob, (784,))
    expected = prob.loss_grad(X, feats, labels, w)[1]
    for mode in ("grouped", "vmap"):
        p = TorchModelProblem(prob.model, grad_mode=mode)
        with torch.no_grad():
            torch.testing.assert_close(p.loss_grad(X, feats, labels, w)[1], expected)


def test_masks_exclude_biases_unless_reg_bias():
    prob = TorchModelProblem(MLP(784, 10, hidden=16))
    sizes = [784 * 16, 16, 16 * 10, 10]
    assert prob.dim == sum(sizes) and prob.reg_mask.dtype == torch.bool
    expected = torch.cat([torch.full((n,), is_w) for n, is_w in zip(sizes, [True, False, True, False], strict=True)])
    assert torch.equal(prob.reg_mask, expected)
    assert torch.equal(prob.density_mask, expected)
    withb = TorchModelProblem(MLP(784, 10, hidden=16), reg_bias=True)
    assert bool(withb.reg_mask.all()) and torch.equal(withb.density_mask, expected)
    lenet = TorchModelProblem(LeNet5((1, 16, 16), 10))
    by_name = lenet.unflatten(lenet.reg_mask)
    for name, m in by_name.items():
        assert bool(m.all()) == name.endswith("weight") and bool(m.any()) == name.endswith("weight")


def test_same_seed_same_init_and_model_untouched():
    model = MLP(784, 10, hidden=16)
    before = TorchModelProblem(model).flatten(model).clone()
    p1, p2 = TorchModelProblem(model), TorchModelProblem(MLP(784, 10, hidden=16))
    a = p1.init_params(torch.Generator().manual_seed(3))
    b = p2.init_params(torch.Generator().manual_seed(3))
    c = p1.init_params(torch.Generator().manual_seed(4))
    assert a.dtype == torch.float32 and a.shape == (p1.dim,)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(p1.flatten(model), before)  # the template module is not re-initialized
    # standard PyTorch init: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the first layer's weights
    w1 = p1.unflatten(a)["1.weight"]
    assert float(w1.abs().max()) <= 784**-0.5 and float(w1.std()) > 0.5 * 784**-0.5 / 3**0.5


class _Custom(nn.Module):
    """Not a Sequential: only the vmap path applies."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(6, 4)
        self.b = nn.Linear(4, 3, bias=False)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x))) + self.a(x)[:, :3]


def test_custom_module_uses_vmap_and_is_exact():
    prob = TorchModelProblem(_Custom())
    assert prob.grad_mode == "vmap" and not grouped_supported(prob.model)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(K, prob.dim, generator=g, dtype=torch.float64)
    feats = torch.randn(K, B, 6, generator=g, dtype=torch.float64)
    labels = torch.randint(3, (K, B), generator=g)
    w = torch.full((K, B), 1.0 / B, dtype=torch.float64)
    loss, grad = prob.loss_grad(X, feats, labels, w)
    ref_loss, ref_grad = _reference(prob, X, feats, labels, w)
    torch.testing.assert_close(grad, ref_grad)
    torch.testing.assert_close(loss, ref_loss)


def test_errors_are_one_line_value_errors():
    with pytest.raises(ProxGTValueError, match="grouped"):
        TorchModelProblem(_Custom(), grad_mode="grouped")
    with pytest.raises(ProxGTValueError, match="grad_mode"):
        TorchModelProblem(MLP(4, 2, 3), grad_mode="fast")
    with pytest.raises(ProxGTValueError, match="buffers"):
        TorchModelProblem(nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3)))
    with pytest.raises(ProxGTValueError, match="torch.nn.Module"):
        TorchModelProblem("mlp")  # type: ignore[arg-type]
    with pytest.raises(ProxGTValueError, match="12 x 12"):
        LeNet5((1, 8, 8), 10)
    with pytest.raises(ProxGTValueError, match="activation"):
        MLP(4, 2, 3, activation="swish")


def test_image_shape():
    assert image_shape((1, 28, 28)) == (1, 28, 28)
    assert image_shape((28, 28)) == (1, 28, 28)
    assert image_shape((784,)) == (1, 28, 28)
    assert image_shape((123,)) is None
