"""Mixing matrices: weight rules on a graph and the checks every W must pass.

A mixing matrix W (n x n) is what node i uses to average with its neighbours, x_i <- sum_j W_ij x_j. The
algorithms need (spec section 1): W symmetric, doubly stochastic (rows and columns sum to 1, so the node
average is preserved), nonnegative, W_ij > 0 only on edges and the diagonal, and connected, i.e.
lambda = ||W - J||_2 < 1 with J = 11^T / n, so repeated mixing drives every node to the average.
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as sla
import torch
from scipy.sparse.csgraph import connected_components

from proxgt._validation import ProxGTValueError
from proxgt._validation import param_error as _param_error

__all__ = [
    "WEIGHT_RULES",
    "metropolis_weight",
    "metropolis_weights",
    "max_degree_weights",
    "lazy_weights",
    "validate_mixing_matrix",
    "mixing_lambda",
]

#: Weight rules of ``make_topology(weights=...)`` (the run's ``weights`` setting); "user" is a given matrix.
WEIGHT_RULES: tuple[str, ...] = ("metropolis", "max_degree", "lazy_metropolis", "user")
_WEIGHT_ALIASES: dict[str, str] = {
    "metropolis_hastings": "metropolis",
    "mh": "metropolis",
    "maxdegree": "max_degree",
    "max_deg": "max_degree",
    "lazy": "lazy_metropolis",
    "lazy_mh": "lazy_metropolis",
    "matrix": "user",
}

#: ``lambda`` must stay below ``1 - LAMBDA_TOL``: a smaller gap means mixing makes no measurable progress.
LAMBDA_TOL = 1e-12


def _num(x: float) -> str:
    """Short but faithful number formatting for messages (0.1 + 0.2 -> '0.3', 1/3 -> '0.3333333333')."""
    return f"{float(x):.10g}"


def _check_graph(G: Any, owner: str) -> int:
    """Check ``G`` is a simple undirected networkx graph on nodes 0..n-1 and return n."""
    if not isinstance(G, nx.Graph):
        raise _param_error(owner, "G", "a networkx.Graph", type(G).__name__)
    if G.is_directed() or G.is_multigraph():
        raise _param_error(
            owner,
            "G",
            "a simple undirected networkx.Graph",
            type(G).__name__,
            "Convert it with graph_from_networkx.",
        )
    n: int = G.number_of_nodes()
    if n < 1:
        raise ProxGTValueError(f"{owner}: the graph has no nodes; a topology needs at least one.")
    if set(G.nodes) != set(range(n)):
        raise ProxGTValueError(
            f"{owner}: graph nodes must be the integers 0..{n - 1}; relabel it with graph_from_networkx(G)."
        )
    return n


def _edge_array(G: nx.Graph) -> np.ndarray:
    """Edges of G without self-loops as an (m, 2) int array."""
    edges = [(u, v) for u, v in G.edges if u != v]
    return np.asarray(edges, dtype=np.int64).reshape(-1, 2)


def _degrees(n: int, edges: np.ndarray) -> np.ndarray:
    return np.bincount(edges.ravel(), minlength=n).astype(np.int64)


def _from_edge_weights(n: int, edges: np.ndarray, w: np.ndarray) -> torch.Tensor:
    """Symmetric W with ``w`` on the edges and the diagonal filling each row to 1."""
    W = np.zeros((n, n), dtype=np.float64)
    W[edges[:, 0], edges[:, 1]] = w
    W[edges[:, 1], edges[:, 0]] = w
    np.fill_diagonal(W, 1.0 - W.sum(axis=1))
    return torch.from_numpy(W)


def metropolis_weight(d_i: Any, d_j: Any) -> Any:
    """The Metropolis weight 1 / (1 + max(d_i, d_j)) of a link between nodes of degrees ``d_i`` and ``d_j`` (ints,
    or int arrays elementwise); the diagonal W_ii = 1 - sum_{j != i} W_ij fills each row. The one formula of every
    Metropolis matrix in proxgt: the static rule here, the rounds of a changing or unreliable network
    (:mod:`proxgt.mixing.dynamic`), the graph left after a lost process, and the cost model's estimate.

    >>> float(metropolis_weight(2, 3))
    0.25
    """
    return 1.0 / (1.0 + np.maximum(d_i, d_j))


def metropolis_weights(G: nx.Graph) -> torch.Tensor:
    """Metropolis-Hastings weights, the library default: W_ij = 1 / (1 + max(d_i, d_j)) on each edge.

    The diagonal takes what is left of each row, W_ii = 1 - sum_{j != i} W_ij, which is >= 1/(1 + d_i) > 0.
    Needs only the degrees of the two endpoints (each node can compute its row locally) and gives a valid,
    aperiodic W on any connected graph. Returns an n x n float64 tensor.

    >>> from proxgt.topology import ring_graph
    >>> metropolis_weights(ring_graph(4))[0]
    tensor([0.3333, 0.3333, 0.0000, 0.3333], dtype=torch.float64)
    """
    n = _check_graph(G, "metropolis_weights")
    edges = _edge_array(G)
    deg = _degrees(n, edges)
    w = metropolis_weight(deg[edges[:, 0]], deg[edges[:, 1]])
    return _from_edge_weights(n, edges, w)


def max_degree_weights(G: nx.Graph) -> torch.Tensor:
    """Maximum-degree weights: W_ij = 1 / (1 + d_max) on every edge, W_ii = 1 - d_i / (1 + d_max).

    One weight for the whole graph (needs the global maximum degree); on a regular graph it equals Metropolis.
    Returns an n x n float64 tensor.
    """
    n = _check_graph(G, "max_degree_weights")
    edges = _edge_array(G)
    d_max = int(_degrees(n, edges).max(initial=0))
    return _from_edge_weights(n, edges, np.full(len(edges), 1.0 / (1.0 + d_max)))


def _as_matrix(W: Any, owner: str) -> np.ndarray:
    """Convert a torch tensor, numpy array or nested list to a square float64 numpy matrix (a copy)."""
    if isinstance(W, torch.Tensor):
        if W.is_complex():
            raise ProxGTValueError(f"{owner}: mixing matrix must be real; got dtype {W.dtype}.")
        arr = W.detach().to("cpu", torch.float64).numpy().copy()
    else:
        try:
            raw = np.asarray(W)
            if np.iscomplexobj(raw):
                raise ProxGTValueError(f"{owner}: mixing matrix must be real; got dtype {raw.dtype}.")
            arr = np.array(raw, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ProxGTValueError):
                raise
            raise ProxGTValueError(
                f"{owner}: mixing matrix must be a square array of numbers; got {type(W).__name__}."
            ) from exc
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] < 1:
        raise ProxGTValueError(
            f"{owner}: mixing matrix must be a square n x n array with n >= 1; got shape {tuple(arr.shape)}."
        )
    return arr


def lazy_weights(W: Any) -> torch.Tensor:
    """Lazy version (I + W) / 2 of a mixing matrix (tensor or array): each node keeps half its own value.

    Its eigenvalues (1 + mu) / 2 lie in [0, 1], which removes a -1 eigenvalue (oscillating gossip on bipartite
    graphs with zero diagonal) at the price of roughly halving the spectral gap. ``W`` is only checked to be a
    square matrix; pass the result to :func:`validate_mixing_matrix` for the full checks.
    """
    X = _as_matrix(W, "lazy_weights")
    return torch.from_numpy(0.5 * (np.eye(X.shape[0]) + X))


def _lambda_from_eigenvalues(ev: np.ndarray) -> float:
    """lambda = ||W - J||_2 from the ascending eigenvalues of a symmetric doubly stochastic W.

    W - J has W's spectrum with one eigenvalue 1 (eigenvector 1/sqrt(n)) replaced by 0; that eigenvalue is the
    largest because every eigenvalue of a doubly stochastic matrix lies in [-1, 1].
    """
    if ev.size <= 1:
        return 0.0
    return float(max(abs(ev[0]), abs(ev[-2])))


def _check_connected(off: Any, n: int) -> None:
    """One-line error unless the support ``off`` (dense bool or scipy sparse, diagonal excluded) of an n x n
    mixing matrix connects every node."""
    if n > 1:
        k, labels = connected_components(off, directed=False)
        if k > 1:
            j = int(np.argmax(labels != labels[0]))
            raise ProxGTValueError(
                f"mixing matrix is not connected: node 0 cannot reach node {j} through nonzero weights ({k} "
                f"components), so the nodes can never agree."
            )


def _non_edge(X: Any, i: int, j: int) -> ProxGTValueError:
    return ProxGTValueError(
        f"mixing matrix puts weight on a non-edge: W[{i},{j}]={_num(X[i, j])} but ({i}, {j}) "
        f"is not an edge of the graph."
    )


def _check_mixing_matrix(
    W: Any, G: nx.Graph | None, atol: float, owner: str
) -> tuple[np.ndarray, np.ndarray]:
    """All checks of :func:`validate_mixing_matrix`; returns the matrix and its ascending eigenvalues."""
    if isinstance(atol, bool) or not isinstance(atol, numbers.Real) or not (0 <= atol < np.inf):
        raise _param_error(owner, "atol", "a finite float >= 0", atol)
    X = _as_matrix(W, owner)
    n = X.shape[0]

    bad = np.argwhere(~np.isfinite(X))
    if bad.size:
        i, j = bad[0]
        raise ProxGTValueError(f"mixing matrix has a non-finite entry: W[{i},{j}]={X[i, j]}.")

    # Each check names the first offending entry in row-major order.
    asym = np.argwhere(np.abs(X - X.T) > atol)
    if asym.size:
        i, j = asym[0]
        raise ProxGTValueError(
            f"mixing matrix is not symmetric: W[{i},{j}]={_num(X[i, j])} but W[{j},{i}]={_num(X[j, i])}."
        )

    negative = np.argwhere(X < -atol)
    if negative.size:
        i, j = negative[0]
        raise ProxGTValueError(
            f"mixing matrix has a negative entry: W[{i},{j}]={_num(X[i, j])} (weights must be >= 0)."
        )

    bad_rows = np.flatnonzero(np.abs(X.sum(axis=1) - 1.0) > atol)
    if bad_rows.size:
        i = int(bad_rows[0])
        raise ProxGTValueError(
            f"mixing matrix is not doubly stochastic: row {i} sums to {_num(X[i].sum())} instead of 1."
        )

    off = X > atol
    np.fill_diagonal(off, False)
    if G is not None:
        m = _check_graph(G, owner)
        if m != n:
            raise ProxGTValueError(f"mixing matrix is {n} x {n} but the graph has {m} nodes.")
        A = nx.to_numpy_array(G, nodelist=range(n), dtype=bool, weight=None)
        non_edges = np.argwhere(np.triu(off & ~A))
        if non_edges.size:
            i, j = non_edges[0]
            raise _non_edge(X, int(i), int(j))

    _check_connected(off, n)

    ev = np.linalg.eigvalsh(0.5 * (X + X.T))
    lam = _lambda_from_eigenvalues(ev)
    if lam >= 1.0 - LAMBDA_TOL:
        if ev[0] <= -1.0 + LAMBDA_TOL:
            raise ProxGTValueError(
                "mixing matrix has an eigenvalue -1 (lambda = ||W - J||_2 = 1): gossip oscillates instead of "
                "averaging, as on a bipartite graph with zero diagonal; use lazy_weights(W)."
            )
        raise ProxGTValueError(
            f"mixing matrix has no spectral gap: lambda = ||W - J||_2 = {_num(lam)} >= 1 - {LAMBDA_TOL:g}."
        )
    return X, ev


def validate_mixing_matrix(W: Any, G: nx.Graph | None = None, atol: float = 1e-8) -> torch.Tensor:
    """Check that ``W`` is a valid mixing matrix and return it as an n x n float64 tensor (a copy).

    Checks, in order, each with its own one-line :class:`ProxGTValueError` naming the offending entry: square,
    finite, symmetric (|W_ij - W_ji| <= atol), nonnegative (W_ij >= -atol), rows summing to 1 within atol
    (with symmetry: doubly stochastic), when ``G`` is given no weight > atol on a pair i != j that is not an
    edge of ``G``, the support graph (entries > atol) connected, and finally lambda = ||W - J||_2 < 1 - 1e-12
    (which also rejects an eigenvalue -1). ``W`` may be a torch tensor, a numpy array or a nested list.
    """
    X, _ = _check_mixing_matrix(W, G, atol, "validate_mixing_matrix")
    return torch.from_numpy(X)


def mixing_lambda(W: Any) -> float:
    """lambda = ||W - J||_2 (spectral norm, J = 11^T / n) of a symmetric matrix, via ``eigvalsh(W - J)``.

    Does not validate ``W``; for a valid mixing matrix 1 - lambda is the spectral gap.
    """
    X = _as_matrix(W, "mixing_lambda")
    n = X.shape[0]
    return float(np.abs(np.linalg.eigvalsh(0.5 * (X + X.T) - 1.0 / n)).max())


# ----------------------------------------------------------------------------------------------------
# Weight rules by name (the run's ``weights`` setting) and user matrices (its ``weights_file`` setting)
# ----------------------------------------------------------------------------------------------------


def _canonical_weights(weights: Any) -> str:
    """The weight rule named by ``weights`` (case-insensitive, ``-`` or ``_``, aliases such as ``"mh"``)."""
    rules = ", ".join(WEIGHT_RULES)
    if not isinstance(weights, str):
        raise ProxGTValueError(f"weights (--weights) must be the name of a weight rule, one of: {rules}; "
                               f"got {weights!r}")
    key = weights.strip().lower().replace("-", "_").replace(" ", "_")
    key = _WEIGHT_ALIASES.get(key, key)
    if key not in WEIGHT_RULES:
        raise ProxGTValueError(f"unknown weights {weights!r} (--weights); choose one of: {rules}")
    return key


def _weights_for(G: nx.Graph, rule: str, matrix: Any) -> torch.Tensor:
    """W on ``G`` by a canonical weight rule; ``"user"`` validates ``matrix`` against ``G``."""
    if rule == "metropolis":
        return metropolis_weights(G)
    if rule == "max_degree":
        return max_degree_weights(G)
    if rule == "lazy_metropolis":
        return lazy_weights(metropolis_weights(G))
    return validate_mixing_matrix(matrix, G)


def _load_matrix(matrix: Any) -> Any:
    """A matrix given directly, or read from a ``.npy`` file or a text file (whitespace/comma separated)."""
    if not isinstance(matrix, str | os.PathLike):
        return matrix
    path = Path(matrix)
    if not path.is_file():
        raise ProxGTValueError(f"mixing-matrix file '{matrix}' does not exist (weights_file, --weights-file).")
    try:
        if path.suffix.lower() == ".npy":
            return np.load(path, allow_pickle=False)
        text = path.read_text(encoding="utf-8")
        return np.loadtxt(path, dtype=np.float64, delimiter="," if "," in text else None, ndmin=2)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ProxGTValueError(
            f"could not read mixing matrix from '{matrix}' (weights_file, --weights-file): {reason}"
        ) from exc


# ----------------------------------------------------------------------------------------------------
# Sparse form, for networks too large for an n x n dense matrix (see proxgt.topology.topology.DENSE_MAX_NODES)
# ----------------------------------------------------------------------------------------------------


def _sparse_weights(n: int, edges: np.ndarray, rule: str) -> sp.csr_matrix:
    """W of a canonical weight rule (not "user") as a scipy CSR float64 matrix, from an (m, 2) edge array
    without self-loops or duplicates: the same numbers as the dense rules, O(n + m) memory."""
    deg = _degrees(n, edges)
    if rule == "max_degree":
        w = np.full(len(edges), 1.0 / (1.0 + int(deg.max(initial=0))))
    else:
        w = metropolis_weight(deg[edges[:, 0]], deg[edges[:, 1]])
    rows = np.concatenate([edges[:, 0], edges[:, 1]])
    cols = np.concatenate([edges[:, 1], edges[:, 0]])
    off = sp.csr_matrix((np.concatenate([w, w]), (rows, cols)), shape=(n, n))
    W = (off + sp.diags(1.0 - np.asarray(off.sum(axis=1)).ravel())).tocsr()
    if rule == "lazy_metropolis":
        W = (0.5 * (W + sp.identity(n, format="csr"))).tocsr()
    W.sum_duplicates()
    W.sort_indices()
    return W


def _second_eigenvalue(W: sp.csr_matrix) -> float:
    """lambda_2 of a connected symmetric doubly stochastic W: the largest eigenvalue of W - J by Lanczos with a
    bounded number of restarts (fast when the gap is not tiny), else in shift-invert mode around 1 (one sparse LU
    factorisation; fast on the banded, low-fill graphs whose gap is tiny, such as rings and paths)."""
    n = W.shape[0]

    def deflated(v: np.ndarray) -> np.ndarray:
        out: np.ndarray = W @ v - v.mean(axis=0)  # W: scipy, untyped
        return out

    op = sla.LinearOperator((n, n), matvec=deflated, matmat=deflated, dtype=np.float64)
    v0 = np.random.default_rng(0).standard_normal(n)
    try:
        return float(sla.eigsh(op, k=1, which="LA", return_eigenvectors=False, tol=1e-10, ncv=40, maxiter=100,
                               v0=v0)[0])
    except sla.ArpackNoConvergence:
        pass
    try:
        top = sla.eigsh(W, k=2, sigma=1.0 + 1e-6, which="LM", return_eigenvectors=False, tol=1e-10, v0=v0)
        return float(np.sort(top)[0])
    except (sla.ArpackNoConvergence, RuntimeError):  # e.g. a singular factorisation
        return 1.0 - LAMBDA_TOL


def _sparse_spectrum_ends(W: sp.csr_matrix) -> tuple[float, float, str]:
    """(lower end of W's spectrum, second largest eigenvalue, how they were found) of a connected symmetric
    doubly stochastic sparse W.

    The second largest eigenvalue comes from ``scipy.sparse.linalg.eigsh`` (:func:`_second_eigenvalue`: Lanczos
    on W - J, or shift-invert just above 1 when the gap is too small for that, e.g. 1e-7 on a 10,000-node ring).
    For the lower end, the Gershgorin bound min_i (2 W_ii - 1) is used when it is already
    no larger in magnitude than lambda_2 (it then cannot change lambda = max(|lambda_min|, lambda_2)), else
    ``eigsh`` for the smallest eigenvalue (relative tolerance 1e-3, pushed down by a margin of twice that, so the
    result is a lower bound), and the Gershgorin bound again if that does not converge.
    """
    n = W.shape[0]
    if n <= 2:
        ev = np.linalg.eigvalsh(W.toarray())
        return float(ev[0]), float(ev[-2]) if n == 2 else 0.0, "exact"
    lam2 = _second_eigenvalue(W)
    lower = float(2.0 * W.diagonal().min() - 1.0)
    if abs(lower) <= lam2:
        return lower, lam2, "eigsh (lambda_2), Gershgorin (lambda_min)"
    try:
        # A loose tolerance keeps this fast on clustered spectra (a tight one took 80 s on a 10,000-node random
        # geometric graph); the margin below covers it, so lambda_min can only be overestimated in magnitude.
        bottom = float(sla.eigsh(W, k=1, which="SA", return_eigenvectors=False, tol=1e-3, maxiter=50 * n)[0])
        return max(lower, bottom - 2e-3 * abs(bottom) - 1e-6), lam2, "eigsh"
    except sla.ArpackNoConvergence:
        return lower, lam2, "eigsh (lambda_2), Gershgorin (lambda_min)"


def _check_sparse_mixing_matrix(
    W: Any, adjacency: sp.csr_matrix | None, atol: float, owner: str
) -> tuple[sp.csr_matrix, tuple[float, float, str]]:
    """The checks of :func:`validate_mixing_matrix` on a sparse W, without forming anything n x n dense;
    returns W (CSR float64, sorted indices) and :func:`_sparse_spectrum_ends`."""
    X = sp.csr_matrix(W, dtype=np.float64, copy=True)
    if X.ndim != 2 or X.shape[0] != X.shape[1] or X.shape[0] < 1:
        raise ProxGTValueError(f"{owner}: mixing matrix must be square n x n with n >= 1; got shape {X.shape}.")
    X.sum_duplicates()
    X.sort_indices()
    n = X.shape[0]
    coo = X.tocoo()
    bad = np.flatnonzero(~np.isfinite(coo.data))
    if bad.size:
        k = bad[0]
        raise ProxGTValueError(
            f"mixing matrix has a non-finite entry: W[{coo.row[k]},{coo.col[k]}]={coo.data[k]}."
        )
    diff = (X - X.T).tocoo()
    asym = np.flatnonzero(np.abs(diff.data) > atol)
    if asym.size:
        k = asym[np.lexsort((diff.col[asym], diff.row[asym]))[0]]
        i, j = int(diff.row[k]), int(diff.col[k])
        raise ProxGTValueError(
            f"mixing matrix is not symmetric: W[{i},{j}]={_num(X[i, j])} but W[{j},{i}]={_num(X[j, i])}."
        )
    neg = np.flatnonzero(coo.data < -atol)
    if neg.size:
        k = neg[0]
        raise ProxGTValueError(
            f"mixing matrix has a negative entry: W[{coo.row[k]},{coo.col[k]}]={_num(coo.data[k])} "
            "(weights must be >= 0)."
        )
    sums = np.asarray(X.sum(axis=1)).ravel()
    bad_rows = np.flatnonzero(np.abs(sums - 1.0) > atol)
    if bad_rows.size:
        i = int(bad_rows[0])
        raise ProxGTValueError(
            f"mixing matrix is not doubly stochastic: row {i} sums to {_num(sums[i])} instead of 1."
        )
    keep = (coo.data > atol) & (coo.row != coo.col)
    off = sp.csr_matrix((np.ones(int(keep.sum()), dtype=np.int8), (coo.row[keep], coo.col[keep])), shape=(n, n))
    if adjacency is not None:
        if adjacency.shape[0] != n:
            raise ProxGTValueError(f"mixing matrix is {n} x {n} but the graph has {adjacency.shape[0]} nodes.")
        extra = sp.triu(off - off.multiply(adjacency != 0), k=1).tocoo()
        extra_k = np.flatnonzero(extra.data != 0)
        if extra_k.size:
            k = extra_k[np.lexsort((extra.col[extra_k], extra.row[extra_k]))[0]]
            i, j = int(extra.row[k]), int(extra.col[k])
            raise _non_edge(X, int(i), int(j))
    _check_connected(off, n)
    ends = _sparse_spectrum_ends(X)
    lam = max(abs(ends[0]), ends[1])
    if lam >= 1.0 - LAMBDA_TOL:
        if ends[0] <= -1.0 + LAMBDA_TOL:
            raise ProxGTValueError(
                "mixing matrix has an eigenvalue -1 (lambda = ||W - J||_2 = 1): gossip oscillates instead of "
                "averaging, as on a bipartite graph with zero diagonal; use lazy_weights(W)."
            )
        raise ProxGTValueError(
            f"mixing matrix has no spectral gap: lambda = ||W - J||_2 = {_num(lam)} >= 1 - {LAMBDA_TOL:g}."
        )
    return X, ends
