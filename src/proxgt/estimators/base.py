"""The :class:`Estimator` protocol: how ProxGT and the baselines ask for local gradient estimates v_i.

An estimator is a small immutable object with two pure functions over the oracle of the local nodes and a
typed state of its own (a NamedTuple of tensors, ints and floats, optax-style)::

    V0, s0        = init(oracle, X0)
    V_t+1, s_t+1  = update(s_t, oracle, X_t+1, X_t, V_t, t+1)

The algorithm keeps ``V`` (it needs it for tracking) and carries ``s`` as a field of its own state, so a
checkpoint of the algorithm's state holds the estimator's too. What an estimator costs is declared, not
probed: ``oracle_calls`` (which of the oracle's calls it makes: :data:`~proxgt.problems.oracle.MINIBATCH`,
:data:`~proxgt.problems.oracle.PAIR` (gradients at two points on the same samples),
:data:`~proxgt.problems.oracle.FULL`), ``batch_per_iter`` (fresh samples of an ordinary iteration), ``sizes``,
``recursion_ratio`` (q / b of an undamped recursion, 0 for none) and :meth:`Estimator.samples_per_iter`
(component gradients per iteration, refreshes included).

The shipped estimators are registered in :data:`proxgt.registry.ESTIMATORS`; each registered class also has a
classmethod ``from_settings(*, n_nodes, local_size, batch=None, big_batch=None, period=None, ratio=None)`` that
fills in the defaults (see :func:`proxgt.estimators.make_estimator`).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch

from proxgt.problems.oracle import GradientOracle

__all__ = ["Estimator", "NoState", "SarahState", "EstimatorState"]


class NoState(NamedTuple):
    """The state of an estimator that remembers nothing between iterations."""


class SarahState(NamedTuple):
    """What a SARAH estimator remembers (:mod:`proxgt.estimators.sarah`): per row, the norm of its last fresh
    estimate (the safeguard's reference), how often the safeguard restarted it, and how many iterations the row
    has done (its own clock: each row refreshes every ``period`` of its own iterations, so a node that sat
    iterations out, asynchronously or dropped, keeps its own refresh schedule)."""

    ref: torch.Tensor  # (k,) float
    restarts: torch.Tensor  # (k,) int64
    iters: torch.Tensor  # (k,) int64


#: The states of the shipped estimators (the type of the ``est`` field of an algorithm's state; a checkpoint
#: rebuilds it as the member whose fields it stored).
EstimatorState = NoState | SarahState


@runtime_checkable
class Estimator(Protocol):
    """A local gradient estimator (node-stacked: one row per local node).

    Attributes:
        name: the registered name (``"sa"``, ``"sr-o"``, ``"sr-e"``, ...).
        oracle_calls: the kinds of oracle call it makes (``proxgt.problems.oracle.MINIBATCH``, ``PAIR``, ``FULL``).
        batch_per_iter: fresh samples it draws per node in an ordinary iteration (what ``epochs`` counts).
        sizes: its resolved sizes by setting name (``batch``, ``big_batch``, ``period``).
        recursion_ratio: q / b of an undamped gradient-difference recursion (SARAH), whose error grows with
            (q / b) (a s)^2 between refreshes (:mod:`proxgt.estimators.sarah`); 0.0 for estimators without one.
    """

    @property
    def name(self) -> str: ...

    @property
    def oracle_calls(self) -> frozenset[str]: ...

    @property
    def batch_per_iter(self) -> int: ...

    @property
    def sizes(self) -> dict[str, int]: ...

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
