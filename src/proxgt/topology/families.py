"""Topology families as registered in :data:`proxgt.registry.TOPOLOGIES`: a graph builder plus what it accepts.

A :class:`GraphFamily` wraps a builder ``build(n, *, seed, <accepted settings>) -> networkx.Graph`` and declares
which of the family settings ``p`` (the run's ``topology_p``), ``radius`` (``topology_radius``) and ``edge_file``
it takes, so :func:`proxgt.topology.make_topology` refuses a setting the chosen family would ignore. Calling a
family with the registry's convention ``family(n, seed=..., p=..., radius=..., edge_file=...)`` passes on only
what it accepts.

A plain function registered as a family (``TOPOLOGIES.register("mine", my_graph)``) becomes one through
:func:`as_family`: it accepts the family settings that appear among its keyword parameters.

The builders here validate their settings and word their errors in terms of the run settings (``nodes``,
``topology_p``, ...), which are also the CLI flags and TOML keys; the generators in
:mod:`proxgt.topology._graphs` keep the wording of their own Python parameters.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np

from proxgt._validation import ProxGTValueError
from proxgt.topology._graphs import (
    DENSE_MAX_NODES,
    SparseGraph,
    _check_n,
    _erdos_renyi_edges,
    _is_positive_real,
    _locality_order,
    _random_geometric_edges,
    _require_connected,
    _require_connected_sparse,
    _sample_erdos_renyi,
    _sample_random_geometric,
    complete_graph,
    default_radius,
    exponential_graph,
    family_edges,
    graph_from_edge_list,
    grid_graph,
    path_graph,
    ring_graph,
    star_graph,
    torus_graph,
)
from proxgt.topology._graphs import hypercube_graph as _hypercube_graph
from proxgt.topology._weights import validate_mixing_matrix

__all__ = [
    "FAMILY_SETTINGS",
    "GraphFamily",
    "as_family",
    "default_er_probability",
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
]

#: Family settings a family may accept: keyword -> (run setting, CLI flag), for messages.
FAMILY_SETTINGS: dict[str, tuple[str, str]] = {
    "p": ("topology_p", "--topology-p"),
    "radius": ("topology_radius", "--topology-radius"),
    "edge_file": ("edge_file", "--edge-file"),
}


@dataclass(frozen=True)
class GraphFamily:
    """A topology family: ``build(n, *, seed, **accepted) -> networkx.Graph`` on nodes 0..n-1.

    Attributes:
        build: the builder; it receives ``n``, ``seed`` and, by keyword, the settings named in ``accepts``, and
            returns a ``networkx.Graph`` or (what the shipped families do above ``DENSE_MAX_NODES`` nodes) a
            :class:`~proxgt.topology._graphs.SparseGraph` edge array.
        accepts: which of :data:`FAMILY_SETTINGS` (``"p"``, ``"radius"``, ``"edge_file"``) the family takes, plus
            ``"matrix"`` for a family that may read its graph off the user's mixing matrix.
        nodes_from_source: the graph's source (a file) fixes the node count, so ``n`` may be None (or 0) and is
            then taken from it; the builder checks a given ``n`` against the source.
    """

    build: Callable[..., nx.Graph]
    accepts: tuple[str, ...] = ()
    nodes_from_source: bool = False

    def __call__(
        self,
        n: int | None,
        *,
        seed: Any = None,
        p: float | None = None,
        radius: float | None = None,
        edge_file: Any = None,
        matrix: Any = None,
    ) -> nx.Graph:
        given = {"p": p, "radius": radius, "edge_file": edge_file, "matrix": matrix}
        return self.build(n, seed=seed, **{k: given[k] for k in self.accepts})


def as_family(obj: Any) -> GraphFamily:
    """``obj`` itself if it is a :class:`GraphFamily`; a plain callable ``f(n, *, seed, ...)`` is wrapped, and
    accepts those family settings that are among its parameters (all of them if it takes ``**kwargs``)."""
    if isinstance(obj, GraphFamily):
        return obj
    if not callable(obj):
        raise ProxGTValueError(f"a topology family must be a GraphFamily or a callable; got {type(obj).__name__}")
    params = inspect.signature(obj).parameters
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    accepts = tuple(k for k in FAMILY_SETTINGS if var_kw or k in params)
    if var_kw or "seed" in params:
        return GraphFamily(obj, accepts)

    def build(n: int, *, seed: Any = None, **kw: Any) -> nx.Graph:  # a deterministic family without a seed parameter
        return obj(n, **kw)

    return GraphFamily(build, accepts)


def default_er_probability(n: int) -> float:
    """Default p of ``make_topology("erdos_renyi", n)``: min(1, 2 log(n) / n), rounded up to 3 decimals.

    Twice the connectivity threshold log(n)/n, so most seeds give a connected graph; rounding up keeps the
    value readable in configs without going below the formula. n = 1 gives 0 (a single node needs no edges).
    """
    n = _check_n(n, "default_er_probability")
    return min(1.0, math.ceil(2.0 * math.log(n) / n * 1000.0) / 1000.0)


# ---------------------------------------------------------------------------------------------- builders
#: Most non-zeros (2 per edge plus the diagonal) a family's sparse mixing matrix may have: 2^28 (about 3 GiB of
#: CSR float64 + int32 indices); a complete graph reaches it near 16,000 nodes.
MAX_MIXING_NONZEROS = 2**28


def _size(n_bytes: float) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{n_bytes:.0f} bytes"


def _check_edge_count(family: str, n: int, edges: int) -> None:
    nnz = 2 * edges + n
    if nnz > MAX_MIXING_NONZEROS:
        raise ProxGTValueError(
            f"nodes = {n} (--nodes) is more than topology = '{family}' supports: its {edges:,} edges make a mixing "
            f"matrix of {nnz:,} non-zeros ({_size(nnz * 12.0)} even in sparse form, the limit is "
            f"{MAX_MIXING_NONZEROS:,}); use fewer nodes or a sparser family (exponential, erdos_renyi, ring)"
        )


def _deterministic(graph: Callable[[int], nx.Graph], family: str | None = None) -> Callable[..., Any]:
    """Builder of a deterministic family: the networkx generator up to DENSE_MAX_NODES nodes, the same edges as a
    :class:`SparseGraph` above."""

    def build(n: int, *, seed: Any = None) -> nx.Graph | SparseGraph:
        if family is not None and family == "complete":
            _check_edge_count(family, n, n * (n - 1) // 2)
        if family is None or n <= DENSE_MAX_NODES:
            return graph(n)
        return SparseGraph(n, family_edges(family, n), family)

    build.__doc__ = graph.__doc__
    return build


def _hypercube(n: int, *, seed: Any = None) -> nx.Graph | SparseGraph:
    if n & (n - 1):
        lower = 1 << (n.bit_length() - 1)
        raise ProxGTValueError(
            f"nodes = {n} (--nodes) must be a power of 2 (1, 2, 4, 8, ...) for topology = 'hypercube'; "
            f"the nearest are {lower} and {2 * lower}"
        )
    if n > DENSE_MAX_NODES:
        return SparseGraph(n, family_edges("hypercube", n), "hypercube")
    return _hypercube_graph(n)


def _erdos_renyi(n: int, *, seed: Any = None, p: float | None = None) -> nx.Graph | SparseGraph:
    if p is None:
        p = default_er_probability(n)
    elif isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= float(p) <= 1.0:
        raise ProxGTValueError(f"topology_p = {p!r} (--topology-p) must be a probability in [0, 1]")
    p = float(p)
    _check_edge_count("erdos_renyi", n, int(p * n * (n - 1) / 2))
    suggested = min(1.0, 2.0 * math.log(n) / n)
    what = f"topology = 'erdos_renyi' with nodes = {n}, topology_p = {p:g} and seed = {seed!r}"
    fix = (f"set a larger topology_p (--topology-p; 2 log(nodes) / nodes = {suggested:.3g} is usually enough) "
           "or another seed")
    if n > DENSE_MAX_NODES:
        G = SparseGraph(n, _erdos_renyi_edges(n, p, seed, "erdos_renyi_graph"), "erdos_renyi")
        _require_connected_sparse(G, what, fix)
        return G
    G = _sample_erdos_renyi(n, p, seed, "erdos_renyi_graph")
    _require_connected(G, what, fix)
    return G


def _random_geometric(n: int, *, seed: Any = None, radius: float | None = None) -> nx.Graph | SparseGraph:
    if radius is None:
        radius = default_radius(n)
    elif not _is_positive_real(radius):
        raise ProxGTValueError(f"topology_radius = {radius!r} (--topology-radius) must be a finite number > 0")
    radius = float(radius)
    _check_edge_count("random_geometric", n, int(min(1.0, math.pi * radius * radius) * n * (n - 1) / 2))
    what = f"topology = 'random_geometric' with nodes = {n}, topology_radius = {radius:.4g} and seed = {seed!r}"
    fix = "set a larger topology_radius (--topology-radius) or another seed"
    if n > DENSE_MAX_NODES:
        # the points are numbered in strips (_locality_order): the same graph as the all-pairs rule, relabelled
        pos, pairs = _random_geometric_edges(n, radius, seed, "random_geometric_graph")
        G = SparseGraph(n, _locality_order(pos, radius)[pairs], "random_geometric")
        _require_connected_sparse(G, what, fix)
        return G
    G = _sample_random_geometric(n, radius, seed, "random_geometric_graph")
    _require_connected(G, what, fix)
    return G


def _from_file(n: int | None, *, seed: Any = None, edge_file: Any = None, matrix: Any = None) -> nx.Graph:
    """The graph of an edge-list file, or else the support of the user's mixing matrix."""
    if edge_file is not None:
        G = graph_from_edge_list(edge_file)
        source = f"the edge-list file '{edge_file}'"
    elif matrix is not None:
        support = validate_mixing_matrix(matrix).numpy()
        G = nx.Graph(name="file")
        G.add_nodes_from(range(support.shape[0]))
        G.add_edges_from((int(i), int(j)) for i, j in np.argwhere(np.triu(support > 1e-8, k=1)))
        source = "the mixing matrix (weights_file)"
    else:
        raise ProxGTValueError(
            "topology = 'file' needs an edge list (edge_file, --edge-file) or a mixing matrix "
            "(weights_file, --weights-file, with weights = 'user')"
        )
    m = G.number_of_nodes()
    if n is not None and n != m:
        raise ProxGTValueError(f"nodes = {n} (--nodes) but {source} has {m} nodes; set nodes to {m}")
    return G


# ---------------------------------------------------------------------------------------------- the families
# Registered in proxgt.registry under "# --- topologies" (with their summaries and aliases).
ring = GraphFamily(_deterministic(ring_graph, "ring"))
path = GraphFamily(_deterministic(path_graph, "path"))
star = GraphFamily(_deterministic(star_graph, "star"))
complete = GraphFamily(_deterministic(complete_graph, "complete"))
grid = GraphFamily(_deterministic(grid_graph, "grid"))
torus = GraphFamily(_deterministic(torus_graph, "torus"))
hypercube = GraphFamily(_hypercube)
exponential = GraphFamily(_deterministic(exponential_graph, "exponential"))
erdos_renyi = GraphFamily(_erdos_renyi, accepts=("p",))
random_geometric = GraphFamily(_random_geometric, accepts=("radius",))
file = GraphFamily(_from_file, accepts=("edge_file", "matrix"), nodes_from_source=True)
