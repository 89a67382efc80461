"""Regularizers h with exact proximal operators, vectorized over nodes.

Node states are (k, d) tensors, one row per node. Every regularizer is a small immutable object with

* ``value(X)`` -> (k,) tensor of h(x_i) (``+inf`` for rows outside a constraint set),
* ``prox(X, step)`` -> row-wise ``argmin_u h(u) + ||u - x_i||^2 / (2 step)`` (pure: ``X`` is never modified;
  same dtype and device as ``X``),
* ``name`` and ``describe()`` (parameters for the run's config file).

Penalties: :class:`NoReg`, :class:`L1`, :class:`L2Squared`, :class:`ElasticNet`, :class:`GroupLasso`.
Constraints (indicators, prox = projection): :class:`NonNegative`, :class:`Box`, :class:`L2Ball`,
:class:`L1Ball`. :func:`make_regularizer` builds any of them from a name.

Example:
    >>> import torch
    >>> from proxgt.prox import make_regularizer
    >>> reg = make_regularizer("l1", 0.5)
    >>> reg.prox(torch.tensor([[2.0, -0.25]]), step=1.0).tolist()
    [[1.5, 0.0]]
"""

from ._base import Regularizer
from ._constraints import Box, L1Ball, L2Ball, NonNegative, Support
from ._factory import REGULARIZER_ALIASES, REGULARIZER_NAMES, make_regularizer
from ._penalties import L1, ElasticNet, GroupLasso, L2Squared, NoReg

__all__ = [
    "Regularizer",
    "NoReg",
    "L1",
    "L2Squared",
    "ElasticNet",
    "GroupLasso",
    "NonNegative",
    "Box",
    "L2Ball",
    "L1Ball",
    "Support",
    "make_regularizer",
    "REGULARIZER_NAMES",
    "REGULARIZER_ALIASES",
]
