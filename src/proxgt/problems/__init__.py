"""Smooth finite-sum problems f_i(x) = sum_j w_ij l(x; a_ij, y_ij) + r(x), evaluated for many nodes at once.

A problem knows how to compute, for node-stacked parameters ``X`` (k x d) and per-node sample batches
``feats`` (k x b x ...) with weights ``w`` (k x b, each row summing to 1), the weighted losses and gradients of
every row in one batched tensor program. Sampling, counting and data placement live in
:class:`proxgt.problems.oracle.GradientOracle`; the problem is pure math.

Modules: ``base`` (the :class:`Problem` protocol and its capability attributes), ``linear`` (binary logistic
regression with the non-convex penalty ``rho * sum_k x_k^2 / (1 + x_k^2)``, multinomial (softmax) regression,
least squares, and their builders), ``nn`` (neural networks), ``oracle`` (sampling and IFO counts).
"""

from .base import Problem
from .linear import (
    LeastSquares,
    LogisticRegression,
    SoftmaxRegression,
    build_least_squares,
    build_logistic,
    build_softmax,
    lambda_max_gram,
)

__all__ = [
    "Problem",
    "LogisticRegression",
    "SoftmaxRegression",
    "LeastSquares",
    "lambda_max_gram",
    "build_logistic",
    "build_softmax",
    "build_least_squares",
]
