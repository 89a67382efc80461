"""Tests of proxgt.topology: graph families, weight rules, validation messages and the Topology bundle."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable

import networkx as nx
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from proxgt._validation import ProxGTValueError
from proxgt.topology import (
    TOPOLOGY_NAMES,
    WEIGHT_RULES,
    Topology,
    complete_graph,
    default_er_probability,
    default_radius,
    erdos_renyi_graph,
    exponential_graph,
    graph_from_edge_list,
    graph_from_networkx,
    grid_graph,
    grid_shape,
    hypercube_graph,
    lazy_weights,
    make_topology,
    max_degree_weights,
    metropolis_weights,
    mixing_lambda,
    path_graph,
    random_geometric_graph,
    ring_graph,
    star_graph,
    torus_graph,
    validate_mixing_matrix,
)

FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])


# ------------------------------------------------------------------------------------------------------------
# Helpers: independent checks (they do not call validate_mixing_matrix, so they can catch its bugs too)
# ------------------------------------------------------------------------------------------------------------


def spectral_lambda(W: torch.Tensor) -> float:
    n = W.shape[0]
    return float(torch.linalg.matrix_norm(W - torch.full_like(W, 1.0 / n), ord=2))


def assert_valid_mixing(W: torch.Tensor, G: nx.Graph) -> None:
    n = G.number_of_nodes()
    assert isinstance(W, torch.Tensor)
    assert W.dtype == torch.float64
    assert W.shape == (n, n)
    assert torch.allclose(W, W.T, atol=1e-12, rtol=0)
    assert torch.allclose(W.sum(dim=1), torch.ones(n, dtype=torch.float64), atol=1e-12, rtol=0)
    assert torch.allclose(W.sum(dim=0), torch.ones(n, dtype=torch.float64), atol=1e-12, rtol=0)
    assert bool((W >= 0).all())
    A = torch.from_numpy(nx.to_numpy_array(G, nodelist=range(n), weight=None)) > 0
    support = W > 0
    support.fill_diagonal_(False)
    assert not bool((support & ~A).any()), "weight on a non-edge"
    assert bool((W.diagonal() > 0).all())
    if nx.is_connected(G):
        assert spectral_lambda(W) < 1 - 1e-9


def expected_degrees(family: str, n: int) -> list[int]:
    if family == "ring":
        return [min(2, n - 1)] * n
    if family == "path":
        return [0] if n == 1 else [1] + [2] * (n - 2) + [1]
    if family == "star":
        return [n - 1] + [1] * (n - 1)
    if family == "complete":
        return [n - 1] * n
    if family == "hypercube":
        return [int(math.log2(n))] * n
    if family == "exponential":
        steps = [1 << k for k in range(n.bit_length()) if (1 << k) < n]
        return [len({(i + s) % n for s in steps} | {(i - s) % n for s in steps}) for i in range(n)]
    raise AssertionError(family)


def degrees(G: nx.Graph) -> list[int]:
    return [d for _, d in sorted(G.degree)]


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


GENERATORS: dict[str, Callable[[int], nx.Graph]] = {
    "ring": ring_graph,
    "path": path_graph,
    "star": star_graph,
    "complete": complete_graph,
    "grid": grid_graph,
    "torus": torus_graph,
    "hypercube": hypercube_graph,
    "exponential": exponential_graph,
    "erdos_renyi": lambda n: erdos_renyi_graph(n, default_er_probability(n), seed=0),
    "random_geometric": lambda n: random_geometric_graph(n, seed=0),
}
SIZES = [1, 2, 3, 4, 5, 7, 8, 9, 12, 16]


def sizes_for(family: str) -> list[int]:
    return [n for n in SIZES if family != "hypercube" or n & (n - 1) == 0]


GRAPH_CASES = [(f, n) for f in GENERATORS for n in sizes_for(f)]


# ------------------------------------------------------------------------------------------------------------
# Graph generators
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("family", "n"), GRAPH_CASES)
def test_generator_nodes_connected_simple(family: str, n: int) -> None:
    G = GENERATORS[family](n)
    assert isinstance(G, nx.Graph) and not G.is_directed() and not G.is_multigraph()
    assert list(G.nodes) == list(range(n))
    assert nx.number_of_selfloops(G) == 0
    assert nx.is_connected(G)
    assert G.graph["name"] == family


@pytest.mark.parametrize("family", list(GENERATORS))
def test_generator_single_node(family: str) -> None:
    G = GENERATORS[family](1)
    assert list(G.nodes) == [0]
    assert G.number_of_edges() == 0


@pytest.mark.parametrize(
    ("family", "n"),
    [(f, n) for f in ("ring", "path", "star", "complete", "hypercube", "exponential") for n in sizes_for(f)],
)
def test_generator_degrees(family: str, n: int) -> None:
    assert degrees(GENERATORS[family](n)) == expected_degrees(family, n)


def test_known_degrees_spot_checks() -> None:
    assert degrees(ring_graph(6)) == [2] * 6
    assert degrees(complete_graph(5)) == [4] * 5
    assert degrees(hypercube_graph(8)) == [3] * 8
    assert degrees(star_graph(6))[0] == 5
    assert degrees(exponential_graph(16)) == [7] * 16  # +-1, +-2, +-4, 8 (= -8)
    assert sorted(exponential_graph(10).neighbors(0)) == [1, 2, 4, 6, 8, 9]


@pytest.mark.parametrize(
    ("n", "shape"),
    [(1, (1, 1)), (2, (1, 2)), (6, (2, 3)), (12, (3, 4)), (16, (4, 4)), (13, (1, 13)), (36, (6, 6))],
)
def test_grid_shape(n: int, shape: tuple[int, int]) -> None:
    assert grid_shape(n) == shape
    assert grid_graph(n).graph["shape"] == shape


@given(st.integers(1, 400))
@FAST
def test_grid_shape_is_most_square_factorisation(n: int) -> None:
    rows, cols = grid_shape(n)
    assert rows * cols == n and rows <= cols
    assert not any(n % d == 0 for d in range(rows + 1, math.isqrt(n) + 1))


def test_grid_degrees_and_edges() -> None:
    G = grid_graph(12)  # 3 x 4
    assert G.number_of_edges() == 3 * 3 + 2 * 4
    assert sorted(G.neighbors(5)) == [1, 4, 6, 9]  # interior node at (1, 1)
    assert sorted(G.neighbors(0)) == [1, 4]
    assert degrees(grid_graph(7)) == degrees(path_graph(7))  # prime n: a 1 x n path


def test_torus_degrees_small_sides_have_no_multi_edges() -> None:
    assert degrees(torus_graph(16)) == [4] * 16
    assert degrees(torus_graph(12)) == [4] * 12  # 3 x 4
    assert degrees(torus_graph(8)) == [3] * 8  # 2 x 4: the vertical wrap would repeat an edge
    assert degrees(torus_graph(4)) == [2] * 4  # 2 x 2 is a 4-cycle
    assert degrees(torus_graph(7)) == [2] * 7  # prime n: a ring
    assert degrees(torus_graph(2)) == [1, 1]
    assert torus_graph(9).graph["name"] == "torus"


@pytest.mark.parametrize(
    "family", ["ring", "path", "star", "complete", "grid", "torus", "hypercube", "exponential"]
)
def test_generators_reject_bad_n(family: str) -> None:
    fn = GENERATORS[family]
    for bad in (0, -3, 2.0, 2.5, True, "8", None):
        msg = f"The 'n' parameter of {fn.__name__} must be an int >= 1. Got {bad!r} instead."
        with pytest.raises(ProxGTValueError, match=re.escape(msg)):
            fn(bad)  # type: ignore[arg-type]


def test_generators_accept_numpy_ints() -> None:
    assert ring_graph(np.int64(5)).number_of_nodes() == 5


def test_random_generators_reject_bad_n() -> None:
    with pytest.raises(ProxGTValueError, match="'n' parameter of erdos_renyi_graph must be an int >= 1"):
        erdos_renyi_graph(0, 0.5)
    with pytest.raises(ProxGTValueError, match="'n' parameter of random_geometric_graph must be an int >= 1"):
        random_geometric_graph(-1)


@pytest.mark.parametrize("n", [3, 6, 12, 100])
def test_hypercube_rejects_non_power_of_two(n: int) -> None:
    with pytest.raises(ProxGTValueError, match=r"'n' parameter of hypercube_graph must be a power of 2"):
        hypercube_graph(n)


def test_grid_rejects_non_bool_periodic() -> None:
    with pytest.raises(ProxGTValueError, match="'periodic' parameter of grid_graph must be a bool"):
        grid_graph(9, periodic="yes")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------------------
# Random families: seeds, reproducibility, disconnected samples
# ------------------------------------------------------------------------------------------------------------


def edge_set(G: nx.Graph) -> set[tuple[int, int]]:
    return {(min(u, v), max(u, v)) for u, v in G.edges}


def test_erdos_renyi_reproducible_and_seed_dependent() -> None:
    a = erdos_renyi_graph(30, 0.4, seed=7)
    b = erdos_renyi_graph(30, 0.4, seed=7)
    c = erdos_renyi_graph(30, 0.4, seed=8)
    assert edge_set(a) == edge_set(b)
    assert edge_set(a) != edge_set(c)
    gen = erdos_renyi_graph(30, 0.4, seed=np.random.default_rng(7))
    assert edge_set(gen) == edge_set(a)  # an int seed and a Generator seeded alike agree
    assert erdos_renyi_graph(30, 0.9, seed=None).number_of_nodes() == 30
    assert edge_set(erdos_renyi_graph(6, 1.0, seed=0)) == edge_set(complete_graph(6))


def test_erdos_renyi_edge_density_close_to_p() -> None:
    G = erdos_renyi_graph(200, 0.3, seed=1)
    assert abs(G.number_of_edges() / (200 * 199 / 2) - 0.3) < 0.02


def test_erdos_renyi_disconnected_sample_raises() -> None:
    with pytest.raises(
        ProxGTValueError, match=r"disconnected graph \(5 components\); use a larger p .* another seed"
    ):
        erdos_renyi_graph(5, 0.0, seed=0)


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan"), "0.5", None])
def test_erdos_renyi_rejects_bad_p(p: object) -> None:
    with pytest.raises(
        ProxGTValueError, match=r"'p' parameter of erdos_renyi_graph must be a float in \[0, 1\]"
    ):
        erdos_renyi_graph(5, p)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [-1, 1.5, "x", True])
def test_random_generators_reject_bad_seed(seed: object) -> None:
    with pytest.raises(ProxGTValueError, match="'seed' parameter of erdos_renyi_graph must be an int >= 0"):
        erdos_renyi_graph(5, 0.5, seed=seed)  # type: ignore[arg-type]
    with pytest.raises(
        ProxGTValueError, match="'seed' parameter of random_geometric_graph must be an int >= 0"
    ):
        random_geometric_graph(5, seed=seed)  # type: ignore[arg-type]


def test_random_geometric_reproducible_seed_dependent_and_geometric() -> None:
    a = random_geometric_graph(40, seed=3)
    b = random_geometric_graph(40, seed=3)
    c = random_geometric_graph(40, seed=4)
    assert edge_set(a) == edge_set(b)
    assert edge_set(a) != edge_set(c)
    assert a.graph["radius"] == pytest.approx(default_radius(40))
    pos = np.array([a.nodes[i]["pos"] for i in range(40)])
    assert ((pos >= 0) & (pos <= 1)).all()
    for i in range(40):
        for j in range(i + 1, 40):
            close = np.linalg.norm(pos[i] - pos[j]) <= a.graph["radius"]
            assert a.has_edge(i, j) == close
    assert edge_set(random_geometric_graph(8, radius=1.5, seed=0)) == edge_set(complete_graph(8))


def test_default_radius() -> None:
    assert default_radius(16) == pytest.approx(math.sqrt(2 * math.log(16) / 16))
    assert all(0 < default_radius(n) <= 1.5 for n in [1, 2, 3, 10, 10**6])


def test_random_geometric_disconnected_sample_raises() -> None:
    with pytest.raises(ProxGTValueError, match="disconnected graph.*use a larger radius or another seed"):
        random_geometric_graph(30, radius=0.01, seed=0)


@pytest.mark.parametrize("radius", [0, -1.0, float("inf"), "big"])
def test_random_geometric_rejects_bad_radius(radius: object) -> None:
    with pytest.raises(
        ProxGTValueError, match="'radius' parameter of random_geometric_graph must be a finite float > 0"
    ):
        random_geometric_graph(5, radius=radius)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------------------
# Graphs from files and from networkx
# ------------------------------------------------------------------------------------------------------------


def test_edge_list_whitespace_commas_comments_blank_lines(tmp_path) -> None:
    path = write(tmp_path, "g.txt", "# a 4-cycle\n0 1\n\n1,2\n2 ,  3   # trailing comment\n\t3\t0\n")
    G = graph_from_edge_list(path)
    assert list(G.nodes) == [0, 1, 2, 3]
    assert edge_set(G) == {(0, 1), (1, 2), (2, 3), (0, 3)}
    assert G.graph["name"] == "file"
    assert graph_from_edge_list(str(path)).number_of_edges() == 4


def test_edge_list_relabels_arbitrary_labels_in_sorted_order(tmp_path) -> None:
    G = graph_from_edge_list(write(tmp_path, "s.txt", "bob alice\ncarol bob\n"))
    assert [G.nodes[i]["label"] for i in range(3)] == ["alice", "bob", "carol"]
    assert edge_set(G) == {(0, 1), (1, 2)}
    H = graph_from_edge_list(write(tmp_path, "one_based.txt", "1 2\n2 10\n"))  # numeric, not lexicographic
    assert [H.nodes[i]["label"] for i in range(3)] == [1, 2, 10]
    assert edge_set(H) == {(0, 1), (1, 2)}


def test_edge_list_self_loop_declares_node_without_edge(tmp_path) -> None:
    G = graph_from_edge_list(write(tmp_path, "loop.txt", "0 1\n2 2\n"))
    assert G.number_of_nodes() == 3 and nx.number_of_selfloops(G) == 0 and G.degree[2] == 0


@pytest.mark.parametrize("bad_line", ["1 2 3", "7", "a, b, c"])
def test_edge_list_malformed_line_names_file_and_line(tmp_path, bad_line: str) -> None:
    path = write(tmp_path, "bad.txt", f"# header\n0 1\n{bad_line}\n1 2\n")
    with pytest.raises(
        ProxGTValueError, match=r"edge-list file '.*bad\.txt', line 3: expected one edge 'u v'"
    ):
        graph_from_edge_list(path)


def test_edge_list_missing_or_empty_file(tmp_path) -> None:
    with pytest.raises(ProxGTValueError, match=r"edge-list file '.*nope\.txt' does not exist"):
        graph_from_edge_list(tmp_path / "nope.txt")
    with pytest.raises(ProxGTValueError, match="contains no edges"):
        graph_from_edge_list(write(tmp_path, "empty.txt", "# nothing\n\n"))
    with pytest.raises(ProxGTValueError, match="is not a regular file"):
        graph_from_edge_list(tmp_path)


def test_graph_from_networkx_relabels_and_cleans() -> None:
    D = nx.DiGraph()
    D.add_edges_from([("c", "a"), ("a", "c"), ("b", "b"), ("a", "b")])
    G = graph_from_networkx(D)
    assert not G.is_directed()
    assert list(G.nodes) == [0, 1, 2]
    assert [G.nodes[i]["label"] for i in range(3)] == ["a", "b", "c"]
    assert edge_set(G) == {(0, 2), (0, 1)}
    M = nx.MultiGraph([(5, 9), (5, 9), (9, 7)])
    assert edge_set(graph_from_networkx(M)) == {(0, 2), (1, 2)}
    with pytest.raises(ProxGTValueError, match="has no nodes"):
        graph_from_networkx(nx.Graph())
    with pytest.raises(
        ProxGTValueError, match="'G' parameter of graph_from_networkx must be a networkx graph"
    ):
        graph_from_networkx([(0, 1)])  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------------------
# Weight rules
# ------------------------------------------------------------------------------------------------------------

WEIGHT_FNS = {
    "metropolis": metropolis_weights,
    "max_degree": max_degree_weights,
    "lazy_metropolis": lambda G: lazy_weights(metropolis_weights(G)),
}


@pytest.mark.parametrize(("family", "n"), GRAPH_CASES)
def test_weight_rules_are_valid_on_every_family(family: str, n: int) -> None:
    G = GENERATORS[family](n)
    for rule, weight_fn in WEIGHT_FNS.items():
        W = weight_fn(G)
        assert_valid_mixing(W, G)
        assert torch.equal(validate_mixing_matrix(W, G), W), rule


def test_metropolis_entries_star() -> None:
    n = 5
    W = metropolis_weights(star_graph(n))
    assert W[0, 0] == pytest.approx(1 / n)
    assert W[0, 1:].tolist() == pytest.approx([1 / n] * (n - 1))
    assert W.diagonal()[1:].tolist() == pytest.approx([1 - 1 / n] * (n - 1))
    assert W[1, 2] == 0


def test_metropolis_entries_path() -> None:
    W = metropolis_weights(path_graph(3))  # degrees 1, 2, 1: every edge gets 1/3
    expected = torch.tensor(
        [[2 / 3, 1 / 3, 0], [1 / 3, 1 / 3, 1 / 3], [0, 1 / 3, 2 / 3]], dtype=torch.float64
    )
    assert torch.allclose(W, expected, atol=1e-15)


def test_max_degree_entries() -> None:
    W = max_degree_weights(star_graph(5))  # d_max = 4: edges 1/5
    assert W[1, 0] == pytest.approx(0.2) and W[1, 1] == pytest.approx(0.8) and W[0, 0] == pytest.approx(0.2)
    for G in (ring_graph(7), hypercube_graph(8), torus_graph(16)):  # regular: equals Metropolis
        assert torch.allclose(max_degree_weights(G), metropolis_weights(G), atol=1e-15)


@pytest.mark.parametrize("n", range(3, 15))
def test_ring_metropolis_known_spectrum(n: int) -> None:
    W = metropolis_weights(ring_graph(n))
    expected = np.sort([1 / 3 + 2 / 3 * math.cos(2 * math.pi * k / n) for k in range(n)])
    assert np.allclose(np.linalg.eigvalsh(W.numpy()), expected, atol=1e-12)
    lam = max(abs(1 / 3 + 2 / 3 * math.cos(2 * math.pi * k / n)) for k in range(1, n))
    assert spectral_lambda(W) == pytest.approx(lam, abs=1e-12)
    assert make_topology("ring", n).lam == pytest.approx(lam, abs=1e-12)


@pytest.mark.parametrize("n", [1, 2, 5, 16])
def test_complete_graph_metropolis_is_exact_average(n: int) -> None:
    W = metropolis_weights(complete_graph(n))
    assert torch.allclose(W, torch.full((n, n), 1 / n, dtype=torch.float64), atol=1e-15)
    assert make_topology("complete", n).lam == pytest.approx(0.0, abs=1e-12)


def test_hypercube_metropolis_spectrum() -> None:
    d = 4
    topo = make_topology("hypercube", 2**d)
    expected = sorted((1 + d - 2 * j) / (d + 1) for j in range(d + 1) for _ in range(math.comb(d, j)))
    assert np.allclose(topo.eigenvalues, expected, atol=1e-12)
    assert topo.lam == pytest.approx((d - 1) / (d + 1))


def test_lazy_weights() -> None:
    W = metropolis_weights(ring_graph(6))
    L = lazy_weights(W)
    assert torch.allclose(L, (torch.eye(6, dtype=torch.float64) + W) / 2)
    assert np.allclose(np.linalg.eigvalsh(L.numpy()), (1 + np.linalg.eigvalsh(W.numpy())) / 2)
    assert lazy_weights(W.numpy()).dtype == torch.float64  # numpy in, float64 tensor out
    swap = np.array([[0.0, 1.0], [1.0, 0.0]])
    assert torch.allclose(
        validate_mixing_matrix(lazy_weights(swap)), torch.full((2, 2), 0.5, dtype=torch.float64)
    )
    with pytest.raises(ProxGTValueError, match="square"):
        lazy_weights(np.ones((2, 3)))


def test_weight_rules_do_not_mutate_or_need_connectivity() -> None:
    G = nx.Graph()
    G.add_nodes_from(range(4))
    G.add_edges_from([(0, 1), (2, 3)])
    W = metropolis_weights(G)  # still symmetric and doubly stochastic, only not connected
    assert torch.allclose(W.sum(1), torch.ones(4, dtype=torch.float64))
    with pytest.raises(ProxGTValueError, match="not connected"):
        validate_mixing_matrix(W, G)


def test_weight_rules_reject_bad_graphs() -> None:
    with pytest.raises(ProxGTValueError, match="nodes must be the integers 0..2"):
        metropolis_weights(nx.path_graph(["a", "b", "c"]))
    with pytest.raises(ProxGTValueError, match="simple undirected"):
        max_degree_weights(nx.DiGraph([(0, 1)]))
    with pytest.raises(
        ProxGTValueError, match="'G' parameter of metropolis_weights must be a networkx.Graph"
    ):
        metropolis_weights(np.eye(3))  # type: ignore[arg-type]


def test_mixing_lambda_matches_spectral_norm() -> None:
    for G in (ring_graph(9), star_graph(6), grid_graph(12)):
        W = metropolis_weights(G)
        assert mixing_lambda(W) == pytest.approx(spectral_lambda(W), abs=1e-12)
        assert mixing_lambda(W.numpy()) == pytest.approx(spectral_lambda(W), abs=1e-12)


# ------------------------------------------------------------------------------------------------------------
# Hypothesis properties
# ------------------------------------------------------------------------------------------------------------


@given(n=st.integers(1, 14), p=st.floats(0.3, 1.0), seed=st.integers(0, 2**32 - 1))
@FAST
def test_property_random_connected_er_weights_are_valid(n: int, p: float, seed: int) -> None:
    try:
        G = erdos_renyi_graph(n, p, seed=seed)
    except ProxGTValueError:
        assume(False)
        raise
    for rule in ("metropolis", "max_degree", "lazy_metropolis"):
        W = WEIGHT_FNS[rule](G)
        assert_valid_mixing(W, G)
        validate_mixing_matrix(W, G)


@st.composite
def connected_graphs(draw: st.DrawFn) -> nx.Graph:
    """A random spanning tree (each node links to an earlier one) plus random extra edges."""
    n = draw(st.integers(1, 16))
    G = nx.Graph()
    G.add_nodes_from(range(n))
    for i in range(1, n):
        G.add_edge(i, draw(st.integers(0, i - 1)))
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    if pairs:
        G.add_edges_from(draw(st.lists(st.sampled_from(pairs), max_size=2 * n)))
    return G


@given(G=connected_graphs())
@FAST
def test_property_any_connected_graph_gives_valid_topology(G: nx.Graph) -> None:
    for rule in ("metropolis", "max_degree", "lazy_metropolis"):
        topo = Topology.from_graph(G, weights=rule)
        assert_valid_mixing(topo.W, topo.graph)
        assert 0 <= topo.lam < 1
        assert topo.lam == pytest.approx(spectral_lambda(topo.W), abs=1e-10)
        assert topo.eigenvalues[-1] == pytest.approx(1.0)
        assert topo.degrees == [G.degree[i] for i in range(G.number_of_nodes())]


@given(G=connected_graphs(), data=st.data())
@FAST
def test_property_breaking_double_stochasticity_is_caught(G: nx.Graph, data: st.DataObject) -> None:
    W = metropolis_weights(G).clone()
    i = data.draw(st.integers(0, G.number_of_nodes() - 1))
    W[i, i] += data.draw(st.sampled_from([1e-3, 0.1, 0.5]))
    with pytest.raises(ProxGTValueError, match=f"not doubly stochastic: row {i} sums to"):
        validate_mixing_matrix(W, G)


# ------------------------------------------------------------------------------------------------------------
# validate_mixing_matrix: one message per failure
# ------------------------------------------------------------------------------------------------------------


def ring4() -> np.ndarray:
    return metropolis_weights(ring_graph(4)).numpy().copy()


def test_validate_accepts_numpy_lists_and_tensors() -> None:
    W = ring4()
    for candidate in (W, W.tolist(), torch.from_numpy(W).float()):
        out = validate_mixing_matrix(candidate, ring_graph(4), atol=1e-6)
        assert out.dtype == torch.float64 and out.shape == (4, 4)
    assert torch.equal(validate_mixing_matrix([[1.0]]), torch.ones(1, 1, dtype=torch.float64))


def test_validate_returns_a_copy() -> None:
    W = torch.from_numpy(ring4())
    out = validate_mixing_matrix(W)
    out[0, 0] = 5.0
    assert W[0, 0] != 5.0


def test_validate_not_symmetric() -> None:
    W = ring4()
    W[0, 3], W[0, 0] = 0.25, W[0, 0] + 1 / 3 - 0.25
    with pytest.raises(
        ProxGTValueError, match=re.escape("mixing matrix is not symmetric: W[0,3]=0.25 but W[3,0]")
    ):
        validate_mixing_matrix(W)


def test_validate_not_doubly_stochastic() -> None:
    W = ring4() * 0.9
    with pytest.raises(
        ProxGTValueError, match=re.escape("mixing matrix is not doubly stochastic: row 0 sums to 0.9")
    ):
        validate_mixing_matrix(W)


def test_validate_negative_entry() -> None:
    W = np.array([[1.2, -0.2], [-0.2, 1.2]])
    with pytest.raises(ProxGTValueError, match=re.escape("mixing matrix has a negative entry: W[0,1]=-0.2")):
        validate_mixing_matrix(W)


def test_validate_weight_on_non_edge() -> None:
    W = np.full((4, 4), 0.25)  # complete-graph averaging used on a ring: (0, 2) is no edge
    with pytest.raises(ProxGTValueError, match=re.escape("non-edge: W[0,2]=0.25 but (0, 2) is not an edge")):
        validate_mixing_matrix(W, ring_graph(4))
    validate_mixing_matrix(W, complete_graph(4))


def test_validate_disconnected() -> None:
    W = np.kron(np.eye(2), np.full((2, 2), 0.5))  # two separate pairs
    with pytest.raises(ProxGTValueError, match=r"not connected: node 0 cannot reach node 2 .*2 components"):
        validate_mixing_matrix(W)
    with pytest.raises(ProxGTValueError, match="not connected"):
        validate_mixing_matrix(np.eye(3))


def test_validate_eigenvalue_minus_one() -> None:
    with pytest.raises(ProxGTValueError, match="eigenvalue -1 .*lazy_weights"):
        validate_mixing_matrix(np.array([[0.0, 1.0], [1.0, 0.0]]))


def test_validate_shape_finiteness_and_size_mismatch() -> None:
    with pytest.raises(ProxGTValueError, match=r"square n x n array .* got shape \(2, 3\)"):
        validate_mixing_matrix(np.ones((2, 3)) / 3)
    with pytest.raises(ProxGTValueError, match=r"got shape \(0, 0\)"):
        validate_mixing_matrix(np.zeros((0, 0)))
    W = ring4()
    W[1, 2] = np.nan
    with pytest.raises(ProxGTValueError, match=re.escape("non-finite entry: W[1,2]=nan")):
        validate_mixing_matrix(W)
    with pytest.raises(ProxGTValueError, match="mixing matrix is 4 x 4 but the graph has 5 nodes"):
        validate_mixing_matrix(ring4(), ring_graph(5))
    with pytest.raises(ProxGTValueError, match="must be real"):
        validate_mixing_matrix(torch.eye(2, dtype=torch.complex128))
    with pytest.raises(ProxGTValueError, match="'atol' parameter of validate_mixing_matrix"):
        validate_mixing_matrix(ring4(), atol=-1.0)


def test_validate_tolerance() -> None:
    W = ring4()
    W[0, 0] += 1e-10
    validate_mixing_matrix(W)  # within the default atol
    with pytest.raises(ProxGTValueError, match="doubly stochastic"):
        validate_mixing_matrix(W, atol=1e-12)


def test_every_message_is_one_line() -> None:
    cases = [np.array([[0.0, 1.0], [1.0, 0.0]]), np.eye(3), np.ones((2, 3)), ring4() * 2]
    for W in cases:
        with pytest.raises(ProxGTValueError) as info:
            validate_mixing_matrix(W)
        assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------------------------------------
# Topology
# ------------------------------------------------------------------------------------------------------------


def test_topology_properties() -> None:
    topo = make_topology("star", 6)
    assert topo.name == "star" and topo.weights == "metropolis"
    assert topo.n == 6
    assert topo.num_edges == 5
    assert topo.degrees == [5, 1, 1, 1, 1, 1]
    assert topo.neighbors(0) == [1, 2, 3, 4, 5]
    assert topo.neighbors(3) == [0]
    assert topo.W.dtype == torch.float64
    assert topo.lam == pytest.approx(spectral_lambda(topo.W), abs=1e-12)
    assert topo.spectral_gap == pytest.approx(1 - topo.lam)
    ev = topo.eigenvalues
    assert ev.dtype == np.float64 and np.all(np.diff(ev) >= 0) and ev[-1] == pytest.approx(1.0)
    assert topo.eigenvalues is ev  # cached, computed once
    assert not ev.flags.writeable
    summary = topo.summary()
    assert summary["n"] == 6 and summary["max_degree"] == 5 and summary["lam"] == topo.lam
    assert repr(topo).startswith("Topology(name='star', n=6, num_edges=5")


def test_topology_is_frozen_and_copies_w() -> None:
    W = metropolis_weights(ring_graph(5))
    topo = Topology("r", ring_graph(5), W)
    with pytest.raises(dataclasses.FrozenInstanceError):
        topo.name = "other"  # type: ignore[misc]
    W[0, 0] = 42.0
    assert topo.W[0, 0] != 42.0


def test_topology_neighbors_sorted_and_checked() -> None:
    topo = make_topology("exponential", 10)
    assert topo.neighbors(0) == [1, 2, 4, 6, 8, 9]
    assert topo.neighbors(np.int64(3)) == sorted(topo.graph.neighbors(3))
    with pytest.raises(
        ProxGTValueError, match=r"'i' parameter of Topology.neighbors must be an int in \[0, 9\]"
    ):
        topo.neighbors(10)


def test_topology_validates_w_against_graph() -> None:
    with pytest.raises(ProxGTValueError, match="non-edge"):
        Topology("bad", ring_graph(4), torch.full((4, 4), 0.25, dtype=torch.float64))
    with pytest.raises(ProxGTValueError, match="'name' parameter of Topology"):
        Topology("", ring_graph(4), metropolis_weights(ring_graph(4)))


def test_topology_single_node() -> None:
    topo = make_topology("ring", 1)
    assert topo.n == 1 and topo.num_edges == 0 and topo.lam == 0.0 and topo.spectral_gap == 1.0
    assert topo.neighbors(0) == [] and topo.degrees == [0]
    assert torch.equal(topo.W, torch.ones(1, 1, dtype=torch.float64))


def test_topology_from_graph() -> None:
    topo = Topology.from_graph(nx.cycle_graph(["x", "y", "z", "w"]), weights="mh", name="mine")
    assert topo.name == "mine" and topo.weights == "metropolis" and topo.n == 4 and topo.num_edges == 4
    with pytest.raises(ProxGTValueError, match="computes W from the graph"):
        Topology.from_graph(nx.cycle_graph(4), weights="user")


# ------------------------------------------------------------------------------------------------------------
# make_topology
# ------------------------------------------------------------------------------------------------------------


def test_names_and_rules_exported() -> None:
    assert TOPOLOGY_NAMES == (
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
        "one-peer-exponential",
        "random-matching",
    )
    assert WEIGHT_RULES == ("metropolis", "max_degree", "lazy_metropolis", "user")


@pytest.mark.parametrize("name", [n for n in TOPOLOGY_NAMES if n != "file"])
def test_make_topology_every_name_and_rule(name: str) -> None:
    for rule in ("metropolis", "max_degree", "lazy_metropolis"):
        topo = make_topology(name, 16, weights=rule)
        assert topo.name == name and topo.weights == rule and topo.n == 16
        assert_valid_mixing(topo.W, topo.graph)
        assert nx.is_connected(topo.graph)
        assert make_topology(name, 1, weights=rule).n == 1


def test_make_topology_aliases() -> None:
    assert make_topology("er", 10).name == "erdos_renyi"
    assert make_topology("Erdos-Renyi", 10).name == "erdos_renyi"
    assert make_topology("rgg", 10).name == "random_geometric"
    assert make_topology("geometric", 10).name == "random_geometric"
    assert make_topology("ring", 5, weights="metropolis_hastings").weights == "metropolis"
    assert make_topology("ring", 5, weights="MH").weights == "metropolis"


def test_make_topology_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ProxGTValueError) as info:
        make_topology("smallworld", 8)
    msg = str(info.value)
    assert "unknown topology 'smallworld' (--topology); choose one of:" in msg
    assert all(n in msg for n in TOPOLOGY_NAMES)
    with pytest.raises(
        ProxGTValueError, match=r"unknown weights 'uniform' \(--weights\); choose one of: metropolis"
    ):
        make_topology("ring", 8, weights="uniform")
    with pytest.raises(ProxGTValueError, match=r"topology \(--topology\) must be the name of a family"):
        make_topology(3, 8)  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [0, -2, None, 2.5])
def test_make_topology_rejects_bad_n(n: object) -> None:
    with pytest.raises(ProxGTValueError, match=r"nodes = .* \(--nodes\) must be an int >= 1"):
        make_topology("ring", n)  # type: ignore[arg-type]


def test_make_topology_refuses_parameters_of_other_families() -> None:
    with pytest.raises(
        ProxGTValueError, match=r"topology_p = 0.3 \(--topology-p\) is only used with topology = 'erdos_renyi'"
    ):
        make_topology("ring", 8, p=0.3)
    with pytest.raises(
        ProxGTValueError, match="topology_radius .* only used with topology = 'random_geometric'"
    ):
        make_topology("er", 8, radius=0.3)
    with pytest.raises(ProxGTValueError, match="edge_file .* only used with topology = 'file'"):
        make_topology("ring", 8, edge_file="g.txt")
    with pytest.raises(ProxGTValueError, match=r"weights = 'user' \(--weights\) needs a mixing matrix"):
        make_topology("ring", 4, weights="user")
    with pytest.raises(ProxGTValueError, match="a mixing matrix needs weights = 'user'"):
        make_topology("ring", 4, matrix=ring4())


def test_make_topology_random_families_seeded() -> None:
    for name in ("erdos_renyi", "random_geometric"):
        a, b, c = (make_topology(name, 24, seed=s) for s in (5, 5, 6))
        assert edge_set(a.graph) == edge_set(b.graph) and torch.equal(a.W, b.W)
        assert edge_set(a.graph) != edge_set(c.graph)
    assert make_topology("er", 12, p=1.0).num_edges == 66
    assert make_topology("rgg", 12, radius=1.5).num_edges == 66
    with pytest.raises(ProxGTValueError, match="disconnected"):
        make_topology("er", 12, p=0.01)


def test_default_er_probability() -> None:
    assert default_er_probability(1) == 0.0
    assert default_er_probability(2) == 0.694  # 2 log 2 / 2 = 0.6931..., rounded up
    assert default_er_probability(100) >= 2 * math.log(100) / 100
    assert make_topology("er", 100).graph.graph["p"] == default_er_probability(100)


def test_make_topology_user_matrix(tmp_path) -> None:
    W = metropolis_weights(ring_graph(6))
    topo = make_topology("ring", 6, weights="user", matrix=W)
    assert topo.weights == "user" and torch.equal(topo.W, W)
    np.save(tmp_path / "w.npy", W.numpy())
    np.savetxt(tmp_path / "w.txt", W.numpy())
    np.savetxt(tmp_path / "w.csv", W.numpy(), delimiter=",")
    for f in ("w.npy", "w.txt", "w.csv"):
        assert torch.allclose(make_topology("ring", 6, weights="user", matrix=tmp_path / f).W, W, atol=1e-15)
    with pytest.raises(ProxGTValueError, match="non-edge"):
        make_topology("ring", 6, weights="user", matrix=np.full((6, 6), 1 / 6))
    with pytest.raises(ProxGTValueError, match="mixing matrix is 6 x 6 but the graph has 5 nodes"):
        make_topology("ring", 5, weights="user", matrix=W)
    with pytest.raises(ProxGTValueError, match="mixing-matrix file '.*missing.npy' does not exist"):
        make_topology("ring", 6, weights="user", matrix=str(tmp_path / "missing.npy"))
    write(tmp_path, "garbage.txt", "0.5 abc\n")
    with pytest.raises(ProxGTValueError, match="could not read mixing matrix from"):
        make_topology("ring", 2, weights="user", matrix=tmp_path / "garbage.txt")


def test_make_topology_from_edge_file(tmp_path) -> None:
    path = write(tmp_path, "ring5.txt", "".join(f"{i} {(i + 1) % 5}\n" for i in range(5)))
    for n in (None, 0, 5):
        topo = make_topology("file", n, edge_file=path)
        assert topo.name == "file" and topo.n == 5 and topo.degrees == [2] * 5
        assert topo.lam == pytest.approx(make_topology("ring", 5).lam)
    with pytest.raises(ProxGTValueError, match="nodes = 6 .* but the edge-list file '.*ring5.txt' has 5 nodes"):
        make_topology("file", 6, edge_file=path)
    with pytest.raises(ProxGTValueError, match=r"topology = 'file' needs an edge list \(edge_file"):
        make_topology("file", None)
    with pytest.raises(ProxGTValueError, match="does not exist"):
        make_topology("file", None, edge_file=tmp_path / "nope.txt")
    disconnected = write(tmp_path, "two.txt", "0 1\n2 3\n")
    with pytest.raises(ProxGTValueError, match="not connected"):
        make_topology("file", None, edge_file=disconnected)


def test_make_topology_file_from_matrix_support() -> None:
    W = metropolis_weights(grid_graph(6))
    topo = make_topology("file", None, weights="user", matrix=W)
    assert edge_set(topo.graph) == edge_set(grid_graph(6))
    assert torch.equal(topo.W, W)
