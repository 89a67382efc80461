"""The :class:`Estimator` protocol: how ProxGT and the baselines ask for local gradient estimates v_i.

An estimator is a small immutable object with two pure functions over the oracle of the local nodes:

    V0    = init(oracle, X0)
    V_t+1 = update(oracle, X_t+1, X_t, V_t, t+1)

The shipped estimators are registered in :data:`proxgt.registry.ESTIMATORS`; each class also has a classmethod
``from_settings(*, n_nodes, local_size, batch=None, big_batch=None, period=None)`` that fills in the defaults of
spec section 5b (see :func:`proxgt.estimators.make_estimator`).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from proxgt.problems.oracle import GradientOracle

__all__ = ["Estimator"]


@runtime_checkable
class Estimator(Protocol):
    """A local gradient estimator (node-stacked: one row per local node).

    Attributes:
        name: the registered name (``"sa"``, ``"sr-o"``, ``"sr-e"``, ...).
        oracle_calls: the kinds of oracle call it makes (``proxgt.problems.oracle.MINIBATCH``, ``PAIR``, ``FULL``).
        batch_per_iter: fresh samples it draws per node in an ordinary iteration (what ``epochs`` counts).
        sizes: its resolved sizes by setting name (``batch``, ``big_batch``, ``period``).
    """

    @property
    def name(self) -> str: ...

    @property
    def oracle_calls(self) -> frozenset[str]: ...

    @property
    def batch_per_iter(self) -> int: ...

    @property
    def sizes(self) -> dict[str, int]: ...

    def init(self, oracle: GradientOracle, X0: torch.Tensor) -> torch.Tensor:
        """V0 at the initial iterates X0 (k, d)."""
        ...

    def update(
        self, oracle: GradientOracle, X_new: torch.Tensor, X_old: torch.Tensor, V_old: torch.Tensor, t: int
    ) -> torch.Tensor:
        """V_t at the new iterates, given the previous iterates and estimates; ``t`` counts from 1."""
        ...
