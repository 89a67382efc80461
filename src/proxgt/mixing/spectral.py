"""Mixing through the spectrum of W: the polynomial p with M_K = p(W), exact contraction factors
``||M_K - J||_2``, the smallest K that reaches a target, and M_K as an explicit matrix (for tests and analysis).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from proxgt._validation import ProxGTValueError, check_choice, check_positive_int
from proxgt.mixing.communicator import SimulatedCommunicator
from proxgt.mixing.mixer import _EXACT_LAMBDA, MIXING_KINDS, Mixer, _fastmix_eta, chebyshev_coefficients

__all__ = ["mixing_polynomial", "contraction", "rounds_for_target", "rounds_within", "mixing_matrix"]


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
    k = rounds_within(eigenvalues, kind, target, max_rounds)
    if k is not None:
        return k
    rest = _nonprincipal(eigenvalues)
    lam = float(np.max(np.abs(rest))) if rest.size else 0.0
    raise ProxGTValueError(
        f"{kind} mixing does not reach ||M_K - J|| <= {target} within {max_rounds} rounds (lambda = {lam:.6f}); "
        "use a better connected graph or a larger target"
    )


def rounds_within(eigenvalues: np.ndarray, kind: str, target: float, max_rounds: int) -> int | None:
    """:func:`rounds_for_target`, or None when no K <= ``max_rounds`` reaches the target."""
    if not 0.0 < target < 1.0:
        raise ProxGTValueError(f"The mixing target ||M_K - J|| must be in (0, 1). Got {target!r} instead.")
    rest = _nonprincipal(eigenvalues)
    lam = float(np.max(np.abs(rest))) if rest.size else 0.0
    for k in range(1, max_rounds + 1):
        if contraction(eigenvalues, kind, k, lam) <= target:
            return k
    return None


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
