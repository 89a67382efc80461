"""The communicator seam between executors: one counted gossip round ``Z -> W Z`` and network sums.

A :class:`Communicator` performs *one* gossip round, restricted to the rows this process hosts, and counts it in
its :class:`CommCounter` (rounds, messages, bytes per node). The simulator's :class:`SimulatedCommunicator`
multiplies by W; the distributed one (:mod:`proxgt.executors.distributed`) exchanges rows with graph
neighbours. Multi-round mixing is built on top of it in :mod:`proxgt.mixing.mixer`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp
import torch

from proxgt._validation import ProxGTValueError
from proxgt.mixing.clock import VirtualClock

__all__ = ["Clocked", "CommCounter", "Communicator", "Gossip", "PayloadGossip", "Scheduled", "SimulatedCommunicator",
           "fused_round"]


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
        # under link failures / node dropout (proxgt.mixing.dynamic): per node, messages and bytes that the
        # links down did not carry; zero on a reliable network
        self.unsent_messages = np.zeros_like(self.degrees)
        self.unsent_bytes = np.zeros_like(self.degrees)

    def record_round(self, width: int, itemsize: int, sent: np.ndarray | None = None) -> None:
        """Account one gossip round of ``width`` numbers of ``itemsize`` bytes per node; ``sent`` is the number
        of messages each node really sent this round (its up-degree) when some links were down."""
        self.rounds += 1
        self.units += width * itemsize
        if sent is not None:
            missing = self.degrees - np.asarray(sent, dtype=np.int64)
            self.unsent_messages += missing
            self.unsent_bytes += missing * (width * itemsize)

    def skip_rounds(self, rounds: int) -> None:
        """Count ``rounds`` rounds in which no node of this process sent anything (a site that rejoins the run
        takes up the others' round count)."""
        self.rounds += int(rounds)
        self.unsent_messages = self.unsent_messages + self.degrees * int(rounds)

    def change_degrees(self, degrees: np.ndarray) -> None:
        """Count the new ``degrees`` from now on (a lost site or rank), keeping what every node sent so far:
        sent = degrees * rounds - unsent, so the unsent counts absorb the change."""
        degrees = np.asarray(degrees, dtype=np.int64)
        self.unsent_messages = self.unsent_messages + (degrees - self.degrees) * self.rounds
        self.unsent_bytes = self.unsent_bytes + (degrees - self.degrees) * self.units
        self.degrees = degrees

    @property
    def messages(self) -> np.ndarray:
        """Messages sent by each node so far."""
        sent: np.ndarray = self.degrees * self.rounds - self.unsent_messages
        return sent

    @property
    def bytes(self) -> np.ndarray:
        """Bytes sent by each node so far."""
        sent: np.ndarray = self.degrees * self.units - self.unsent_bytes
        return sent

    @property
    def bytes_per_node(self) -> float:
        """Mean over nodes of the bytes each node has sent."""
        return float(self.bytes.mean()) if self.degrees.size else 0.0

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"rounds": self.rounds, "units": self.units}
        if self.unsent_messages.any():
            # tensors, not arrays: checkpoints are read back with torch.load(weights_only=True)
            state.update(unsent_messages=torch.from_numpy(self.unsent_messages.copy()),
                         unsent_bytes=torch.from_numpy(self.unsent_bytes.copy()))
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rounds = int(state["rounds"])
        self.units = int(state["units"])
        zero = np.zeros_like(self.degrees)
        self.unsent_messages = np.asarray(state.get("unsent_messages", zero), dtype=np.int64).copy()
        self.unsent_bytes = np.asarray(state.get("unsent_bytes", zero), dtype=np.int64).copy()


@runtime_checkable
class Gossip(Protocol):
    """What :class:`~proxgt.mixing.mixer.Mixer` needs: the only object that touches the node axis across
    processes, one counted round at a time.

    Attributes:
        n_nodes: number of nodes in the whole network.
        node_ids: global ids of the rows this process hosts (all of them in the simulator).
        counter: iteration communication accounting.
        active_nodes: nodes still in the run (fewer than ``n_nodes`` after a lost site, ``on_failure =
            continue``); metrics average over them.
        active_mask: bool (n_nodes,) of those nodes, or None while every node is in the run.
    """

    n_nodes: int
    node_ids: tuple[int, ...]
    counter: CommCounter
    active_nodes: int
    active_mask: np.ndarray | None

    def gossip(self, Z: torch.Tensor) -> torch.Tensor:
        """One round: return the local rows of ``W @ Z_global``; ``Z`` is left unmodified. Counted."""
        ...

    def gossip_into(self, Z: torch.Tensor, out: torch.Tensor, alpha: float = 1.0, beta: float = 0.0,
                    prev: torch.Tensor | None = None) -> torch.Tensor:
        """One counted round fused with the multi-round recurrence: ``out = alpha W Z + beta prev`` (``out``
        aliases neither ``Z`` nor ``prev``); returns ``out``."""
        ...

    def sum_over_nodes(self, T: torch.Tensor) -> torch.Tensor:
        """Sum of ``T`` (local rows, shape (k, ...)) over *all* nodes, shape (...). For metrics only:
        not counted in the iteration's communication."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """The communication counts so far (checkpoints)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


#: The name the executors and the driver use for the communicator they make (every one is a :class:`Gossip`).
Communicator = Gossip


@runtime_checkable
class PayloadGossip(Gossip, Protocol):
    """What compressed gossip (:class:`~proxgt.mixing.compressed.CompressedMixer`) needs besides a round of W:
    sending an encoded payload as it is, and mixing rows laid out as that exchange returned them."""

    def share(self, payload: torch.Tensor) -> torch.Tensor:
        """Send the local encoded rows (k, w) to the neighbours, receive theirs: ``[local rows; received rows]``.
        Counted as ``w`` bytes of ``payload``'s dtype per message."""
        ...

    def mix_shared(self, H: torch.Tensor) -> torch.Tensor:
        """Local rows of ``W @ H_global`` for ``H`` laid out as :meth:`share` returned it (not counted)."""
        ...


@runtime_checkable
class Scheduled(Protocol):
    """A communicator that follows a per-round graph (:class:`proxgt.mixing.dynamic.NetworkSchedule`): link
    failures, node dropout, time-varying families. The loop tells it when an iteration starts."""

    def begin_iteration(self, t: int) -> None:
        """Iteration ``t`` starts (0: the initialization): its rounds are numbered from 0 again."""
        ...


@runtime_checkable
class Clocked(Protocol):
    """A communicator that advances a :class:`~proxgt.mixing.clock.VirtualClock` in every round it counts (the
    simulator's, when the run sets a clock setting); ``clock`` is None when the run has none."""

    clock: VirtualClock | None


def fused_round(round_result: torch.Tensor, out: torch.Tensor, alpha: float, beta: float,
                prev: torch.Tensor | None) -> torch.Tensor:
    """``out = alpha * round_result + beta * prev``: :meth:`Gossip.gossip_into` for a communicator whose round
    returns a fresh tensor (the distributed ones)."""
    torch.mul(round_result.reshape(out.shape), alpha, out=out)
    if beta != 0.0 and prev is not None:
        out.add_(prev, alpha=beta)
    return out


def _csr_tensor(crow: torch.Tensor, col: torch.Tensor, val: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, val, size=shape)


#: The most nodes for which :meth:`SimulatedCommunicator.rounds_into` applies the K rounds of a static graph as one
#: dense n x n product. Measured (one thread, ring, Chebyshev, d = 10^5 per node): the one product took 0.9 ms
#: against 7.7 ms for K = 4 rounds at 16 nodes, 23 ms against 94 ms at 64 and 82 ms against 335 ms at 128.
FUSED_ROUNDS_MAX_NODES = 128


def _polynomial(W: torch.Tensor, schedule: Sequence[tuple[float, float]]) -> torch.Tensor:
    """p(W) (n x n, W's dtype) of the recurrence ``Z_{k+1} = alpha_k W Z_k + beta_k Z_{k-1}``, ``Z_{-1} = Z_0 = I``."""
    prev = cur = torch.eye(W.shape[0], dtype=W.dtype, device=W.device)
    for alpha, beta in schedule:
        prev, cur = cur, torch.add(alpha * (W @ cur), prev, alpha=beta)
    return cur


class SimulatedCommunicator:
    """All n nodes in one process: a gossip round is one (sparse or dense) product with W.

    Small products use dense ``W @ Z``; large ones on sparse graphs a CSR product that touches only the
    non-zeros (3 per row on a ring), which keeps mixing near memory bandwidth. ``sparse`` forces one path.
    ``W`` may also be given sparse (a torch sparse CSR tensor, as :attr:`proxgt.topology.Topology.W` is for
    large networks, or a scipy sparse matrix): it is then never densified and every round is a CSR product.
    """

    def __init__(self, W: Any, degrees: Sequence[int] | np.ndarray, *, sparse: bool | None = None):
        given_sparse = sp.issparse(W) or (isinstance(W, torch.Tensor) and W.layout == torch.sparse_csr)
        if sp.issparse(W):
            C = sp.csr_matrix(W, dtype=np.float64)
            W = _csr_tensor(torch.from_numpy(C.indptr.astype(np.int64)), torch.from_numpy(C.indices.astype(np.int64)),
                            torch.from_numpy(C.data), C.shape)
        elif given_sparse:
            W = W.to(dtype=torch.float64)
        else:
            W = torch.as_tensor(W, dtype=torch.float64)
        if W.ndim != 2 or W.shape[0] != W.shape[1]:
            raise ProxGTValueError(f"mixing matrix must be square; got shape {tuple(W.shape)}")
        self.n_nodes = int(W.shape[0])
        self.node_ids = tuple(range(self.n_nodes))
        self.counter = CommCounter(np.asarray(degrees))
        self.active_nodes = self.n_nodes  # every node stays: nodes sit out rounds here, never leave the run
        self.active_mask: np.ndarray | None = None
        self._W64 = W
        nnz = int(W.values().numel()) if given_sparse else int((W != 0).sum())
        self.density = nnz / max(1, self.n_nodes * self.n_nodes)
        if given_sparse and sparse is False:
            raise ProxGTValueError("SimulatedCommunicator: sparse=False needs a dense W; got a sparse one")
        self.sparse = True if given_sparse else sparse  # None: chosen per call by size (see _use_sparse)
        self._cache: dict[tuple[Any, ...], torch.Tensor] = {}  # W, and the polynomials of rounds_into, per dtype
        self.clock: VirtualClock | None = None

    def attach_clock(self, clock: VirtualClock) -> None:
        """Advance ``clock`` in every round from now on (the run's virtual time, :mod:`proxgt.mixing.clock`)."""
        self.clock = clock

    def _record_round(self, width: int, itemsize: int, sent: np.ndarray | None = None,
                      edges: np.ndarray | None = None) -> None:
        """Count one round (``sent``: messages per node when links were down) and advance the clock over the
        links it used (``edges``; None: every link)."""
        self.counter.record_round(width, itemsize, sent=sent)
        if self.clock is not None:
            self.clock.exchange(width * itemsize, edges)

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
            if sparse and W.layout != torch.sparse_csr:
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
        self._record_round(Z[0].numel() if Z.ndim > 1 else 1, Z.element_size())
        return self._product(Z, out, alpha, beta, prev)

    def gossip_from(self, Z: torch.Tensor, sent: np.ndarray) -> torch.Tensor:
        """``W @ Z``, counted as a round in which each node sent ``sent[i]`` messages (an asynchronous round,
        :mod:`proxgt.mixing.asynchrony`, whose caller replaces what was not sent). The product is the one
        :meth:`gossip` computes, bit for bit."""
        self._record_round(Z[0].numel() if Z.ndim > 1 else 1, Z.element_size(), sent=np.asarray(sent))
        return self._product(Z, torch.empty_like(Z), 1.0, 0.0, None)

    def rounds_into(self, Z: torch.Tensor, out: torch.Tensor,
                    schedule: Sequence[tuple[float, float]]) -> torch.Tensor | None:
        """All rounds of a multi-round recurrence ``Z_{k+1} = alpha_k W Z_k + beta_k Z_{k-1}`` (``Z_{-1} = Z_0``,
        :meth:`proxgt.mixing.mixer.Mixer.schedule`) as one product ``out = p(W) Z``, each round counted as
        :meth:`gossip_into` counts it; returns ``out``, or None where the rounds are to be run one by one.

        Every round multiplies by the same W, so the K rounds are the polynomial p(W), an n x n matrix computed
        once in float64 and cached: one pass over Z instead of K passes over three tensors. The result is the
        same up to float rounding. Up to :data:`FUSED_ROUNDS_MAX_NODES` nodes (a dense n x n product costs n
        multiply-adds per entry of Z, K rounds of a sparse W about 3K but K times the memory traffic) unless sparse
        rounds were asked for (``sparse=True`` or a W given sparse); None otherwise."""
        if self.n_nodes > FUSED_ROUNDS_MAX_NODES or self.sparse is True:
            return None
        key = ("poly", tuple(schedule), Z.dtype, Z.device)
        P = self._cache.get(key)
        if P is None:
            P = _polynomial(self._W64, schedule).to(dtype=Z.dtype, device=Z.device)
            self._cache[key] = P
        for _ in schedule:
            self._record_round(Z[0].numel() if Z.ndim > 1 else 1, Z.element_size())
        torch.mm(P, Z.reshape(Z.shape[0], -1), out=out.view(out.shape[0], -1))
        return out

    def _product(self, Z: torch.Tensor, out: torch.Tensor, alpha: float, beta: float,
                 prev: torch.Tensor | None) -> torch.Tensor:
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

    def share(self, payload: torch.Tensor) -> torch.Tensor:
        """One counted round of compressed gossip (:mod:`proxgt.mixing.compressed`): every node sends its
        payload row (uint8, (k, w)) to its neighbours; returns the rows of every node whose payload this
        process needs, local rows first (here: all of them). Counts ``w`` bytes per message."""
        self._record_round(payload.shape[1], payload.element_size())
        return payload

    def mix_shared(self, H: torch.Tensor) -> torch.Tensor:
        """Local rows of ``W @ H`` for ``H`` laid out like :meth:`share`'s result; local arithmetic, not counted."""
        return self._matrix(H, self._use_sparse(H)) @ H

    def state_dict(self) -> dict[str, Any]:
        state = {"counter": self.counter.state_dict()}
        if self.clock is not None:
            state["clock"] = self.clock.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.counter.load_state_dict(state["counter"])
        if self.clock is not None:
            self.clock.load_state_dict(state["clock"])
