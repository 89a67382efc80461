"""Decentralized algorithms, each a short composition of estimator, tracking, prox and mixing.

Every algorithm has the same two pure functions over an explicit state (a NamedTuple whose ``x`` field holds
the node-stacked iterates, plus the iteration counter ``t``)::

    state = alg.init(x0_rows, oracle, mix)
    state = alg.update(state, oracle, mix)

``oracle`` gives the local nodes' gradients and counts them; ``mix`` is the K-round mixing operator of the
executor. Algorithms never know whether the nodes are simulated in one process or spread over many.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from proxgt.algorithms.proxgt import ORDERS, ProxGT, ProxGTState

__all__ = ["Algorithm", "ProxGT", "ProxGTState", "ORDERS"]


@runtime_checkable
class Algorithm(Protocol):
    name: str
    step: float

    def init(self, x0: torch.Tensor, oracle: Any, mix: Any) -> Any: ...

    def update(self, state: Any, oracle: Any, mix: Any) -> Any: ...

    def describe(self) -> dict: ...
