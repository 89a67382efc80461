"""Helpers of the checkpoint tests: stop a run right after a checkpoint, resume it, and return both runs; craft a
checkpoint file that would run code if it were unpickled."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any

import pytest
import torch

from proxgt.executors.checkpoint import Checkpointer, latest_checkpoint
from proxgt.executors.simulation import run_simulation
from proxgt.training import History

__all__ = ["doctored_checkpoint", "stopped_and_resumed"]


class _Stop(Exception):
    pass


def stopped_and_resumed(cfg: dict[str, Any], folder: Path, monkeypatch: pytest.MonkeyPatch, *, stop_at: int = 20,
                        every: int = 10) -> tuple[History, History]:
    """(the uninterrupted run of ``cfg``, the same run stopped right after its checkpoint at ``stop_at`` and
    resumed from ``folder``)."""
    ref = run_simulation(dict(cfg))
    save = Checkpointer.save

    def save_then_stop(self, t, payload):
        save(self, t, payload)
        if t == stop_at:
            raise _Stop

    monkeypatch.setattr(Checkpointer, "save", save_then_stop)
    with pytest.raises(_Stop):
        run_simulation(dict(cfg, checkpoint_every=every), out=folder)
    monkeypatch.undo()
    assert latest_checkpoint(folder)[0] == stop_at
    return ref, run_simulation(None, resume=folder)


class _Payload:
    """Unpickled, it creates ``path`` (a stand-in for any code a doctored checkpoint could run)."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (builtins.open, (self.path, "w"))


def doctored_checkpoint(path: Path, marker: Path, like: Path) -> None:
    """Write ``path``: the checkpoint file ``like`` with a pickle payload that creates ``marker`` in its oracle
    state (every key and header is right)."""
    record = torch.load(like, weights_only=True)
    record["oracle"]["generators"] = _Payload(marker)
    torch.save(record, path)
