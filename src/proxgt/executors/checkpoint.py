"""Checkpoints shared by both executors: every N iterations, atomically, resumable after a kill -9.

Layout inside the run folder::

    checkpoint/iter000000040/rank0.pt     one file per process (the simulation is "rank 0 of 1")
    checkpoint/iter000000040/rank1.pt
    ...

Each file is written with write-then-rename (:func:`proxgt._io.atomic_write_bytes`), so it is either absent or
complete. A checkpoint *t* is usable when all ``world`` files of ``iter<t>`` exist; resuming picks the largest
usable *t*. After writing, a process deletes only its own files older than the newest *complete* checkpoint,
so no barrier is needed and, at any moment of a kill, at least one usable checkpoint remains once the first
one is complete.

A file holds: the algorithm state (local rows, on the CPU), the oracle state (per-node generators and IFO
counts), the communication counter, the executor's own counters, every metrics row logged so far, the wall
time offset and the (unresolved) run config, so that the resumed run ends with exactly the metrics an
uninterrupted run would have written (all columns except ``wall_s``).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from proxgt._io import atomic_write_bytes, atomic_write_with
from proxgt._state import map_state
from proxgt.errors import ProxGTValueError
from proxgt.settings import RunConfig
from proxgt.training.folder import CHECKPOINT_DIR

__all__ = ["Checkpointer", "latest_checkpoint", "load_checkpoint", "checkpoint_settings", "state_to",
           "remove_partial_checkpoints"]

_ITER_RE = re.compile(r"^iter(\d{9})$")


def state_to(state: Any, device: str | torch.device) -> Any:
    """A copy of a NamedTuple state with every tensor (nested states too) moved to ``device``."""
    return map_state(lambda v: v.detach().to(device), state)


def _iter_dirs(root: Path) -> list[tuple[int, Path]]:
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        m = _ITER_RE.match(p.name)
        if m and p.is_dir():
            out.append((int(m.group(1)), p))
    return sorted(out)


def latest_checkpoint(run_dir: str | Path) -> tuple[int, Path, int] | None:
    """(iteration, folder, world size) of the newest complete checkpoint under ``run_dir``, or None.

    Complete means ``rank0.pt .. rank{w-1}.pt`` all exist, w being the world size recorded in the file names
    (the largest rank present + 1 is not enough: a missing high rank would go unnoticed, so the world size is
    also stored in a ``world<w>`` marker written with rank 0's file).
    """
    for t, d in reversed(_iter_dirs(Path(run_dir) / CHECKPOINT_DIR)):
        worlds = [int(p.name[5:]) for p in d.glob("world*") if p.name[5:].isdigit()]
        if len(worlds) != 1:
            continue
        w = worlds[0]
        if all((d / f"rank{r}.pt").is_file() for r in range(w)):
            return t, d, w
    return None


def load_checkpoint(run_dir: str | Path, rank: int = 0, world: int | None = None) -> dict[str, Any]:
    """Load ``rank``'s part of the newest complete checkpoint of ``run_dir``.

    Raises ProxGTValueError when there is none, or when it was written by another number of processes.
    """
    found = latest_checkpoint(run_dir)
    if found is None:
        raise ProxGTValueError(
            f"no complete checkpoint under {Path(run_dir) / CHECKPOINT_DIR} "
            "(was the run started with --checkpoint-every N and did it reach iteration N?)"
        )
    t, d, w = found
    if world is not None and w != world:
        raise ProxGTValueError(
            f"the checkpoint at iteration {t} in {run_dir} was written by {w} process(es); "
            f"resume it with the same number (got {world})"
        )
    with open(d / f"rank{rank}.pt", "rb") as fh:
        payload = torch.load(fh, map_location="cpu", weights_only=False)
    if int(payload.get("t", -1)) != t:
        raise ProxGTValueError(f"checkpoint file {d / f'rank{rank}.pt'} is inconsistent (iteration mismatch)")
    return payload


def checkpoint_settings(run_dir: str | Path) -> tuple[RunConfig, int, int]:
    """The run settings stored in the newest complete checkpoint, its world size and its iteration."""
    payload = load_checkpoint(run_dir, 0)
    return RunConfig.from_dict(payload["cfg"], source="checkpoint"), int(payload["world"]), int(payload["t"])


class Checkpointer:
    """Writes this process's checkpoint file every ``every`` iterations.

    Args:
        run_dir: the run folder (checkpoints go to ``run_dir/checkpoint``).
        rank, world: this process and the number of processes.
        every: interval in iterations (0 disables).

    Only files older than the newest complete checkpoint are deleted, so no barrier is needed.
    """

    def __init__(
        self,
        run_dir: str | Path,
        rank: int,
        world: int,
        every: int,
    ):
        self.root = Path(run_dir) / CHECKPOINT_DIR
        self.rank, self.world, self.every = int(rank), int(world), int(every)
        self.saved: list[int] = []

    def due(self, t: int) -> bool:
        return self.every > 0 and t > 0 and t % self.every == 0

    def save(self, t: int, payload: dict[str, Any]) -> None:
        d = self.root / f"iter{t:09d}"
        d.mkdir(parents=True, exist_ok=True)
        record = {**payload, "t": int(t), "world": self.world, "rank": self.rank}
        atomic_write_with(d / f"rank{self.rank}.pt", lambda fh: torch.save(record, fh))
        if self.rank == 0:
            marker = d / f"world{self.world}"
            if not marker.exists():
                atomic_write_bytes(marker, b"")
        # files older than the newest complete checkpoint can never be used again
        complete = latest_checkpoint(self.root.parent)
        t_keep = complete[0] if complete is not None else -1
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
    """Remove every checkpoint folder but the newest complete one (call when every process has finished:
    a finished run then leaves no incomplete checkpoint behind)."""
    complete = latest_checkpoint(run_dir)
    for t, d in _iter_dirs(Path(run_dir) / CHECKPOINT_DIR):
        if complete is None or t != complete[0]:
            shutil.rmtree(d, ignore_errors=True)
