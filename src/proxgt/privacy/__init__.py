"""Differential privacy per node: Poisson subsampling, per-sample clipping, Gaussian noise, and accounting by
Opacus's RDP accountant (see docs/privacy.md).

Modules: ``mechanism`` (:class:`PrivacyMechanism`, the sampler, clipping and noise), ``accountant`` (epsilon
and the noise multiplier for a target epsilon; imports Opacus lazily). Which runs may be made private is decided
beside the run builder (:mod:`proxgt.training.privacy`); this package is the math only.
"""

from .accountant import epsilon_spent, node_epsilons, noise_for_epsilon
from .mechanism import (
    PoissonBatch,
    PrivacyMechanism,
    add_noise,
    clip_and_noise,
    poisson_sample,
)

__all__ = [
    "PrivacyMechanism",
    "PoissonBatch",
    "poisson_sample",
    "clip_and_noise",
    "add_noise",
    "epsilon_spent",
    "node_epsilons",
    "noise_for_epsilon",
]
