"""Single-process executor: all n nodes are rows of one batched tensor program; a gossip round is W @ Z."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from proxgt.executors.driver import FaultHook, TrainFn, drive
from proxgt.mixing import SimulatedCommunicator
from proxgt.mixing.clock import VirtualClock
from proxgt.mixing.dynamic import DynamicCommunicator
from proxgt.settings import RunConfig
from proxgt.training import History, RunSpec

__all__ = ["SimulationExecutor", "run_simulation", "simulated_communicator"]


def simulated_communicator(spec: RunSpec) -> SimulatedCommunicator:
    """W @ Z per round on a reliable static graph (the fast path); the round matrices of the run's
    :class:`~proxgt.mixing.dynamic.NetworkSchedule` under link failures, node dropout or a time-varying graph; with
    the run's virtual clock (:mod:`proxgt.mixing.clock`) when it sets one."""
    if spec.network is None:
        comm = SimulatedCommunicator(spec.topology.W, spec.topology.degrees)
    else:
        comm = DynamicCommunicator(spec.topology.W, spec.topology.degrees, spec.network)
    # node_speed, link_latency or link_bandwidth: the run logs sim_time_s (an --async run's mixer keeps the clocks)
    if spec.clock is not None and not spec.settings.asynchronous:
        comm.attach_clock(VirtualClock(spec.clock))
    return comm


class SimulationExecutor:
    """Every node in this process ("rank 0 of 1")."""

    rank = 0
    world = 1
    shard = None  # every row
    folder = None  # the driver's own run folder is the only one
    can_checkpoint = True

    def communicator(self, spec: RunSpec) -> SimulatedCommunicator:
        return simulated_communicator(spec)

    def barrier(self) -> None:
        pass

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def add_summary(self, summary: dict[str, Any], elapsed_s: float, iters_run: int) -> None:
        pass

    def checkpoint_state(self) -> dict[str, Any]:
        return {}

    def train(self, train_fn: TrainFn, spec: RunSpec, comm: Any, oracle: Any, *, state: Any, start_wall: float,
              on_row: Any, after_iteration: Any, progress: bool, rows: list[dict[str, float]], folder: Any,
              mixer: Any) -> tuple[Any, Any]:
        return train_fn(spec, comm, oracle, state=state, start_wall=start_wall, on_row=on_row,
                        after_iteration=after_iteration, progress=progress, mixer=mixer)


def run_simulation(
    cfg: RunConfig | dict[str, Any] | None,
    *,
    out: str | Path | None = None,
    progress: bool = False,
    resume: str | Path | None = None,
    overwrite: bool = False,
    overrides: dict[str, Any] | None = None,
    fault_hook: FaultHook | None = None,
) -> History:
    """Build and run ``cfg`` with every node simulated in this process.

    Writes the run folder when ``out`` (or ``cfg.out``) is set: config.toml first, metrics.csv after every
    logged row, final.npz and summary.json at the end. On divergence the rows logged so far stay on disk,
    summary.json records the failure, and DivergenceError is raised. A folder that already holds a run is
    refused unless ``overwrite``; ``resume=DIR`` continues DIR's run from its newest usable checkpoint, extends a
    finished one (``overrides={"iters": N}``) or, with ``overwrite``, starts it over (see
    :func:`proxgt.executors.driver.plan_resume`).
    """
    # on resume the settings come from the checkpoint, whatever cfg says
    return drive(SimulationExecutor(), None if resume is not None else cfg, out=out, resume=resume,
                 overwrite=overwrite, overrides=overrides,
                 progress=progress, fault_hook=fault_hook)
