"""The cells of a suite and the suite itself: plain records, and the folder names cells get."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proxgt._validation import ProxGTValueError

__all__ = ["Cell", "Suite", "SuiteResult", "cell_slug"]

_SUITE_KEYS = {"name", "out", "target", "metric", "jobs", "group_by", "cost", "description"}
_TOP_KEYS = {"suite", "base", "grid", "cell", "tune"}
_SHORT = {"nodes": "n", "seed": "seed", "rounds": "K", "batch": "b"}
_GRAPH_KEYS = {"topology", "topology_p", "topology_radius", "edge_file", "weights", "mixing", "rounds", "mix_target"}
_PLAIN = {"algorithm", "topology", "mixing", "data", "problem", "split", "order", "weights"}


@dataclass
class Cell:
    index: int
    name: str
    series: str
    axes: dict[str, Any]
    config: dict[str, Any]
    tuned: dict[str, Any] | None = None  # the values a [tune] table chose for this cell's series
    untuned: dict[str, Any] | None = field(default=None, repr=False)  # the config before they were set

    def to_json(self) -> dict[str, Any]:
        out = {"index": self.index, "name": self.name, "series": self.series, "axes": self.axes,
               "config": self.config}
        if self.tuned is not None:
            out["tuned"] = self.tuned
        return out


@dataclass
class Suite:
    name: str
    out: Path
    target: float
    metric: str
    jobs: int
    group_by: str | None
    cost: dict[str, float]
    cells: list[Cell]
    source: str = ""
    description: str = ""
    tune: Any = None  # proxgt.suites.tuning.Tune or None

    def folder(self, cell: Cell) -> Path:
        return self.out / "runs" / cell.name

    def pilot_folder(self, pilot: Cell) -> Path:
        return self.out / "tune" / pilot.name


@dataclass
class SuiteResult:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    diverged: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    pilots_ran: list[str] = field(default_factory=list)
    pilots_skipped: list[str] = field(default_factory=list)
    #: cells whose run a finished pilot with the same settings already was (copied, not rerun)
    reused: list[str] = field(default_factory=list)


def _err(src: str, msg: str) -> ProxGTValueError:
    return ProxGTValueError(f"{src}: {msg}")


def cell_slug(key: str, value: Any) -> str:
    text = str(value) if key in _PLAIN else f"{_SHORT.get(key, key)}{value}"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


