"""Executors run the same algorithm objects: in one process (simulation) or one process per node
(distributed); :mod:`proxgt.executors.driver` is what they share."""

from proxgt.executors.simulation import run_simulation

__all__ = ["run_simulation"]
