"""What a run returns (:class:`History`) and the summary written to ``summary.json``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from proxgt import __version__

__all__ = ["History", "summarize"]


@dataclass
class History:
    """The logged rows, the final iterates (n x d; a distributed rank other than 0 holds its own rows), the
    resolved config (flat, with a ``meta`` table) and the summary."""

    columns: list[str]
    rows: list[dict[str, float]]
    x: torch.Tensor
    config: dict[str, Any]
    summary: dict[str, Any]

    @property
    def x_bar(self) -> torch.Tensor:
        return self.x.mean(dim=0)

    def column(self, name: str) -> list[float]:
        if name not in self.columns:
            raise KeyError(f"no column {name!r}; columns: {', '.join(self.columns)}")
        return [r[name] for r in self.rows]

    def first_reaching(self, metric: str, target: float) -> dict[str, float] | None:
        """The first logged row with ``metric <= target``, or None (a first dip: see :meth:`reaching`)."""
        for r in self.rows:
            v = r.get(metric)
            if v is not None and v <= target:
                return r
        return None

    def reaching(self, metric: str, target: float) -> dict[str, float] | None:
        """The first logged row from which ``metric`` stays ``<= target`` to the end of the run, or None: the
        robust "reached the target" of this library's tables (a noisy curve's first dip does not count)."""
        found = None
        for r in self.rows:
            v = r.get(metric)
            ok = v is not None and v <= target  # NaN counts as above
            if ok and found is None:
                found = r
            elif not ok:
                found = None
        return found


def summarize(rows: list[dict[str, float]], spec: Any, status: str = "ok", message: str = "") -> dict[str, Any]:
    """The summary of a run (``spec`` is its :class:`~proxgt.training.build.RunSpec`)."""
    last = rows[-1] if rows else {}
    best = min((r["grad_mapping_sq"] for r in rows), default=math.nan)
    # a differentially private run: the final per-node epsilon at dp_delta (the last row is the last iteration)
    privacy = {"epsilon": last["epsilon"], "dp_delta": spec.privacy.delta, "dp_noise": spec.privacy.noise,
               "dp_clip": spec.privacy.clip} if getattr(spec, "privacy", None) is not None and "epsilon" in last \
        else {}
    return {
        "status": status,
        "message": message,
        "algorithm": spec.settings.algorithm,
        "iters": int(last.get("iter", 0)),
        "step": spec.step,
        "rounds": spec.rounds,
        "lambda": spec.topology.lam,
        "final": last,
        "best_grad_mapping_sq": best,
        "version": __version__,
        **privacy,
    }
