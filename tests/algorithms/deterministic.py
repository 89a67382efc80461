"""A small l1-regularized problem and its solution by centralized proximal gradient descent, for checking that
a decentralized method run with ``batch = full`` (exact local gradients) converges to the minimizer of
(1/n) sum_i f_i(x) + h(x).

h is the elastic net (l1 plus a small l2 term): with l1 alone the breast-cancer features are so correlated that
the logistic objective is nearly flat along some directions, so iterates with a gradient mapping of 1e-7 still
differ by 0.2 and "the same point" cannot be checked; the l2 part makes the minimizer unique and well
conditioned, while the l1 part keeps it sparse (40% zeros) so the prox matters."""

from __future__ import annotations

from typing import Any

import torch

from proxgt.settings import RunConfig
from proxgt.training import build_run

#: breast cancer (30 features), 4 nodes on a ring, elastic net 0.1 * (0.5 ||x||_1 + 0.25 ||x||^2)
PROBLEM: dict[str, Any] = {
    "data": "breast_cancer", "nodes": 4, "topology": "ring", "problem": "logistic", "reg": "elastic_net",
    "reg_strength": 0.1, "l1_ratio": 0.5, "rho": 0.0, "batch": "full", "dtype": "float64", "split": "iid",
    "seed": 0,
}


def centralized_solution(tol: float = 1e-20, max_iters: int = 200_000, **overrides: Any) -> torch.Tensor:
    """argmin-stationary point of (1/n) sum_i f_i + h by proximal gradient with step 1/L, to ||G||^2 <= tol."""
    spec = build_run(RunConfig(**{**PROBLEM, **overrides}))
    n = spec.settings.nodes
    oracle = spec.make_oracle(list(range(n)))
    reg = spec.regularizer
    a = 1.0 / spec.smoothness
    x = spec.initial_rows([0])[0].clone()
    for _ in range(max_iters):
        g = oracle.full_loss_grad(x.unsqueeze(0).expand(n, -1).contiguous())[1].mean(0)
        x_new = reg.prox((x - a * g).unsqueeze(0), a)[0]
        if float(((x_new - x) / a).square().sum()) <= tol:
            return x_new
        x = x_new
    raise AssertionError("centralized proximal gradient did not converge")
