"""What a run returns (:class:`History`) and the summary written to ``summary.json``."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from proxgt import __version__
from proxgt._frames import rows_frame
from proxgt._io import read_metrics_csv
from proxgt.errors import ProxGTValueError
from proxgt.settings import load_config_file

if TYPE_CHECKING:
    import pandas as pd

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

    @classmethod
    def load(cls, path: str | Path) -> History:
        """The History a finished run returned, read back from its run folder: the rows of metrics.csv (iteration,
        round and node counts as int), the final iterates of final.npz (all n rows, in the run's dtype), the
        resolved settings of config.toml (with its ``meta`` table) and summary.json.

        A run that diverged returned no History and left no final iterates: loading it is a one-line error
        (its rows are still there for :func:`proxgt.load_run`).
        """
        p = Path(path)
        if not (p / "summary.json").is_file():
            what = "an unfinished run" if (p / "metrics.csv").is_file() else "no run"
            raise ProxGTValueError(f"{p} holds {what} (no summary.json); a History is loaded from a finished run")
        summary = json.loads((p / "summary.json").read_text())
        if not (p / "final.npz").is_file():
            raise ProxGTValueError(f"{p}: the run ended with status {summary.get('status')!r} and left no final "
                                   "iterates (final.npz); read its rows with proxgt.load_run")
        columns, rows = read_metrics_csv(p / "metrics.csv")
        config = load_config_file(p / "config.toml")
        with np.load(p / "final.npz", allow_pickle=False) as z:
            x = torch.from_numpy(np.asarray(z["x"]))
        dtype = torch.float64 if config.get("dtype") == "float64" else torch.float32
        return cls(columns=columns, rows=rows, x=x.to(dtype), config=config, summary=summary)

    def to_pandas(self) -> pd.DataFrame:
        """The logged rows as a DataFrame (as :func:`proxgt.load_run` reads metrics.csv, without settings
        columns; needs pandas: ``pip install 'proxgt[pandas]'``)."""
        return rows_frame(self.columns, self.rows)

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
               "dp_clip": spec.privacy.clip} if spec.privacy is not None and "epsilon" in last else {}
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
