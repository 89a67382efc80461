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
    """``sum_j mask_ij clip_C(grad l(X[i]; feats[i, j], labels[i, j]))`` (k, d) from the problem's
    ``per_sample_grads`` (k, b, d): every per-sample gradient clipped to norm ``clip`` before the sum (no penalty
    term). Problems with a cheaper way (the networks' ghost-norm path) implement ``clipped_grad_sum``
    themselves."""
    per = problem.per_sample_grads(X, feats, labels)
    return torch.einsum("kb,kbd->kd", clip_weights(per.norm(dim=2), clip, mask), per)
