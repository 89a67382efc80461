"""Per-sample gradients of a ``torch.nn.Module`` classifier for node-stacked parameters, by ``torch.func``.

Differentially private training clips each sample's gradient before summing, so it needs the gradient of every
sample's own loss, not only their weighted sum: ``vmap`` over the node axis of ``vmap`` over the sample axis of
``grad`` of one sample's cross-entropy through ``functional_call``. The result (k, b, d) is materialized, which
is what clipping reads (k b d numbers: about 100 MB for 8 nodes, 64 samples and the 784-64-10 MLP in float32).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

__all__ = ["module_per_sample_grads", "clipped_grad_sum", "clip_weights"]


def module_per_sample_grads(
    model: nn.Module,
    unflatten: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    X: torch.Tensor,
    feats: torch.Tensor,
    labels: torch.Tensor,
) -> torch.Tensor:
    """Gradients (k, b, d) of ``CE(model(feats[i, j]; X[i]), labels[i, j])`` with respect to the flat parameters
    X[i] (``unflatten`` maps a flat (d,) vector to the module's named parameters); ``feats`` (k, b, *input)."""

    def one_sample_loss(theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, unflatten(theta), (x.unsqueeze(0),))
        return F.cross_entropy(logits, y.unsqueeze(0))

    per_node = vmap(grad(one_sample_loss), in_dims=(None, 0, 0))
    return vmap(per_node, in_dims=(0, 0, 0))(X.detach(), feats, labels)


def clip_weights(norms: torch.Tensor, clip: float, mask: torch.Tensor) -> torch.Tensor:
    """``mask_ij * min(1, C / ||g_ij||)``: the factor each per-sample gradient enters the clipped sum with."""
    return torch.clamp(clip / norms.clamp_min(1e-30), max=1.0) * mask.to(norms.dtype)


def clipped_grad_sum(problem, X: torch.Tensor, feats: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor,
                     clip: float) -> torch.Tensor:
    """``sum_j mask_ij clip_C(grad l(X[i]; feats[i, j], labels[i, j]))`` (k, d), every per-sample gradient clipped
    to norm ``clip`` before the sum (no penalty term).

    For a network made of Linear layers and elementwise activations (the shipped MLP) the per-sample gradients
    are never materialized: one forward pass and one backward pass to the layer outputs give, per sample j and
    layer l, the layer's input a_lj and output gradient g_lj; the sample's weight gradient is g_lj a_lj^T, whose
    squared norm is ||g_lj||^2 ||a_lj||^2 (its bias gradient g_lj), so the per-sample norms and then the clipped
    sum ``sum_j s_j g_lj a_lj^T`` (one batched product per layer) follow directly (the "ghost norm" identity of
    Goodfellow, 2015, and Li et al., 2022). Any other problem: its ``per_sample_grads`` (k, b, d), clipped and
    summed.
    """
    from proxgt.problems.nn import TorchModelProblem

    if isinstance(problem, TorchModelProblem):
        layers = _linear_stack(problem)
        if layers is not None and problem.input_shape is None:
            return _linear_stack_clipped_sum(problem, layers, X, feats.to(X.dtype), labels, mask, clip)
    per = problem.per_sample_grads(X, feats, labels)
    return torch.einsum("kb,kbd->kd", clip_weights(per.norm(dim=2), clip, mask), per)


def _linear_stack(problem) -> list[tuple[str, nn.Module]] | None:
    """The model's leaves if it is a Sequential of Flatten, Linear and elementwise layers only, else None."""
    from proxgt.problems.nn import _ELEMENTWISE, _leaves

    leaves = _leaves(problem.model)
    if leaves is None:
        return None
    for _, m in leaves:
        ok = isinstance(m, nn.Linear | nn.Flatten) or isinstance(m, _ELEMENTWISE)
        if not ok or (isinstance(m, nn.Flatten) and (m.start_dim, m.end_dim) != (1, -1)):
            return None
    return leaves


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
