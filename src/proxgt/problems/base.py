"""The :class:`Problem` protocol: a smooth loss batched over nodes, and what it declares about itself.

A problem knows how to compute, for node-stacked parameters ``X`` (k x d) and per-node sample batches
``feats`` (k x b x ...) with weights ``w`` (k x b, each row summing to 1), the weighted losses and gradients of
every row in one batched tensor program. Sampling, counting and data placement live in
:class:`proxgt.problems.oracle.GradientOracle`; the problem is pure math.

Besides the math, a problem declares its capabilities as plain attributes (None where they do not apply), so
the run reads them instead of probing for them: the step to use without a smoothness constant, the
coordinates a norm regularizer acts on, the coordinates ``density`` counts, the chunk size of full passes,
the subsample the training metrics use and how long a SARAH-type recursion stays stable.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

__all__ = ["Problem"]


@runtime_checkable
class Problem(Protocol):
    """A smooth loss, batched over nodes.

    Attributes:
        dim: length d of the flat parameter vector.
        task: ``"classification"`` or ``"regression"`` (decides which accuracy metrics apply).
        default_step: the step a run uses when ``smoothness()`` is None (None: the run's own fallback).
        reg_mask: bool (d,) of the coordinates a norm regularizer acts on (None: all of them).
        density_mask: bool (d,) of the coordinates the ``density`` metric counts (None: all of them).
        chunk_size: samples per node per chunk in full-data passes (None: all at once).
        metrics_samples: if set, the logged training metrics use a fixed subsample of this many samples per
            node (see :mod:`proxgt.metrics`); None: all local data.
        recursion_ratio: the largest period / inner batch q / b at which a SARAH-type recursion stays stable at
            the default step (its error grows like exp((q / b) (a s)^2) between refreshes, s the spread of the
            per-sample curvature: :mod:`proxgt.estimators.sarah`); the SARAH estimators size themselves from it.
            None: no limit known (the spec's sizes apply).
        per_sample_gradients: whether :meth:`clipped_grad_sum` is available (differential privacy needs it).
    """

    dim: int
    task: str
    default_step: float | None
    reg_mask: torch.Tensor | None
    density_mask: torch.Tensor | None
    chunk_size: int | None
    metrics_samples: int | None
    recursion_ratio: float | None
    per_sample_gradients: bool

    def loss_grad(
        self,
        X: torch.Tensor,
        feats: torch.Tensor,
        labels: torch.Tensor,
        weights: torch.Tensor,
        *,
        with_penalty: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (loss (k,), grad (k, d)) of ``sum_j weights[i, j] l(X[i]; feats[i, j], labels[i, j]) + r(X[i])``
        (the smooth penalty r only when ``with_penalty``, so chunked full passes add it once)."""
        ...

    def predict(self, X: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        """Predictions (k, b): class ids for classification, values for regression."""
        ...

    def init_params(self, generator: torch.Generator) -> torch.Tensor:
        """The initial point x0 (d,) shared by every node."""
        ...

    def smoothness(self) -> float | None:
        """An upper bound on the Lipschitz constant L of grad f if cheaply known, else None."""
        ...

    def default_step_for(self, estimator: str | None) -> float | None:
        """The step for ``step = "auto"`` when ``smoothness()`` is None, for a run whose gradient estimator is
        ``estimator`` (``"sa"``, ``"sr-o"``, ...; None for methods without a registered one); None: the run's
        own fallback."""
        ...

    def clipped_grad_sum(self, X: torch.Tensor, feats: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor,
                         clip: float) -> torch.Tensor:
        """``sum_j mask_ij clip_C(grad l(X[i]; feats[i, j], labels[i, j]))`` (k, d): every per-sample gradient
        clipped to norm ``clip`` before the sum, no penalty term (only where ``per_sample_gradients``)."""
        ...
