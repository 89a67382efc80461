"""Decentralized algorithms, each a short composition of estimator, tracking, prox and mixing.

Every algorithm has the same two pure functions over an explicit state (a NamedTuple whose ``x`` field holds
the node-stacked iterates, plus the iteration counter ``t``)::

    state = alg.init(x0_rows, oracle, mix)
    state = alg.update(state, oracle, mix)

``oracle`` gives the local nodes' gradients and counts them; ``mix`` is the K-round mixing operator of the
executor. Algorithms never know whether the nodes are simulated in one process or spread over many. The
names runs choose from are registered in :data:`proxgt.registry.ALGORITHMS`.
"""

from proxgt.algorithms.proxgt import ORDERS, ProxGT, ProxGTState

__all__ = ["ProxGT", "ProxGTState", "ORDERS"]
