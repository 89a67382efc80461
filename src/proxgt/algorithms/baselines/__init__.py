"""Baselines on the same interface as ProxGT (``init``/``update`` over a NamedTuple state with ``x`` and ``t``).

Registered in :data:`proxgt.registry.ALGORITHMS` as:

=========================  ==========================================================================
``prox-dsgd``              Prox-DSGD / DSPG (no tracking), constant or diminishing step
``prox-dsgt``              Prox-DSGT (tracker mixed before the gradient correction)
``deepstorm``              DEEPSTORM v2, constant step and momentum
``deepstorm-diminishing``  DEEPSTORM v2, a_t ~ t^(-1/3), beta_t ~ a_t^2
``prox-dasa-gt``           Prox-DASA-GT (averaged primal step, tracked running-average gradient)
``sppdm``                  SPPDM (proximal primal-dual with momentum; our reading is in its docstring)
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
from proxgt.algorithms.baselines.dasa import ProxDASAGT
from proxgt.algorithms.baselines.deepstorm import DeepStorm
from proxgt.algorithms.baselines.dsgd import ProxDSGD
from proxgt.algorithms.baselines.dsgt import ProxDSGT
from proxgt.algorithms.baselines.sppdm import SPPDM

__all__ = [
    "Schedule",
    "ProxDSGD",
    "ProxDSGT",
    "DeepStorm",
    "ProxDASAGT",
    "SPPDM",
    "CentralProxSGD",
    "CentralProxSARAH",
]
