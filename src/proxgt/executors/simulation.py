"""Single-process executor: all n nodes are rows of one batched tensor program; a gossip round is W @ Z."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from proxgt._io import RunFolder
from proxgt._validation import DivergenceError
from proxgt.config import RunConfig
from proxgt.executors._checkpoint import Checkpointer, load_checkpoint, resolve_run_config, state_to
from proxgt.mixing import SimulatedCommunicator
from proxgt.runner import Build, History, build, compute_settings, make_oracle, summarize, to_numpy, train

__all__ = ["run_simulation", "simulated_communicator"]


def simulated_communicator(b: Build) -> SimulatedCommunicator:
    return SimulatedCommunicator(b.topology.W, b.topology.degrees)


def run_simulation(
    cfg: RunConfig | dict[str, Any] | None,
    *,
    out: str | Path | None = None,
    progress: bool = False,
    resume: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> History:
    """Build and run ``cfg`` with every node simulated in this process.

    Writes the run folder when ``out`` (or ``cfg.out``) is set: config.toml first, metrics.csv after every
    logged row, final.npz and summary.json at the end. On divergence the rows logged so far stay on disk,
    summary.json records the failure, and DivergenceError is raised.

    With ``cfg.checkpoint_every = N > 0`` (and an output folder) a checkpoint is written every N iterations
    (see :mod:`proxgt.executors._checkpoint`). ``resume=DIR`` continues the run of folder DIR from its newest
    checkpoint (``cfg`` is then ignored: the settings come from the checkpoint; ``overrides`` may change
    ``checkpoint_every``/``timeout_s``) and ends with the metrics an uninterrupted run would have written.
    """
    cfg = resolve_run_config(cfg, resume, overrides, "run_simulation")
    ck = load_checkpoint(resume, 0, 1) if resume is not None else None
    out = cfg.out if resume is not None else out
    b = build(cfg)
    out = out if out is not None else cfg.out
    folder = RunFolder(out) if out else None
    comm = simulated_communicator(b)
    resolved = b.resolved_config()
    if folder:
        folder.write_config(resolved)
    columns: list[str] = []
    rows_all: list[dict[str, float]] = []
    state = oracle = None
    start_wall = 0.0
    if ck is not None:
        oracle = make_oracle(b, comm.node_ids)
        oracle.load_state_dict(ck["oracle"])
        comm.counter.load_state_dict(ck["counter"])
        state = state_to(ck["state"], b.cfg.device)
        start_wall = float(ck["wall"])
        rows_all.extend(ck["rows"])
        columns.extend(ck["columns"])
        if folder and rows_all:
            folder.start_metrics(columns, rows_all[:-1])
            folder.add_row(rows_all[-1])

    def on_row(row: dict[str, float]) -> None:
        rows_all.append(row)
        if folder:
            if not columns:
                columns.extend(row.keys())
                folder.start_metrics(columns)
            folder.add_row(row)

    ckpt = Checkpointer(out, 0, 1, b.cfg.checkpoint_every) if out and b.cfg.checkpoint_every else None

    def on_state(st: Any, orc: Any, wall: float) -> None:
        if ckpt is not None and ckpt.due(st.t):
            ckpt.save(st.t, {
                "state": state_to(st, "cpu"), "oracle": orc.state_dict(), "counter": comm.counter.state_dict(),
                "rows": list(rows_all), "columns": list(columns), "wall": wall, "cfg": b.cfg.to_dict(),
            })

    try:
        with compute_settings(b.cfg.threads):
            state, _, metrics = train(b, comm, on_row=on_row, progress=progress, state=state, oracle=oracle,
                                      start_wall=start_wall, on_state=on_state)
    except DivergenceError as exc:
        if folder:
            folder.write_summary(summarize(rows_all, b, status="diverged", message=str(exc)))
        raise
    rows = rows_all
    summary = summarize(rows, b)
    x = to_numpy(state.x)
    if folder:
        folder.write_final(x)
        folder.write_summary(summary)
    return History(columns=metrics.columns, rows=rows, x=state.x.detach().cpu(), config=resolved, summary=summary)
