"""Replaying a site runtime's recorded link trace in the simulator (``link_trace``, ``proxgt run --link-trace``).

``proxgt site`` writes ``link_trace.csv`` for its incoming links: ``round,src,dst,status`` with the global gossip
round, the global node ids of the sender and the receiver, and ``late`` (the message missed its round and was
used in the next round of its key) or ``lost`` (never used; a later running sum made its mass good). Messages on
time are not listed. The union of the sites' files is the run's trace; :class:`TraceLoss` turns it into the
loss pattern of :class:`~proxgt.mixing.running_sums.RunningSumMixer`, which then reproduces the sites' iterates.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from proxgt.errors import ProxGTValueError

__all__ = ["TraceLoss", "read_link_trace"]

_STATUS = ("late", "lost")


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        found = sorted(path.rglob("link_trace.csv"))
        if not found:
            raise ProxGTValueError(f"link_trace {path}: the folder holds no link_trace.csv (proxgt site writes one "
                                   "into each site's run folder)")
        return found
    return [path]


def read_link_trace(path: str | Path) -> list[tuple[int, int, int, str]]:
    """The rows ``(round, src, dst, status)`` of a trace file, or of every ``link_trace.csv`` under a folder;
    one-line errors for anything else."""
    rows: dict[tuple[int, int, int], str] = {}
    for f in _files(Path(path)):
        try:
            with f.open(newline="") as fh:
                reader = csv.reader(fh)
                header = next(reader, None)
                if header != ["round", "src", "dst", "status"]:
                    raise ProxGTValueError(f"link_trace {f}: expected the header round,src,dst,status (got "
                                           f"{','.join(header or [])!r})")
                for k, rec in enumerate(reader, start=2):
                    try:
                        r, s, d, status = int(rec[0]), int(rec[1]), int(rec[2]), rec[3]
                    except (ValueError, IndexError):
                        raise ProxGTValueError(f"link_trace {f}, line {k}: expected ROUND,SRC,DST,STATUS "
                                               f"(got {','.join(rec)!r})") from None
                    if status not in _STATUS or r < 0 or s < 0 or d < 0 or len(rec) != 4:
                        raise ProxGTValueError(f"link_trace {f}, line {k}: a round and node ids >= 0 and a status "
                                               f"late or lost (got {','.join(rec)!r})")
                    if rows.setdefault((r, s, d), status) != status:
                        raise ProxGTValueError(f"link_trace {f}, line {k}: round {r}'s message {s} -> {d} is "
                                               "listed as both late and lost")
        except (OSError, UnicodeDecodeError) as exc:
            raise ProxGTValueError(f"link_trace {f}: cannot read ({exc})") from None
    return [(r, s, d, st) for (r, s, d), st in sorted(rows.items())]


class TraceLoss:
    """The loss pattern of a recorded trace: :meth:`lost` and :meth:`late` give bool (2, E) masks per global
    round, row 0 the messages i -> j of each link (i, j) of ``edges``, row 1 j -> i."""

    def __init__(self, path: str | Path, edges: np.ndarray):
        e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
        index = {(int(i), int(j)): (0, k) for k, (i, j) in enumerate(e)}
        index.update({(int(j), int(i)): (1, k) for k, (i, j) in enumerate(e)})
        self.n_links = len(e)
        self._rounds: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for r, s, d, status in read_link_trace(path):
            where = index.get((s, d))
            if where is None:
                raise ProxGTValueError(f"link_trace {path}: round {r} lists a message {s} -> {d}, but this run's graph "
                                       f"has no link between nodes {s} and {d} (is it the pilot's config?)")
            lost, late = self._rounds.setdefault(r, (np.zeros((2, self.n_links), dtype=bool),
                                                      np.zeros((2, self.n_links), dtype=bool)))
            (lost if status == "lost" else late)[where] = True

    def _masks(self, r: int) -> tuple[np.ndarray, np.ndarray]:
        none = np.zeros((2, self.n_links), dtype=bool)
        return self._rounds.get(int(r), (none, none))

    def lost(self, r: int) -> np.ndarray:
        return self._masks(r)[0]

    def late(self, r: int) -> np.ndarray:
        return self._masks(r)[1]
