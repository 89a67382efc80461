"""The run folder: config.toml, final.npz and summary.json, each written atomically, and metrics.csv, appended
one row at a time (:class:`CsvLog`: readers and a killed run still see whole rows only).

A folder is safe to use:

* a lock (``.lock``, held with ``flock`` for the run's life) refuses a second run in a folder in use;
* a folder that already holds a run (any of its files, or checkpoints) is not reused unless the caller says
  ``overwrite`` (its old files and checkpoints are then removed first, so a stale checkpoint is never picked
  up) or ``resume``;
* files get the mode an ordinary ``open`` would give them (0644 under a 022 umask).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from proxgt._io import append_text, atomic_write_text, atomic_write_with, json_safe, metrics_csv_text, read_metrics_csv
from proxgt.errors import ProxGTValueError

try:  # POSIX; elsewhere the folder is used without a lock
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = ["RunFolder", "CsvLog", "RUN_FILES", "CHECKPOINT_DIR", "default_run_folder"]

RUN_FILES = ("config.toml", "metrics.csv", "per_node.csv", "final.npz", "summary.json")
CHECKPOINT_DIR = "checkpoint"
LOCK_FILE = ".lock"


def default_run_folder(algorithm: str, seed: int) -> str:
    """The folder of a run whose ``out`` is not set, relative to the working folder: ``runs/<algorithm>-seed<seed>``
    (``proxgt run``, ``proxgt launch`` and its workers, and the name TensorBoard gives such a run)."""
    return f"runs/{algorithm}-seed{seed}"


def _describe_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a run folder, or None."""
    for parent in [path, *path.parents]:
        if parent.exists():
            if not parent.is_dir():
                return f"cannot create output folder {path}: {parent} is not a folder"
            if not os.access(parent, os.W_OK | os.X_OK):
                return f"cannot create output folder {path}: {parent} is not writable"
            return None
    return None


class CsvLog:
    """An append-only CSV file of rows (metrics.csv, per_node.csv): each row is appended as it is logged, so a
    long run does not rewrite its whole history at every log step.

    The first rows (and any restart: a resumed run, or a distributed run going on after a lost process) write
    the whole file atomically; a run killed during an append leaves at most a partial last line, which readers
    (:func:`proxgt._io.read_complete_lines`) drop and a resumed run rewrites.
    """

    def __init__(self, path: Path):
        self.path = path
        self.columns: list[str] = []
        self._started = False

    def restart(self, columns: list[str], rows: list[dict[str, Any]]) -> None:
        """The file is exactly ``rows`` from now on (nothing is written until there is a row)."""
        self.columns = list(columns)
        self._started = bool(rows)
        if rows:
            atomic_write_text(self.path, metrics_csv_text(self.columns, rows))

    def go_on(self, columns: list[str]) -> None:
        """Append to the file as it is, whose header is ``columns`` (a site that rejoins keeps its rows)."""
        self.columns = list(columns)
        self._started = True

    def append(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        if not self._started:
            self.restart(self.columns or list(rows[0]), rows)
        else:
            append_text(self.path, metrics_csv_text(self.columns, rows, header=False))


class RunFolder:
    """The output folder of one run, locked while the run lasts.

    Args:
        path: the folder (created if needed).
        overwrite: replace a run already in the folder (its files and checkpoints are removed).
        resume: the run in the folder is being continued: keep its files and checkpoints.
    """

    def __init__(self, path: str | Path, *, overwrite: bool = False, resume: bool = False):
        self.path = Path(path)
        problem = _describe_problem(self.path)
        if problem:
            raise ProxGTValueError(problem)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ProxGTValueError(f"cannot create output folder {self.path}: {exc.strerror or exc}") from None
        self._lock_fh: Any = None
        self._lock()
        try:
            if not resume:
                self._claim(overwrite)
        except BaseException:
            self.close()
            raise
        self._metrics = CsvLog(self.path / "metrics.csv")
        self._nodes = CsvLog(self.path / "per_node.csv")

    # ------------------------------------------------------------------ lock and policy
    def _lock(self) -> None:
        if fcntl is None:
            return
        try:
            fh = open(self.path / LOCK_FILE, "a")  # noqa: SIM115 - held open for the run's life
        except OSError as exc:
            raise ProxGTValueError(f"cannot write in output folder {self.path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise ProxGTValueError(
                f"output folder {self.path} is in use by another run; wait for it to end or choose another --out"
            ) from None
        self._lock_fh = fh

    def _claim(self, overwrite: bool) -> None:
        present = [name for name in (*RUN_FILES, CHECKPOINT_DIR) if (self.path / name).exists()]
        if not present:
            return
        if not overwrite:
            what = "a finished run" if (self.path / "summary.json").exists() else "an unfinished run"
            raise ProxGTValueError(
                f"output folder {self.path} already holds {what} ({', '.join(present)}); pass --overwrite to "
                "replace it, --resume to continue it, or choose another --out"
            )
        links = [name for name in present if (self.path / name).is_symlink() and (self.path / name).is_dir()]
        if links:  # replacing would delete what the link points to, which this run folder does not own
            raise ProxGTValueError(
                f"output folder {self.path}: {', '.join(links)} is a symbolic link (to "
                f"{(self.path / links[0]).resolve()}); --overwrite does not delete through links: remove the link "
                "(or empty its target) yourself, or choose another --out"
            )
        for name in present:
            p = self.path / name
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()

    def reopen(self) -> None:
        """The run in the folder goes on (resumed, or extended past its end): remove its results (summary.json,
        final.npz), so that the folder holds an unfinished run until the run writes them again."""
        for name in ("summary.json", "final.npz"):
            (self.path / name).unlink(missing_ok=True)

    def close(self) -> None:
        """Release the lock (the lock file stays; it is empty)."""
        if self._lock_fh is not None:
            self._lock_fh.close()
            self._lock_fh = None

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ files
    def write_config(self, sections: dict[str, Any]) -> None:
        import tomli_w

        atomic_write_text(self.path / "config.toml", tomli_w.dumps(json_safe(sections)))

    def start_metrics(self, columns: list[str], rows: list[dict[str, Any]] | None = None) -> None:
        """metrics.csv holds exactly ``rows`` from now on (a resumed run: the rows of its checkpoint), and
        per_node.csv its rows up to the last of them (those after it are logged again)."""
        rows = list(rows or [])
        self._metrics.restart(columns, rows)
        per_node = self.path / "per_node.csv"
        if per_node.is_file():
            node_cols, node_rows = read_metrics_csv(per_node)
            last = rows[-1]["iter"] if rows else -1
            self._nodes.restart(node_cols, [r for r in node_rows if r["iter"] <= last])
            if not rows:
                per_node.unlink()

    def add_node_rows(self, rows: list[dict[str, Any]]) -> None:
        """Append per-node rows to per_node.csv (runs with local test data; :class:`CsvLog`)."""
        self._nodes.append(rows)

    def add_row(self, row: dict[str, Any]) -> None:
        """Append a metrics row to metrics.csv (:class:`CsvLog`)."""
        self._metrics.append([row])

    def write_final(self, x: np.ndarray) -> None:
        # rows of nodes lost in a run that went on without them are NaN: x_bar averages the survivors
        x_bar = np.nanmean(x, axis=0) if np.isnan(x).any() else x.mean(axis=0)
        atomic_write_with(self.path / "final.npz", lambda fh: np.savez(fh, x=x, x_bar=x_bar))

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_text(self.path / "summary.json", json.dumps(json_safe(summary), indent=2) + "\n")
