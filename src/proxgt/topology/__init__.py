"""Communication topologies: graph families, mixing-matrix weight rules, and the :class:`Topology` bundle.

n nodes talk only to graph neighbours through a mixing matrix W (spec section 1): symmetric, doubly
stochastic, W_ij > 0 only on edges and the diagonal, and lambda = ||W - J||_2 < 1 with J = 11^T / n. The
spectral gap 1 - lambda decides how many gossip rounds multi-round mixing needs (spec section 4).

Typical use::

    >>> from proxgt.topology import make_topology
    >>> topo = make_topology("ring", 8)
    >>> topo.n, topo.num_edges, round(topo.lam, 4)
    (8, 8, 0.8047)

or piece by piece: ``Topology("my-ring", ring_graph(8), metropolis_weights(ring_graph(8)))``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import torch

from proxgt._validation import ProxGTValueError
from proxgt.topology._graphs import (
    _check_n,
    _param_error,
    complete_graph,
    default_radius,
    erdos_renyi_graph,
    exponential_graph,
    graph_from_edge_list,
    graph_from_networkx,
    grid_graph,
    grid_shape,
    hypercube_graph,
    path_graph,
    random_geometric_graph,
    ring_graph,
    star_graph,
    torus_graph,
)
from proxgt.topology._weights import (
    _check_mixing_matrix,
    _lambda_from_eigenvalues,
    lazy_weights,
    max_degree_weights,
    metropolis_weights,
    mixing_lambda,
    validate_mixing_matrix,
)

__all__ = [
    "TOPOLOGY_NAMES",
    "WEIGHT_RULES",
    "Topology",
    "make_topology",
    "ring_graph",
    "path_graph",
    "star_graph",
    "complete_graph",
    "grid_graph",
    "grid_shape",
    "torus_graph",
    "hypercube_graph",
    "exponential_graph",
    "erdos_renyi_graph",
    "random_geometric_graph",
    "default_radius",
    "default_er_probability",
    "graph_from_edge_list",
    "graph_from_networkx",
    "metropolis_weights",
    "max_degree_weights",
    "lazy_weights",
    "validate_mixing_matrix",
    "mixing_lambda",
]

TOPOLOGY_NAMES: tuple[str, ...] = (
    "ring",
    "path",
    "star",
    "complete",
    "grid",
    "torus",
    "hypercube",
    "exponential",
    "erdos_renyi",
    "random_geometric",
    "file",
)
WEIGHT_RULES: tuple[str, ...] = ("metropolis", "max_degree", "lazy_metropolis", "user")

_TOPOLOGY_ALIASES: dict[str, str] = {
    "er": "erdos_renyi",
    "gnp": "erdos_renyi",
    "erdos": "erdos_renyi",
    "rgg": "random_geometric",
    "geometric": "random_geometric",
    "cycle": "ring",
    "full": "complete",
    "exp": "exponential",
    "edge_list": "file",
    "edgelist": "file",
}
_WEIGHT_ALIASES: dict[str, str] = {
    "metropolis_hastings": "metropolis",
    "mh": "metropolis",
    "maxdegree": "max_degree",
    "max_deg": "max_degree",
    "lazy": "lazy_metropolis",
    "lazy_mh": "lazy_metropolis",
    "matrix": "user",
}

_DETERMINISTIC: dict[str, Callable[[int], nx.Graph]] = {
    "ring": ring_graph,
    "path": path_graph,
    "star": star_graph,
    "complete": complete_graph,
    "grid": grid_graph,
    "torus": torus_graph,
    "hypercube": hypercube_graph,
    "exponential": exponential_graph,
}


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


def default_er_probability(n: int) -> float:
    """Default p of ``make_topology("erdos_renyi", n)``: min(1, 2 log(n) / n), rounded up to 3 decimals.

    Twice the connectivity threshold log(n)/n, so most seeds give a connected graph; rounding up keeps the
    value readable in configs without going below the formula. n = 1 gives 0 (a single node needs no edges).
    """
    n = _check_n(n, "default_er_probability")
    return min(1.0, math.ceil(2.0 * math.log(n) / n * 1000.0) / 1000.0)


def _canonical(value: Any, what: str, names: tuple[str, ...], aliases: dict[str, str]) -> str:
    if not isinstance(value, str):
        raise _param_error("make_topology", what, "a str, one of " + ", ".join(names), value)
    key = value.strip().lower().replace("-", "_").replace(" ", "_")
    key = aliases.get(key, key)
    if key not in names:
        raise _param_error("make_topology", what, "one of " + ", ".join(repr(c) for c in names), value)
    return key


def _canonical_weights(weights: Any) -> str:
    return _canonical(weights, "weights", WEIGHT_RULES, _WEIGHT_ALIASES)


def _load_matrix(matrix: Any) -> Any:
    """A matrix given directly, or read from a ``.npy`` file or a text file (whitespace/comma separated)."""
    if not isinstance(matrix, str | os.PathLike):
        return matrix
    path = Path(matrix)
    if not path.is_file():
        raise ProxGTValueError(f"mixing-matrix file '{matrix}' does not exist.")
    try:
        if path.suffix.lower() == ".npy":
            return np.load(path, allow_pickle=False)
        text = path.read_text(encoding="utf-8")
        return np.loadtxt(path, dtype=np.float64, delimiter="," if "," in text else None, ndmin=2)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ProxGTValueError(f"could not read mixing matrix from '{matrix}': {reason}") from exc


def _weights_for(G: nx.Graph, rule: str, matrix: Any) -> torch.Tensor:
    if rule == "metropolis":
        return metropolis_weights(G)
    if rule == "max_degree":
        return max_degree_weights(G)
    if rule == "lazy_metropolis":
        return lazy_weights(metropolis_weights(G))
    return validate_mixing_matrix(matrix, G)


def make_topology(
    name: str,
    n: int | None,
    *,
    weights: str = "metropolis",
    seed: int | None = 0,
    p: float | None = None,
    radius: float | None = None,
    edge_file: str | os.PathLike[str] | None = None,
    matrix: Any = None,
) -> Topology:
    """Build a validated :class:`Topology` from a family name, a node count and a weight rule.

    Args:
        name: one of :data:`TOPOLOGY_NAMES` (case-insensitive, ``-`` or ``_``); aliases ``"er"`` ->
            erdos_renyi, ``"rgg"``/``"geometric"`` -> random_geometric, ``"cycle"`` -> ring, ``"full"`` ->
            complete, ``"exp"`` -> exponential.
        n: number of nodes (int >= 1). For ``"file"`` it may be ``None`` or 0, meaning "as many as the file
            has"; otherwise it must equal the file's (or matrix's) node count.
        weights: one of :data:`WEIGHT_RULES`: ``"metropolis"`` (default; aliases ``"metropolis_hastings"``,
            ``"mh"``), ``"max_degree"``, ``"lazy_metropolis"`` ((I + W_metropolis) / 2), or ``"user"``: W is
            ``matrix``, validated against the graph.
        seed: seed of the random families (int >= 0 reproducible, None fresh entropy); ignored by the others.
        p: edge probability for ``"erdos_renyi"`` (default :func:`default_er_probability`).
        radius: connection radius for ``"random_geometric"`` (default :func:`default_radius`).
        edge_file: edge list for ``"file"`` (format in :func:`graph_from_edge_list`).
        matrix: the mixing matrix for ``weights="user"``: tensor, array, nested list, or a path to a ``.npy``
            or text file. With ``name="file"`` and no ``edge_file`` the graph is the support of ``matrix``.

    Parameters that do not belong to the chosen family (``p`` for a ring, say) are refused rather than
    silently ignored, as is a ``matrix`` without ``weights="user"``, so configuration typos surface early.

    >>> make_topology("complete", 4).lam < 1e-12
    True
    """
    topo = _canonical(name, "name", TOPOLOGY_NAMES, _TOPOLOGY_ALIASES)
    rule = _canonical_weights(weights)
    for pname, value, owner in (
        ("p", p, "erdos_renyi"),
        ("radius", radius, "random_geometric"),
        ("edge_file", edge_file, "file"),
    ):
        if value is not None and topo != owner:
            raise ProxGTValueError(
                f"The '{pname}' parameter of make_topology is only used with name='{owner}'; "
                f"got {pname}={value!r} with name='{topo}'."
            )
    if (matrix is not None) != (rule == "user"):
        raise ProxGTValueError(
            "make_topology: weights='user' needs a matrix and a matrix needs weights='user'; got "
            f"weights={weights!r} and {'a' if matrix is not None else 'no'} matrix."
        )
    W_user = _load_matrix(matrix) if matrix is not None else None

    if topo == "file":
        if edge_file is not None:
            G = graph_from_edge_list(edge_file)
            source = f"edge-list file '{edge_file}'"
        elif W_user is not None:
            support = validate_mixing_matrix(W_user).numpy()
            G = nx.Graph(name="file")
            G.add_nodes_from(range(support.shape[0]))
            G.add_edges_from((int(i), int(j)) for i, j in np.argwhere(np.triu(support > 1e-8, k=1)))
            source = "the mixing matrix"
        else:
            raise ProxGTValueError(
                "make_topology: name='file' needs edge_file (an edge list) or matrix (with weights='user')."
            )
        if n is not None and not (isinstance(n, int) and not isinstance(n, bool) and n == 0):
            n = _check_n(n, "make_topology")
            if n != G.number_of_nodes():
                raise ProxGTValueError(
                    f"make_topology: n={n} but {source} has {G.number_of_nodes()} nodes; pass "
                    f"n={G.number_of_nodes()} or n=None to take it from the file."
                )
    else:
        n = _check_n(n, "make_topology")
        if topo == "erdos_renyi":
            G = erdos_renyi_graph(n, default_er_probability(n) if p is None else p, seed=seed)
        elif topo == "random_geometric":
            G = random_geometric_graph(n, radius, seed=seed)
        else:
            G = _DETERMINISTIC[topo](n)
    return Topology(topo, G, _weights_for(G, rule, W_user), rule)
