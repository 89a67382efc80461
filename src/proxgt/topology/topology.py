"""The :class:`Topology` bundle: a communication graph and its mixing matrix, validated together.

n nodes talk only to graph neighbours through a mixing matrix W (spec section 1): symmetric, doubly
stochastic, W_ij > 0 only on edges and the diagonal, and lambda = ||W - J||_2 < 1 with J = 11^T / n. The
spectral gap 1 - lambda decides how many gossip rounds multi-round mixing needs (spec section 4).

Two forms, by size: up to :data:`~proxgt.topology._graphs.DENSE_MAX_NODES` nodes W is a dense matrix whose
full spectrum is computed once; above it W is a sparse CSR matrix (O(n + edges) memory) and lambda comes from
``scipy.sparse.linalg.eigsh`` (see :func:`proxgt.topology._weights._sparse_spectrum_ends`).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import networkx as nx
import numpy as np
import scipy.sparse as sp
import torch

from proxgt._validation import ProxGTValueError
from proxgt._validation import param_error as _param_error
from proxgt.topology._graphs import DENSE_MAX_NODES, SparseGraph, graph_from_networkx
from proxgt.topology._weights import (
    _canonical_weights,
    _check_mixing_matrix,
    _check_sparse_mixing_matrix,
    _lambda_from_eigenvalues,
    _weights_for,
)

__all__ = ["Topology", "SPECTRUM_GRID"]

#: Points standing in for the interior of a large W's spectrum in :attr:`Topology.spectrum`.
SPECTRUM_GRID = 513


class Topology:
    """A communication graph and its mixing matrix, validated together; immutable.

    Args / attributes:
        name: family or user label (``"ring"``, ``"erdos_renyi"``, ...), used in logs and result files.
        graph: undirected graph on nodes 0..n-1 (node i is rank i in a distributed run): a ``networkx.Graph``
            or, for large n, a :class:`~proxgt.topology._graphs.SparseGraph` edge array. :attr:`graph` always
            returns a ``networkx.Graph`` (built on first use for a large one).
        W: the n x n mixing matrix, checked by :func:`validate_mixing_matrix` against ``graph``: dense (tensor,
            array, list) or a scipy sparse matrix. Stored as a float64 torch tensor, dense up to
            ``DENSE_MAX_NODES`` nodes and sparse CSR above (:attr:`W_csr` is the scipy CSR form in both cases).
        weights: the weight rule that produced ``W`` (one of :data:`WEIGHT_RULES`; ``"user"`` if unknown).
        time_varying: the graph changes every gossip round (``graph`` is the union of the rounds' graphs and
            ``W`` their expected matrix; see :mod:`proxgt.topology.time_varying`).

    Small topologies compute W's full spectrum once (``numpy.linalg.eigvalsh``); large ones only its ends
    (``eigsh``), so :attr:`eigenvalues` exists only for the small ones and :attr:`spectrum` for both.
    """

    def __init__(self, name: str, graph: nx.Graph | SparseGraph, W: Any, weights: str = "user", *,
                 time_varying: bool = False):
        if not isinstance(name, str) or not name:
            raise _param_error("Topology", "name", "a non-empty str", name)
        if not isinstance(weights, str):
            raise _param_error("Topology", "weights", "a str", weights)
        self.name, self.weights, self.time_varying = name, weights, bool(time_varying)
        n = graph.number_of_nodes() if isinstance(graph, nx.Graph | SparseGraph) else None
        if n is None or n <= DENSE_MAX_NODES:  # not a graph (the check below says so), or a small one
            if isinstance(graph, SparseGraph):
                graph = graph.to_networkx()
            if sp.issparse(W):
                W = W.toarray()
            X, ev = _check_mixing_matrix(W, graph, 1e-8, "Topology")
            ev.setflags(write=False)
            self._graph: nx.Graph | None = graph
            self._edges = _edges_of(graph)
            self._W = torch.from_numpy(X)
            self._W_csr = sp.csr_matrix(X)
            self._eigenvalues: np.ndarray | None = ev
            self._ends = (float(ev[0]), float(ev[-2]) if ev.size > 1 else 0.0, "eigvalsh")
            self._lam = _lambda_from_eigenvalues(ev)
        else:
            if isinstance(graph, nx.Graph):
                sg = SparseGraph(n, _edges_of(graph_from_networkx(graph) if set(graph.nodes) != set(range(n))
                                              else graph), str(graph.graph.get("name") or name))
                self._graph = graph
            else:
                sg, self._graph = graph, None
            self._edges = sg.edges
            X, ends = _check_sparse_mixing_matrix(W, sg.adjacency(), 1e-8, "Topology")
            self._W_csr = X
            with warnings.catch_warnings():  # "sparse CSR support is in beta"
                warnings.simplefilter("ignore", UserWarning)
                self._W = torch.sparse_csr_tensor(
                    torch.from_numpy(X.indptr.astype(np.int64)), torch.from_numpy(X.indices.astype(np.int64)),
                    torch.from_numpy(X.data), size=X.shape, dtype=torch.float64,
                )
            self._eigenvalues = None
            self._ends = ends
            self._lam = float(max(abs(ends[0]), ends[1]))
        self._n = int(self._W_csr.shape[0])
        self._degrees = np.bincount(self._edges.ravel(), minlength=self._n).astype(np.int64)
        self._adj = SparseGraph(self._n, self._edges).adjacency()  # for neighbors()
        self._adj.sort_indices()
        self._frozen = True

    def __setattr__(self, key: str, value: Any) -> None:
        if getattr(self, "_frozen", False):
            raise dataclasses.FrozenInstanceError(f"cannot assign to field {key!r}: a Topology is immutable")
        object.__setattr__(self, key, value)

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
    def graph(self) -> nx.Graph:
        """The graph as a ``networkx.Graph`` (built from the edge array on first use for a large topology)."""
        if self._graph is None:
            object.__setattr__(self, "_graph", _new_nx(self._n, self.name, self._edges))  # a cache
        return self._graph

    @property
    def W(self) -> torch.Tensor:
        """W as float64: a dense tensor up to ``DENSE_MAX_NODES`` nodes, a torch sparse CSR tensor above."""
        return self._W

    @property
    def W_csr(self) -> sp.csr_matrix:
        """W as a scipy CSR float64 matrix (a copy), whatever the size."""
        return self._W_csr.copy()

    @property
    def is_sparse(self) -> bool:
        """Whether W is held in sparse form (more than ``DENSE_MAX_NODES`` nodes)."""
        return self._eigenvalues is None

    @property
    def edges(self) -> np.ndarray:
        """(num_edges, 2) int64 array of the undirected edges, i < j, sorted (a copy)."""
        return self._edges.copy()

    @property
    def n(self) -> int:
        """Number of nodes."""
        return self._n

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
        """Eigenvalues of W in ascending order (float64, read-only, computed once); the last one is 1.

        Only small topologies have them; a large one (sparse W) raises, see :attr:`spectrum`."""
        if self._eigenvalues is None:
            raise ProxGTValueError(
                f"the full spectrum of a {self._n}-node mixing matrix is not computed (more than {DENSE_MAX_NODES} "
                "nodes); use Topology.spectrum, which bounds it"
            )
        return self._eigenvalues

    @property
    def spectrum(self) -> np.ndarray:
        """What the round counts (``rounds = auto``, :func:`~proxgt.mixing.rounds_for_target`) are computed from.

        Small topologies: :attr:`eigenvalues`. Large ones: the interval [lambda_min, lambda_2] that holds every
        eigenvalue but the 1 (its ends from ``eigsh``, or the Gershgorin bound for lambda_min, see
        :attr:`spectrum_method`), sampled at :data:`SPECTRUM_GRID` points, then the 1. A contraction computed
        from it is the maximum over the interval, so rounds chosen from it reach their target on the true
        spectrum (exactly the same rounds for plain and Chebyshev mixing, whose worst case is an end).
        """
        if self._eigenvalues is not None:
            return self._eigenvalues
        lo, hi, _ = self._ends
        out = np.concatenate([np.linspace(lo, hi, SPECTRUM_GRID), [1.0]])
        out.setflags(write=False)
        return out

    @property
    def spectrum_method(self) -> str:
        """How the ends of the spectrum were found: ``"eigvalsh"`` (small), ``"eigsh"`` or ``"eigsh (lambda_2),
        Gershgorin (lambda_min)"``."""
        return self._ends[2]

    @property
    def degrees(self) -> list[int]:
        """Degree of node i (number of neighbours, self excluded) at index i."""
        degrees: list[int] = self._degrees.tolist()
        return degrees

    @property
    def num_edges(self) -> int:
        """Number of undirected edges (self-loops excluded)."""
        return int(self._edges.shape[0])

    def neighbors(self, i: int) -> list[int]:
        """Sorted neighbours of node ``i`` (itself excluded): the nodes it sends to in one gossip round."""
        if isinstance(i, bool) or not isinstance(i, int | np.integer) or not (0 <= i < self.n):
            raise _param_error("Topology.neighbors", "i", f"an int in [0, {self.n - 1}]", i)
        A = self._adj
        return [int(j) for j in A.indices[A.indptr[int(i)] : A.indptr[int(i) + 1]]]

    def summary(self) -> dict[str, Any]:
        """Plain-Python description (name, n, edges, weight rule, lambda, gap) for logs and configs."""
        return {
            "name": self.name,
            "n": self.n,
            "num_edges": self.num_edges,
            "weights": self.weights,
            "lam": self.lam,
            "spectral_gap": self.spectral_gap,
            "max_degree": int(self._degrees.max(initial=0)),
        }

    def __repr__(self) -> str:
        return (
            f"Topology(name={self.name!r}, n={self.n}, num_edges={self.num_edges}, weights={self.weights!r}, "
            f"lam={self.lam:.4g})"
        )


def _edges_of(G: nx.Graph) -> np.ndarray:
    n = G.number_of_nodes()
    return SparseGraph(n, np.asarray([(u, v) for u, v in G.edges if u != v], dtype=np.int64).reshape(-1, 2)).edges


def _new_nx(n: int, name: str, edges: np.ndarray) -> nx.Graph:
    G = nx.Graph(name=name)
    G.add_nodes_from(range(n))
    G.add_edges_from(edges.tolist())
    return G
