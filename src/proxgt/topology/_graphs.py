"""Graph families, networkx-style: each ``*_graph(n, ...)`` returns an undirected ``nx.Graph`` on 0..n-1.

Why our own generators rather than ``networkx.*_graph``: the library needs the same node numbering on every
process of a distributed run (node i is rank i), well-defined behaviour for tiny n (n = 1 is a single node,
n = 2 a single edge, never a self-loop or a multi-edge), one seed convention for the random families, and
one-line :class:`~proxgt._validation.ProxGTValueError` messages instead of networkx's exceptions.

Every generator adds the nodes 0..n-1 first, so ``G.nodes`` iterates in numeric order, and records its family
in ``G.graph["name"]``.
"""

from __future__ import annotations

import math
import numbers
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from proxgt._validation import ProxGTValueError, check_int, is_real
from proxgt._validation import param_error as _param_error

__all__ = [
    "ring_graph",
    "path_graph",
    "star_graph",
    "complete_graph",
    "grid_graph",
    "torus_graph",
    "hypercube_graph",
    "exponential_graph",
    "erdos_renyi_graph",
    "random_geometric_graph",
    "graph_from_edge_list",
    "graph_from_networkx",
    "grid_shape",
    "default_radius",
    "DENSE_MAX_NODES",
    "SparseGraph",
    "family_edges",
]

SeedLike = int | np.random.Generator | None


# ----------------------------------------------------------------------------------------------------
# Validation helpers (shared with the other topology modules)
# ----------------------------------------------------------------------------------------------------


def _check_n(n: Any, owner: str) -> int:
    """Return ``n`` as an int, or raise if it is not an integer >= 1 (bools and floats are refused)."""
    return check_int(n, "n", owner)


def _check_probability(p: Any, owner: str) -> float:
    if not is_real(p) or not (0.0 <= float(p) <= 1.0):
        raise _param_error(owner, "p", "a float in [0, 1]", p)
    return float(p)


def _normalize_seed(seed: SeedLike, owner: str) -> np.random.Generator:
    """The single place where seeds become random generators.

    ``None`` gives fresh OS entropy (not reproducible), an int >= 0 a reproducible ``numpy`` PCG64 stream, and
    an existing ``numpy.random.Generator`` is used as is (so one stream can feed several graphs).
    """
    if seed is None:
        return np.random.default_rng()
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool) and seed >= 0:
        return np.random.default_rng(int(seed))
    raise _param_error(owner, "seed", "an int >= 0, None or a numpy.random.Generator", seed)


def _new_graph(n: int, name: str, edges: Iterable[tuple[int, int]] = ()) -> nx.Graph:
    """An undirected graph on nodes 0..n-1 (added in order), without self-loops, named ``name``."""
    G = nx.Graph(name=name)
    G.add_nodes_from(range(n))
    G.add_edges_from((int(u), int(v)) for u, v in edges if u != v)
    return G


def _require_connected(G: nx.Graph, what: str, fix: str) -> None:
    if G.number_of_nodes() > 1 and not nx.is_connected(G):
        k = nx.number_connected_components(G)
        raise ProxGTValueError(f"{what} sampled a disconnected graph ({k} components); {fix}.")


# ----------------------------------------------------------------------------------------------------
# Deterministic families
# ----------------------------------------------------------------------------------------------------


def ring_graph(n: int) -> nx.Graph:
    """Cycle 0 - 1 - ... - (n-1) - 0: degree 2 for n >= 3 (n = 2 is one edge, n = 1 a single node).

    The classic poorly connected topology: with Metropolis weights lambda = 1/3 + 2/3 cos(2 pi / n), so the
    spectral gap shrinks like 1/n^2.
    """
    n = _check_n(n, "ring_graph")
    return _new_graph(n, "ring", ((i, (i + 1) % n) for i in range(n)))


def path_graph(n: int) -> nx.Graph:
    """Path 0 - 1 - ... - (n-1): a ring with one edge removed, the worst-connected tree."""
    n = _check_n(n, "path_graph")
    return _new_graph(n, "path", ((i, i + 1) for i in range(n - 1)))


def star_graph(n: int) -> nx.Graph:
    """Star on n nodes: node 0 is the hub (degree n-1), nodes 1..n-1 are leaves (degree 1).

    Note this is networkx's ``star_graph(n - 1)``: here ``n`` always counts all nodes.
    """
    n = _check_n(n, "star_graph")
    return _new_graph(n, "star", ((0, i) for i in range(1, n)))


def complete_graph(n: int) -> nx.Graph:
    """Every pair of nodes linked (degree n-1): exact averaging in one round, lambda = 0 (Metropolis)."""
    n = _check_n(n, "complete_graph")
    return _new_graph(n, "complete", ((i, j) for i in range(n) for j in range(i + 1, n)))


def grid_shape(n: int) -> tuple[int, int]:
    """``(rows, cols)`` used by :func:`grid_graph`: rows = the largest divisor of n that is <= sqrt(n).

    So the grid is as square as n allows: 16 -> (4, 4), 12 -> (3, 4), 8 -> (2, 4), and a prime n -> (1, n).
    """
    n = _check_n(n, "grid_shape")
    rows = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)
    return rows, n // rows


def grid_graph(n: int, periodic: bool = False) -> nx.Graph:
    """2-D grid of ``rows x cols = n`` nodes (see :func:`grid_shape`); node ``r * cols + c`` is at (r, c).

    Each node links to its right and lower neighbour. With ``periodic=True`` the rows and columns also wrap
    around (a torus), but only along a side of length >= 3: on a side of length 2 the wrap-around edge is the
    edge already there, and on a side of length 1 it would be a self-loop. A prime n gives a 1 x n path
    (``periodic=False``) or ring (``periodic=True``); pick n with a balanced factorisation for a real grid.
    """
    n = _check_n(n, "grid_graph")
    if not isinstance(periodic, bool | np.bool_):
        raise _param_error("grid_graph", "periodic", "a bool", periodic)
    rows, cols = grid_shape(n)
    edges: list[tuple[int, int]] = []
    for r in range(rows):
        for c in range(cols):
            i = r * cols + c
            if c + 1 < cols:
                edges.append((i, i + 1))
            elif periodic and cols >= 3:
                edges.append((i, r * cols))
            if r + 1 < rows:
                edges.append((i, i + cols))
            elif periodic and rows >= 3:
                edges.append((i, c))
    G = _new_graph(n, "torus" if periodic else "grid", edges)
    G.graph["shape"] = (rows, cols)
    return G


def torus_graph(n: int) -> nx.Graph:
    """:func:`grid_graph` with ``periodic=True``: every node has degree 4 when both sides are >= 3."""
    return grid_graph(_check_n(n, "torus_graph"), periodic=True)


def hypercube_graph(n: int) -> nx.Graph:
    """Hypercube of dimension d = log2(n): i and j linked when their binary labels differ in one bit.

    Degree d everywhere; n must be a power of 2 (1, 2, 4, 8, ...).
    """
    n = _check_n(n, "hypercube_graph")
    if n & (n - 1):
        lower = 1 << (n.bit_length() - 1)
        raise _param_error(
            "hypercube_graph",
            "n",
            "a power of 2 (1, 2, 4, 8, ...)",
            n,
            f"The nearest are {lower} and {2 * lower}.",
        )
    dim = n.bit_length() - 1
    return _new_graph(
        n, "hypercube", ((i, i ^ (1 << k)) for i in range(n) for k in range(dim) if i < i ^ (1 << k))
    )


def exponential_graph(n: int) -> nx.Graph:
    """Static exponential graph: node i linked to (i +- 2^k) mod n for every k with 2^k < n (undirected).

    About 2 log2(n) neighbours per node and a spectral gap that does not vanish as n grows, a common cheap
    well-connected topology in decentralized deep learning.
    """
    n = _check_n(n, "exponential_graph")
    edges: list[tuple[int, int]] = []
    step = 1
    while step < n:
        edges.extend((i, (i + step) % n) for i in range(n))
        step *= 2
    return _new_graph(n, "exponential", edges)


# ----------------------------------------------------------------------------------------------------
# Random families (seeded; a disconnected sample is an error, not a silent retry)
# ----------------------------------------------------------------------------------------------------


def erdos_renyi_graph(n: int, p: float, seed: SeedLike = None) -> nx.Graph:
    """G(n, p) random graph: each of the n(n-1)/2 pairs is an edge independently with probability p.

    The same ``(n, p, seed)`` always gives the same graph (``seed`` is normalized by one helper: int >= 0,
    ``None`` for fresh entropy, or a ``numpy.random.Generator``). Connectivity needs p above about log(n)/n;
    a disconnected sample raises :class:`ProxGTValueError` rather than silently resampled.
    """
    n = _check_n(n, "erdos_renyi_graph")
    p = _check_probability(p, "erdos_renyi_graph")
    G = _sample_erdos_renyi(n, p, seed, "erdos_renyi_graph")
    suggested = min(1.0, 2.0 * math.log(n) / n)
    _require_connected(
        G,
        f"erdos_renyi_graph(n={n}, p={p:g}, seed={seed!r})",
        f"use a larger p (2*log(n)/n = {suggested:.3g} is usually enough) or another seed",
    )
    return G


def _erdos_renyi_edges(n: int, p: float, seed: SeedLike, owner: str) -> np.ndarray:
    """Edges (m, 2) of one G(n, p) sample: pair (i, j), i < j in row-major order, is kept when its uniform draw
    is < p. The draws are taken a block of rows at a time (the same stream as one draw for all n(n-1)/2 pairs,
    so the graph does not depend on the block size), which keeps memory O(n) rows x block, not O(n^2)."""
    rng = _normalize_seed(seed, owner)
    parts: list[np.ndarray] = []
    block = max(1, 4_000_000 // max(1, n))
    for a in range(0, n, block):
        b = min(n, a + block)
        rows = np.arange(a, b)
        counts = n - 1 - rows
        total = int(counts.sum())
        if total == 0:
            continue
        keep = np.flatnonzero(rng.random(total) < p)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        r = np.searchsorted(starts, keep, side="right") - 1
        i = rows[r]
        j = i + 1 + (keep - starts[r])
        parts.append(np.stack([i, j], axis=1))
    return np.concatenate(parts) if parts else np.zeros((0, 2), dtype=np.int64)


def _sample_erdos_renyi(n: int, p: float, seed: SeedLike, owner: str) -> nx.Graph:
    """One G(n, p) sample for validated n and p, connected or not."""
    G = _new_graph(n, "erdos_renyi", _erdos_renyi_edges(n, p, seed, owner).tolist())
    G.graph.update(p=p, seed=seed if not isinstance(seed, np.random.Generator) else "generator")
    return G


def default_radius(n: int) -> float:
    """Default radius of :func:`random_geometric_graph`: sqrt(2 log(n) / n), at most 1.5.

    The connectivity threshold of a random geometric graph in the unit square is about sqrt(log(n) / (pi n));
    this default sits about 2.5 times above it, so samples are connected with high probability while the graph
    stays sparse for large n: the mean degree is about 2 pi log(n) (58 at 10,000 nodes). (1.5 > sqrt(2) links
    everything. A former lower clip at 0.1 made graphs above ~1,400 nodes needlessly dense: degree 314 at 10,000.)
    """
    n = _check_n(n, "default_radius")
    return float(min(1.5, math.sqrt(2.0 * math.log(n) / n))) if n > 1 else 1.5


def random_geometric_graph(n: int, radius: float | None = None, seed: SeedLike = None) -> nx.Graph:
    """n points uniform in the unit square, linked when their Euclidean distance is <= ``radius``.

    Models sensor or wireless networks (neighbours are nearby). ``radius=None`` uses :func:`default_radius`.
    Positions are stored as the node attribute ``"pos"`` (for plotting). Seeded and reproducible like
    :func:`erdos_renyi_graph`; a disconnected sample raises :class:`ProxGTValueError`.
    """
    n = _check_n(n, "random_geometric_graph")
    if radius is None:
        radius = default_radius(n)
    if not _is_positive_real(radius):
        raise _param_error(
            "random_geometric_graph", "radius", "a finite float > 0 (or None for the default)", radius
        )
    G = _sample_random_geometric(n, float(radius), seed, "random_geometric_graph")
    _require_connected(
        G,
        f"random_geometric_graph(n={n}, radius={float(radius):.4g}, seed={seed!r})",
        "use a larger radius or another seed",
    )
    return G


def _is_positive_real(x: Any) -> bool:
    return is_real(x) and 0 < float(x) < math.inf


def _random_geometric_edges(n: int, radius: float, seed: SeedLike, owner: str) -> tuple[np.ndarray, np.ndarray]:
    """(positions (n, 2), edges (m, 2) with i < j in row-major order) of one random geometric sample; pairs
    within ``radius`` are found with a k-d tree (O(n log n + m), not all n^2 pairs)."""
    rng = _normalize_seed(seed, owner)
    pos = rng.random((n, 2))
    pairs = cKDTree(pos).query_pairs(radius, output_type="ndarray").astype(np.int64).reshape(-1, 2)
    pairs.sort(axis=1)
    pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
    return pos, pairs


def _sample_random_geometric(n: int, radius: float, seed: SeedLike, owner: str) -> nx.Graph:
    """One random geometric sample for validated n and radius, connected or not."""
    pos, pairs = _random_geometric_edges(n, radius, seed, owner)
    G = _new_graph(n, "random_geometric", pairs.tolist())
    for i in range(n):
        G.nodes[i]["pos"] = (float(pos[i, 0]), float(pos[i, 1]))
    G.graph.update(radius=radius, seed=seed if not isinstance(seed, np.random.Generator) else "generator")
    return G


# ----------------------------------------------------------------------------------------------------
# Sparse form for large n: an edge array instead of a networkx graph
# ----------------------------------------------------------------------------------------------------

#: Up to this many nodes a topology keeps the networkx graph, a dense W and W's full spectrum; above it the
#: families build edge arrays (:class:`SparseGraph`), W is a sparse CSR matrix and lambda comes from
#: ``scipy.sparse.linalg.eigsh``. At 500 nodes a dense W takes 2 MiB, but its eigendecomposition already about a
#: second on a busy 2-core machine (O(n^3): 1000 nodes took 7.5 s).
DENSE_MAX_NODES = 500


class SparseGraph:
    """An undirected graph on 0..n-1 as a sorted, duplicate-free (m, 2) edge array with i < j (no self-loops):
    what the topology families return above :data:`DENSE_MAX_NODES` nodes, where a networkx graph would take
    hundreds of bytes per edge. :meth:`to_networkx` builds the networkx graph on demand."""

    def __init__(self, n: int, edges: Any, name: str = "custom"):
        self.n = _check_n(n, "SparseGraph")
        e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
        if e.size and (int(e.min()) < 0 or int(e.max()) >= self.n):
            raise ProxGTValueError(f"SparseGraph: edge endpoints must lie in 0..{self.n - 1}")
        e = e[e[:, 0] != e[:, 1]]
        lo, hi = np.minimum(e[:, 0], e[:, 1]), np.maximum(e[:, 0], e[:, 1])
        key = np.unique(lo * self.n + hi)  # sorted and duplicate-free in one 1-D pass
        self.edges = np.stack([key // self.n, key % self.n], axis=1)
        self.name = str(name)

    def number_of_nodes(self) -> int:
        return self.n

    def number_of_edges(self) -> int:
        return int(self.edges.shape[0])

    def adjacency(self) -> sp.csr_matrix:
        """Symmetric 0/1 adjacency (int8 CSR, no diagonal)."""
        e = self.edges
        rows, cols = np.concatenate([e[:, 0], e[:, 1]]), np.concatenate([e[:, 1], e[:, 0]])
        return sp.csr_matrix((np.ones(rows.size, dtype=np.int8), (rows, cols)), shape=(self.n, self.n))

    def to_networkx(self) -> nx.Graph:
        return _new_graph(self.n, self.name, self.edges.tolist())


def _locality_order(pos: np.ndarray, width: float) -> np.ndarray:
    """New label of each point: points sorted by horizontal strips of height ``width``, then by x, so that graph
    neighbours get nearby labels and a gossip round (a CSR product) reads nearby rows (5x faster at 10,000 nodes
    than labels in random order)."""
    order = np.lexsort((pos[:, 0], np.floor(pos[:, 1] / width)))
    label = np.empty(pos.shape[0], dtype=np.int64)
    label[order] = np.arange(pos.shape[0])
    return label


def _require_connected_sparse(G: SparseGraph, what: str, fix: str) -> None:
    if G.n > 1:
        k, _ = connected_components(G.adjacency(), directed=False)
        if k > 1:
            raise ProxGTValueError(f"{what} sampled a disconnected graph ({k} components); {fix}.")


def _grid_edges(n: int, periodic: bool) -> np.ndarray:
    rows, cols = grid_shape(n)
    idx = np.arange(n).reshape(rows, cols)
    parts = [np.stack([idx[:, :-1].ravel(), idx[:, 1:].ravel()], axis=1),
             np.stack([idx[:-1, :].ravel(), idx[1:, :].ravel()], axis=1)]
    if periodic and cols >= 3:
        parts.append(np.stack([idx[:, -1], idx[:, 0]], axis=1))
    if periodic and rows >= 3:
        parts.append(np.stack([idx[-1, :], idx[0, :]], axis=1))
    return np.concatenate(parts)


_NO_EDGES = np.zeros((0, 2), dtype=np.int64)  # a graph of one node (np.concatenate copies it)


def family_edges(name: str, n: int) -> np.ndarray:
    """Edge array (m, 2) of a deterministic family (``ring``, ``path``, ``star``, ``complete``, ``grid``,
    ``torus``, ``hypercube``, ``exponential``): the edges of the ``*_graph(n)`` generator, without networkx."""
    i = np.arange(n, dtype=np.int64)
    if name == "ring":
        return np.stack([i, (i + 1) % n], axis=1)
    if name == "path":
        return np.stack([i[:-1], i[1:]], axis=1)
    if name == "star":
        return np.stack([np.zeros(n - 1, dtype=np.int64), i[1:]], axis=1)
    if name == "complete":
        iu, ju = np.triu_indices(n, k=1)
        return np.stack([iu, ju], axis=1)
    if name in ("grid", "torus"):
        return _grid_edges(n, name == "torus")
    if name == "hypercube":
        dim = n.bit_length() - 1
        return np.concatenate([np.stack([i, i ^ (1 << k)], axis=1) for k in range(dim)] or [_NO_EDGES])
    if name == "exponential":
        steps = [1 << k for k in range(max(1, n.bit_length())) if (1 << k) < n]
        return np.concatenate([np.stack([i, (i + s) % n], axis=1) for s in steps] or [_NO_EDGES])
    raise ProxGTValueError(f"family_edges: unknown deterministic family {name!r}")


# ----------------------------------------------------------------------------------------------------
# Graphs from outside
# ----------------------------------------------------------------------------------------------------

_SPLIT = re.compile(r"[,\s]+")


def _sorted_labels(labels: Iterable[Any]) -> list[Any]:
    """Sort node labels; labels of mixed, incomparable types fall back to sorting by their string form."""
    labels = list(labels)
    try:
        return sorted(labels)
    except TypeError:
        return sorted(labels, key=lambda x: (type(x).__name__, str(x)))


def _relabelled(labels: list[Any], edges: Iterable[tuple[Any, Any]], name: str) -> nx.Graph:
    """Graph on 0..n-1 whose node k is the k-th label in sorted order (kept as node attribute "label")."""
    order = _sorted_labels(labels)
    index = {label: k for k, label in enumerate(order)}
    G = _new_graph(len(order), name, ((index[u], index[v]) for u, v in edges))
    for k, label in enumerate(order):
        G.nodes[k]["label"] = label
    return G


def graph_from_edge_list(path: str | os.PathLike[str]) -> nx.Graph:
    """Read an undirected graph from a text file with one edge ``u v`` per line.

    Format: the two labels are separated by whitespace and/or a comma; ``#`` starts a comment; blank lines are
    skipped; a self-loop ``u u`` adds node u without an edge (a way to declare a node). If every label is an
    integer, nodes are ordered numerically, otherwise all labels are read as strings and ordered
    lexicographically; either way node k of the result is the k-th label in that order (so a file already
    numbered 0..n-1 keeps its numbering, a 1-based file is shifted down). The original label is kept in the
    node attribute ``"label"``.

    Raises :class:`ProxGTValueError` for a missing or unreadable file, a line that is not exactly two labels
    (naming the file and line number), or a file with no edges.
    """
    p = Path(path)
    if not p.exists():
        raise ProxGTValueError(f"edge-list file '{path}' does not exist.")
    if not p.is_file():
        raise ProxGTValueError(f"edge-list file '{path}' is not a regular file.")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProxGTValueError(f"could not read edge-list file '{path}': {type(exc).__name__}.") from exc
    raw_edges: list[tuple[str, str]] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        tokens = [t for t in _SPLIT.split(line) if t]
        if len(tokens) != 2:
            raise ProxGTValueError(
                f"edge-list file '{path}', line {lineno}: expected one edge 'u v' (two node labels "
                f"separated by whitespace or a comma), got {line!r}."
            )
        raw_edges.append((tokens[0], tokens[1]))
    if not raw_edges:
        raise ProxGTValueError(f"edge-list file '{path}' contains no edges.")
    edges: list[tuple[Any, Any]]
    try:
        edges = [(int(u), int(v)) for u, v in raw_edges]
    except ValueError:
        edges = list(raw_edges)
    labels = {x for e in edges for x in e}
    G = _relabelled(list(labels), edges, "file")
    G.graph["source"] = str(path)
    return G


def graph_from_networkx(G: nx.Graph) -> nx.Graph:
    """Copy any networkx graph into the library's form: undirected, no self-loops, nodes 0..n-1.

    Node k of the result is the k-th node of ``G`` in sorted order (labels that cannot be compared are sorted
    by type name and string form); the original label is kept in the node attribute ``"label"``. Directed
    edges become undirected, parallel edges collapse, self-loops are dropped, other attributes are not copied.
    """
    if not isinstance(G, nx.Graph):
        raise _param_error("graph_from_networkx", "G", "a networkx graph", type(G).__name__)
    if G.number_of_nodes() == 0:
        raise ProxGTValueError("graph_from_networkx: the graph has no nodes; a topology needs at least one.")
    H = _relabelled(list(G.nodes), ((u, v) for u, v, *_ in G.edges), str(G.graph.get("name") or "custom"))
    return H
