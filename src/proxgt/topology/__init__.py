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

Modules: ``topology`` (:class:`Topology`), ``factory`` (:func:`make_topology`), ``families`` (the families
registered in :data:`proxgt.registry.TOPOLOGIES`), ``_graphs`` (graph generators), ``_weights`` (weight rules
and mixing-matrix checks).
"""

from ._graphs import (
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
from ._weights import (
    WEIGHT_RULES,
    lazy_weights,
    max_degree_weights,
    metropolis_weight,
    metropolis_weights,
    mixing_lambda,
    validate_mixing_matrix,
)
from .factory import MAX_DENSE_NODES, TOPOLOGY_NAMES, make_topology
from .families import GraphFamily, default_er_probability
from .topology import Topology

__all__ = [
    "TOPOLOGY_NAMES",
    "WEIGHT_RULES",
    "MAX_DENSE_NODES",
    "Topology",
    "GraphFamily",
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
    "metropolis_weight",
    "metropolis_weights",
    "max_degree_weights",
    "lazy_weights",
    "validate_mixing_matrix",
    "mixing_lambda",
]
