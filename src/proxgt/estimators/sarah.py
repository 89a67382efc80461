"""SARAH/SPIDER estimators of ProxGT-SR-O (streaming data) and ProxGT-SR-E (finite sums).

Every ``period`` iterations a fresh estimate (a big batch of B samples, or the full local gradient), otherwise
the SARAH recursion ``v_i = v_i' + (1/b) sum_r [grad F_i(x_i; xi_r) - grad F_i(x_i'; xi_r)]`` on the same
samples at both points (2b IFO calls).

The period counts each row's *own* iterations (``SarahState.iters``), not the network's: row i refreshes at its
iterations q, 2q, ... . In a synchronous run every row has done t - 1 iterations when iteration t starts, so this
is the global rule ``t % q == 0``, bit for bit. Asynchronously (:mod:`proxgt.mixing.asynchrony`) the nodes are
at different iterations; the loop keeps every state row of a node that sat a tick out, its counter included, so
each node refreshes on its own clock and the recursion always spans one of its own steps (x_i' is its previous
iterate). A tick in which some rows refresh and others recurse draws and counts each row's samples only for
what that row computes (a refresh costs m_i or B at that node, a recursion step 2b).

Why the recursion can blow up, and what the sizes must satisfy. Write e_t = v_t - grad f(x_t) and
H_xi for the Hessian of the b samples of step t. Then e_t = (I - a (H_xi - H)) e_t-1 + ..., a product of random
matrices whose mean is the identity: nothing pulls the error back (a fresh minibatch gradient, in contrast,
forgets its error every step), and its second moment grows like (1 + a^2 s^2 / b)^t, s^2 the variance of the
per-sample curvature, until the next refresh. Over a period the growth is about exp(q (a s)^2 / b), so the
recursion is stable only while ``(q / b) (a s)^2`` stays small. For the linear problems at a = 1/L, a s <= 1 and
the spec's sizes (q / b = 4 for SR-O at B = 256) are safe; for a network at the step a minibatch method uses,
a s is several times larger (per-sample curvature varies far more than the full Hessian), and the estimate's
error feeds the step, which feeds the error: ProxGT-SR-O at b = 8, q = 32, a = 0.1 on the Fashion-MNIST MLP
goes from objective 2.65 to 3e5 in 50 iterations on one node. A problem that knows this declares
``recursion_ratio``, the largest q / b that is stable at its default step (:func:`make_estimator` passes it as
``ratio``); the defaults then pick the inner batch and period from it (see ``from_settings``) instead of
lowering the step.

Safeguard: when a row's estimate grows past ``restart`` times the norm of its last fresh estimate (or is not
finite), that row restarts its recursion with a fresh estimate at once (counted in ``SarahState.restarts``; the
period is unchanged). It turns a blow-up into a refresh; it does not make an unstable (q / b, step) pair
efficient (each restart costs a refresh). It never acts in deterministic mode (``batch = full``: the recursion
is then exact).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from proxgt._validation import ProxGTValueError, check_positive_int
from proxgt.estimators.base import SarahState
from proxgt.estimators.minibatch import SA_BATCH
from proxgt.problems.oracle import FULL, MINIBATCH, PAIR, GradientOracle

__all__ = ["SarahOnline", "SarahFinite", "SarahState", "RESTART_RATIO"]

#: The safeguard restarts a row whose estimate's norm exceeds this many times that of its last fresh estimate.
RESTART_RATIO = 4.0

#: Fresh estimate of the rows ``rows`` (bool (k,); None: all) at X.
_Fresh = Callable[[GradientOracle, torch.Tensor, "np.ndarray | None"], torch.Tensor]


def _sarah_step(oracle: GradientOracle, X_new: torch.Tensor, X_old: torch.Tensor, V_old: torch.Tensor,
                batch: int, rows: np.ndarray | None = None) -> torch.Tensor:
    g_new, g_old = oracle.grad_pair(X_new, X_old, oracle.sample(batch, rows), rows)
    # one fresh (k, d) result, no temporary beside it: for a wide model each is as large as a node state
    return torch.sub(g_new, g_old).add_(V_old)


def _norms(V: torch.Tensor) -> torch.Tensor:
    norms: torch.Tensor = torch.linalg.vector_norm(V, dim=1)
    return norms


def _check_restart(restart: float, cls: str) -> None:
    if not (isinstance(restart, int | float) and not isinstance(restart, bool) and restart >= 0.0
            and math.isfinite(restart)):
        raise ProxGTValueError(f"The 'restart' parameter of {cls} must be a finite float >= 0 (0: no safeguard). "
                               f"Got {restart!r} instead.")


def _init(fresh: _Fresh, oracle: GradientOracle, X0: torch.Tensor) -> tuple[torch.Tensor, SarahState]:
    V = fresh(oracle, X0, None)
    zeros = torch.zeros(V.shape[0], dtype=torch.int64, device=V.device)
    return V, SarahState(ref=_norms(V), restarts=zeros, iters=zeros.clone())


def _update(fresh: _Fresh, est: SarahOnline | SarahFinite, state: SarahState, oracle: GradientOracle,
            X_new: torch.Tensor, X_old: torch.Tensor, V_old: torch.Tensor, t: int) -> tuple[torch.Tensor, SarahState]:
    """One step of every row; ``t`` (the network's iteration) is not used: each row counts its own (module
    docstring)."""
    iters = state.iters + 1
    due = (iters % est.period == 0).cpu().numpy()
    if due.all():  # every row refreshes (a synchronous run's refresh iteration)
        V = fresh(oracle, X_new, None)
        return V, state._replace(ref=_norms(V), iters=iters)
    mixed = due.any()  # asynchronous: some rows refresh, the others recurse; each row draws only what it uses
    V = _sarah_step(oracle, X_new, X_old, V_old, est.batch, ~due if mixed else None)
    ref = state.ref
    if mixed:
        F = fresh(oracle, X_new, due)
        fresh_rows = torch.as_tensor(due, device=V.device)
        V[fresh_rows] = F[fresh_rows]
        ref = torch.where(fresh_rows, _norms(F), ref)
    state = state._replace(ref=ref, iters=iters)
    if est.restart == 0.0 or oracle.full_batch:
        return V, state
    norms = _norms(V)
    jump = ~(norms <= est.restart * ref)  # NaN and inf count as jumps (a row that just refreshed never does)
    if not bool(jump.any()):
        return V, state
    rows = jump.cpu().numpy()
    F = fresh(oracle, X_new, rows)
    V[jump] = F[jump]
    ref = torch.where(jump, _norms(F), ref)
    return V, state._replace(ref=ref, restarts=state.restarts + jump.to(torch.int64))


@dataclass(frozen=True)
class SarahOnline:
    """SARAH/SPIDER estimator with periodic fresh big batches (ProxGT-SR-O, streaming data).

    ``restart``: the safeguard's ratio (module docstring); 0 switches it off."""

    batch: int
    big_batch: int
    period: int
    restart: float = RESTART_RATIO
    name: str = "sr-o"

    def __post_init__(self) -> None:
        check_positive_int(self.batch, "batch", "SarahOnline")
        check_positive_int(self.big_batch, "big_batch", "SarahOnline")
        check_positive_int(self.period, "period", "SarahOnline")
        _check_restart(self.restart, "SarahOnline")

    @property
    def oracle_calls(self) -> frozenset[str]:
        return frozenset({MINIBATCH, PAIR})

    @property
    def batch_per_iter(self) -> int:
        return self.batch

    @property
    def sizes(self) -> dict[str, int]:
        return {"batch": self.batch, "big_batch": self.big_batch, "period": self.period}

    @classmethod
    def from_settings(
        cls,
        *,
        n_nodes: int,
        local_size: int,
        batch: int | None = None,
        big_batch: int | None = None,
        period: int | None = None,
        ratio: float | None = None,
    ) -> SarahOnline:
        """Spec section 5b, for what is left as None: B = min(m, 256), b = max(1, ceil(sqrt(B)) // 2),
        q = ceil(B / b), with m = ``local_size`` (the mean number of samples per node).

        With a ``ratio`` (the problem's stable q / b) and none of the sizes given: b = 16 (a recursion step, 2b
        samples, then costs one ProxGT-SA minibatch), q = max(1, floor(ratio b)), B = min(m, b q) (the spec's
        q = B / b)."""
        m = max(1, int(local_size))
        if ratio is not None and batch is None and big_batch is None and period is None:
            b = SA_BATCH // 2
            q = max(1, math.floor(ratio * b))
            return cls(batch=b, big_batch=min(m, b * q), period=q)
        B = min(m, 256) if big_batch is None else big_batch
        b = max(1, math.ceil(math.sqrt(B)) // 2) if batch is None else batch
        q = math.ceil(B / b) if period is None else period
        return cls(batch=b, big_batch=B, period=q)

    @property
    def recursion_ratio(self) -> float:
        return self.period / self.batch

    def samples_per_iter(self, local_size: float) -> float:
        return (self.big_batch + 2.0 * self.batch * (self.period - 1)) / self.period

    def _fresh(self, oracle: GradientOracle, X: torch.Tensor, rows: np.ndarray | None) -> torch.Tensor:
        return oracle.grad(X, oracle.sample(self.big_batch, rows), rows)

    def init(self, oracle: GradientOracle, X0: torch.Tensor) -> tuple[torch.Tensor, SarahState]:
        return _init(self._fresh, oracle, X0)

    def update(self, state: SarahState, oracle: GradientOracle, X_new: torch.Tensor, X_old: torch.Tensor,
               V_old: torch.Tensor, t: int) -> tuple[torch.Tensor, SarahState]:
        return _update(self._fresh, self, state, oracle, X_new, X_old, V_old, t)


@dataclass(frozen=True)
class SarahFinite:
    """SARAH estimator with periodic full local gradients (ProxGT-SR-E, finite sums).

    ``restart``: the safeguard's ratio (module docstring); 0 switches it off."""

    batch: int
    period: int
    restart: float = RESTART_RATIO
    name: str = "sr-e"

    def __post_init__(self) -> None:
        check_positive_int(self.batch, "batch", "SarahFinite")
        check_positive_int(self.period, "period", "SarahFinite")
        _check_restart(self.restart, "SarahFinite")

    @property
    def oracle_calls(self) -> frozenset[str]:
        return frozenset({FULL, PAIR})

    @property
    def batch_per_iter(self) -> int:
        return self.batch

    @property
    def sizes(self) -> dict[str, int]:
        return {"batch": self.batch, "period": self.period}

    @classmethod
    def from_settings(
        cls,
        *,
        n_nodes: int,
        local_size: int,
        batch: int | None = None,
        big_batch: int | None = None,
        period: int | None = None,
        ratio: float | None = None,
    ) -> SarahFinite:
        """Spec section 5b, for what is left as None: b = max(ceil(sqrt(m / n)), 1), q = ceil(m / b), with
        m = ``local_size`` and n = ``n_nodes`` (``big_batch`` is not used: a refresh is the full local
        gradient).

        With a ``ratio`` (the problem's stable q / b) and neither b nor q given: the cheapest iteration with
        q <= ratio b, i.e. b = ceil(sqrt(m / (2 ratio))) (minimizing m / q + 2b at q = ratio b) and
        q = max(1, floor(ratio b))."""
        m = max(1, int(local_size))
        if ratio is not None and batch is None and period is None:
            b = max(1, math.ceil(math.sqrt(m / (2.0 * ratio))))
            return cls(batch=b, period=max(1, math.floor(ratio * b)))
        b = max(math.ceil(math.sqrt(m / max(1, n_nodes))), 1) if batch is None else batch
        q = math.ceil(m / b) if period is None else period
        return cls(batch=b, period=q)

    @property
    def recursion_ratio(self) -> float:
        return self.period / self.batch

    def samples_per_iter(self, local_size: float) -> float:
        return (float(local_size) + 2.0 * self.batch * (self.period - 1)) / self.period

    def _fresh(self, oracle: GradientOracle, X: torch.Tensor, rows: np.ndarray | None) -> torch.Tensor:
        return oracle.full_grad(X, rows)

    def init(self, oracle: GradientOracle, X0: torch.Tensor) -> tuple[torch.Tensor, SarahState]:
        return _init(self._fresh, oracle, X0)

    def update(self, state: SarahState, oracle: GradientOracle, X_new: torch.Tensor, X_old: torch.Tensor,
               V_old: torch.Tensor, t: int) -> tuple[torch.Tensor, SarahState]:
        return _update(self._fresh, self, state, oracle, X_new, X_old, V_old, t)
