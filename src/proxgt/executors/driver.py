"""What both executors share: settings on resume, the run folder, checkpoints, metric rows, divergence and the
summary. An executor supplies only what differs (:class:`Executor`): its communicator, a barrier, the final
gather of the iterates and its own summary entries.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from proxgt.errors import DivergenceError, ProxGTValueError
from proxgt.executors.checkpoint import (
    Checkpointer,
    algorithm_state_type,
    checkpoint_settings,
    load_checkpoint,
    remove_partial_checkpoints,
    state_from_dict,
    state_to,
    state_to_dict,
)
from proxgt.mixing import Communicator
from proxgt.mixing.compressed import make_mixer
from proxgt.settings import RESUMABLE, RunConfig
from proxgt.training import History, RunFolder, RunSpec, build_run, compute_settings, summarize, train
from proxgt.training.tensorboard import live_log

if TYPE_CHECKING:
    from proxgt.data._shard import ShardRequest

__all__ = ["Executor", "FaultHook", "RESUMABLE", "ResumePlan", "TrainFn", "drive", "plan_resume"]

#: ``hook(rank, t)``, called after every iteration; tests use it to kill or hang a process at iteration t
FaultHook = Callable[[int, int], None]
#: the shared training loop, :func:`proxgt.training.train`
TrainFn = Callable[..., tuple[Any, Any]]


class Executor(Protocol):
    """What an executor gives the driver."""

    rank: int
    world: int
    @property
    def shard(self) -> ShardRequest | None:
        """The rows this process loads (None: every row, as the simulation does)."""
        ...

    @property
    def folder(self) -> RunFolder | None:
        """The run folder this process took over from a lost rank 0 (None: it writes none, or rank 0 does)."""
        ...
    #: whether checkpoints can still be written (a checkpoint needs a file from every process of the run)
    can_checkpoint: bool

    def communicator(self, spec: RunSpec) -> Communicator:
        """The communicator of this process's nodes (a distributed executor also drops the others' data)."""
        ...

    def barrier(self) -> None: ...

    def gather(self, x: torch.Tensor) -> torch.Tensor | None:
        """All n rows in node order on rank 0 (None elsewhere)."""
        ...

    def add_summary(self, summary: dict[str, Any], elapsed_s: float, iters_run: int) -> None: ...

    def checkpoint_state(self) -> dict[str, Any]:
        """What this executor keeps in its checkpoint file besides the driver's own entries (plain values: a
        site's membership and its setup record)."""
        ...

    def train(self, train_fn: TrainFn, spec: RunSpec, comm: Communicator, oracle: Any, *, state: Any,
              start_wall: float, on_row: Any, after_iteration: Any, progress: bool, rows: list[dict[str, float]],
              folder: RunFolder | None, mixer: Any) -> tuple[Any, Any]:
        """Run ``train_fn`` (the shared loop) with these arguments; an executor may wrap it (the distributed one
        goes on after a lost process)."""
        ...


@dataclass(frozen=True)
class ResumePlan:
    """What ``--resume DIR`` does (:func:`plan_resume`).

    ``start_over``: run ``cfg`` from iteration 0 in ``run_dir``, replacing the run there (``--overwrite``);
    otherwise continue from the checkpoint at iteration ``t`` (written by ``world`` processes), up to
    ``cfg.iters``, which extends a finished run when larger than its iterations.
    """

    run_dir: Path
    cfg: RunConfig
    world: int
    t: int
    start_over: bool = False


def _finished(run_dir: Path) -> dict[str, Any] | None:
    """The summary of the run in ``run_dir`` when it finished (summary.json), else None."""
    path = run_dir / "summary.json"
    if not path.exists():
        return None
    try:
        summary = json.loads(path.read_text())
        return {"status": str(summary["status"]), "iters": int(summary["iters"]), "message": summary.get("message")}
    except (OSError, ValueError, KeyError, TypeError):
        raise ProxGTValueError(f"{path} cannot be read, so whether the run in {run_dir} finished is unknown; pass "
                               "--overwrite to start it over") from None


def plan_resume(run_dir: str | Path, overrides: dict[str, Any] | None = None, *, overwrite: bool = False,
                warn: bool = True) -> ResumePlan:
    """What resuming ``run_dir`` means, or a one-line error.

    The settings come from the newest usable checkpoint (:func:`~proxgt.executors.checkpoint.find_checkpoint`;
    a corrupt newest one falls back to the previous with a warning when ``warn``), with the :data:`RESUMABLE`
    ``overrides`` applied (any other override is an error). An unfinished run continues. A finished run
    (summary.json) is refused, unless ``overwrite`` (start it over with its settings) or ``overrides`` holds
    ``iters`` larger than its iterations (extend it from its last checkpoint: the result equals the uninterrupted
    run of that length). A run that diverged can only be started over.
    """
    run_dir = Path(run_dir)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    other = sorted(k for k in overrides if k not in RESUMABLE)
    if other:
        raise ProxGTValueError(
            f"a resumed run keeps the settings of its checkpoint; only {' and '.join(RESUMABLE)} may change "
            f"(got {', '.join(other)})"
        )
    iters = overrides.get("iters")
    done = None if overwrite else _finished(run_dir)
    if done is not None:
        if done["status"] != "ok":
            raise ProxGTValueError(f"{run_dir} holds a run that ended with status {done['status']!r} at iteration "
                                   f"{done['iters']}; --resume would only repeat it: pass --overwrite to start it over")
        if iters is None:
            raise ProxGTValueError(f"{run_dir} holds a finished run ({done['iters']} iterations); --resume continues "
                                   f"unfinished runs: pass --iters N > {done['iters']} to extend it, or --overwrite "
                                   "to start it over")
        if iters <= done["iters"]:
            raise ProxGTValueError(f"--iters {iters} does not extend the finished run in {run_dir} ({done['iters']} "
                                   f"iterations); pass --iters N > {done['iters']}, or --overwrite to start it over")
    try:
        cfg, world, t = checkpoint_settings(run_dir, warn=warn)
    except ProxGTValueError as exc:
        if done is None:
            raise
        raise ProxGTValueError(f"{run_dir} holds a finished run without a usable checkpoint to extend ({exc})") \
            from None
    if iters is not None and iters != cfg.iters or iters is not None and cfg.epochs is not None:
        if not overwrite and iters <= t:
            raise ProxGTValueError(f"--iters {iters} must exceed the iteration of the checkpoint it resumes from "
                                   f"({t} in {run_dir})")
        if not overwrite and cfg.dp_epsilon not in (None, "off"):
            raise ProxGTValueError(f"the run in {run_dir} solved its noise for dp_epsilon = {cfg.dp_epsilon} over its "
                                   "own length; another --iters would spend a different budget: pass --overwrite to "
                                   "start it over with the new length")
        cfg = cfg.replace(epochs=None)  # the new length is given in iterations
    cfg = cfg.merged(overrides).replace(out=str(run_dir))
    return ResumePlan(run_dir=run_dir, cfg=cfg, world=world, t=t, start_over=overwrite)


def drive(
    executor: Executor,
    cfg: RunConfig | dict[str, Any] | None,
    *,
    out: str | Path | None = None,
    resume: str | Path | ResumePlan | None = None,
    overwrite: bool = False,
    overrides: dict[str, Any] | None = None,
    progress: bool = False,
    fault_hook: FaultHook | None = None,
) -> History:
    """Build ``cfg`` and run it on ``executor``; rank 0 writes the run folder ``out`` (or ``cfg.out``).

    ``resume=DIR`` resumes DIR's run as :func:`plan_resume` decides (``overrides`` may change :data:`RESUMABLE`
    settings, ``overwrite`` starts it over); an executor that planned already passes its :class:`ResumePlan`
    (whose ``cfg`` it may have adapted, e.g. to its GPU) and ``cfg`` is then ignored. A continued run ends with
    the metrics an uninterrupted run would have written. Without ``resume``, ``overwrite`` replaces a run
    already in the folder.
    """
    rank = executor.rank
    plan: ResumePlan | None = None
    if resume is not None:
        plan = resume if isinstance(resume, ResumePlan) else \
            plan_resume(resume, overrides, overwrite=overwrite, warn=rank == 0)
        cfg, out, overwrite = plan.cfg, plan.run_dir, plan.start_over
        if plan.start_over:
            plan = None
    elif cfg is None:
        raise ProxGTValueError("nothing to run: give a config or resume=DIR")
    elif isinstance(cfg, dict):
        cfg = RunConfig.from_dict(cfg)
    if overrides and resume is None:
        cfg = cfg.merged(overrides)
    assert isinstance(cfg, RunConfig)
    out = out if out is not None else cfg.out
    spec = build_run(cfg, shard=executor.shard)  # a distributed process reads its rows only
    comm = executor.communicator(spec)
    folder = RunFolder(out, overwrite=overwrite, resume=plan is not None) if out and rank == 0 else None
    try:
        if folder is not None and plan is not None:
            folder.reopen()  # the run goes on: it is no longer finished (an extension replaces its results)
        if out:
            executor.barrier()  # rank 0 has claimed (and, with overwrite, emptied) the folder
        return _run(executor, spec, comm, folder, out, plan, progress, fault_hook)
    finally:
        if folder is not None:
            folder.close()


def _run(executor: Executor, spec: RunSpec, comm: Communicator, folder: RunFolder | None, out: Any,
         plan: ResumePlan | None, progress: bool, fault_hook: FaultHook | None) -> History:
    rank, world = executor.rank, executor.world
    node_ids = list(comm.node_ids)
    resolved = spec.resolved_config()
    resolved["meta"]["world_size"] = world
    if folder is not None:
        folder.write_config({**spec.resolved.to_toml_dict(skip=("out",)), "meta": resolved["meta"]})

    oracle = spec.make_oracle(node_ids)
    mixer = make_mixer(comm, spec)
    checkpointing = bool(out and spec.settings.checkpoint_every)
    state_type = algorithm_state_type(spec.algorithm) if checkpointing or plan is not None else None
    state = None
    start_wall = 0.0
    rows: list[dict[str, float]] = []
    if plan is not None:
        assert state_type is not None
        ck = load_checkpoint(plan.run_dir, rank, world, at=plan.t, warn=False)
        if [int(i) for i in ck["executor"]["node_ids"]] != node_ids:
            raise ProxGTValueError(f"the checkpoint at iteration {plan.t} in {plan.run_dir} holds other nodes for "
                                   f"rank {rank} than this run gives it")
        oracle.load_state_dict(ck["oracle"])
        comm.load_state_dict(ck["comm"])
        mixer.load_state_dict(ck["mixer"])
        state = state_to(state_from_dict(state_type, ck["algorithm"], "the checkpoint's algorithm state"),
                         spec.settings.device)
        start_wall = float(ck["executor"]["wall"])
        # a finished run logged a row at its last iteration; a longer run logs only on the log_every grid
        rows = [r for r in ck["metrics"]["rows"]
                if r["iter"] % spec.settings.log_every == 0 or r["iter"] == spec.iters]
        if folder is not None:
            folder.start_metrics(list(ck["metrics"]["columns"]), rows)
            sys.stderr.write(f"proxgt: resuming {plan.run_dir} at iteration {state.t} of {spec.iters} "
                             f"(checkpoint written by {world} process{'es' if world > 1 else ''})\n")
    path = spec.reg_schedule.start() if spec.reg_schedule is not None else None  # the sparse path's state
    if plan is not None and path is not None:
        path.load_state_dict(ck.get("sparse_path", {}))
    t_resumed = int(state.t) if state is not None else 0
    live = live_log(spec.settings, spec.resolved.to_dict(), out)  # --tensorboard: None unless set

    def on_row(row: dict[str, float]) -> None:
        rows.append(row)
        writer = folder if folder is not None else executor.folder  # taken over (lost rank 0)
        if writer is not None:
            writer.add_row(row)
        if live is not None and (writer is not None or (not out and rank == 0)):  # the writing process only
            live.add_row(row)

    def on_nodes(node_rows: list[dict[str, float]]) -> None:  # per-site results (local_test_fraction)
        writer = folder if folder is not None else executor.folder
        if writer is not None:
            writer.add_node_rows(node_rows)

    loop = partial(train, on_nodes=on_nodes if spec.local_test is not None else None, path=path)

    # a process's secret noise generators are in its checkpoint file: readable by its owner only
    ckpt = Checkpointer(out, rank, world, spec.settings.checkpoint_every,
                        private=bool(spec.settings.dp_secure_noise)) if checkpointing else None

    def after_iteration(st: Any, wall: float) -> None:
        if fault_hook is not None:
            fault_hook(rank, int(st.t))
        # the last iteration too: a finished run can be extended from its final state (--resume --iters)
        if ckpt is not None and (ckpt.due(st.t) or st.t == spec.iters) and executor.can_checkpoint:
            ckpt.save(st.t, {
                "algorithm": state_to_dict(st), "oracle": oracle.state_dict(), "comm": comm.state_dict(),
                "mixer": mixer.state_dict(), "metrics": {"columns": list(rows[0]) if rows else [], "rows": rows},
                "executor": {**executor.checkpoint_state(), "wall": float(wall), "node_ids": node_ids},
                "config": spec.settings.to_dict(),
                **({"sparse_path": path.state_dict()} if path is not None else {}),
            })

    t_start = time.perf_counter()
    try:
        with compute_settings(spec.settings.threads):
            state, metrics = executor.train(loop, spec, comm, oracle, state=state, start_wall=start_wall,
                                            on_row=on_row, after_iteration=after_iteration,
                                            progress=progress and rank == 0, rows=rows, folder=folder, mixer=mixer)
    except DivergenceError as exc:
        if folder is not None:
            folder.write_summary(summarize(rows, spec, status="diverged", message=str(exc)))
        raise
    finally:
        if live is not None:
            live.close()
    elapsed = time.perf_counter() - t_start
    x_all = executor.gather(state.x)
    folder = folder if folder is not None else executor.folder
    summary = summarize(rows, spec)
    if path is not None:
        summary["sparse_path"] = path.summary()
    executor.add_summary(summary, elapsed, int(state.t) - t_resumed)
    if folder is not None and x_all is not None:
        folder.write_final(x_all.detach().to("cpu", torch.float64).numpy())
        folder.write_summary(summary)
        remove_partial_checkpoints(folder.path)
    x = x_all if x_all is not None else state.x
    return History(columns=metrics.columns, rows=rows, x=x.detach().cpu(), config=resolved, summary=summary)
