"""The per-node Gaussian mechanism of a DP run: Poisson subsampling, per-sample clipping, noise, and the checks
(the pure math of a DP run).

Each node i, at every gradient step, releases

    v_i = (1 / b) * ( sum_{j in S_i} clip_C(grad l(x_i; xi_ij)) + N(0, sigma^2 C^2 I) ) + grad r(x_i)

where S_i holds each of the node's m_i samples independently with probability q_i = b / m_i (Poisson
subsampling, the sampler Opacus's RDP accountant assumes; |S_i| varies, b is its expectation),
``clip_C(g) = g * min(1, C / ||g||)`` bounds one record's contribution to the sum by C, and r is the problem's
data-independent smooth penalty (not a function of any record, so it needs no noise). Adding or removing one
record changes the sum by at most C, so each release is the subsampled Gaussian mechanism with noise
multiplier sigma (see :mod:`proxgt.privacy.accountant` for its accounting). Which runs may use it is the run
builder's decision (:mod:`proxgt.training.privacy`); this module is the math only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from proxgt.errors import ProxGTValueError

__all__ = ["PrivacyMechanism", "PoissonBatch", "poisson_sample", "clip_and_noise", "add_noise"]

@dataclass(frozen=True)
class PrivacyMechanism:
    """What a DP run adds to its gradient oracle.

    Attributes:
        clip: C, the norm each per-sample gradient is clipped to.
        noise: sigma, the noise multiplier (the noise on a node's clipped sum has standard deviation sigma * C).
        delta: the delta of the (epsilon, delta) the run reports.
        local_sizes: m_i of every node of the run (not only a process's own), so every process reports the same
            epsilon: the maximum over nodes.
    """

    clip: float
    noise: float
    delta: float
    local_sizes: tuple[int, ...]

    def node_epsilons(self, releases: dict[int, int]) -> list[float]:
        """Epsilon of each node after ``releases`` = {expected batch b: number of noisy sums released}."""
        from proxgt.privacy.accountant import node_epsilons

        return node_epsilons(self.noise, releases, self.local_sizes, self.delta)

    def epsilon(self, releases: dict[int, int]) -> float:
        """The largest per-node epsilon (the node with the fewest samples has the highest sampling rate)."""
        return max(self.node_epsilons(releases), default=0.0)


@dataclass(frozen=True)
class PoissonBatch:
    """A Poisson-subsampled minibatch of the local nodes: ``idx`` (k, w) sample indices padded to the largest
    draw w, ``mask`` (k, w) 1.0 for a drawn sample and 0.0 for padding, ``expected`` the expected size b."""

    idx: torch.Tensor
    mask: torch.Tensor
    expected: int


def poisson_sample(generators: Sequence[torch.Generator], counts: Sequence[int], expected: int,
                   dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> PoissonBatch:
    """Each node keeps each of its m_i samples independently with probability b / m_i (b = ``expected``),
    drawing from its own generator (m_i uniforms per node)."""
    rows = []
    for g, m in zip(generators, counts, strict=True):
        m = int(m)
        if expected > m:
            raise ProxGTValueError(
                f"differential privacy samples each record with probability b / m; batch {expected} exceeds a "
                f"node's {m} samples: use a batch <= {m}"
            )
        rows.append((torch.rand(m, generator=g) < expected / m).nonzero().squeeze(1))
    width = max(1, max((int(r.numel()) for r in rows), default=1))
    idx = torch.zeros((len(rows), width), dtype=torch.int64)
    mask = torch.zeros((len(rows), width), dtype=dtype)
    for i, r in enumerate(rows):
        idx[i, : r.numel()] = r
        mask[i, : r.numel()] = 1.0
    return PoissonBatch(idx.to(device), mask.to(device), int(expected))


def clip_and_noise(per_sample: torch.Tensor, mask: torch.Tensor, clip: float, noise: float, expected: int,
                   generators: Sequence[torch.Generator]) -> torch.Tensor:
    """``(sum_j mask_ij clip_C(g_ij) + sigma C z_i) / b`` for per-sample gradients ``per_sample`` (k, w, d),
    z_i ~ N(0, I) drawn from node i's own ``generators[i]`` (see :func:`add_noise`)."""
    norms = per_sample.norm(dim=2)
    scale = torch.clamp(clip / norms.clamp_min(1e-30), max=1.0) * mask.to(per_sample.dtype)
    return add_noise(torch.einsum("kw,kwd->kd", scale, per_sample), clip, noise, expected, generators)


def add_noise(clipped_sum: torch.Tensor, clip: float, noise: float, expected: int,
              generators: Sequence[torch.Generator]) -> torch.Tensor:
    """``(clipped_sum_i + sigma C z_i) / b`` (k, d), z_i ~ N(0, I) drawn from node i's own ``generators[i]`` on
    the CPU, so every executor draws the same noise for the same node."""
    k, d = clipped_sum.shape
    total = clipped_sum
    if noise > 0:
        z = torch.stack([torch.randn(d, generator=g, dtype=clipped_sum.dtype) for g in generators])
        total = total + (float(noise) * float(clip)) * z.to(clipped_sum.device)
    return total / float(expected)
