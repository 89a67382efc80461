"""Multi-round gossip M_K over a communicator: plain, Chebyshev-accelerated, or heavy-ball "fastmix".

A :class:`Mixer` turns K rounds into the operator M_K using only the communicator's one-round ``gossip`` plus
local linear combinations, so the multi-round logic is written once for every executor. Each variant preserves
the node average exactly (its polynomial p satisfies p(1) = 1) up to float rounding.
"""

from __future__ import annotations

import math

import torch

from proxgt._validation import ProxGTValueError, check_choice, check_positive_int
from proxgt.mixing.communicator import Communicator

__all__ = ["MIXING_KINDS", "Mixer", "chebyshev_coefficients"]

MIXING_KINDS = ("plain", "chebyshev", "fastmix")

# Below this lambda the graph mixes exactly in one round (W = J, e.g. a complete graph with Metropolis
# weights); the Chebyshev recurrence would divide by ~0, and plain gossip is already optimal.
_EXACT_LAMBDA = 1e-9


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

        >>> from proxgt.mixing import SimulatedCommunicator
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

    @property
    def schedule(self) -> list[tuple[float, float]]:
        """The (alpha_k, beta_k) of each round: Z_{k+1} = alpha_k W Z_k + beta_k Z_{k-1} (Z_{-1} = Z_0)."""
        return list(self._schedule)

    def _buffers_for(self, Z: torch.Tensor) -> list[torch.Tensor]:
        key = (tuple(Z.shape), Z.dtype, Z.device)
        bufs = self._buffers.get(key)
        if bufs is None:
            self._buffers.clear()  # one live shape at a time: iterates and trackers share it
            bufs = [torch.empty_like(Z) for _ in range(3)]
            self._buffers[key] = bufs
        return bufs

    def __call__(self, Z: torch.Tensor, key: str | None = None) -> torch.Tensor:
        """Apply M_K to ``Z`` (left unmodified) with exactly ``rounds`` gossip rounds. ``key`` names the mixed
        quantity (``"x"``, ``"y"``) for mixers that keep state per quantity (compressed gossip); ignored here.

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
