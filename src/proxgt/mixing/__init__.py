"""Multi-round gossip M_K and the communicator seam between executors.

Everything an algorithm does is row-wise on node-stacked tensors (one row per node), except mixing. Mixing is
split in two layers so that the multi-round logic is written once for every executor:

* a :class:`Communicator` performs *one* gossip round, ``Z -> W Z`` restricted to the rows this process hosts,
  and counts it (rounds, messages, bytes per node). The simulator's communicator multiplies by W; the
  distributed one exchanges rows with graph neighbours.
* a :class:`Mixer` turns K rounds into the operator M_K (plain, Chebyshev-accelerated, or heavy-ball
  "fastmix"), using only ``gossip`` plus local linear combinations. Each variant preserves the node average
  exactly (its polynomial p satisfies p(1) = 1) up to float rounding.

Contraction factors ``||M_K - J||_2`` are computed exactly from the spectrum of W (``contraction``), and
``rounds_for_target`` picks the smallest K that reaches a target.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from proxgt._validation import ProxGTValueError, check_choice, check_positive_int

__all__ = [
    "MIXING_KINDS",
    "CommCounter",
    "Communicator",
    "SimulatedCommunicator",
    "Mixer",
    "mixing_polynomial",
    "contraction",
    "rounds_for_target",
    "mixing_matrix",
    "chebyshev_coefficients",
]

MIXING_KINDS = ("plain", "chebyshev", "fastmix")

# Below this lambda the graph mixes exactly in one round (W = J, e.g. a complete graph with Metropolis
# weights); the Chebyshev recurrence would divide by ~0, and plain gossip is already optimal.
_EXACT_LAMBDA = 1e-9


@dataclass
class CommCounter:
    """Communication accounting for the iteration (logging traffic is kept out of it).

    One round means every node sends its d-vector once to each neighbour, so per round node i sends
    ``deg(i)`` messages of ``d * itemsize`` bytes. Counts are kept for every node of the network (the degrees
    are public knowledge of the topology), so every process of a distributed run reports the same totals.
    """

    degrees: np.ndarray
    rounds: int = 0
    units: int = 0  # sum over rounds of width * itemsize: the bytes one message carried, summed

    def __post_init__(self) -> None:
        self.degrees = np.asarray(self.degrees, dtype=np.int64)

    def record_round(self, width: int, itemsize: int) -> None:
        """Account one gossip round of ``width`` numbers of ``itemsize`` bytes per node."""
        self.rounds += 1
        self.units += width * itemsize

    @property
    def messages(self) -> np.ndarray:
        """Messages sent by each node so far."""
        return self.degrees * self.rounds

    @property
    def bytes(self) -> np.ndarray:
        """Bytes sent by each node so far."""
        return self.degrees * self.units

    @property
    def bytes_per_node(self) -> float:
        """Mean over nodes of the bytes each node has sent."""
        return float(self.bytes.mean()) if self.degrees.size else 0.0

    @property
    def messages_per_node(self) -> float:
        return float(self.messages.mean()) if self.degrees.size else 0.0

    def state_dict(self) -> dict:
        return {"rounds": self.rounds, "units": self.units}

    def load_state_dict(self, state: dict) -> None:
        self.rounds = int(state["rounds"])
        self.units = int(state["units"])


@runtime_checkable
class Communicator(Protocol):
    """The only object that touches the node axis across processes.

    Attributes:
        n_nodes: number of nodes in the whole network.
        node_ids: global ids of the rows this process hosts (all of them in the simulator).
        counter: iteration communication accounting.
    """

    n_nodes: int
    node_ids: tuple[int, ...]
    counter: CommCounter

    def gossip(self, Z: torch.Tensor) -> torch.Tensor:
        """One round: return the local rows of ``W @ Z_global``; ``Z`` is left unmodified. Counted."""
        ...

    def sum_over_nodes(self, T: torch.Tensor) -> torch.Tensor:
        """Sum of ``T`` (local rows, shape (k, ...)) over *all* nodes, shape (...). For metrics only:
        not counted in the iteration's communication."""
        ...


class SimulatedCommunicator:
    """All n nodes in one process: a gossip round is one (sparse or dense) product with W.

    Small products use dense ``W @ Z``; large ones on sparse graphs a CSR product that touches only the
    non-zeros (3 per row on a ring), which keeps mixing near memory bandwidth. ``sparse`` forces one path.
    """

    def __init__(self, W: torch.Tensor, degrees: Sequence[int] | np.ndarray, *, sparse: bool | None = None):
        W = torch.as_tensor(W, dtype=torch.float64)
        if W.ndim != 2 or W.shape[0] != W.shape[1]:
            raise ProxGTValueError(f"mixing matrix must be square; got shape {tuple(W.shape)}")
        self.n_nodes = int(W.shape[0])
        self.node_ids = tuple(range(self.n_nodes))
        self.counter = CommCounter(np.asarray(degrees))
        self._W64 = W
        self.density = float((W != 0).sum()) / max(1, W.numel())
        self.sparse = sparse  # None: chosen per call by size (see _use_sparse)
        self._cache: dict[tuple[torch.dtype, torch.device, bool], torch.Tensor] = {}

    def _use_sparse(self, Z: torch.Tensor) -> bool:
        """CSR touches only the non-zeros of W and wins once Z is large (measured in bench/bench_core.py: on a
        32-node ring with d = 1e5 it runs at ~0.6x copy bandwidth against ~0.15x for the dense product); tiny
        products are call-overhead bound, where the dense kernel is cheaper."""
        if self.sparse is not None:
            return self.sparse
        return self.density < 0.5 and (Z.numel() >= 65536 or self.n_nodes > 64)

    def _matrix(self, like: torch.Tensor, sparse: bool) -> torch.Tensor:
        key = (like.dtype, like.device, sparse)
        W = self._cache.get(key)
        if W is None:
            W = self._W64.to(dtype=like.dtype, device=like.device)
            if sparse:
                with warnings.catch_warnings():  # "sparse CSR support is in beta": the product we use is stable
                    warnings.simplefilter("ignore", UserWarning)
                    W = W.to_sparse_csr()
            self._cache[key] = W
        return W

    def gossip(self, Z: torch.Tensor) -> torch.Tensor:
        return self.gossip_into(Z, torch.empty_like(Z))

    def gossip_into(
        self,
        Z: torch.Tensor,
        out: torch.Tensor,
        alpha: float = 1.0,
        beta: float = 0.0,
        prev: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One counted round fused with the recurrence of multi-round mixing: ``out = alpha W Z + beta prev``.

        A single (dense or CSR) ``addmm`` pass writes into a preallocated ``out``, instead of a product into a
        fresh tensor followed by two more passes for the scaling and the subtraction.
        """
        self.counter.record_round(Z[0].numel() if Z.ndim > 1 else 1, Z.element_size())
        sparse = self._use_sparse(Z)
        W = self._matrix(Z, sparse)
        Z2, out2 = Z.reshape(Z.shape[0], -1), out.view(out.shape[0], -1)
        if beta == 0.0 or prev is None:
            if alpha == 1.0 and not sparse:
                return torch.mm(W, Z2, out=out2).view(out.shape)
            torch.addmm(out2, W, Z2, beta=0.0, alpha=alpha, out=out2)
        else:
            torch.addmm(prev.reshape(prev.shape[0], -1), W, Z2, beta=beta, alpha=alpha, out=out2)
        return out

    def sum_over_nodes(self, T: torch.Tensor) -> torch.Tensor:
        return T.sum(dim=0)


def chebyshev_coefficients(lam: float, rounds: int) -> list[tuple[float, float]]:
    """Coefficients (c1_k, c2_k), k = 1..K-1, of Z_{k+1} = c1_k W Z_k - c2_k Z_{k-1}.

    With a_k = T_k(1/lam): c1_k = 2 a_k / (lam a_{k+1}) and c2_k = a_{k-1} / a_{k+1}, so c1_k - c2_k = 1
    (average preserved). a_k grows like (1/lam + sqrt(1/lam^2 - 1))^k and overflows for large K, so we run
    the recurrence on the ratios r_k = a_{k-1} / a_k instead: r_1 = lam, r_{k+1} = 1 / (2/lam - r_k).
    """
    coeffs = []
    r = lam
    for _ in range(1, rounds):
        r_next = 1.0 / (2.0 / lam - r)
        coeffs.append((2.0 * r_next / lam, r * r_next))
        r = r_next
    return coeffs


def _fastmix_eta(lam: float) -> float:
    s = math.sqrt(max(0.0, 1.0 - lam * lam))
    return (1.0 - s) / (1.0 + s)


class Mixer:
    """The K-round mixing operator M_K over a communicator.

    kinds:
        ``plain``      M_K = W^K, ``||M_K - J|| = lam^K``.
        ``chebyshev``  M_K = T_K(W/lam) / T_K(1/lam): the same K rounds contract to ``1/T_K(1/lam)``, so about
                       ``1/sqrt(1-lam)`` rounds do what plain gossip needs ``1/(1-lam)`` for.
        ``fastmix``    heavy-ball form Z_{k+1} = (1+eta) W Z_k - eta Z_{k-1}, Z_{-1} = Z_0.

    Calling the mixer performs exactly ``rounds`` gossip rounds (one product with W each). Example::

        >>> comm = SimulatedCommunicator(torch.full((2, 2), 0.5), [1, 1])
        >>> Mixer(comm, "chebyshev", 3, lam=0.0)(torch.tensor([[0.0], [2.0]])).tolist()
        [[1.0], [1.0]]
    """

    def __init__(self, comm: Communicator, kind: str = "chebyshev", rounds: int = 1, *, lam: float):
        self.comm = comm
        self.kind = check_choice(kind, "mixing", MIXING_KINDS, "Mixer")
        self.rounds = check_positive_int(rounds, "rounds", "Mixer")
        self.lam = float(lam)
        if not 0.0 <= self.lam < 1.0:
            raise ProxGTValueError(f"lambda = ||W - J|| must be in [0, 1) for a connected graph; got {lam}")
        exact = self.lam < _EXACT_LAMBDA
        self._coeffs = [] if exact or self.kind != "chebyshev" else chebyshev_coefficients(self.lam, self.rounds)
        self._eta = 0.0 if exact or self.kind != "fastmix" else _fastmix_eta(self.lam)
        self._effective = "plain" if exact else self.kind
        self._schedule = self._make_schedule()
        self._buffers: dict[tuple, list[torch.Tensor]] = {}

    def _make_schedule(self) -> list[tuple[float, float]]:
        """(alpha_k, beta_k) of each round Z_{k+1} = alpha_k W Z_k + beta_k Z_{k-1} (Z_{-1} = Z_0)."""
        if self._effective == "plain":
            return [(1.0, 0.0)] * self.rounds
        if self._effective == "chebyshev":
            return [(1.0, 0.0)] + [(c1, -c2) for c1, c2 in self._coeffs]
        eta = self._eta
        return [(1.0 + eta, -eta)] * self.rounds

    def _buffers_for(self, Z: torch.Tensor) -> list[torch.Tensor]:
        key = (tuple(Z.shape), Z.dtype, Z.device)
        bufs = self._buffers.get(key)
        if bufs is None:
            self._buffers.clear()  # one live shape at a time: iterates and trackers share it
            bufs = [torch.empty_like(Z) for _ in range(3)]
            self._buffers[key] = bufs
        return bufs

    def __call__(self, Z: torch.Tensor) -> torch.Tensor:
        """Apply M_K to ``Z`` (left unmodified) with exactly ``rounds`` gossip rounds.

        Intermediate rounds write into three preallocated buffers used in rotation; only the last round writes
        a fresh tensor, which the caller may keep (it becomes part of the algorithm state).
        """
        into = getattr(self.comm, "gossip_into", None)
        schedule = self._schedule
        bufs = self._buffers_for(Z) if into is not None else []
        prev, cur = Z, Z
        last = len(schedule) - 1
        for k, (alpha, beta) in enumerate(schedule):
            if into is not None:
                out = torch.empty_like(Z) if k == last else bufs[k % 3]
                nxt = into(cur, out, alpha, beta, prev)
            else:  # a communicator with only the basic one-round primitive
                nxt = self.comm.gossip(cur)
                if alpha != 1.0:
                    nxt.mul_(alpha)
                if beta != 0.0:
                    nxt.add_(prev, alpha=beta)
            prev, cur = cur, nxt
        return cur


def mixing_polynomial(kind: str, rounds: int, lam: float) -> Callable[[np.ndarray], np.ndarray]:
    """The polynomial p with M_K = p(W), evaluated elementwise on eigenvalues (numpy, float64)."""
    check_choice(kind, "mixing", MIXING_KINDS)
    rounds = check_positive_int(rounds, "rounds")

    def plain(mu: np.ndarray) -> np.ndarray:
        return np.asarray(mu, dtype=np.float64) ** rounds

    if lam < _EXACT_LAMBDA or kind == "plain":
        return plain
    if kind == "chebyshev":
        coeffs = chebyshev_coefficients(lam, rounds)

        def cheb(mu: np.ndarray) -> np.ndarray:
            mu = np.asarray(mu, dtype=np.float64)
            prev, cur = np.ones_like(mu), mu.copy()
            for c1, c2 in coeffs:
                prev, cur = cur, c1 * mu * cur - c2 * prev
            return cur

        return cheb
    eta = _fastmix_eta(lam)

    def fast(mu: np.ndarray) -> np.ndarray:
        mu = np.asarray(mu, dtype=np.float64)
        prev, cur = np.ones_like(mu), (1 + eta) * mu - eta
        for _ in range(rounds - 1):
            prev, cur = cur, (1 + eta) * mu * cur - eta * prev
        return cur

    return fast


def _nonprincipal(eigenvalues: np.ndarray) -> np.ndarray:
    """Eigenvalues of W other than the single eigenvalue 1 of a connected graph's mixing matrix."""
    ev = np.sort(np.asarray(eigenvalues, dtype=np.float64))
    return ev[:-1]


def contraction(eigenvalues: np.ndarray, kind: str, rounds: int, lam: float | None = None) -> float:
    """Exact ``||M_K - J||_2`` for symmetric W with the given eigenvalues (the largest must be the 1)."""
    rest = _nonprincipal(eigenvalues)
    if rest.size == 0:
        return 0.0
    if lam is None:
        lam = float(np.max(np.abs(rest)))
    return float(np.max(np.abs(mixing_polynomial(kind, rounds, lam)(rest))))


def rounds_for_target(
    eigenvalues: np.ndarray, kind: str, target: float = 0.2, *, max_rounds: int = 10_000
) -> int:
    """Smallest K >= 1 with ``||M_K - J||_2 <= target`` for the given spectrum and mixing kind."""
    if not 0.0 < target < 1.0:
        raise ProxGTValueError(f"The mixing target ||M_K - J|| must be in (0, 1). Got {target!r} instead.")
    rest = _nonprincipal(eigenvalues)
    lam = float(np.max(np.abs(rest))) if rest.size else 0.0
    for k in range(1, max_rounds + 1):
        if contraction(eigenvalues, kind, k, lam) <= target:
            return k
    raise ProxGTValueError(
        f"{kind} mixing does not reach ||M_K - J|| <= {target} within {max_rounds} rounds (lambda = {lam:.6f}); "
        "use a better connected graph or a larger target"
    )


def mixing_matrix(W: torch.Tensor, kind: str, rounds: int) -> torch.Tensor:
    """M_K as an explicit n x n matrix (float64), built by running the mixer on the identity. For tests and
    analysis; algorithms never form it."""
    W = torch.as_tensor(W, dtype=torch.float64)
    n = W.shape[0]
    ev = np.linalg.eigvalsh(W.numpy())
    rest = _nonprincipal(ev)
    lam = float(np.max(np.abs(rest))) if rest.size else 0.0
    comm = SimulatedCommunicator(W, np.zeros(n, dtype=np.int64), sparse=False)
    return Mixer(comm, kind, rounds, lam=lam)(torch.eye(n, dtype=torch.float64))
