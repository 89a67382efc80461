"""Topologies above MAX_DENSE_NODES nodes: edge arrays, sparse W, lambda from eigsh, sparse gossip."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from proxgt.mixing import SimulatedCommunicator, rounds_for_target
from proxgt.topology import MAX_DENSE_NODES, make_topology, metropolis_weights, random_geometric_graph
from proxgt.topology._graphs import SparseGraph, _erdos_renyi_edges, family_edges
from proxgt.topology.topology import Topology

N = MAX_DENSE_NODES + 100


def _exact(topo: Topology) -> np.ndarray:
    return np.linalg.eigvalsh(topo.W_csr.toarray())


def test_sparse_ring_lambda_is_the_closed_form() -> None:
    topo = make_topology("ring", N)
    assert topo.is_sparse and topo.W.layout == torch.sparse_csr
    assert topo.lam == pytest.approx(1 / 3 + 2 / 3 * math.cos(2 * math.pi / N), abs=1e-10)
    assert topo.degrees == [2] * N and topo.num_edges == N and topo.neighbors(0) == [1, N - 1]
    with pytest.raises(Exception, match="full spectrum of a 600-node mixing matrix is not computed"):
        topo.eigenvalues  # noqa: B018


@pytest.mark.parametrize("family", ["random_geometric", "erdos_renyi", "exponential", "torus", "star"])
def test_sparse_lambda_and_rounds_match_the_full_spectrum(family: str) -> None:
    topo = make_topology(family, N, seed=1)
    ev = _exact(topo)
    lam = max(abs(ev[0]), ev[-2])
    assert topo.lam >= lam - 1e-9 and topo.lam == pytest.approx(lam, abs=5e-3)  # exact or a bound from above
    assert topo.spectrum[0] <= ev[0] + 1e-9 and topo.spectrum[-2] == pytest.approx(ev[-2], abs=1e-8)
    for kind in ("plain", "chebyshev"):
        assert rounds_for_target(topo.spectrum, kind, 0.2) >= rounds_for_target(ev, kind, 0.2)


def test_sparse_and_dense_forms_hold_the_same_w() -> None:
    topo = make_topology("random_geometric", N, seed=4)
    dense_W = metropolis_weights(topo.graph).numpy()
    np.testing.assert_allclose(topo.W_csr.toarray(), dense_W, atol=1e-15)
    # the same graph as the generator's, with nodes renumbered in strips for locality
    degrees = sorted(d for _, d in random_geometric_graph(N, seed=4).degree())
    assert sorted(topo.degrees) == degrees and topo.num_edges == random_geometric_graph(N, seed=4).number_of_edges()


def test_sparse_gossip_matches_the_dense_product() -> None:
    topo = make_topology("erdos_renyi", N, seed=2)
    Z = torch.randn(N, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    comm = SimulatedCommunicator(topo.W, topo.degrees)
    assert comm.sparse is True
    torch.testing.assert_close(comm.gossip(Z), torch.from_numpy(topo.W_csr @ Z.numpy()))
    comm2 = SimulatedCommunicator(topo.W_csr, topo.degrees)  # scipy input, never densified
    torch.testing.assert_close(comm2.gossip(Z.float()), comm.gossip(Z).float())
    assert comm.counter.rounds == 2 and comm2.counter.rounds == 1


def test_edge_arrays_match_the_generators_and_the_er_stream_is_blockwise_invariant() -> None:
    from proxgt.topology import exponential_graph, grid_graph, torus_graph

    for name, gen in (("grid", grid_graph), ("torus", torus_graph), ("exponential", exponential_graph)):
        for n in (1, 2, 3, 12, 17, 30):
            expected = {tuple(sorted(e)) for e in gen(n).edges}
            assert {tuple(e) for e in SparseGraph(n, family_edges(name, n)).edges.tolist()} == expected
    n, p = 3000, 0.003  # 3 blocks of rows
    rng = np.random.default_rng(5)
    iu, ju = np.triu_indices(n, k=1)
    keep = rng.random(iu.size) < p
    assert np.array_equal(_erdos_renyi_edges(n, p, 5, "t"), np.stack([iu[keep], ju[keep]], axis=1))


def test_disconnected_sparse_sample_is_refused() -> None:
    with pytest.raises(Exception, match="sampled a disconnected graph"):
        make_topology("erdos_renyi", N, p=0.001, seed=0)


def test_topology_of_a_sparse_graph_is_immutable() -> None:
    topo = make_topology("path", N)
    with pytest.raises(Exception, match="immutable"):
        topo.name = "x"  # type: ignore[misc]
    assert topo.graph.number_of_edges() == N - 1  # networkx built on demand
