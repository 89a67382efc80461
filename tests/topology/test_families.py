"""Topology families through proxgt.registry.TOPOLOGIES, messages in terms of the run settings, size limit."""

from __future__ import annotations

import time

import networkx as nx
import pytest
import torch

from proxgt._validation import ProxGTValueError
from proxgt.registry import TOPOLOGIES
from proxgt.topology import MAX_DENSE_NODES, TOPOLOGY_NAMES, GraphFamily, make_topology, ring_graph
from proxgt.topology.families import as_family


@pytest.fixture
def restore_topologies():
    """Undo registrations a test makes in the global TOPOLOGIES table."""
    saved = (dict(TOPOLOGIES._entries), dict(TOPOLOGIES._aliases), dict(TOPOLOGIES._loaded))
    yield TOPOLOGIES
    TOPOLOGIES._entries, TOPOLOGIES._aliases, TOPOLOGIES._loaded = saved


def test_topology_names_are_the_registered_families():
    assert TOPOLOGY_NAMES == tuple(TOPOLOGIES.names())
    for name in TOPOLOGY_NAMES:
        assert isinstance(TOPOLOGIES.get(name), GraphFamily)


@pytest.mark.parametrize("alias, name", [("er", "erdos_renyi"), ("gnp", "erdos_renyi"), ("rgg", "random_geometric"),
                                         ("cycle", "ring"), ("full", "complete"), ("exp", "exponential"),
                                         ("edge-list", "file"), ("Random Geometric", "random_geometric")])
def test_aliases_resolve(alias, name):
    if name == "file":
        assert TOPOLOGIES.canonical(alias) == "file"
    else:
        assert make_topology(alias, 9).name == name


def test_declared_settings():
    assert TOPOLOGIES.get("erdos_renyi").accepts == ("p",)
    assert TOPOLOGIES.get("random_geometric").accepts == ("radius",)
    assert "edge_file" in TOPOLOGIES.get("file").accepts and TOPOLOGIES.get("file").nodes_from_source
    assert TOPOLOGIES.get("ring").accepts == () and not TOPOLOGIES.get("ring").nodes_from_source


def _wheel(n, *, seed=None):
    """A hub joined to a ring of the other n - 1 nodes."""
    G = nx.Graph(name="wheel")
    G.add_nodes_from(range(n))
    G.add_edges_from((0, i) for i in range(1, n))
    G.add_edges_from((i, i % (n - 1) + 1) for i in range(1, n))
    return G


def test_registered_family_is_built_by_make_topology(restore_topologies):
    restore_topologies.register("wheel", GraphFamily(_wheel), aliases=("hub_ring",), summary="wheel graph")
    topo = make_topology("wheel", 7)
    assert topo.name == "wheel" and topo.n == 7 and topo.degrees == [6] + [3] * 6
    assert make_topology("hub-ring", 7, weights="max_degree").weights == "max_degree"
    # it accepts no family setting, so one is refused (naming the families that do take it)
    with pytest.raises(ProxGTValueError, match=r"topology_p = 0.5 \(--topology-p\) is only used with "
                                               r"topology = 'erdos_renyi'; got topology = 'wheel'"):
        make_topology("wheel", 7, p=0.5)


def test_registered_plain_function_declares_settings_by_its_signature(restore_topologies):
    def chords(n, *, p=None):  # no seed parameter: deterministic
        G = ring_graph(n)
        if p:
            G.add_edges_from((i, (i + n // 2) % n) for i in range(n))
        return G

    restore_topologies.register("chords", chords)
    assert as_family(TOPOLOGIES.get("chords")).accepts == ("p",)
    assert make_topology("chords", 8).num_edges == 8
    assert make_topology("chords", 8, p=1.0).num_edges == 12
    with pytest.raises(ProxGTValueError, match="topology_radius = 0.2 .* only used with topology = "
                                               "'random_geometric'; got topology = 'chords'"):
        make_topology("chords", 8, radius=0.2)
    with pytest.raises(ProxGTValueError, match="topology_p = 0.5 .* topology = 'erdos_renyi' or 'chords'; "
                                               "got topology = 'ring'"):
        make_topology("ring", 8, p=0.5)


def test_family_building_the_wrong_size_is_caught(restore_topologies):
    restore_topologies.register("short", lambda n, *, seed=None: ring_graph(n - 1))
    with pytest.raises(ProxGTValueError, match=r"topology = 'short' built a graph with 4 nodes for nodes = 5"):
        make_topology("short", 5)


# ------------------------------------------------------------------------------------------------ messages
def test_messages_name_the_run_settings(tmp_path):
    """What reaches CLI users names nodes/topology/... (flags and TOML keys), not make_topology's arguments."""
    path = tmp_path / "g.txt"
    path.write_text("0 1\n1 2\n2 3\n3 0\n")
    with pytest.raises(ProxGTValueError) as info:
        make_topology("file", 5, edge_file=str(path))
    assert str(info.value) == (
        f"nodes = 5 (--nodes) but the edge-list file '{path}' has 4 nodes; set nodes to 4"
    )
    cases = [
        (lambda: make_topology("ring", 0), "nodes = 0 (--nodes) must be an int >= 1"),
        (lambda: make_topology("hypercube", 12),
         "nodes = 12 (--nodes) must be a power of 2 (1, 2, 4, 8, ...) for topology = 'hypercube'; "
         "the nearest are 8 and 16"),
        (lambda: make_topology("er", 8, p=1.5), "topology_p = 1.5 (--topology-p) must be a probability in [0, 1]"),
        (lambda: make_topology("rgg", 8, radius=-1.0),
         "topology_radius = -1.0 (--topology-radius) must be a finite number > 0"),
        (lambda: make_topology("ring", 8, edge_file="g.txt"),
         "edge_file = 'g.txt' (--edge-file) is only used with topology = 'file'; got topology = 'ring'"),
        (lambda: make_topology("file", None),
         "topology = 'file' needs an edge list (edge_file, --edge-file) or a mixing matrix "
         "(weights_file, --weights-file, with weights = 'user')"),
    ]
    for call, expected in cases:
        with pytest.raises(ProxGTValueError) as info:
            call()
        assert str(info.value) == expected
    with pytest.raises(ProxGTValueError, match=r"^topology = 'erdos_renyi' with nodes = 12, topology_p = 0.01 and "
                                               r"seed = 0 sampled a disconnected graph .*set a larger topology_p"):
        make_topology("er", 12, p=0.01)
    with pytest.raises(ProxGTValueError, match="mixing-matrix file 'w.npy' does not exist "
                                               r"\(weights_file, --weights-file\)"):
        make_topology("ring", 4, weights="user", matrix="w.npy")


def test_no_message_names_internal_functions(tmp_path):
    path = tmp_path / "g.txt"
    path.write_text("0 1\n1 2\n")
    calls = [
        lambda: make_topology("smallworld", 8),
        lambda: make_topology(3, 8),
        lambda: make_topology("ring", 8, weights="uniform"),
        lambda: make_topology("ring", -1),
        lambda: make_topology("ring", 8, p=0.3),
        lambda: make_topology("ring", 4, weights="user"),
        lambda: make_topology("file", 6, edge_file=path),
        lambda: make_topology("file", None),
        lambda: make_topology("hypercube", 6),
        lambda: make_topology("er", 8, p=-0.1),
        lambda: make_topology("rgg", 30, radius=0.01),
    ]
    for call in calls:
        with pytest.raises(ProxGTValueError) as info:
            call()
        msg = str(info.value)
        assert "\n" not in msg
        for internal in ("make_topology", "_graph", "pass n=", "parameter of", "name='"):
            assert internal not in msg, msg


# ------------------------------------------------------------------------------------------------ size limit
def test_a_family_too_large_to_hold_fails_fast():
    start = time.perf_counter()
    with pytest.raises(ProxGTValueError) as info:
        make_topology("complete", 100_000)
    assert time.perf_counter() - start < 0.5  # refused before any graph (or W, or spectrum) is built
    assert str(info.value) == (
        "nodes = 100000 (--nodes) is more than topology = 'complete' supports: its 4,999,950,000 edges make a "
        "mixing matrix of 10,000,000,000 non-zeros (111.8 GiB even in sparse form, the limit is 268,435,456); "
        "use fewer nodes or a sparser family (exponential, erdos_renyi, ring)"
    )


def test_above_the_dense_size_topologies_are_sparse(tmp_path):
    n = MAX_DENSE_NODES + 1
    topo = make_topology("ring", n)
    assert topo.is_sparse and topo.W.layout == torch.sparse_csr and topo.num_edges == n
    path = tmp_path / "big.txt"
    path.write_text("".join(f"{i} {i + 1}\n" for i in range(n - 1)))  # a path on n nodes
    topo = make_topology("file", None, edge_file=path)
    assert topo.n == n and topo.is_sparse and topo.degrees[0] == 1 and topo.neighbors(5) == [4, 6]
