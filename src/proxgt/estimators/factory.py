"""Estimators by name, through :data:`proxgt.registry.ESTIMATORS`."""

from __future__ import annotations

from proxgt.estimators.base import Estimator
from proxgt.registry import ESTIMATORS

__all__ = ["ESTIMATOR_NAMES", "make_estimator"]

#: The estimator names registered when proxgt is imported (``ESTIMATORS.names()`` also lists later additions).
ESTIMATOR_NAMES: tuple[str, ...] = tuple(ESTIMATORS.names())


def make_estimator(
    name: str,
    *,
    n_nodes: int,
    local_size: int,
    batch: int | None = None,
    big_batch: int | None = None,
    period: int | None = None,
    ratio: float | None = None,
) -> Estimator:
    """Build the estimator registered as ``name`` with the practical defaults of spec section 5b for anything
    left as None (each class's ``from_settings``; settings it does not use are ignored).

    ``local_size`` is m, the (mean) number of samples per node.

    * SA:   b = 32.
    * SR-O: B = min(m, 256), b = max(1, ceil(sqrt(B)) // 2), q = ceil(B / b).
    * SR-E: b = max(ceil(sqrt(m / n)), 1), q = ceil(m / b).

    ``ratio``: the largest period / inner batch q / b at which a SARAH-type recursion is stable at the
    problem's default step (``Problem.recursion_ratio``; the networks declare one). The SARAH estimators then
    choose b and q with q / b <= ratio (see their ``from_settings``); None: the spec's sizes above. It is passed
    on only when set, so a user's estimator without a ``ratio`` keyword still builds on the other problems.

    An unknown name raises :class:`proxgt.errors.UnknownNameError` (a ``ProxGTValueError``) listing the names.
    """
    extra = {} if ratio is None else {"ratio": ratio}
    estimator: Estimator = ESTIMATORS.get(name).from_settings(
        n_nodes=n_nodes, local_size=local_size, batch=batch, big_batch=big_batch, period=period, **extra
    )
    return estimator
