"""Local gradient estimators v_i of ProxGT (spec section 5), written once for node-stacked tensors.

* :class:`Minibatch` (ProxGT-SA): ``v_i = (1/b) sum_r grad F_i(x_i; xi_r)`` on fresh samples.
* :class:`SarahOnline` (ProxGT-SR-O): every ``period`` iterations a fresh big batch of size B, otherwise the
  SARAH recursion ``v_i = v_i' + (1/b) sum_r [grad F_i(x_i; xi_r) - grad F_i(x_i'; xi_r)]`` (same samples).
* :class:`SarahFinite` (ProxGT-SR-E): every ``period`` iterations the full local gradient, otherwise the
  same SARAH recursion.
* :class:`Storm` (DEEPSTORM): the STORM recursion ``v_i = g(x_i; xi) + (1 - beta_t) (v_i' - g(x_i'; xi))``
  (or its hybrid form), started from the full local gradient.

Each estimator owns a typed state (``init -> (V, state)``, ``update(state, ...) -> (V, state)``, see
:class:`Estimator`). The oracle counts component-gradient evaluations: b per minibatch, 2b per SARAH difference,
B or m per refresh. Defaults follow spec section 5b and are computed from the number of nodes n and local size
m (:func:`make_estimator`). Modules: ``base`` (the protocol), ``minibatch``, ``sarah``, ``storm``, ``factory``.
"""

from .base import Estimator, EstimatorState, NoState, SarahState
from .factory import ESTIMATOR_NAMES, make_estimator
from .minibatch import SA_BATCH, Minibatch
from .sarah import RESTART_RATIO, SarahFinite, SarahOnline
from .storm import Storm

__all__ = [
    "Estimator",
    "NoState",
    "EstimatorState",
    "Minibatch",
    "SA_BATCH",
    "SarahOnline",
    "SarahFinite",
    "SarahState",
    "RESTART_RATIO",
    "Storm",
    "ESTIMATOR_NAMES",
    "make_estimator",
]
