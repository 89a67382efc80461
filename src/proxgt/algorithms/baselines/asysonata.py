"""ASY-SONATA with a proximal step: asynchronous gradient tracking by sum-push on running sums.

ASY-SONATA (Y. Tian, Y. Sun, G. Scutari, "Achieving linear convergence in distributed asynchronous multi-agent
optimization", IEEE TAC 65(12), 2020, arXiv:1803.10359) lets every agent wake up on its own clock and update with
the newest (possibly delayed) information it holds. Per activation of agent i, with step a, weights w_ij (the
x consensus) and a_ij (the tracker push), both from the run's W here::

    v_i   = x_i + alpha (prox_{a h}(x_i - a z_i) - x_i)           local step (SONATA surrogate, see below)
    x_i  <- w_ii v_i + sum_j w_ij v_j[newest received]              consensus on the newest values
    g_i   = (1/b) sum_r grad F_i(x_i; xi_r)                         fresh samples at the new x_i
    z_i  <- a_ii (z_i + g_i - g_i') + sum_j (rho_ij[newest] - rho~_ij)   sum-push of the tracker
    rho_ji += a_ji (z_i + g_i - g_i')  for every out-neighbour j,   rho~_ij <- rho_ij[newest]

rho_ji is the running sum of the tracker mass i has pushed to j, rho~_ij the last running sum i consumed from
j: a message that arrives late or not at all is made good by the next, so the network sum of the trackers plus
the mass in flight equals the sum of the local gradients at every time (the robust tracking of the paper).
z_i is used as it is: the paper's tracker is a *sum-push* (no push-sum weight divides it), so after asynchronous
activations z_i holds a node-dependent share of the gradient sum rather than the average.

What is taken from the paper, and what differs:

* **Tracker**: sum-push on running sums, a share sent to every out-neighbour at every activation, the descent
  with the tracker mass itself. This is the paper's mechanism; the asynchronous network runs it for the keys
  an algorithm declares ``Capabilities.sum_push_keys`` (:mod:`proxgt.mixing.asynchrony`). Asynchronous
  ProxGT instead divides by push-sum weights and keeps one share in flight per link.
* **Non-smooth h**: ASY-SONATA is stated for smooth sum f_i. Its authors' SONATA framework (Scutari, Sun,
  "Distributed nonconvex constrained optimization over time-varying digraphs", Math. Prog. 2019) handles a
  convex non-smooth G through a strongly convex surrogate; with the linearized surrogate plus a proximal term
  tau/2 ||x - x_i||^2 the surrogate's minimizer is ``prox_{a h}(x_i - a z_i)`` with a = 1/tau, followed by the
  convex combination with alpha. That is the local step above; alpha = 1 (the default) steps to the prox point.
  With h = 0 and alpha = 1 it is the paper's v_i = x_i - a z_i.
* **Weights**: the paper allows a row-stochastic W for x and a column-stochastic A for z (digraphs); proxgt's
  graphs are undirected with one symmetric doubly stochastic W, used for both.
* **Activation**: the paper's analysis wakes one agent per iteration; on proxgt's virtual clock all agents ready
  at the same time act in the same tick, each with what has arrived by its clock (bounded by
  ``--max-staleness``). With zero delays every agent acts in every tick and every message is the one just sent:
  the run is the synchronous recursion X <- W(X + alpha(prox(X - a Z) - X)), Z <- W(Z + G_new - G_old).
* **Order within an activation**: the push of the new share and the sum of the received mass happen in one
  mixing (the share leaves before the receipt is added). [paper, from memory] The paper's sum step adds the
  received mass before the push; the tracking invariant is the same.
* **Gradients**: minibatch (ProxGT-SA's estimator, unscaled, threshold ``a * lambda``); the paper uses exact
  gradients. ``batch = full`` gives them.

Consequence of the sum-push with a prox (a fact of the construction, measured in the tests): the fixed points of
a synchronous run are the stationary points (the trackers reach consensus), but when nodes run at different
rates the trackers hold unequal shares and the prox of x_i - a z_i is not the prox of the average step, so an
asynchronous run with h != 0 settles near, not at, the solution; asynchronous ProxGT's push-sum weights remove
this.

Settings: ``step`` (a), ``batch`` (default 32), ``[extra.asy-sonata] alpha`` (1.0), ``schedule``
(``"constant"`` or ``"diminishing"``: alpha_t = alpha (1 + t/t0)^-power), ``power`` (0.5), ``t0`` (100). Cost
per iteration: b gradients, two mixings (x and z; one d-vector per neighbour each); initialisation: b gradients.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch

from proxgt.algorithms._parts import Mix, estimator_capabilities, mix_owned, track
from proxgt.algorithms.base import Capabilities
from proxgt.algorithms.baselines._common import Schedule, params, sa_batch
from proxgt.errors import ProxGTValueError
from proxgt.estimators import Minibatch, NoState
from proxgt.problems.oracle import GradientOracle
from proxgt.prox import Regularizer

__all__ = ["AsySonata", "AsySonataState"]


class AsySonataState(NamedTuple):
    x: torch.Tensor
    v: torch.Tensor  # the minibatch gradient at x (the last one added to the tracker)
    y: torch.Tensor  # z, the tracker mass (sum-push: used without a push-sum weight)
    t: int
    est: NoState  # the (minibatch) estimator's state


@dataclass(frozen=True)
class AsySonata:
    """ASY-SONATA with the SONATA proximal local step (module docstring)."""

    estimator: Minibatch
    regularizer: Regularizer
    step: float
    relax: Schedule = field(default_factory=lambda: Schedule("constant", 1.0))
    name: str = "asy-sonata"

    @property
    def capabilities(self) -> Capabilities:
        return estimator_capabilities(self.estimator, gossip_keys=("x", "y"), tracked_keys=("y",),
                                      sum_push_keys=("y",), asynchronous=True)

    def init(self, x0: torch.Tensor, oracle: GradientOracle, mix: Mix) -> AsySonataState:
        X = x0.clone()
        G, est = self.estimator.init(oracle, X)
        return AsySonataState(x=X, v=G, y=G.clone(), t=0, est=est)

    def update(self, state: AsySonataState, oracle: GradientOracle, mix: Mix) -> AsySonataState:
        a, alpha = self.step, self.relax(state.t)
        P = self.regularizer.prox(torch.add(state.x, state.y, alpha=-a), a)
        X_new = mix_owned(mix, torch.lerp(state.x, P, alpha), key="x")
        G_new, est = self.estimator.update(state.est, oracle, X_new, state.x, state.v, state.t + 1)
        return AsySonataState(x=X_new, v=G_new, y=track(state.y, G_new, state.v, mix), t=state.t + 1, est=est)


def build(ctx: Any) -> AsySonata:
    p = params(ctx, "asy-sonata", {"alpha": 1.0, "schedule": "constant", "power": 0.5, "t0": 100.0})
    if not 0.0 < p["alpha"] <= 1.0:
        raise ProxGTValueError(f"extra.asy-sonata.alpha must be in (0, 1] (a convex combination); got {p['alpha']}")
    relax = Schedule(p["schedule"], p["alpha"], power=p["power"], t0=p["t0"])
    return AsySonata(Minibatch(sa_batch(ctx)), ctx.regularizer, ctx.step, relax)
