"""With exact local gradients (batch = full), ProxGT converges to the centralized solution."""

from __future__ import annotations

import pytest
import torch

import proxgt

from .deterministic import PROBLEM, centralized_solution


@pytest.fixture(scope="module")
def x_star() -> torch.Tensor:
    return centralized_solution()


@pytest.mark.parametrize("algorithm", ["proxgt-sa", "proxgt-sr-e"])
def test_proxgt_full_batch_reaches_the_centralized_solution(x_star, algorithm):
    h = proxgt.run({**PROBLEM, "algorithm": algorithm, "iters": 1500, "log_every": 1500})
    assert float((x_star == 0).float().mean()) > 0.3  # the l1 term matters at this strength
    assert torch.allclose(h.x, x_star.unsqueeze(0).expand_as(h.x), atol=1e-6, rtol=0)
