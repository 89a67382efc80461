"""Differential privacy per node: Poisson subsampling, per-sample clipping, Gaussian noise, and accounting by
Opacus's RDP accountant (see docs/privacy.md).

Modules: ``mechanism`` (:class:`PrivacyMechanism`, the sampler, clipping and noise, the checks a DP run
passes), ``accountant`` (epsilon and the noise multiplier for a target epsilon; imports Opacus lazily).
"""

from .accountant import epsilon_spent, node_epsilons, noise_for_epsilon
from .mechanism import (
    PoissonBatch,
    PrivacyMechanism,
    add_noise,
    clip_and_noise,
    poisson_sample,
    privacy_from_settings,
)

__all__ = [
    "PrivacyMechanism",
    "PoissonBatch",
    "poisson_sample",
    "clip_and_noise",
    "add_noise",
    "privacy_from_settings",
    "epsilon_spent",
    "node_epsilons",
    "noise_for_epsilon",
]
