"""Single-process executor: all n nodes are rows of one batched tensor program; a gossip round is W @ Z."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from proxgt._io import RunFolder
from proxgt._validation import DivergenceError
from proxgt.config import RunConfig
from proxgt.mixing import SimulatedCommunicator
from proxgt.runner import Build, History, build, compute_settings, summarize, to_numpy, train

__all__ = ["run_simulation", "simulated_communicator"]


def simulated_communicator(b: Build) -> SimulatedCommunicator:
    return SimulatedCommunicator(b.topology.W, b.topology.degrees)


def run_simulation(
    cfg: RunConfig | dict[str, Any], *, out: str | Path | None = None, progress: bool = False
) -> History:
    """Build and run ``cfg`` with every node simulated in this process.

    Writes the run folder when ``out`` (or ``cfg.out``) is set: config.toml first, metrics.csv after every
    logged row, final.npz and summary.json at the end. On divergence the rows logged so far stay on disk,
    summary.json records the failure, and DivergenceError is raised.
    """
    if isinstance(cfg, dict):
        cfg = RunConfig.from_dict(cfg)
    b = build(cfg)
    out = out if out is not None else cfg.out
    folder = RunFolder(out) if out else None
    comm = simulated_communicator(b)
    resolved = b.resolved_config()
    if folder:
        folder.write_config(resolved)
    columns: list[str] = []

    def on_row(row: dict[str, float]) -> None:
        if folder:
            if not columns:
                columns.extend(row.keys())
                folder.start_metrics(columns)
            folder.add_row(row)

    work = b.cfg.nodes * int(b.problem.dim) * (1 if b.chunk_size is None else 64)
    try:
        with compute_settings(b.cfg.threads, work):
            state, rows, metrics = train(b, comm, on_row=on_row, progress=progress)
    except DivergenceError as exc:
        if folder:
            folder.write_summary(summarize(folder._rows, b, status="diverged", message=str(exc)))
        raise
    summary = summarize(rows, b)
    x = to_numpy(state.x)
    if folder:
        folder.write_final(x)
        folder.write_summary(summary)
    return History(columns=metrics.columns, rows=rows, x=state.x.detach().cpu(), config=resolved, summary=summary)
