"""What both executors share: settings on resume, the run folder, checkpoints, metric rows, divergence and the
summary. An executor supplies only what differs (:class:`Executor`): its communicator, a barrier, the final
gather of the iterates and its own summary entries.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch

from proxgt.errors import DivergenceError, ProxGTValueError
from proxgt.executors.checkpoint import (
    Checkpointer,
    checkpoint_settings,
    load_checkpoint,
    remove_partial_checkpoints,
    state_to,
)
from proxgt.mixing import Communicator
from proxgt.mixing.compressed import gossip_state, load_gossip_state
from proxgt.settings import RESUMABLE, RunConfig
from proxgt.training import History, RunFolder, RunSpec, build_run, compute_settings, summarize, train
from proxgt.training.tensorboard import live_log

__all__ = ["Executor", "FaultHook", "RESUMABLE", "drive", "resume_settings"]

#: ``hook(rank, t)``, called after every iteration; tests use it to kill or hang a process at iteration t
FaultHook = Callable[[int, int], None]


class Executor(Protocol):
    """What an executor gives the driver."""

    rank: int
    world: int

    def communicator(self, spec: RunSpec) -> Communicator:
        """The communicator of this process's nodes (a distributed executor also drops the others' data)."""
        ...

    def barrier(self) -> None: ...

    def gather(self, x: torch.Tensor) -> torch.Tensor | None:
        """All n rows in node order on rank 0 (None elsewhere)."""
        ...

    def add_summary(self, summary: dict[str, Any], elapsed_s: float, iters_run: int) -> None: ...


def resume_settings(run_dir: str | Path, overrides: dict[str, Any] | None = None) -> tuple[RunConfig, int, int]:
    """(settings, world size, iteration) of the newest complete checkpoint of ``run_dir``, with the
    :data:`RESUMABLE` ``overrides`` applied; any other override is a one-line error."""
    cfg, world, t = checkpoint_settings(run_dir)
    other = sorted(k for k, v in (overrides or {}).items() if v is not None and k not in RESUMABLE)
    if other:
        raise ProxGTValueError(
            f"a resumed run keeps the settings of its checkpoint; only {' and '.join(RESUMABLE)} may change "
            f"(got {', '.join(other)})"
        )
    cfg = cfg.merged({k: v for k, v in (overrides or {}).items() if k in RESUMABLE}).replace(out=str(run_dir))
    return cfg, world, t


def drive(
    executor: Executor,
    cfg: RunConfig | dict[str, Any] | None,
    *,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    overwrite: bool = False,
    overrides: dict[str, Any] | None = None,
    progress: bool = False,
    fault_hook: FaultHook | None = None,
) -> History:
    """Build ``cfg`` and run it on ``executor``; rank 0 writes the run folder ``out`` (or ``cfg.out``).

    ``resume=DIR`` continues DIR's run from its newest complete checkpoint; the settings come from the
    checkpoint (``overrides`` may change :data:`RESUMABLE` settings) unless ``cfg`` is a RunConfig the executor
    already resolved from it with :func:`resume_settings` and ends with the
    metrics an uninterrupted run would have written. ``overwrite`` replaces a run already in the folder.
    """
    rank = executor.rank
    if resume is not None:
        if not isinstance(cfg, RunConfig):  # an executor may pass the settings it already resolved from DIR
            cfg, _, _ = resume_settings(resume, overrides)
        out = resume
    elif cfg is None:
        raise ProxGTValueError("nothing to run: give a config or resume=DIR")
    elif isinstance(cfg, dict):
        cfg = RunConfig.from_dict(cfg)
    if overrides and resume is None:
        cfg = cfg.merged(overrides)
    out = out if out is not None else cfg.out
    spec = build_run(cfg, shard=getattr(executor, "shard", None))  # a distributed process reads its rows only
    comm = executor.communicator(spec)
    folder = RunFolder(out, overwrite=overwrite, resume=resume is not None) if out and rank == 0 else None
    try:
        if out:
            executor.barrier()  # rank 0 has claimed (and, with overwrite, emptied) the folder
        return _run(executor, spec, comm, folder, out, resume, progress, fault_hook)
    finally:
        if folder is not None:
            folder.close()


def _run(executor: Executor, spec: RunSpec, comm: Communicator, folder: RunFolder | None, out: Any,
         resume: Any, progress: bool, fault_hook: FaultHook | None) -> History:
    rank, world = executor.rank, executor.world
    node_ids = list(comm.node_ids)
    resolved = spec.resolved_config()
    resolved["meta"]["world_size"] = world
    if folder is not None:
        folder.write_config({**spec.resolved.to_toml_dict(skip=("out",)), "meta": resolved["meta"]})

    oracle = spec.make_oracle(node_ids)
    state = None
    start_wall = 0.0
    rows: list[dict[str, float]] = []
    if resume is not None:
        ck = load_checkpoint(resume, rank, world)
        oracle.load_state_dict(ck["oracle"])
        comm.load_state_dict(ck["comm"])
        load_gossip_state(comm, ck.get("gossip"))
        state = state_to(ck["state"], spec.settings.device)
        start_wall = float(ck["wall"])
        rows = list(ck["rows"])
        if folder is not None:
            folder.start_metrics(ck["columns"], rows)
            sys.stderr.write(f"proxgt: resuming {resume} at iteration {state.t} of {spec.iters} "
                             f"(checkpoint written by {world} process{'es' if world > 1 else ''})\n")
    t_resumed = int(state.t) if state is not None else 0
    live = live_log(spec.settings, spec.resolved.to_dict(), out)  # --tensorboard: None unless set

    def on_row(row: dict[str, float]) -> None:
        rows.append(row)
        writer = folder if folder is not None else getattr(executor, "folder", None)  # taken over (lost rank 0)
        if writer is not None:
            writer.add_row(row)
        if live is not None and (writer is not None or (not out and rank == 0)):  # the writing process only
            live.add_row(row)

    ckpt = Checkpointer(out, rank, world, spec.settings.checkpoint_every) \
        if out and spec.settings.checkpoint_every else None

    def after_iteration(st: Any, wall: float) -> None:
        if fault_hook is not None:
            fault_hook(rank, int(st.t))
        if ckpt is not None and ckpt.due(st.t) and getattr(executor, "can_checkpoint", True):
            ckpt.save(st.t, {
                "state": state_to(st, "cpu"), "oracle": oracle.state_dict(), "comm": comm.state_dict(),
                "rows": list(rows), "columns": list(rows[0]) if rows else [], "wall": wall,
                "cfg": spec.settings.to_dict(), "node_ids": node_ids, "gossip": gossip_state(comm),
            })

    t_start = time.perf_counter()
    try:
        with compute_settings(spec.settings.threads):
            # an executor may wrap the loop (the distributed one, to go on after a lost process)
            run = getattr(executor, "train", None)
            if run is not None:
                state, metrics = run(train, spec, comm, oracle, state=state, start_wall=start_wall, on_row=on_row,
                                     after_iteration=after_iteration, progress=progress and rank == 0, rows=rows,
                                     folder=folder)
            else:
                state, metrics = train(spec, comm, oracle, state=state, start_wall=start_wall, on_row=on_row,
                                       after_iteration=after_iteration, progress=progress and rank == 0)
    except DivergenceError as exc:
        if folder is not None:
            folder.write_summary(summarize(rows, spec, status="diverged", message=str(exc)))
        raise
    finally:
        if live is not None:
            live.close()
    elapsed = time.perf_counter() - t_start
    x_all = executor.gather(state.x)
    folder = folder if folder is not None else getattr(executor, "folder", None)
    summary = summarize(rows, spec)
    executor.add_summary(summary, elapsed, int(state.t) - t_resumed)
    if folder is not None and x_all is not None:
        folder.write_final(x_all.detach().to("cpu", torch.float64).numpy())
        folder.write_summary(summary)
        remove_partial_checkpoints(folder.path)
    x = x_all if x_all is not None else state.x
    return History(columns=metrics.columns, rows=rows, x=x.detach().cpu(), config=resolved, summary=summary)
