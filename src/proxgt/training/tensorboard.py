"""Live curves: every logged metrics row as TensorBoard scalars (``--tensorboard DIR``).

One TensorBoard run per run folder, ``DIR/<run folder name>`` (``DIR/<algorithm>-seed<seed>`` for a run without
a folder), so the runs of a suite or of several commands sharing DIR sit side by side. Each metric column is a
scalar tag of its own name, at the row's iteration as the step; the run's settings (algorithm, seed and every
other resolved setting) are its hyper-parameters in TensorBoard's HPARAMS tab, where runs can be filtered and
sorted by them.

Only the writing process writes (rank 0 of a distributed run, or the survivor that took its place): the events
of a run are in one place. The TensorBoard run mirrors its run folder: a run that starts from iteration 0 (a new
run, or one replacing the folder's run with ``overwrite``) first removes the event files already in
``DIR/<run name>``, and a run that goes on from a later iteration (resumed from a checkpoint, or a survivor
taking over from a lost rank 0) opens its writer with ``purge_step`` = its first row's iteration, so the rows
an earlier attempt logged from there on are hidden rather than drawn twice. Runs that share DIR therefore need
distinct folder names (two suites: give each its own DIR).

tensorboard is an optional dependency (``pip install 'proxgt[tensorboard]'``), imported only when a run asks
for it.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from proxgt._optional import optional_import
from proxgt.training.folder import default_run_folder

__all__ = ["TensorBoardLog", "live_log", "tensorboard_module", "run_name"]

_PURPOSE = "the tensorboard setting (--tensorboard DIR)"


def tensorboard_module() -> ModuleType:
    """``torch.utils.tensorboard``, or a one-line MissingDependencyError naming the ``tensorboard`` extra."""
    return optional_import("torch.utils.tensorboard", extra="tensorboard", purpose=_PURPOSE)


def run_name(out: str | Path | None, algorithm: str, seed: int) -> str:
    """The TensorBoard run of a run: its folder's name, else ``<algorithm>-seed<seed>``."""
    return Path(out).resolve().name if out else Path(default_run_folder(algorithm, seed)).name


def _hparam(value: Any) -> bool:
    return isinstance(value, bool | int | float | str)


class TensorBoardLog:
    """Writes metrics rows as scalars under ``log_dir``; opened at the first row (see the module docstring).

    Args:
        log_dir: the TensorBoard run folder (``DIR/<run name>``).
        settings: the run's resolved settings; the scalar ones become its hyper-parameters.
    """

    def __init__(self, log_dir: str | Path, settings: dict[str, Any]):
        self._tb = tensorboard_module()  # a missing package fails here, before the run, not at its first row
        self.log_dir = Path(log_dir)
        self.settings = {k: v for k, v in settings.items() if _hparam(v) and k not in ("out", "tensorboard")}
        self._writer: Any = None

    def add_row(self, row: dict[str, float]) -> None:
        step = int(row["iter"])
        if self._writer is None:
            self._open(step, [k for k in row if k != "iter"])
        for key, value in row.items():
            if key != "iter":
                self._writer.add_scalar(key, float(value), global_step=step)
        self._writer.flush()  # live: rows are logged every log_every iterations, not many per second

    def _open(self, step: int, tags: list[str]) -> None:
        from torch.utils.tensorboard.summary import hparams

        self.log_dir.mkdir(parents=True, exist_ok=True)
        if step == 0:  # this run folder's run starts over: its earlier events (and settings) are not this run's
            for old in self.log_dir.glob("events.out.tfevents.*"):
                old.unlink()
        self._writer = self._tb.SummaryWriter(log_dir=str(self.log_dir), purge_step=step)
        if step == 0:  # once per run: the HPARAMS tab lists the settings and reads the metric tags' last values
            # torch's hparams() has no annotations
            for summary in hparams(self.settings, {tag: float("nan") for tag in tags}):  # type: ignore[no-untyped-call]
                self._writer.file_writer.add_summary(summary)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def live_log(settings: Any, resolved: dict[str, Any], out: str | Path | None) -> TensorBoardLog | None:
    """The TensorBoard log of a run whose ``settings`` (a RunConfig) set ``tensorboard``, else None."""
    if settings.tensorboard is None:
        return None
    name = run_name(out, settings.algorithm, settings.seed)
    return TensorBoardLog(Path(settings.tensorboard).expanduser() / name, resolved)
