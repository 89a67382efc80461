"""Stationarity and accuracy metrics at the network average (spec section 2).

Modules: ``columns`` (:data:`BASE_COLUMNS`, the columns every row has) and ``evaluator``
(:class:`MetricsEvaluator`, which computes one row, and :func:`gradient_mapping`); the column definitions are in
the ``evaluator`` module's docstring.
"""

from .columns import BASE_COLUMNS
from .evaluator import MetricsEvaluator, gradient_mapping

__all__ = ["MetricsEvaluator", "BASE_COLUMNS", "gradient_mapping"]
