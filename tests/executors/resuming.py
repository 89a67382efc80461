"""Helper of the checkpoint tests: stop a run right after a checkpoint, resume it, and return both runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from proxgt.executors.checkpoint import Checkpointer, latest_checkpoint
from proxgt.executors.simulation import run_simulation
from proxgt.training import History

__all__ = ["stopped_and_resumed"]


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
