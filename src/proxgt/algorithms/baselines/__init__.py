"""Baselines on the same interface as ProxGT (``init``/``update`` over a NamedTuple state with ``x`` and ``t``).

Registered in :data:`proxgt.registry.ALGORITHMS` as:

=========================  ==========================================================================
``prox-dsgd``              Prox-DSGD / DSPG (no tracking), constant or diminishing step
``prox-adpsgd``            Prox-AD-PSGD (asynchronous, random pairwise averaging, no tracking; ``--async``)
``asy-sonata``             ASY-SONATA (asynchronous tracking by sum-push; proximal SONATA local step)
``prox-dsgt``              DSGT of the DEEPSTORM repository (gradient tracking, x mixed before and after)
``dproxsgt``               DProxSGT (Yan et al. 2023)
``deepstorm``              DEEPSTORM v2, constant step, beta = beta0 a^2
``deepstorm-diminishing``  DEEPSTORM v2, a_t = a (k0/(t+k0))^(1/3), the published beta_t
``deepstorm-v1``           DEEPSTORM v1 (hybrid estimator)
``prox-dasa``              Prox-DASA (averaged primal step and gradient, no tracking)
``prox-dasa-gt``           Prox-DASA-GT (the tracked gradient feeds the averaged gradient z)
``sppdm``                  SPPDM (dual ascent, Nesterov extrapolation, z-anchor)
``central-prox-sgd``       prox-SGD on the pooled data (nodes = 1)
``central-proxsarah``      ProxSARAH / ProxSpiderBoost on the pooled data (nodes = 1)
=========================  ==========================================================================

Every decentralized baseline mixes with the executor's ``mix`` (M_K with the run's mixing kind and rounds): the
published methods use one W per step, i.e. ``--rounds 1 --mixing plain``; ``rounds = auto`` gives their
multi-round variants. Method-specific settings live under ``[extra.<name>]`` (see each module).
"""

from __future__ import annotations

from proxgt.algorithms.baselines._common import Schedule
from proxgt.algorithms.baselines.central import CentralProxSARAH, CentralProxSGD
from proxgt.algorithms.baselines.dasa import ProxDASA, ProxDASAGT
from proxgt.algorithms.baselines.deepstorm import DeepStorm
from proxgt.algorithms.baselines.dproxsgt import DProxSGT
from proxgt.algorithms.baselines.dsgd import ProxDSGD
from proxgt.algorithms.baselines.dsgt import ProxDSGT
from proxgt.algorithms.baselines.sppdm import SPPDM

__all__ = [
    "Schedule",
    "ProxDSGD",
    "ProxDSGT",
    "DProxSGT",
    "DeepStorm",
    "ProxDASA",
    "ProxDASAGT",
    "SPPDM",
    "CentralProxSGD",
    "CentralProxSARAH",
]
