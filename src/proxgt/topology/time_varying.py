"""Time-varying topologies: a different sparse graph in every gossip round.

* ``one-peer-exponential``: in global gossip round r every node i talks to the one peer ``i XOR 2^(r mod
  log2 n)`` (weight 1/2 each). This is the symmetric form of the one-peer exponential graph used in
  decentralized deep learning (the directed form sends to ``i + 2^k mod n``, which is not symmetric): each round
  is a perfect matching, and log2(n) consecutive rounds of plain gossip average exactly (each round averages one
  bit of the node label). It needs n a power of 2.
* ``random-matching``: in every round a fresh uniformly random maximal matching of the active nodes (a
  random permutation, paired up; with an odd number one node idles), weight 1/2 on each matched pair.

The rounds themselves come from :class:`proxgt.mixing.dynamic.NetworkSchedule`. What is registered in
:data:`proxgt.registry.TOPOLOGIES` is the *union graph* of all rounds (the hypercube, resp. the complete graph):
the links a node may ever use, which fix the distributed executor's plan of who may talk to whom and the
counters' possible neighbours. Its ``Topology.W`` is the *expected* round matrix E[W_r] (averaged over the hop
lengths, resp. over the random matching), whose lambda is the "nominal" lambda that Chebyshev and fastmix take
their coefficients from (see docs/unreliable-networks.md).
"""

from __future__ import annotations

from typing import Any

import networkx as nx
import numpy as np
import torch

from proxgt.errors import ProxGTValueError
from proxgt.topology._graphs import complete_graph, hypercube_graph
from proxgt.topology.families import GraphFamily
from proxgt.topology.topology import Topology

__all__ = ["expected_matrix", "one_peer_exponential", "random_matching", "time_varying_topology"]


def _one_peer_union(n: int, *, seed: Any = None) -> nx.Graph:
    if n & (n - 1):
        lower = 1 << (n.bit_length() - 1)
        raise ProxGTValueError(
            f"nodes = {n} (--nodes) must be a power of 2 for topology = 'one-peer-exponential' (its rounds pair "
            f"i with i XOR 2^k); the nearest are {lower} and {2 * lower}"
        )
    return hypercube_graph(n)


def _matching_union(n: int, *, seed: Any = None) -> nx.Graph:
    return complete_graph(n)


#: the registered families: their graph is the union of all rounds
one_peer_exponential = GraphFamily(_one_peer_union)
random_matching = GraphFamily(_matching_union)


def expected_matrix(name: str, n: int) -> np.ndarray:
    """E[W_r] of a time-varying family with no failures (float64, n x n).

    one-peer-exponential: the mean over the log2(n) matchings, (1/2) I + A_hypercube / (2 log2 n).
    random-matching: each pair is matched with probability p = floor(n/2) / C(n, 2), so
    E[W] = (1 - (n-1) p / 2) I + (p / 2) (11^T - I).
    """
    if n == 1:
        return np.ones((1, 1))
    if name == "one-peer-exponential":
        dims = n.bit_length() - 1
        A: np.ndarray = nx.to_numpy_array(hypercube_graph(n), nodelist=range(n))
        return 0.5 * np.eye(n) + A / (2.0 * dims)
    if name == "random-matching":
        p = (n // 2) / (n * (n - 1) / 2)
        return (1.0 - (n - 1) * p / 2.0) * np.eye(n) + (p / 2.0) * (np.ones((n, n)) - np.eye(n))
    raise ProxGTValueError(f"{name!r} is not a time-varying topology")


def time_varying_topology(name: str, graph: nx.Graph) -> Topology:
    """The :class:`Topology` of a time-varying family: its union ``graph`` and the expected round matrix."""
    W = torch.from_numpy(expected_matrix(name, graph.number_of_nodes()))
    return Topology(name, graph, W, "matching", time_varying=True)
