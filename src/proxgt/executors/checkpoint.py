"""Checkpoints shared by both executors: every N iterations and at the end, atomically, resumable after a kill -9.

Layout inside the run folder::

    checkpoint/iter000000040/rank0.pt     one file per process (the simulation is "rank 0 of 1")
    checkpoint/iter000000040/rank1.pt
    checkpoint/iter000000040/world2       written by rank 0 with its file: the number of processes
    ...

Each file is written with write-then-rename (:func:`proxgt._io.atomic_write_with`), so it is either absent or
complete. A checkpoint *t* is complete when all ``world`` files of ``iter<t>`` exist. The last TWO complete
checkpoints are kept: after writing, a process deletes only its own files older than the second newest complete
checkpoint, so no barrier is needed and, at any moment of a kill, two complete checkpoints remain once two were
written. Resuming takes the newest complete checkpoint whose every file reads back as a checkpoint; a file that
does not (truncated, garbage, a pickle that would build objects) is named in a one-line warning and the
previous checkpoint is used instead.

A file is a plain dictionary (tensors, numbers, strings, None, lists and dicts: nothing else), written with
``torch.save`` and read with ``torch.load(..., weights_only=True)``, so that reading a file never runs code in
it::

    {"format": "proxgt-checkpoint", "version": 2, "t": 40, "world": 2, "rank": 0,
     "algorithm": {...}, "oracle": {...}, "comm": {...}, "mixer": {...},   # each component's state_dict()
     "metrics": {"columns": [...], "rows": [...]}, "executor": {"wall": ..., "node_ids": [...]},
     "config": {...}}                                                       # the (unresolved) run settings

The algorithm's state (a NamedTuple) is stored as a dict of its fields; it is rebuilt as the type that the
algorithm's ``init`` declares it returns (:func:`algorithm_state_type`), never from a name read from the file.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import types
import typing
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from proxgt._io import atomic_write_bytes, atomic_write_with
from proxgt._state import map_state
from proxgt.errors import ProxGTValueError
from proxgt.settings import RunConfig
from proxgt.training.folder import CHECKPOINT_DIR

__all__ = ["COMPONENTS", "Checkpointer", "CheckpointFound", "UnusableCheckpoint", "algorithm_state_type",
           "checkpoint_settings", "complete_checkpoints", "find_checkpoint", "latest_checkpoint", "load_checkpoint",
           "read_checkpoint_file", "remove_partial_checkpoints", "state_from_dict", "state_to", "state_to_dict"]

FORMAT = "proxgt-checkpoint"
VERSION = 2
#: the component states every checkpoint file holds, besides its header (format, version, t, world, rank)
COMPONENTS = ("algorithm", "oracle", "comm", "mixer", "metrics", "executor", "config")
#: complete checkpoints kept in a run folder (a corrupt newest one falls back to the one before)
KEEP = 2

_ITER_RE = re.compile(r"^iter(\d{9})$")


class UnusableCheckpoint(ProxGTValueError):
    """A checkpoint file that cannot be used; the message is one line and names the file."""


# ----------------------------------------------------------------------------- algorithm states
def state_to(state: Any, device: str | torch.device) -> Any:
    """A copy of a NamedTuple state with every tensor (nested states too) moved to ``device``."""
    return map_state(lambda v: v.detach().to(device), state)


def _is_record_type(tp: Any) -> bool:
    """A NamedTuple class or a dataclass: a state whose fields are stored by name."""
    return isinstance(tp, type) and ((issubclass(tp, tuple) and hasattr(tp, "_fields"))
                                     or dataclasses.is_dataclass(tp))


def _field_names(tp: type[Any]) -> list[str]:
    if issubclass(tp, tuple):
        return list(tp._fields)  # type: ignore[attr-defined]  # a NamedTuple class
    return [f.name for f in dataclasses.fields(tp)]


def _plain(value: Any) -> Any:
    if _is_record_type(type(value)):
        return state_to_dict(value)
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    return value


def state_to_dict(state: Any) -> dict[str, Any]:
    """A NamedTuple (or dataclass) state as a plain dict of its fields, tensors on the CPU (nested states too)."""
    return {name: _plain(getattr(state, name)) for name in _field_names(type(state))}


def algorithm_state_type(algorithm: Any) -> type:
    """The state type an algorithm declares: the return annotation of its ``init``. A checkpoint rebuilds its
    state as this type, so that nothing in the file chooses what is built."""
    try:
        tp = typing.get_type_hints(type(algorithm).init).get("return")
    except Exception:  # an annotation that does not resolve
        tp = None
    if not _is_record_type(tp):
        raise ProxGTValueError(
            f"algorithm {type(algorithm).__name__} does not declare its state type (annotate the return type of its "
            "init with its NamedTuple state), so its runs cannot be checkpointed or resumed"
        )
    return tp  # type: ignore[return-value]


def _rebuild(hint: Any, value: Any, where: str) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        records = [a for a in typing.get_args(hint) if _is_record_type(a)]
        if len(records) > 1 and isinstance(value, dict):  # e.g. an estimator's state: the one with these fields
            records = [a for a in records if set(_field_names(a)) == set(value)]
        return state_from_dict(records[0], value, where) if len(records) == 1 and isinstance(value, dict) else value
    if _is_record_type(hint):
        if not isinstance(value, dict):
            raise ProxGTValueError(f"{where}: expected the fields of {hint.__name__}, got {type(value).__name__}")
        return state_from_dict(hint, value, where)
    if origin in (tuple, list) and isinstance(value, list | tuple):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        inner = args[0] if len(args) == 1 else Any
        return origin(_rebuild(inner, v, where) for v in value)
    return value


def state_from_dict(state_type: type, fields: dict[str, Any], where: str = "state") -> Any:
    """Rebuild a state of ``state_type`` from :func:`state_to_dict`'s dict (its field types say how to rebuild
    nested states)."""
    names = _field_names(state_type)
    if set(fields) != set(names):
        raise ProxGTValueError(f"{where}: the fields {sorted(fields)} are not those of {state_type.__name__} "
                               f"({', '.join(names)})")
    hints = typing.get_type_hints(state_type)
    return state_type(**{n: _rebuild(hints.get(n, Any), fields[n], f"{where}.{n}") for n in names})


# ----------------------------------------------------------------------------- plain values
def _check_plain(value: Any, where: str) -> None:
    """Raise ValueError unless ``value`` holds only tensors, numbers, strings, None, lists, tuples and dicts."""
    if value is None or isinstance(value, bool | int | float | str):
        return
    if type(value) is torch.Tensor:
        return
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str | int):
                raise ValueError(f"{where} has a key of type {type(k).__name__}")
            _check_plain(v, f"{where}[{k!r}]")
        return
    raise ValueError(f"{where} is a {type(value).__module__}.{type(value).__name__}, not a tensor or a plain value")


# ----------------------------------------------------------------------------- finding checkpoints
def _iter_dirs(root: Path) -> list[tuple[int, Path]]:
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        m = _ITER_RE.match(p.name)
        if m and p.is_dir():
            out.append((int(m.group(1)), p))
    return sorted(out)


def complete_checkpoints(run_dir: str | Path) -> list[tuple[int, Path, int]]:
    """(iteration, folder, world size) of every complete checkpoint under ``run_dir``, newest first.

    Complete means the ``world<w>`` marker and ``rank0.pt .. rank{w-1}.pt`` all exist (the largest rank present
    + 1 is not enough: a missing high rank would go unnoticed). Whether the files read back is not checked here.
    """
    found = []
    for t, d in reversed(_iter_dirs(Path(run_dir) / CHECKPOINT_DIR)):
        worlds = [int(p.name[5:]) for p in d.glob("world*") if p.name[5:].isdigit()]
        if len(worlds) != 1:
            continue
        w = worlds[0]
        if w > 0 and all((d / f"rank{r}.pt").is_file() for r in range(w)):
            found.append((t, d, w))
    return found


def latest_checkpoint(run_dir: str | Path) -> tuple[int, Path, int] | None:
    """(iteration, folder, world size) of the newest complete checkpoint under ``run_dir``, or None."""
    found = complete_checkpoints(run_dir)
    return found[0] if found else None


def _why(exc: Exception) -> str:
    if isinstance(exc, UnusableCheckpoint):
        return str(exc)
    text = str(exc)
    if "weights_only" in text.lower() or "Weights only load failed" in text:
        return "it holds objects other than tensors and plain values (refused unread: loading it could run code)"
    first = text.strip().splitlines()[0][:160] if text.strip() else ""
    return f"it is not a readable checkpoint ({type(exc).__name__}{': ' + first if first else ''})"


def read_checkpoint_file(path: str | Path, *, t: int | None = None, world: int | None = None,
                         rank: int | None = None) -> dict[str, Any]:
    """One checkpoint file, read with ``weights_only=True`` (memory-mapped: tensors are paged in on use) and
    checked: a plain dict with the header and every component of :data:`COMPONENTS` (and the given ``t``,
    ``world`` and ``rank``). Raises :class:`UnusableCheckpoint`, one line naming the file, otherwise."""
    path = Path(path)
    try:
        record = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        if not isinstance(record, dict):
            raise UnusableCheckpoint(f"it holds a {type(record).__name__}, not a checkpoint's dictionary")
        if record.get("format") != FORMAT or record.get("version") != VERSION:
            raise UnusableCheckpoint(f"it is not a {FORMAT} of version {VERSION} (format {record.get('format')!r}, "
                                     f"version {record.get('version')!r})")
        missing = [k for k in ("t", "world", "rank", *COMPONENTS) if k not in record]
        if missing:
            raise UnusableCheckpoint(f"it lacks {', '.join(missing)}")
        for key, want in (("t", t), ("world", world), ("rank", rank)):
            if type(record[key]) is not int or (want is not None and record[key] != want):
                raise UnusableCheckpoint(f"its {key} is {record[key]!r}, expected {want}")
        for key in COMPONENTS:
            if not isinstance(record[key], dict):
                raise UnusableCheckpoint(f"its {key} is a {type(record[key]).__name__}, not a dictionary")
        try:
            _check_plain(record, "the file")
        except ValueError as exc:
            raise UnusableCheckpoint(str(exc)) from None
    except Exception as exc:  # whatever the file holds, one line naming it
        raise UnusableCheckpoint(f"checkpoint file {path} cannot be used: {_why(exc)}") from None
    return record


@dataclass(frozen=True)
class CheckpointFound:
    """The checkpoint a resumed run starts from."""

    t: int
    path: Path
    world: int


def find_checkpoint(run_dir: str | Path, *, warn: bool = True, at: int | None = None) -> CheckpointFound:
    """The newest complete checkpoint of ``run_dir`` whose every file reads back (or the one of iteration ``at``).

    Every process that resumes makes the same choice from the same files, so no agreement is needed. A file that
    does not read back is named in a one-line warning (``warn``) and the previous checkpoint is tried. Raises
    ProxGTValueError (one line) when no usable checkpoint remains.
    """
    root = Path(run_dir) / CHECKPOINT_DIR
    candidates = [c for c in complete_checkpoints(run_dir) if at is None or c[0] == at]
    if not candidates:
        if at is not None:
            raise ProxGTValueError(f"the checkpoint at iteration {at} under {root} is gone")
        raise ProxGTValueError(
            f"no complete checkpoint under {root} "
            "(was the run started with --checkpoint-every N and did it reach iteration N?)"
        )
    bad: list[tuple[int, str]] = []
    for t, d, w in candidates:
        try:
            for r in range(w):
                read_checkpoint_file(d / f"rank{r}.pt", t=t, world=w, rank=r)
        except UnusableCheckpoint as exc:
            bad.append((t, str(exc)))
            continue
        if warn:  # only once a usable one is found: otherwise the error below says it all, in one line
            for t_bad, why in bad:
                older = next(c[0] for c in candidates if c[0] < t_bad)
                warnings.warn(f"{why}; falling back to the checkpoint at iteration {older}", stacklevel=2)
        return CheckpointFound(t, d, w)
    raise ProxGTValueError(f"no usable checkpoint under {root}: {bad[0][1]}" +
                           (f" (and {len(bad) - 1} older one(s) cannot be used either)" if len(bad) > 1 else ""))


def load_checkpoint(run_dir: str | Path, rank: int = 0, world: int | None = None, *, at: int | None = None,
                    warn: bool = True) -> dict[str, Any]:
    """``rank``'s file of the checkpoint :func:`find_checkpoint` picks (or of iteration ``at``).

    Raises ProxGTValueError when there is none, or when it was written by another number of processes.
    """
    found = find_checkpoint(run_dir, warn=warn, at=at)
    if world is not None and found.world != world:
        raise ProxGTValueError(
            f"the checkpoint at iteration {found.t} in {run_dir} was written by {found.world} process(es); "
            f"resume it with the same number (got {world})"
        )
    return read_checkpoint_file(found.path / f"rank{rank}.pt", t=found.t, world=found.world, rank=rank)


def checkpoint_settings(run_dir: str | Path, *, warn: bool = True) -> tuple[RunConfig, int, int]:
    """The run settings stored in the checkpoint :func:`find_checkpoint` picks, its world size and iteration."""
    found = find_checkpoint(run_dir, warn=warn)
    record = read_checkpoint_file(found.path / "rank0.pt", t=found.t, world=found.world, rank=0)
    try:
        cfg = RunConfig.from_dict(record["config"], source=f"checkpoint {found.path / 'rank0.pt'}")
    except (TypeError, ValueError) as exc:
        raise ProxGTValueError(f"checkpoint file {found.path / 'rank0.pt'} cannot be used: its settings do not "
                               f"read back ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    return cfg, found.world, found.t


# ----------------------------------------------------------------------------- writing
class Checkpointer:
    """Writes this process's checkpoint file every ``every`` iterations (and when asked at the end).

    Args:
        run_dir: the run folder (checkpoints go to ``run_dir/checkpoint``).
        rank, world: this process and the number of processes.
        every: interval in iterations (0 disables).
        private: write each file with mode 0600: it holds this process's secret noise generators
            (``dp_secure_noise``; docs/security.md).

    Only files older than the :data:`KEEP` newest complete checkpoints are deleted, so no barrier is needed.
    """

    def __init__(
        self,
        run_dir: str | Path,
        rank: int,
        world: int,
        every: int,
        *,
        private: bool = False,
    ):
        self.root = Path(run_dir) / CHECKPOINT_DIR
        self.private = bool(private)
        self.rank, self.world, self.every = int(rank), int(world), int(every)
        self.saved: list[int] = []

    def due(self, t: int) -> bool:
        return self.every > 0 and t > 0 and t % self.every == 0

    def save(self, t: int, components: dict[str, dict[str, Any]]) -> None:
        """Write ``{component: state_dict}`` (the keys of :data:`COMPONENTS`) as this process's file of ``t``."""
        record = {"format": FORMAT, "version": VERSION, "t": int(t), "world": self.world, "rank": self.rank,
                  **components}
        missing = [k for k in COMPONENTS if k not in components]
        if missing:
            raise ValueError(f"a checkpoint needs the components {', '.join(missing)}")
        _check_plain(record, "checkpoint")  # a non-plain value would make the file unreadable with weights_only
        d = self.root / f"iter{t:09d}"
        d.mkdir(parents=True, exist_ok=True)
        atomic_write_with(d / f"rank{self.rank}.pt", lambda fh: torch.save(record, fh), private=self.private)
        if self.rank == 0:
            marker = d / f"world{self.world}"
            if not marker.exists():
                atomic_write_bytes(marker, b"")
        # files older than the KEEP newest complete checkpoints will not be used again
        complete = complete_checkpoints(self.root.parent)
        t_keep = complete[KEEP - 1][0] if len(complete) >= KEEP else -1
        for t_old, d_old in _iter_dirs(self.root):
            if t_old < t_keep:
                try:
                    os.unlink(d_old / f"rank{self.rank}.pt")
                except FileNotFoundError:
                    pass
                if self.rank == 0:
                    # the marker goes last, with the folder, once no rank file is left in it
                    if not any(d_old.glob("rank*.pt")):
                        shutil.rmtree(d_old, ignore_errors=True)
        self.saved.append(int(t))


def remove_partial_checkpoints(run_dir: str | Path) -> None:
    """Remove every checkpoint folder but the :data:`KEEP` newest complete ones (call when every process has
    finished: a finished run then leaves no incomplete checkpoint behind)."""
    keep = {t for t, _, _ in complete_checkpoints(run_dir)[:KEEP]}
    for t, d in _iter_dirs(Path(run_dir) / CHECKPOINT_DIR):
        if t not in keep:
            shutil.rmtree(d, ignore_errors=True)
