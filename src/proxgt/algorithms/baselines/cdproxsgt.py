"""CDProxSGT: DProxSGT with compressed, error-compensated gossip of both the tracker and the iterate.

Yan, Chen, Chen, Cui, Lu, Xu, "Compressed decentralized proximal stochastic gradient method for nonconvex
composite problems with heterogeneous data" (ICML 2023, arXiv:2302.14252); spec ``baselines.md`` section 4.
The update is :class:`~proxgt.algorithms.baselines.dproxsgt.DProxSGT`'s, with each of its two mixings
(``key="y"`` for the tracker, then ``key="x"`` for the iterate) replaced by one CHOCO round of
:class:`proxgt.mixing.compressed.CompressedMixer` (public copies Y_hat, X_hat; gamma = ``--consensus-step``)::

    V_t      = minibatch gradient at X_t
    Y_half   = Y_t-1 + V_t - V_t-1
    Q_y      = C(Y_half - Y_hat);  Y_hat += Q_y;  Y_t = Y_half + gamma (W - I) Y_hat
    X_half   = prox_{eta h}(X_t - eta Y_t)
    Q_x      = C(X_half - X_hat);  X_hat += Q_x;  X_t+1 = X_half + gamma (W - I) X_hat

The operator C is the run's ``--compress`` (``none`` allowed: with gamma = 1 this is exactly DProxSGT).

Where the authors' code (``Compress_*/core_compress.py``, ``train_CDProxSGT``) differs: it has no prox (the
published compression runs are smooth), clips gradients to norm 10, compresses per parameter tensor (here: the
whole flat vector), sends int64 indices for top-k (here: int16/int32 by d), keeps the tracker in float64 and
runs 5 nodes on a ring with weights 1/3 and per-node x^0 (see DProxSGT's module for the rest).

Settings: ``step``, ``batch`` (default 32), ``compress``, ``consensus_step``; rounds must be 1 or plain.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from proxgt.algorithms.base import Capabilities
from proxgt.algorithms.baselines._common import params, sa_batch
from proxgt.algorithms.baselines.dproxsgt import DProxSGT
from proxgt.estimators import Minibatch

__all__ = ["CDProxSGT", "build"]


@dataclass(frozen=True)
class CDProxSGT(DProxSGT):
    """DProxSGT whose mixings always run through compressed gossip (see the module docstring)."""

    name: str = "cdproxsgt"

    @property
    def capabilities(self) -> Capabilities:
        # its mixer is a CompressedMixer even with compress = none
        return replace(super().capabilities, compressed_gossip=True)


def build(ctx: Any) -> CDProxSGT:
    params(ctx, "cdproxsgt", {})  # no settings of its own: any [extra.cdproxsgt] key is an error
    return CDProxSGT(Minibatch(sa_batch(ctx)), ctx.regularizer, ctx.step)
