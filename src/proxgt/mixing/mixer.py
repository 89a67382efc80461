"""Multi-round gossip M_K over a communicator: plain, Chebyshev-accelerated, or heavy-ball "fastmix".

A :class:`Mixer` turns K rounds into the operator M_K using only the communicator's one-round ``gossip`` plus
local linear combinations, so the multi-round logic is written once for every executor. Each variant preserves
the node average exactly (its polynomial p satisfies p(1) = 1) up to float rounding.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from proxgt._validation import ProxGTValueError, check_choice, check_positive_int
from proxgt.mixing.communicator import Gossip, SimulatedCommunicator

__all__ = ["MIXING_KINDS", "Mixer", "chebyshev_coefficients", "recurrence"]

MIXING_KINDS = ("plain", "chebyshev", "fastmix")

# Below this lambda the graph mixes exactly in one round (W = J, e.g. a complete graph with Metropolis
# weights); the Chebyshev recurrence would divide by ~0, and plain gossip is already optimal.
_EXACT_LAMBDA = 1e-9

# Scratch buffers for the intermediate rounds are kept between calls only while each is at most this many bytes:
# reusing them saves an allocation per call for the usual sizes, while a node-stacked tensor of a
# high-dimensional model (16 nodes x 10^6 features: 64 MiB) is not worth holding twice beside the algorithm state.
_CACHED_BUFFER_BYTES = 32 * 2**20


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


def recurrence(kind: str, rounds: int, lam: float) -> list[tuple[float, float]]:
    """(alpha_k, beta_k) of each round Z_{k+1} = alpha_k W Z_k + beta_k Z_{k-1} (Z_{-1} = Z_0) of ``kind``'s
    K-round mixing for ||W - J|| = ``lam`` (plain rounds when the graph mixes exactly in one)."""
    if lam < _EXACT_LAMBDA or kind == "plain":
        return [(1.0, 0.0)] * rounds
    if kind == "chebyshev":
        return [(1.0, 0.0)] + [(c1, -c2) for c1, c2 in chebyshev_coefficients(lam, rounds)]
    eta = _fastmix_eta(lam)
    return [(1.0 + eta, -eta)] * rounds


class Mixer:
    """The K-round mixing operator M_K over a communicator.

    kinds:
        ``plain``      M_K = W^K, ``||M_K - J|| = lam^K``.
        ``chebyshev``  M_K = T_K(W/lam) / T_K(1/lam): the same K rounds contract to ``1/T_K(1/lam)``, so about
                       ``1/sqrt(1-lam)`` rounds do what plain gossip needs ``1/(1-lam)`` for.
        ``fastmix``    heavy-ball form Z_{k+1} = (1+eta) W Z_k - eta Z_{k-1}, Z_{-1} = Z_0.

    Calling the mixer performs exactly ``rounds`` gossip rounds (one product with W each); on a simulated static
    graph they are applied as one product with the polynomial p(W) and counted as ``rounds`` rounds
    (:meth:`~proxgt.mixing.communicator.SimulatedCommunicator.rounds_into`; the same result up to float rounding)
    unless ``fused=False``, which runs them one by one as the distributed executors do (for comparisons bit for
    bit with mixers that run rounds, as the running sums of :mod:`proxgt.mixing.running_sums`). Example::

        >>> from proxgt.mixing import SimulatedCommunicator
        >>> comm = SimulatedCommunicator(torch.full((2, 2), 0.5), [1, 1])
        >>> Mixer(comm, "chebyshev", 3, lam=0.0)(torch.tensor([[0.0], [2.0]])).tolist()
        [[1.0], [1.0]]
    """

    def __init__(self, comm: Gossip, kind: str = "chebyshev", rounds: int = 1, *, lam: float, fused: bool = True):
        self.comm = comm
        self.fused = bool(fused)
        self.kind = check_choice(kind, "mixing", MIXING_KINDS, "Mixer")
        self.rounds = check_positive_int(rounds, "rounds", "Mixer")
        self.lam = float(lam)
        if not 0.0 <= self.lam < 1.0:
            raise ProxGTValueError(f"lambda = ||W - J|| must be in [0, 1) for a connected graph; got {lam}")
        self._schedule = recurrence(self.kind, self.rounds, self.lam)
        self._buffers: dict[tuple[Any, ...], list[torch.Tensor]] = {}

    @property
    def schedule(self) -> list[tuple[float, float]]:
        """The (alpha_k, beta_k) of each round: Z_{k+1} = alpha_k W Z_k + beta_k Z_{k-1} (Z_{-1} = Z_0)."""
        return list(self._schedule)

    def _scratch(self, Z: torch.Tensor, count: int) -> list[torch.Tensor]:
        """``count`` (0 to 2) scratch tensors shaped like ``Z``: cached between calls while small (see
        ``_CACHED_BUFFER_BYTES``), fresh otherwise."""
        if count == 0:
            return []
        if Z.numel() * Z.element_size() > _CACHED_BUFFER_BYTES:
            self._buffers.clear()
            return [torch.empty_like(Z) for _ in range(count)]
        key = (tuple(Z.shape), Z.dtype, Z.device)
        bufs = self._buffers.get(key)
        if bufs is None:
            self._buffers.clear()  # one live shape at a time: iterates and trackers share it
            bufs = self._buffers[key] = [torch.empty_like(Z) for _ in range(2)]
        return bufs[:count]

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps of this mixer: nothing (its scratch buffers are reused memory, not state)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take a :meth:`state_dict` back (checkpoints); only the empty one fits."""
        if state:
            raise ProxGTValueError(f"{self.kind} mixing keeps no state; a checkpoint gave it "
                                   f"{', '.join(sorted(state))}")

    #: ``__call__`` takes ``consume=True`` (see :func:`proxgt.algorithms._parts.mix_owned`)
    can_consume = True

    def __call__(self, Z: torch.Tensor, key: str | None = None, *, consume: bool = False) -> torch.Tensor:
        """Apply M_K to ``Z`` with exactly ``rounds`` gossip rounds. ``key`` names the mixed quantity (``"x"``,
        ``"y"``) for mixers that keep state per quantity (compressed gossip); ignored here. ``Z`` is left
        unmodified unless ``consume``: then the caller hands over a temporary that nothing else holds, and
        ``Z`` may be overwritten once the rounds no longer read it (one (k, d) buffer fewer).

        Round k reads the two previous rounds and writes a third tensor, so three tensors take turns: the fresh
        result (which the caller may keep: it becomes part of the algorithm state) and two scratch buffers, or
        one scratch buffer and ``Z`` itself when consumed. The turns are counted back from the last round so
        that the last one writes the result, and no round needs a copy.
        """
        schedule = self._schedule
        if self.fused and isinstance(self.comm, SimulatedCommunicator):  # a static graph: K rounds as one product
            done = self.comm.rounds_into(Z, torch.empty_like(Z), schedule)
            if done is not None:
                return done
        into = self.comm.gossip_into
        prev, cur = Z, Z
        last = len(schedule) - 1
        out = torch.empty_like(Z)
        if consume and last >= 2 and last % 3 != 2:
            # Z is read by rounds 0 and 1 only, so it may take the turn of round 2 (then 5, 8, ...); that works
            # when neither round 0 nor round 1 falls on Z's turn, i.e. unless last % 3 == 2
            turns = [out, Z, *self._scratch(Z, 1)] if last % 3 == 0 else [out, *self._scratch(Z, 1), Z]
        else:
            turns = [out, *self._scratch(Z, min(last, 2))]
        for k, (alpha, beta) in enumerate(schedule):
            # round k writes turns[(last - k) % 3]: the result at k = last, and never the tensor holding
            # round k - 1 or k - 2 (three consecutive rounds use three different tensors)
            prev, cur = cur, into(cur, turns[(last - k) % 3], alpha, beta, prev)
        return cur
