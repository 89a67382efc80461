"""Gossip that survives lost messages: running sums for trackers, the newest value for everything else.

In a gossip round node i sends ``w_ji z_i`` to each neighbour j and keeps ``w_ii z_i``; with every message
delivered the round is ``Z <- W Z``. When a message is lost without the sender knowing (``message_loss``), what
it carried is gone: for a tracker, whose network sum must equal the sum of the local gradient estimates, that
breaks tracking for good. Two remedies, one per kind of quantity (``Capabilities.tracked_keys`` says which):

* **Trackers: running sums.** The sender keeps, per out-link, the running sum ``S_ij`` of everything it has
  ever sent to j, and a message carries ``S_ij`` instead of the increment. The receiver keeps ``R_ij``, the
  running sum it last received, adds ``S_ij - R_ij`` and sets ``R_ij <- S_ij``. A lost message is then made good
  by the next one that arrives (its running sum includes the lost mass), and the *in-flight* mass
  ``S_ij - R_ij`` is all that is missing at any moment::

      sum_i y_i + sum_{links i->j} (S_ij - R_ij) = sum_i v_i        (the tracking invariant)

* **Iterates: the newest value.** The receiver keeps a copy of the last value it received from each
  neighbour and mixes with it when this round's message is lost, so its row of weights still sums to 1 (as in
  asynchronous consensus with delayed information). Before the first message on a link arrives the receiver
  uses its own value in its place.

The simulator keeps, for each directed link and tracked key, the in-flight mass ``S_ij - R_ij`` itself (rather
than the two running sums, which only ever appear as that difference): a round computes ``W Z`` with the
communicator as usual, then removes from each receiver the mass of its lost messages (which joins the link's
in-flight mass) and adds the in-flight mass of each link whose message did arrive. With no message lost this
is exactly the synchronous round, bit for bit. The loss pattern is a pure function of ``(seed, global round)``
(``numpy.random.SeedSequence``), the same for every executor and across a resume.
"""

from __future__ import annotations

from typing import Any, Protocol, cast

import numpy as np
import torch

from proxgt.errors import ProxGTValueError
from proxgt.mixing.clock import VirtualClock, canonical_edges
from proxgt.mixing.communicator import Clocked, Gossip
from proxgt.mixing.link_trace import TraceLoss

__all__ = ["LossPattern", "MessageLoss", "RunningSumMixer", "check_message_loss", "edge_weights", "messages_may_miss",
           "running_sum_mixer"]

_TAG_LOSS = 0x1055


class LossPattern(Protocol):
    """Which messages of a global round are lost and which are late (arrive before the next round of their key):
    bool (2, E) masks, row 0 the messages i -> j of each link (i, j), row 1 j -> i."""

    def lost(self, r: int) -> np.ndarray: ...

    def late(self, r: int) -> np.ndarray: ...


class MessageLoss:
    """Which messages are lost in each gossip round: each directed message independently with probability
    ``p`` (a pure function of ``(seed, round)``).

    Args:
        p: loss probability in [0, 1).
        n_links: number of undirected links E (each carries two messages a round).
        seed: the run seed.
    """

    def __init__(self, p: float, n_links: int, seed: int = 0):
        if not 0.0 <= float(p) < 1.0:
            raise ProxGTValueError(f"message_loss = {p!r} must be a probability in [0, 1)")
        self.p = float(p)
        self.n_links = int(n_links)
        self.seed = int(seed)

    def lost(self, r: int) -> np.ndarray:
        """Bool (2, E) for global round ``r``: row 0 the messages i -> j of each link (i, j), row 1 j -> i."""
        if self.p == 0.0:
            return np.zeros((2, self.n_links), dtype=bool)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, _TAG_LOSS, int(r)]))
        return rng.random((2, self.n_links)) < self.p

    def late(self, r: int) -> np.ndarray:
        """None late: a message is delivered in its round or lost (lateness comes from a round deadline)."""
        return np.zeros((2, self.n_links), dtype=bool)


def edge_weights(W: torch.Tensor, edges: np.ndarray) -> np.ndarray:
    """w_ij of each link ``(i, j)`` of ``edges`` ((E, 2)) from a symmetric mixing matrix (dense or sparse CSR)."""
    if W.layout == torch.sparse_csr:
        coo = W.to_sparse_coo().coalesce()  # type: ignore[no-untyped-call]  # untyped in torch's own stubs
        idx, val = coo.indices().numpy(), coo.values().to(torch.float64).numpy()
        n = W.shape[0]
        keys = idx[0] * n + idx[1]
        order = np.argsort(keys)
        pos = np.searchsorted(keys[order], edges[:, 0] * n + edges[:, 1])
        weights: np.ndarray = val[order][pos]
        return weights
    Wd = W.to(torch.float64).numpy()
    weights = Wd[edges[:, 0], edges[:, 1]]
    return weights


class RunningSumMixer:
    """Plain K-round gossip (``M_K = W^K`` when nothing is lost) whose messages may be lost (module docstring).

    Args:
        comm: the communicator (one counted round of ``W Z`` per call of ``gossip``).
        edges: (E, 2) links ``(i, j)``, i < j.
        weights: (E,) w_ij of each link.
        rounds: gossip rounds K per call.
        loss: the :class:`MessageLoss` pattern, or a recorded trace's
            (:class:`~proxgt.mixing.link_trace.TraceLoss`), which also says which messages were late.
        tracked: the keys mixed by running sums (trackers); every other key mixes with the newest values.
        late: the communicator's virtual clock under a round deadline: the messages it finds late
            (:attr:`~proxgt.mixing.clock.VirtualClock.late`, same link order as ``edges``) also miss their round.

    Attributes:
        in_flight: key -> (2, E, ...) mass sent on each directed link and not yet received (tracked keys; a key
            is absent while nothing is in flight).
        copies: key -> (2, E, ...) the newest value each receiver holds from each neighbour (other keys).
    """

    def __init__(self, comm: Gossip, edges: np.ndarray, weights: np.ndarray, rounds: int, loss: LossPattern,
                 tracked: tuple[str, ...] = (), late: VirtualClock | None = None):
        self.comm = comm
        e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
        self.src = torch.as_tensor(np.stack([e[:, 0], e[:, 1]]))  # (2, E): the sender of each directed message
        self.dst = torch.as_tensor(np.stack([e[:, 1], e[:, 0]]))  # its receiver
        self._w = np.asarray(weights, dtype=np.float64)
        self.rounds = int(rounds)
        self.loss = loss
        self.tracked = tuple(tracked)
        self.in_flight: dict[str, torch.Tensor] = {}
        self.copies: dict[str, torch.Tensor] = {}
        self.late = late
        # late messages (a round deadline): key -> bool (2, E) links whose last message missed its round but
        # arrives before the next one, and (iterates) the value it carries
        self.arriving: dict[str, np.ndarray] = {}
        self.pending: dict[str, torch.Tensor] = {}

    def _weights(self, like: torch.Tensor) -> torch.Tensor:
        w = torch.as_tensor(self._w, dtype=like.dtype, device=like.device)
        return w.view(1, -1, *([1] * (like.ndim - 1)))

    def __call__(self, Z: torch.Tensor, key: str | None = None) -> torch.Tensor:
        """``rounds`` rounds on ``Z`` (left unmodified) under ``key``'s rule."""
        if key is None:
            raise ProxGTValueError("message_loss needs to know which quantity it mixes (mix(Z, key=...)): trackers go "
                                   "by running sums, iterates by the newest values")
        for _ in range(self.rounds):
            Z = self._round(Z, key)
        return Z

    def _round(self, Z: torch.Tensor, key: str) -> torch.Tensor:
        r = self.comm.counter.rounds
        lost = self.loss.lost(r)
        out = self.comm.gossip(Z)  # every message delivered (and the clock, if any, advanced over the round)
        late = self.late.late if self.late is not None else self.loss.late(r)
        late = late & ~lost
        if key in self.tracked:
            self._sums(Z, out, key, lost, late)
        else:
            self._values(Z, out, key, lost, late)
        if late.any():
            self.arriving[key] = late
        else:
            self.arriving.pop(key, None)
        return out

    def _mask(self, mask: np.ndarray | None, Z: torch.Tensor) -> torch.Tensor:
        """A (2, E) bool mask shaped to broadcast over (2, E, ...) rows of ``Z``."""
        m = torch.zeros(2, self._w.size, dtype=torch.bool) if mask is None else torch.as_tensor(mask)
        return m.to(Z.device).view(2, -1, *([1] * (Z.ndim - 1)))

    def _sums(self, Z: torch.Tensor, out: torch.Tensor, key: str, lost: np.ndarray, late: np.ndarray) -> None:
        backlog = self.in_flight.get(key)
        missed = lost | late
        if backlog is None and not missed.any():
            return
        m = self._weights(Z) * Z[self.src]  # (2, E, ...) what each message carries this round
        if backlog is None:
            backlog = torch.zeros_like(m)
        zero = torch.zeros_like(m)
        gone, prev_late = self._mask(missed, Z), self._mask(self.arriving.get(key), Z)
        # last round's late message has arrived by now: its running sum covers the whole backlog of its link
        ready = torch.where(prev_late, backlog, zero)
        # a message that arrives covers everything sent on its link (W Z already counted this round's mass); one
        # that misses the round takes its mass out of the receiver (into the link's backlog)
        out.index_add_(0, self.dst.reshape(-1).to(Z.device),
                       torch.where(gone, ready - m, backlog).reshape(-1, *Z.shape[1:]))
        left = torch.where(gone, torch.where(prev_late, zero, backlog) + m, zero)
        if bool(left.ne(0).any()):
            self.in_flight[key] = left
        else:
            self.in_flight.pop(key, None)

    def _values(self, Z: torch.Tensor, out: torch.Tensor, key: str, lost: np.ndarray, late: np.ndarray) -> None:
        copy = self.copies.get(key)
        sent = Z[self.src]
        prev = self.arriving.get(key)
        missed = lost | late
        if copy is None:  # before a link's first message arrives, the receiver uses its own value instead
            copy = Z[self.dst].clone()
        if prev is not None:  # last round's late message has arrived by now: the newest value
            copy = torch.where(self._mask(prev, Z), self.pending[key], copy)
        if missed.any():
            gone = self._mask(missed, Z)
            fix = torch.where(gone, self._weights(Z) * (copy - sent), torch.zeros_like(sent))
            out.index_add_(0, self.dst.reshape(-1).to(Z.device), fix.reshape(-1, *Z.shape[1:]))
            copy = torch.where(gone, copy, sent)
        else:
            copy = sent
        self.copies[key] = copy
        if late.any():
            self.pending[key] = sent

    def in_flight_sum(self, key: str) -> torch.Tensor | None:
        """Sum over links of the mass of ``key`` in flight (the term of the tracking invariant), or None."""
        b = self.in_flight.get(key)
        return None if b is None else b.sum(dim=(0, 1))

    def state_dict(self) -> dict[str, Any]:
        """The in-flight mass and the copies (plain CPU tensors), for checkpoints."""
        return {"in_flight": {k: v.detach().to("cpu") for k, v in self.in_flight.items()},
                "copies": {k: v.detach().to("cpu") for k, v in self.copies.items()},
                "arriving": {k: torch.as_tensor(v) for k, v in self.arriving.items()},
                "pending": {k: v.detach().to("cpu") for k, v in self.pending.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.in_flight = dict(state["in_flight"])
        self.copies = dict(state["copies"])
        self.arriving = {k: v.numpy().astype(bool) for k, v in state.get("arriving", {}).items()}
        self.pending = dict(state.get("pending", {}))


def messages_may_miss(cfg: Any) -> bool:
    """Whether a run's messages may be lost or late (``message_loss`` > 0, a ``round_deadline``, or a recorded
    ``link_trace``): then it mixes with :class:`RunningSumMixer`."""
    return float(cfg.message_loss or 0.0) > 0.0 or cfg.round_deadline is not None or cfg.link_trace is not None


def check_message_loss(cfg: Any, algorithm: Any, time_varying: bool) -> None:
    """Refuse what ``message_loss`` or ``round_deadline`` cannot honour yet (one line each)."""
    if not messages_may_miss(cfg):
        return
    what = "message_loss" if float(cfg.message_loss or 0.0) > 0.0 else \
        "round_deadline" if cfg.round_deadline is not None else "link_trace"
    if cfg.link_trace is not None and what != "link_trace":
        raise ProxGTValueError(f"link_trace replays a recorded pattern of late and lost messages; {what} would "
                               "add another: leave it unset")
    if cfg.mixing not in ("plain", "auto"):  # auto picks plain under message loss (proxgt.mixing.auto)
        raise ProxGTValueError(
            f"{what} needs mixing = 'plain' (--mixing plain), not {cfg.mixing!r}: the running sums keep the "
            "trackers' sum exact round by round, which a Chebyshev or fastmix recurrence over rounds does not")
    caps = algorithm.capabilities
    if cfg.compress != "none" or caps.compressed_gossip:
        raise ProxGTValueError(f"{what} does not combine with compressed gossip (compress, or a "
                               "compressed-gossip algorithm) yet")
    if float(cfg.link_failure or 0.0) > 0.0 or float(cfg.node_dropout or 0.0) > 0.0 or time_varying:
        raise ProxGTValueError(f"{what} does not combine with link_failure, node_dropout or a time-varying "
                               "topology yet")
    if not caps.gossip_keys:
        raise ProxGTValueError(
            f"algorithm {cfg.algorithm!r} does not name the quantities it mixes (Capabilities.gossip_keys), so "
            f"{what} cannot tell its trackers (running sums) from its iterates (newest values)")


def running_sum_mixer(comm: Gossip, spec: Any, *, p: float | None = None,
                      tracked: tuple[str, ...] | None = None) -> RunningSumMixer:
    """The mixer of a run with ``message_loss`` (simulator): the topology's links and weights, the run's rounds,
    its seeded loss pattern and the algorithm's tracked keys (``p`` and ``tracked`` replace the last two)."""
    edges = canonical_edges(spec.topology.edges)
    w = edge_weights(spec.topology.W, edges)
    loss: LossPattern = MessageLoss(float(spec.settings.message_loss or 0.0) if p is None else p, len(edges),
                                    seed=spec.settings.seed)
    if spec.settings.link_trace is not None and p is None:  # a site runtime's recorded late and lost messages
        loss = TraceLoss(spec.settings.link_trace, edges)
    keys = spec.algorithm.capabilities.tracked_keys if tracked is None else tracked
    # a round deadline on the virtual clock: its late messages count as lost in their round
    late = cast(Clocked, comm).clock if spec.settings.round_deadline is not None else None
    return RunningSumMixer(comm, edges, w, spec.rounds, loss, tracked=keys, late=late)
