"""Neural networks as ProxGT problems: any ``torch.nn.Module``, its parameters flattened into the node state.

A :class:`TorchModelProblem` wraps a module with parameters ``theta_1, ..., theta_P`` (in
``named_parameters()`` order). Node i's row ``x_i`` of the node state X (k x d) is the concatenation of the
flattened parameters, so mixing, prox and tracking act on it unchanged. The smooth loss of node i on a batch is
the weighted cross-entropy

    f_i(x_i) = sum_j w_ij * CE(model(feats_ij; x_i), labels_ij)        (each row of w sums to 1)

and its gradient is computed for all k rows in one batched tensor program, in one of two ways
(``grad_mode``):

* ``"grouped"``: the k copies of the network run as one grouped network. A linear layer becomes a batched
  matrix product ``baddbmm`` over the node axis, a convolution one ``conv2d`` with ``groups = k`` (the node
  axis folded into the channels), activations and pooling act on the folded tensor unchanged. One backward
  pass of ordinary autograd gives all k gradients (rows do not interact). Available for ``nn.Sequential``
  models built from Linear, Conv2d, elementwise activations, max/avg pooling, Flatten and Unflatten (the
  shipped :class:`MLP` and :class:`LeNet5`).
* ``"vmap"``: ``torch.func.vmap(grad_and_value(...))`` over ``functional_call`` of the module, mapped over
  the node axis of X and of the batch. Works for any module without buffers.

``"auto"`` picks ``"grouped"`` where the model supports it (it measured faster on the 2-core CPU this was
developed on: see ``bench/bench_nn.py --modes``) and ``"vmap"`` otherwise.

Shipped models, written here because torchvision does not import beside the CPU torch wheel: :class:`MLP`
(784-256-10 with ReLU by default) and :class:`LeNet5` (LeCun et al., 1998: conv 6@5x5 pad 2, pool,
conv 16@5x5, pool, fc 120, 84, classes). Registered in :data:`proxgt.registry.PROBLEMS` as ``"mlp"`` and
``"lenet"`` (builders :func:`build_mlp` and :func:`build_lenet`).

Example:
    >>> import torch
    >>> prob = TorchModelProblem(MLP(784, 10, hidden=32))
    >>> X = prob.init_params(torch.Generator().manual_seed(0)).repeat(4, 1)
    >>> feats, labels = torch.randn(4, 8, 1, 28, 28), torch.randint(10, (4, 8))
    >>> loss, grad = prob.loss_grad(X, feats, labels, torch.full((4, 8), 1 / 8))
    >>> loss.shape, grad.shape == X.shape
    (torch.Size([4]), True)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from proxgt._validation import ProxGTValueError, param_error, setting_error
from proxgt.problems.per_sample import clip_weights, clipped_grad_sum, module_per_sample_grads

__all__ = [
    "TorchModelProblem",
    "MLP",
    "LeNet5",
    "GRAD_MODES",
    "ACTIVATIONS",
    "NN_DEFAULT_STEP",
    "NN_RECURSION_RATIO",
    "NN_CHUNK_SIZE",
    "grouped_supported",
    "image_shape",
    "build_mlp",
    "build_lenet",
]

#: Ways :class:`TorchModelProblem` computes per-node gradients.
GRAD_MODES: tuple[str, ...] = ("auto", "grouped", "vmap")

#: Activation names the shipped models accept.
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}

#: Documented default step for the shipped networks when ``step = "auto"`` (no smoothness constant is known for
#: a neural network). Measured on Fashion-MNIST, 8 nodes, ring, shards split, ProxGT-SA with b = 32: see the
#: docs/neural-networks.md, "Sparse neural networks".
NN_DEFAULT_STEP = 0.1

#: The largest period / inner batch q / b at which the SARAH recursion (ProxGT-SR-O, ProxGT-SR-E) stays stable on
#: the shipped networks at :data:`NN_DEFAULT_STEP` (``Problem.recursion_ratio``; why the ratio and not the step:
#: :mod:`proxgt.estimators.sarah`). The spec's sizes have q / b = 4 (SR-O: b = 8, q = 32 at B = 256) and 7.8
#: (SR-E: b = 31, q = 242 on Fashion-MNIST with 8 nodes); at 0.1 both diverged (MLP objective past 1e8 in 400
#: iterations, LeNet-5 NaN by iteration 164), and only steps 5-10x smaller were stable (0.02 MLP, 0.01 LeNet-5),
#: which made the default runs slow. Measured on Fashion-MNIST, 8 nodes, ring, shards split, step 0.1 (the
#: table and its command: ``bench/bench_sarah_networks.py``): the MLP oscillated at q / b = 1 (b = 16, q = 16)
#: and matched ProxGT-SA at q / b = 1/4 (b = 16, q = 4); LeNet-5 (15,000 training images, 3 passes) was 3.7
#: points behind SA at q / b = 1/4 and matched it at 1/8 (b = 16, q = 2).
NN_RECURSION_RATIO: dict[str, float] = {"mlp": 0.25, "lenet": 0.125}

#: Samples per node per chunk in full passes (metrics, SR-E refreshes): bounds the memory of activations.
NN_CHUNK_SIZE = {"mlp": 2048, "lenet": 512}

_ELEMENTWISE = (
    nn.ReLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.GELU,
    nn.SiLU,
    nn.ELU,
    nn.LeakyReLU,
    nn.Softplus,
    nn.Identity,
)
_POOLS = (nn.MaxPool2d, nn.AvgPool2d)


def _leaves(module: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """The leaves of a (nested) ``nn.Sequential`` with their dotted names, or None if it is not one."""
    if not isinstance(module, nn.Sequential):
        return None
    out: list[tuple[str, nn.Module]] = []
    for name, child in module.named_children():
        if isinstance(child, nn.Sequential):
            sub = _leaves(child)
            if sub is None:
                return None
            out.extend((f"{name}.{n}", m) for n, m in sub)
        else:
            out.append((name, child))
    return out


def grouped_supported(model: nn.Module) -> bool:
    """True if ``grad_mode="grouped"`` can run ``model``: an ``nn.Sequential`` of Linear, Conv2d (zero
    padding), elementwise activations, MaxPool2d/AvgPool2d, Flatten(start_dim=1) and Unflatten(dim=1) layers,
    without buffers."""
    leaves = _leaves(model)
    if leaves is None or any(True for _ in model.buffers()):
        return False
    for _, m in leaves:
        if isinstance(m, nn.Linear) or isinstance(m, _ELEMENTWISE) or isinstance(m, _POOLS):
            continue
        if isinstance(m, nn.Conv2d) and m.padding_mode == "zeros":
            continue
        if isinstance(m, nn.Flatten) and m.start_dim == 1 and m.end_dim == -1:
            continue
        if isinstance(m, nn.Unflatten) and m.dim == 1:
            continue
        return False
    return True


class MLP(nn.Sequential):
    """Multilayer perceptron ``in -> hidden... -> n_classes`` with an activation after each hidden layer.

    The input is flattened first, so images (N, 1, 28, 28) and flat vectors (N, 784) both work.

    Example:
        >>> MLP(784, 10, hidden=256)(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self, in_features: int, n_classes: int, hidden: int | Sequence[int] = 256, activation: str = "relu"
    ):
        widths = [int(in_features), *([int(hidden)] if isinstance(hidden, int) else [int(h) for h in hidden])]
        act = _activation(activation, "MLP")
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Linear(a, b), act()]
        layers.append(nn.Linear(widths[-1], int(n_classes)))
        super().__init__(*layers)


class LeNet5(nn.Sequential):
    """LeNet-5 (LeCun et al., 1998) for C x H x W images, H, W >= 12: conv 6@5x5 (padding 2), 2x2 max pool,
    conv 16@5x5, 2x2 max pool, fully connected 120, 84 and ``n_classes``, ``activation`` after each hidden
    layer (ReLU by default; ``"tanh"`` is the original's choice).

    Example:
        >>> LeNet5((1, 28, 28), 10)(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    def __init__(self, in_shape: Sequence[int] = (1, 28, 28), n_classes: int = 10, activation: str = "relu"):
        C, H, W = (int(s) for s in in_shape)
        if min(H, W) < 12:
            raise ProxGTValueError(
                f"LeNet5 needs images of at least 12 x 12 pixels; got {H} x {W} (use an MLP for smaller inputs)"
            )
        act = _activation(activation, "LeNet5")
        h, w = ((H // 2) - 4) // 2, ((W // 2) - 4) // 2
        super().__init__(
            nn.Conv2d(C, 6, 5, padding=2),
            act(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            act(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(16 * h * w, 120),
            act(),
            nn.Linear(120, 84),
            act(),
            nn.Linear(84, int(n_classes)),
        )


def _activation(name: str, owner: str) -> Callable[[], nn.Module]:
    if name not in ACTIVATIONS:
        raise param_error(owner, "activation", "one of " + ", ".join(ACTIVATIONS), name)
    return ACTIVATIONS[name]


def image_shape(feature_shape: Sequence[int]) -> tuple[int, int, int] | None:
    """(C, H, W) for a sample of shape (C, H, W), (H, W), or a flat square (H*W,); else None."""
    s = tuple(int(v) for v in feature_shape)
    if len(s) == 3:
        return s
    if len(s) == 2:
        return (1, s[0], s[1])
    if len(s) == 1:
        r = math.isqrt(s[0])
        if r * r == s[0]:
            return (1, r, r)
    return None


class TorchModelProblem:
    """Weighted cross-entropy of a ``torch.nn.Module`` classifier, batched over nodes (see the module docstring).

    Args:
        model: maps a batch (b, *input_shape) to logits (b, C). Its parameters define the layout of x; its
            own parameter values are used only as a template (``init_params`` re-initializes a copy).
        input_shape: if given, samples are reshaped to it before the forward pass (e.g. flat 784-vectors to
            (1, 28, 28) for a convolutional net).
        reg_bias: also let the regularizer act on biases (by default only on weights: parameters with two or
            more dimensions).
        grad_mode: ``"auto"``, ``"grouped"`` or ``"vmap"`` (see the module docstring).
        chunk_size: samples per node per chunk in full-data passes (None: all at once).
        default_step: the step a run uses when ``step = "auto"`` (no smoothness constant is known), for
            estimators not in ``estimator_steps``.
        estimator_steps: the default step by estimator name where it differs from ``default_step`` (None: none
            differs); read through :meth:`default_step_for`.
        recursion_ratio: the largest q / b of a stable SARAH recursion at ``default_step`` (the estimators size
            themselves from it; None: ``NN_RECURSION_RATIO["lenet"]``, the smaller measured one; the MLP builder
            passes the MLP's).
        metrics_samples: if set, the logged training metrics (gradient mapping, objective, train accuracy)
            use a fixed seeded subsample of this many samples per node (see :mod:`proxgt.metrics`).

    Attributes:
        dim: d, the number of parameters.
        reg_mask: bool (d,), the coordinates h acts on (weights; biases too if ``reg_bias``).
        density_mask: bool (d,), the weights (``density`` is the share of non-zero weights).
        chunk_size, default_step, estimator_steps, recursion_ratio, metrics_samples, grad_mode (the resolved
        mode), param_shapes (name -> shape).
    """

    task = "classification"
    per_sample_gradients = True
    # capabilities (proxgt.problems.base.Problem), set per instance in __init__
    default_step: float | None
    reg_mask: torch.Tensor | None
    density_mask: torch.Tensor | None
    chunk_size: int | None
    metrics_samples: int | None
    recursion_ratio: float | None

    def __init__(
        self,
        model: nn.Module,
        *,
        input_shape: Sequence[int] | None = None,
        reg_bias: bool = False,
        grad_mode: str = "auto",
        chunk_size: int | None = 2048,
        default_step: float = NN_DEFAULT_STEP,
        metrics_samples: int | None = None,
        estimator_steps: dict[str, float] | None = None,
        recursion_ratio: float | None = None,
    ):
        if not isinstance(model, nn.Module):
            raise ProxGTValueError(
                f"The 'model' parameter of TorchModelProblem must be a torch.nn.Module. Got {type(model).__name__}."
            )
        if grad_mode not in GRAD_MODES:
            raise param_error("TorchModelProblem", "grad_mode", "one of " + ", ".join(GRAD_MODES), grad_mode)
        if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int)
                                       or chunk_size < 1):
            raise ProxGTValueError(
                f"The 'chunk_size' parameter of TorchModelProblem must be None or an int >= 1. Got {chunk_size!r}."
            )
        if metrics_samples is not None and (isinstance(metrics_samples, bool) or not isinstance(metrics_samples, int)
                                            or metrics_samples < 1):
            raise param_error("TorchModelProblem", "metrics_samples", "None or an int >= 1", metrics_samples)
        if any(True for _ in model.buffers()):
            raise ProxGTValueError(
                "TorchModelProblem supports models without buffers (no BatchNorm running statistics): "
                "the node state holds parameters only"
            )
        named = [(n, p) for n, p in model.named_parameters()]
        if not named:
            raise ProxGTValueError("TorchModelProblem: the model has no parameters")
        supported = grouped_supported(model)
        if grad_mode == "grouped" and not supported:
            raise ProxGTValueError(
                "grad_mode 'grouped' needs an nn.Sequential of Linear, Conv2d, activation, pooling, Flatten and "
                "Unflatten layers; use grad_mode 'vmap' for this model"
            )
        self.model = model
        self.grad_mode = ("grouped" if supported else "vmap") if grad_mode == "auto" else grad_mode
        self.input_shape = None if input_shape is None else tuple(int(s) for s in input_shape)
        self.reg_bias = bool(reg_bias)
        self.chunk_size = chunk_size
        self.default_step = float(default_step)
        steps = {} if estimator_steps is None else estimator_steps
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in steps.values()):
            raise ProxGTValueError(
                f"The 'estimator_steps' parameter of TorchModelProblem must map estimator names to steps > 0. "
                f"Got {estimator_steps!r} instead."
            )
        self.estimator_steps = {str(k): float(v) for k, v in steps.items()}
        ratio = NN_RECURSION_RATIO["lenet"] if recursion_ratio is None else recursion_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 < ratio < float("inf"):
            raise ProxGTValueError(
                f"The 'recursion_ratio' parameter of TorchModelProblem must be a float > 0. Got {ratio!r} instead."
            )
        self.recursion_ratio = float(ratio)
        self.metrics_samples = metrics_samples
        self.param_names = [n for n, _ in named]
        self.param_shapes = {n: tuple(p.shape) for n, p in named}
        self._numels = [p.numel() for _, p in named]
        self.dim = int(sum(self._numels))
        is_weight = [p.ndim >= 2 for _, p in named]
        self.density_mask = torch.cat([torch.full((p.numel(),), w) for (_, p), w in zip(named, is_weight, strict=True)])
        self.reg_mask = self.density_mask.clone() if not self.reg_bias else torch.ones(self.dim, dtype=torch.bool)
        self._index = {n: i for i, n in enumerate(self.param_names)}
        self._grouped_layers = _leaves(model) if supported else None
        # Linear and elementwise layers only (the MLP): the grouped gradient is written straight into its (k, d) rows
        self._linear_layers = _linear_stack(model) if supported else None
        self._vmapped_grad = vmap(grad_and_value(self._row_loss))
        self._vmapped_forward = vmap(self._row_logits)

    # ------------------------------------------------------------------ layout
    def unflatten(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Parameter views {name: tensor of the module's shape} of one flat vector x (d,)."""
        parts = torch.split(x, self._numels)
        return {n: t.view(self.param_shapes[n]) for n, t in zip(self.param_names, parts, strict=True)}

    def flatten(self, params: dict[str, torch.Tensor] | nn.Module) -> torch.Tensor:
        """The flat vector (d,) of a parameter mapping or of a module with the same layout."""
        if isinstance(params, nn.Module):
            params = dict(params.named_parameters())
        return torch.cat([params[n].detach().reshape(-1) for n in self.param_names])

    def _reshape_feats(self, feats: torch.Tensor) -> torch.Tensor:
        if self.input_shape is None:
            return feats
        return feats.reshape(feats.shape[0], feats.shape[1], *self.input_shape)

    # ------------------------------------------------------------------ Problem protocol
    def loss_grad(
        self,
        X: torch.Tensor,
        feats: torch.Tensor,
        labels: torch.Tensor,
        weights: torch.Tensor,
        *,
        with_penalty: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss (k,), grad (k, d)) of ``sum_j weights[i, j] CE(model(feats[i, j]; X[i]), labels[i, j])``.

        There is no smooth penalty (``with_penalty`` is accepted for the protocol and has no effect)."""
        feats = self._reshape_feats(feats).to(X.dtype)
        weights = weights.to(X.dtype)
        if self.grad_mode == "grouped":
            if self._linear_layers is not None:
                return _linear_stack_loss_grad(self, self._linear_layers, X, feats, labels, weights)
            with torch.enable_grad():
                Xl = X.detach().requires_grad_(True)
                logits = self._grouped_logits(Xl, feats)
                loss = _weighted_ce(logits, labels, weights)
                (grad,) = torch.autograd.grad(loss.sum(), Xl)
            return loss.detach(), grad
        grad, loss = self._vmapped_grad(X.detach(), feats, labels, weights)
        return loss.detach(), grad.detach()

    def per_sample_grads(self, X: torch.Tensor, feats: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Gradients (k, b, d) of every sample's own loss ``CE(model(feats[i, j]; X[i]), labels[i, j])``, for
        differentially private training (:mod:`proxgt.privacy`): ``torch.func`` vmap over nodes and samples."""
        return module_per_sample_grads(self.model, self.unflatten, X, self._reshape_feats(feats).to(X.dtype), labels)

    def clipped_grad_sum(self, X: torch.Tensor, feats: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor,
                         clip: float) -> torch.Tensor:
        """``sum_j mask_ij clip_C(grad l(X[i]; feats[i, j], labels[i, j]))`` (k, d), no penalty term.

        For a network made of Linear layers and elementwise activations (the shipped MLP) the per-sample
        gradients are never materialized: one forward pass and one backward pass to the layer outputs give, per
        sample j and layer l, the layer's input a_lj and output gradient g_lj; the sample's weight gradient is
        g_lj a_lj^T, whose squared norm is ||g_lj||^2 ||a_lj||^2 (its bias gradient g_lj), so the per-sample norms
        and then the clipped sum ``sum_j s_j g_lj a_lj^T`` (one batched product per layer) follow directly (the
        "ghost norm" identity of Goodfellow, 2015, and Li et al., 2022). Other networks: per-sample gradients,
        clipped and summed."""
        layers = _linear_stack(self.model)
        if layers is not None and self.input_shape is None:
            return _linear_stack_clipped_sum(self, layers, X, feats.to(X.dtype), labels, mask, clip)
        return clipped_grad_sum(self, X, feats, labels, mask, clip)

    @torch.no_grad()
    def logits(self, X: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        """Logits (k, b, C) of each row's network on its own batch."""
        feats = self._reshape_feats(feats).to(X.dtype)
        if self.grad_mode == "grouped":
            return self._grouped_logits(X, feats)
        return self._vmapped_forward(X, feats)

    def predict(self, X: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        """Class ids (k, b): the argmax of the logits."""
        return self.logits(X, feats).argmax(dim=2)

    def init_params(self, generator: torch.Generator) -> torch.Tensor:
        """PyTorch's standard initialization (each layer's ``reset_parameters``) of a copy of the model, under a
        torch seed drawn from ``generator``: the same generator state gives the same x0 (d,)."""
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        model = copy.deepcopy(self.model).cpu()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for m in model.modules():
                reset = getattr(m, "reset_parameters", None)
                if callable(reset):
                    reset()
        return self.flatten(model).to(torch.float32)

    def smoothness(self) -> float | None:
        """None: no useful Lipschitz bound is known for a network (the run uses :meth:`default_step_for`)."""
        return None

    def default_step_for(self, estimator: str | None) -> float | None:
        """The step a run with gradient estimator ``estimator`` (``"sa"``, ``"sr-o"``, ``"sr-e"``; None for
        methods without a registered estimator) uses when ``step = "auto"``: ``estimator_steps[estimator]``
        where set, else ``default_step`` (0.1; the SARAH-type estimators size their inner batch and period from
        ``recursion_ratio`` to be stable at it)."""
        return self.estimator_steps.get(estimator, self.default_step) if estimator is not None \
            else self.default_step

    # ------------------------------------------------------------------ vmap path
    def _row_logits(self, theta: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        return functional_call(self.model, self.unflatten(theta), (feats,))

    def _row_loss(self, theta, feats, labels, weights):
        ce = F.cross_entropy(self._row_logits(theta, feats), labels, reduction="none")
        return (weights * ce).sum()

    # ------------------------------------------------------------------ grouped path
    def _grouped_logits(self, X: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        """Forward pass of k networks at once. The activation ``h`` is kept either node-major (k, b, ...) or,
        around convolutions, batch-major with the node axis folded into the channels (b, k*C, H, W)."""
        k, b = int(X.shape[0]), int(feats.shape[1])
        parts = torch.split(X, self._numels, dim=1)
        P = {n: t for n, t in zip(self.param_names, parts, strict=True)}

        def weight_of(prefix: str) -> torch.Tensor:
            name = f"{prefix}.weight"
            return P[name].reshape(k, *self.param_shapes[name])

        def bias_of(prefix: str) -> torch.Tensor | None:
            name = f"{prefix}.bias"
            if name not in self._index:
                return None
            return P[name].reshape(k, *self.param_shapes[name])

        h = feats
        folded = False  # True: h is (b, k*C, H, W)
        for prefix, m in self._grouped_layers:  # type: ignore[union-attr]
            if isinstance(m, nn.Linear):
                if folded:
                    h, folded = _unfold(h, k), False
                W, bias = weight_of(prefix), bias_of(prefix)
                # out^T = W h^T (k, out, b): the weight gradient d(out^T) h then comes out in W's own
                # (out, in) layout, with no transposed copy before it joins the flat (k, d) gradient.
                hT = h.reshape(k, b, -1).transpose(1, 2)
                outT = torch.bmm(W, hT) if bias is None else torch.baddbmm(bias.unsqueeze(2), W, hT)
                h = outT.transpose(1, 2)
            elif isinstance(m, nn.Conv2d):
                if not folded:
                    h, folded = _fold(h), True
                W, bias = weight_of(prefix), bias_of(prefix)
                h = F.conv2d(
                    h,
                    W.reshape(k * W.shape[1], *W.shape[2:]),
                    None if bias is None else bias.reshape(-1),
                    m.stride,
                    m.padding,
                    m.dilation,
                    m.groups * k,
                )
            elif isinstance(m, _POOLS):
                if not folded:
                    h, folded = _fold(h), True
                h = m(h)
            elif isinstance(m, nn.Flatten):
                if folded:
                    h, folded = _unfold(h, k), False
                h = h.reshape(k, b, -1)
            elif isinstance(m, nn.Unflatten):
                if folded:
                    h, folded = _unfold(h, k), False
                h = h.reshape(k, b, *m.unflattened_size)
            else:  # elementwise
                h = m(h)
        if folded:
            h = _unfold(h, k)
        return h.reshape(k, b, -1)


def _fold(h: torch.Tensor) -> torch.Tensor:
    """(k, b, C, H, W) -> (b, k*C, H, W)."""
    k, b = h.shape[0], h.shape[1]
    return h.transpose(0, 1).reshape(b, k * h.shape[2], *h.shape[3:])


def _unfold(h: torch.Tensor, k: int) -> torch.Tensor:
    """(b, k*C, H, W) -> (k, b, C, H, W)."""
    b = h.shape[0]
    return h.reshape(b, k, h.shape[1] // k, *h.shape[2:]).transpose(0, 1)


def _weighted_ce(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    k, b, C = logits.shape
    ce = F.cross_entropy(logits.reshape(k * b, C), labels.reshape(-1), reduction="none").view(k, b)
    return (weights * ce).sum(dim=1)


# ---------------------------------------------------------------------------------------------- builders
# Registered in proxgt.registry.PROBLEMS as "mlp" and "lenet": builder(settings, train) -> Problem, where
# ``settings`` is the run's settings object and ``train`` the training Dataset.
def _common(settings, train, problem: str) -> dict:
    if train.n_classes < 2:
        raise ProxGTValueError(
            f"problem {problem!r} is a classifier and needs at least 2 classes; the data has "
            f"{train.n_classes or 'real-valued'} labels"
        )
    mode = settings.nn_grad
    if mode not in GRAD_MODES:
        raise setting_error("nn_grad", "one of " + ", ".join(GRAD_MODES), mode)
    act = settings.activation
    if act not in ACTIVATIONS:
        raise setting_error("activation", "one of " + ", ".join(ACTIVATIONS), act)
    if not isinstance(settings.reg_bias, bool):
        raise setting_error("reg_bias", "true or false", settings.reg_bias)
    ms = settings.metrics_samples
    if ms is not None and (isinstance(ms, bool) or not isinstance(ms, int) or ms < 1):
        raise setting_error("metrics_samples", "an int >= 1", ms)
    return {"grad_mode": mode, "reg_bias": settings.reg_bias, "metrics_samples": ms}


def build_mlp(settings, train) -> TorchModelProblem:
    """The MLP ``features -> settings.hidden -> classes`` with ``settings.activation``."""
    kw = _common(settings, train, "mlp")
    hidden = settings.hidden
    if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
        raise setting_error("hidden", "an int >= 1", hidden)
    model = MLP(train.n_features, train.n_classes, hidden, settings.activation)
    return TorchModelProblem(model, chunk_size=NN_CHUNK_SIZE["mlp"], recursion_ratio=NN_RECURSION_RATIO["mlp"],
                             **kw)


def build_lenet(settings, train) -> TorchModelProblem:
    """LeNet-5 on the data's images (C x H x W, H x W, or flat squares) with ``settings.activation``."""
    kw = _common(settings, train, "lenet")
    shape = image_shape(train.feature_shape)
    if shape is None or min(shape[1:]) < 12:
        raise ProxGTValueError(
            f"problem 'lenet' needs images of at least 12 x 12 pixels (C x H x W, H x W, or a flat square); "
            f"the data's samples have shape {train.feature_shape} (use --problem mlp)"
        )
    model = LeNet5(shape, train.n_classes, settings.activation)
    return TorchModelProblem(model, input_shape=shape, chunk_size=NN_CHUNK_SIZE["lenet"],
                             recursion_ratio=NN_RECURSION_RATIO["lenet"], **kw)


def _linear_stack(model: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """The model's leaves if it is a Sequential of Flatten, Linear and elementwise layers only, else None."""
    leaves = _leaves(model)
    if leaves is None:
        return None
    for _, m in leaves:
        ok = isinstance(m, nn.Linear | nn.Flatten) or isinstance(m, _ELEMENTWISE)
        if not ok or (isinstance(m, nn.Flatten) and (m.start_dim, m.end_dim) != (1, -1)):
            return None
    return leaves


def _linear_stack_loss_grad(problem, layers, X, feats, labels, weights) -> tuple[torch.Tensor, torch.Tensor]:
    """``loss_grad`` of the grouped path for a stack of Linear and elementwise layers, with the same forward
    pass. The backward pass runs to the layer outputs only; each weight gradient (one batched product per layer)
    and bias gradient is then written into its place in the (k, d) result, instead of autograd's per-parameter
    gradients followed by a copy of all of them into one tensor (the copy of the first layer's (k, 256, 784)
    gradient took as long as its product on the Fashion-MNIST MLP)."""
    k, b = labels.shape
    P = dict(zip(problem.param_names, torch.split(X.detach(), problem._numels, dim=1), strict=True))
    G = torch.empty_like(X)  # every coordinate is written below: all parameters are the Linear layers'
    into = dict(zip(problem.param_names, torch.split(G, problem._numels, dim=1), strict=True))
    h = feats
    inputs: list[torch.Tensor] = []
    outputs: list[torch.Tensor] = []
    names: list[tuple[str, str | None]] = []
    with torch.enable_grad():
        for prefix, m in layers:
            if isinstance(m, nn.Linear):
                W = P[f"{prefix}.weight"].reshape(k, m.out_features, m.in_features)
                bias = P.get(f"{prefix}.bias")
                a = h.reshape(k, b, -1)
                hT = a.transpose(1, 2)  # as in _grouped_logits: out^T = W h^T
                outT = torch.bmm(W, hT) if bias is None else torch.baddbmm(bias.unsqueeze(2), W, hT)
                if not outputs:  # the graph starts here: the backward pass runs to the layer outputs only
                    outT.requires_grad_(True)
                inputs.append(a.detach())
                outputs.append(outT)
                names.append((f"{prefix}.weight", f"{prefix}.bias" if bias is not None else None))
                h = outT.transpose(1, 2)
            elif isinstance(m, nn.Flatten):
                h = h.reshape(k, b, -1)
            else:
                h = m(h)
        loss = _weighted_ce(h.reshape(k, b, -1), labels, weights)
        out_grads = torch.autograd.grad(loss.sum(), outputs)
    for a, gT, (w_name, bias_name) in zip(inputs, out_grads, names, strict=True):
        torch.bmm(gT, a, out=into[w_name].view(k, gT.shape[1], a.shape[2]))
        if bias_name is not None:
            torch.sum(gT, dim=2, out=into[bias_name])
    return loss.detach(), G


def _linear_stack_clipped_sum(problem, layers, X, feats, labels, mask, clip) -> torch.Tensor:
    k, b = labels.shape
    P = dict(zip(problem.param_names, torch.split(X.detach(), problem._numels, dim=1), strict=True))
    h = feats.reshape(k, b, -1)
    inputs, outputs, names = [], [], []
    with torch.enable_grad():
        first = True
        for prefix, m in layers:
            if isinstance(m, nn.Linear):
                W = P[f"{prefix}.weight"].reshape(k, m.out_features, m.in_features)
                bias = P.get(f"{prefix}.bias")
                z = torch.bmm(h, W.transpose(1, 2))
                if bias is not None:
                    z = z + bias.unsqueeze(1)
                if first:  # the graph starts here: the backward pass runs to the layer outputs only
                    z.requires_grad_(True)
                    first = False
                inputs.append(h.detach())
                outputs.append(z)
                names.append((f"{prefix}.weight", f"{prefix}.bias" if bias is not None else None))
                h = z
            elif isinstance(m, nn.Flatten):
                h = h.reshape(k, b, -1)
            else:
                h = m(h)
        loss = F.cross_entropy(h.reshape(k * b, -1), labels.reshape(-1), reduction="sum")
        out_grads = torch.autograd.grad(loss, outputs)
    sq = torch.zeros((k, b), dtype=X.dtype, device=X.device)
    for a, g, (_, bias_name) in zip(inputs, out_grads, names, strict=True):
        gg = g.square().sum(dim=2)
        sq += gg * (a.square().sum(dim=2) + (1.0 if bias_name is not None else 0.0))
    s = clip_weights(sq.sqrt(), clip, mask)
    grads: dict[str, torch.Tensor] = {}
    for a, g, (w_name, bias_name) in zip(inputs, out_grads, names, strict=True):
        sg = g * s.unsqueeze(2)
        grads[w_name] = torch.bmm(sg.transpose(1, 2), a).reshape(k, -1)
        if bias_name is not None:
            grads[bias_name] = sg.sum(dim=1)
    return torch.cat([grads[n] for n in problem.param_names], dim=1)
