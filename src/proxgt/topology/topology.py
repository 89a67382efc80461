"""The :class:`Topology` bundle: a communication graph and its mixing matrix, validated together.

n nodes talk only to graph neighbours through a mixing matrix W (spec section 1): symmetric, doubly
stochastic, W_ij > 0 only on edges and the diagonal, and lambda = ||W - J||_2 < 1 with J = 11^T / n. The
spectral gap 1 - lambda decides how many gossip rounds multi-round mixing needs (spec section 4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np
import torch

from proxgt._validation import ProxGTValueError
from proxgt._validation import param_error as _param_error
from proxgt.topology._graphs import graph_from_networkx
from proxgt.topology._weights import (
    _canonical_weights,
    _check_mixing_matrix,
    _lambda_from_eigenvalues,
    _weights_for,
)

__all__ = ["Topology"]


@dataclass(frozen=True, eq=False, repr=False)
class Topology:
    """A communication graph and its mixing matrix, validated together; immutable.

    Attributes:
        name: family or user label (``"ring"``, ``"erdos_renyi"``, ...), used in logs and result files.
        graph: undirected ``networkx.Graph`` on nodes 0..n-1 (node i is rank i in a distributed run).
        W: n x n float64 mixing matrix, checked by :func:`validate_mixing_matrix` against ``graph``.
        weights: the weight rule that produced ``W`` (one of :data:`WEIGHT_RULES`; ``"user"`` if unknown).

    The spectrum of W is computed once at construction (``numpy.linalg.eigvalsh``, W is symmetric), so
    :attr:`lam`, :attr:`spectral_gap` and :attr:`eigenvalues` are free afterwards. ``W`` is a private copy of
    what was passed in; do not modify it in place.
    """

    name: str
    graph: nx.Graph
    W: torch.Tensor
    weights: str = "user"
    _eigenvalues: np.ndarray = field(init=False, repr=False)
    _lam: float = field(init=False, repr=False)
    _degrees: list[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise _param_error("Topology", "name", "a non-empty str", self.name)
        if not isinstance(self.weights, str):
            raise _param_error("Topology", "weights", "a str", self.weights)
        X, ev = _check_mixing_matrix(self.W, self.graph, 1e-8, "Topology")
        ev.setflags(write=False)
        object.__setattr__(self, "W", torch.from_numpy(X))
        object.__setattr__(self, "_eigenvalues", ev)
        object.__setattr__(self, "_lam", _lambda_from_eigenvalues(ev))
        degrees = [
            sum(1 for j in self.graph.neighbors(i) if j != i) for i in range(self.graph.number_of_nodes())
        ]
        object.__setattr__(self, "_degrees", degrees)

    @classmethod
    def from_graph(cls, graph: nx.Graph, weights: str = "metropolis", name: str = "custom") -> Topology:
        """Topology on any networkx graph (relabelled to 0..n-1 by :func:`graph_from_networkx`), W by a rule.

        ``weights`` is ``"metropolis"``, ``"max_degree"`` or ``"lazy_metropolis"`` (aliases accepted).
        """
        G = graph_from_networkx(graph)
        rule = _canonical_weights(weights)
        if rule == "user":
            raise ProxGTValueError(
                "Topology.from_graph computes W from the graph; for a given matrix use "
                "Topology(name, graph, W)."
            )
        return cls(name, G, _weights_for(G, rule, None), rule)

    @property
    def n(self) -> int:
        """Number of nodes."""
        return self.graph.number_of_nodes()

    @property
    def lam(self) -> float:
        """lambda = ||W - J||_2, J = 11^T / n: the factor by which one gossip round shrinks disagreement."""
        return self._lam

    @property
    def spectral_gap(self) -> float:
        """1 - lambda: about 1/gap plain gossip rounds (1/sqrt(gap) Chebyshev) reach a fixed accuracy."""
        return 1.0 - self._lam

    @property
    def eigenvalues(self) -> np.ndarray:
        """Eigenvalues of W in ascending order (float64, read-only, computed once); the last one is 1."""
        return self._eigenvalues

    @property
    def degrees(self) -> list[int]:
        """Degree of node i (number of neighbours, self excluded) at index i."""
        return list(self._degrees)

    @property
    def num_edges(self) -> int:
        """Number of undirected edges (self-loops excluded)."""
        return self.graph.number_of_edges() - nx.number_of_selfloops(self.graph)

    def neighbors(self, i: int) -> list[int]:
        """Sorted neighbours of node ``i`` (itself excluded): the nodes it sends to in one gossip round."""
        if isinstance(i, bool) or not isinstance(i, int | np.integer) or not (0 <= i < self.n):
            raise _param_error("Topology.neighbors", "i", f"an int in [0, {self.n - 1}]", i)
        return sorted(int(j) for j in self.graph.neighbors(int(i)) if j != i)

    def summary(self) -> dict[str, Any]:
        """Plain-Python description (name, n, edges, weight rule, lambda, gap) for logs and configs."""
        return {
            "name": self.name,
            "n": self.n,
            "num_edges": self.num_edges,
            "weights": self.weights,
            "lam": self.lam,
            "spectral_gap": self.spectral_gap,
            "max_degree": max(self._degrees, default=0),
        }

    def __repr__(self) -> str:
        return (
            f"Topology(name={self.name!r}, n={self.n}, num_edges={self.num_edges}, weights={self.weights!r}, "
            f"lam={self.lam:.4g})"
        )
