""":func:`make_topology`: a validated :class:`~proxgt.topology.Topology` from the run's topology settings.

The family is looked up in :data:`proxgt.registry.TOPOLOGIES` (see :mod:`proxgt.topology.families`), so a family
registered there, by the library or by user code, is built like the shipped ones. Errors name the run settings
the values came from (``nodes``, ``topology``, ``topology_p``, ``topology_radius``, ``edge_file``, ``weights``,
``weights_file``), which are also the CLI flags (``--nodes``, ...) and TOML keys.
"""

from __future__ import annotations

import numbers
import os
from typing import Any

from proxgt._validation import ProxGTValueError
from proxgt.errors import UnknownNameError
from proxgt.registry import TOPOLOGIES
from proxgt.topology._graphs import DENSE_MAX_NODES, SparseGraph, graph_from_networkx
from proxgt.topology._weights import _canonical_weights, _load_matrix, _sparse_weights, _weights_for
from proxgt.topology.families import FAMILY_SETTINGS, as_family
from proxgt.topology.topology import Topology

__all__ = ["MAX_DENSE_NODES", "TOPOLOGY_NAMES", "make_topology"]

#: The topology families registered when proxgt is imported (``TOPOLOGIES.names()`` also lists later ones).
TOPOLOGY_NAMES: tuple[str, ...] = tuple(TOPOLOGIES.names())

#: Up to this many nodes a topology is held in dense form (networkx graph, dense W, full spectrum); above it in
#: sparse form (edge array, CSR W, lambda from ``eigsh``). There is no node limit of its own any more: a family
#: refuses sizes it cannot hold (see :data:`proxgt.topology.families.MAX_MIXING_NONZEROS`).
MAX_DENSE_NODES = DENSE_MAX_NODES


def _check_nodes(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ProxGTValueError(f"nodes = {n!r} (--nodes) must be an int >= 1")
    return int(n)


def _canonical_family(name: Any) -> str:
    names = ", ".join(TOPOLOGIES.names())
    if not isinstance(name, str):
        raise ProxGTValueError(f"topology (--topology) must be the name of a family, one of: {names}; got {name!r}")
    try:
        return TOPOLOGIES.canonical(name.strip().replace(" ", "_"))
    except UnknownNameError:
        raise UnknownNameError(f"unknown topology {name!r} (--topology); choose one of: {names}") from None


def _users_of(setting: str) -> str:
    """The registered families that accept a family setting, for messages: "'erdos_renyi'"."""
    users = [f"'{nm}'" for nm in TOPOLOGIES.names() if setting in as_family(TOPOLOGIES.get(nm)).accepts]
    return " or ".join(users) if users else "no registered family"


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
        name: a family registered in :data:`proxgt.registry.TOPOLOGIES` (the run's ``topology``), one of
            :data:`TOPOLOGY_NAMES` unless user code registered more (case-insensitive, ``-`` or ``_``); aliases
            ``"er"`` -> erdos_renyi, ``"rgg"``/``"geometric"`` -> random_geometric, ``"cycle"`` -> ring,
            ``"full"`` -> complete, ``"exp"`` -> exponential.
        n: number of nodes (``nodes``; int >= 1; above :data:`MAX_DENSE_NODES` the topology is sparse). For
            ``"file"`` it may be ``None`` or 0, meaning "as many as the file has"; otherwise it must equal the
            file's (or matrix's) node count.
        weights: one of :data:`WEIGHT_RULES` (``weights``): ``"metropolis"`` (default; aliases
            ``"metropolis_hastings"``, ``"mh"``), ``"max_degree"``, ``"lazy_metropolis"`` ((I + W_metropolis) /
            2), or ``"user"``: W is ``matrix``, validated against the graph.
        seed: seed of the random families (int >= 0 reproducible, None fresh entropy); ignored by the others.
        p: edge probability for ``"erdos_renyi"`` (``topology_p``; default :func:`default_er_probability`).
        radius: connection radius for ``"random_geometric"`` (``topology_radius``; default
            :func:`default_radius`).
        edge_file: edge list for ``"file"`` (``edge_file``; format in :func:`graph_from_edge_list`).
        matrix: the mixing matrix for ``weights="user"`` (``weights_file``): tensor, array, nested list, or a
            path to a ``.npy`` or text file. With ``name="file"`` and no ``edge_file`` the graph is the support
            of ``matrix``.

    Settings that the chosen family does not accept (``p`` for a ring, say) are refused rather than silently
    ignored, as is a ``matrix`` without ``weights="user"``, so configuration typos surface early. So is a node
    count a family cannot hold (a complete graph's mixing matrix beyond 2^28 non-zeros), before it is built.

    >>> make_topology("complete", 4).lam < 1e-12
    True
    """
    topo = _canonical_family(name)
    family = as_family(TOPOLOGIES.get(topo))
    rule = _canonical_weights(weights)
    for key, value in (("p", p), ("radius", radius), ("edge_file", edge_file)):
        if value is not None and key not in family.accepts:
            setting, flag = FAMILY_SETTINGS[key]
            raise ProxGTValueError(
                f"{setting} = {value!r} ({flag}) is only used with topology = {_users_of(key)}; "
                f"got topology = '{topo}'"
            )
    if (matrix is not None) != (rule == "user"):
        raise ProxGTValueError(
            "weights = 'user' (--weights) needs a mixing matrix (weights_file, --weights-file) and a mixing matrix "
            f"needs weights = 'user'; got weights = {weights!r} and {'a' if matrix is not None else 'no'} matrix"
        )
    if family.nodes_from_source and (n is None or (isinstance(n, int) and not isinstance(n, bool) and n == 0)):
        n = None
    else:
        n = _check_nodes(n)
    W_user = _load_matrix(matrix) if matrix is not None else None

    G = family(n, seed=seed, p=p, radius=radius, edge_file=edge_file, matrix=W_user)
    m = G.number_of_nodes()
    if n is not None and m != n:
        raise ProxGTValueError(f"topology = '{topo}' built a graph with {m} nodes for nodes = {n} (--nodes)")
    if m <= DENSE_MAX_NODES:
        G = G.to_networkx() if isinstance(G, SparseGraph) else G
        return Topology(topo, G, _weights_for(G, rule, W_user), rule)
    if not isinstance(G, SparseGraph):
        G = SparseGraph(m, [(u, v) for u, v in graph_from_networkx(G).edges], topo)
    W = W_user if rule == "user" else _sparse_weights(m, G.edges, rule)
    return Topology(topo, G, W, rule)
