"""The :class:`Estimator` protocol: how ProxGT and the baselines ask for local gradient estimates v_i.

An estimator is a small immutable object with two pure functions over the oracle of the local nodes and a
typed state of its own (a NamedTuple of tensors, ints and floats, optax-style)::

    V0, s0        = init(oracle, X0)
    V_t+1, s_t+1  = update(s_t, oracle, X_t+1, X_t, V_t, t+1)

The algorithm keeps ``V`` (it needs it for tracking) and carries ``s`` as a field of its own state, so a
checkpoint of the algorithm's state holds the estimator's too. What an estimator costs is declared, not
probed: ``batch`` (b, the fresh samples of an ordinary iteration), ``oracle_calls`` (which of the oracle's
calls it makes: ``"minibatch"``, ``"pair"`` (gradients at two points on the same samples), ``"full"``),
``recursion_ratio`` (q / b of an undamped recursion, 0 for none) and :meth:`Estimator.samples_per_iter`.

The shipped estimators are registered in :data:`proxgt.registry.ESTIMATORS`; each registered class also has a
classmethod ``from_settings(*, n_nodes, local_size, batch=None, big_batch=None, period=None, ratio=None)`` that
fills in the defaults (see :func:`proxgt.estimators.make_estimator`).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch

from proxgt.problems.oracle import GradientOracle

__all__ = ["Estimator", "NoState", "ORACLE_CALLS"]

#: The oracle calls an estimator may declare: fresh minibatch gradients, gradient pairs (two points, same
#: samples) and full local gradients.
ORACLE_CALLS: frozenset[str] = frozenset({"minibatch", "pair", "full"})


class NoState(NamedTuple):
    """The state of an estimator that remembers nothing between iterations."""


@runtime_checkable
class Estimator(Protocol):
    """A local gradient estimator (node-stacked: one row per local node).

    Attributes:
        name: the registered name (``"sa"``, ``"sr-o"``, ``"sr-e"``, ...).
        batch: b, the fresh samples per node of an ordinary iteration.
        oracle_calls: the oracle calls it makes (a subset of :data:`ORACLE_CALLS`).
        recursion_ratio: q / b of an undamped gradient-difference recursion (SARAH), whose error grows with
            (q / b) (a L)^2 between refreshes; 0.0 for estimators without one.
    """

    name: str
    batch: int

    @property
    def oracle_calls(self) -> frozenset[str]: ...

    @property
    def recursion_ratio(self) -> float: ...

    def samples_per_iter(self, local_size: float) -> float:
        """Mean component gradients per node and iteration, refreshes included (``local_size``: m)."""
        ...

    def init(self, oracle: GradientOracle, X0: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """(V0, state) at the initial iterates X0 (k, d)."""
        ...

    def update(
        self, state: Any, oracle: GradientOracle, X_new: torch.Tensor, X_old: torch.Tensor, V_old: torch.Tensor,
        t: int,
    ) -> tuple[torch.Tensor, Any]:
        """(V_t, state) at the new iterates, given the previous iterates and estimates; ``t`` counts from 1."""
        ...
