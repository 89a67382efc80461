"""Executors run the same algorithm objects: in one process (simulation) or one process per node."""

from proxgt.executors.simulation import run_simulation

__all__ = ["run_simulation"]
