"""Availability and outage traces on the virtual clock: when a node is off and when a link carries nothing.

Two CSV files (``#`` comments and one header row allowed), read when the run knows its graph:

* ``availability`` (``--availability FILE``): rows ``NODE,START_S,END_S``: node NODE is *off* during
  [START_S, END_S) of virtual time. An off node does not compute (a compute phase that reaches an off interval
  pauses and goes on at its end) and does not send (a message it would send leaves when it is back); a message
  to it waits and is delivered when it is back. Its clock, and so a synchronous round, waits for it.
* ``link_outages`` (``--link-outages FILE``): rows ``I,J,START_S,END_S``: the link I-J (either orientation, a
  link of the graph) carries nothing during [START_S, END_S). A message sent on it during an outage leaves when
  the outage ends (it is *delayed*, not lost).

Why delayed rather than lost: a real link under an outage is a transport that queues and retransmits (TCP, a
message queue), so what was sent arrives once the link is back; and both ways of running already turn a delay
into what a loss would be where that is wanted. A synchronous round waits for the delayed message, unless a
``round_deadline`` is set: then the message is *late* and is made good by the next one (trackers by running
sums, :mod:`proxgt.mixing.running_sums`), which is how a lost message is treated too. An asynchronous node never
waits for it (beyond its staleness bound) and mixes with the newest message it holds; the running sums of the
trackers make the delayed mass good when it arrives.

Intervals of one node (or link) may overlap or touch: they are merged. Times are seconds >= 0 with
START_S < END_S; node ids 0..n-1; a link must be one of the graph's. Anything else is a one-line error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from proxgt.errors import ProxGTValueError

__all__ = ["Traces", "read_traces"]

_Intervals = tuple[tuple[float, float], ...]


def _merge(spans: list[tuple[float, float]]) -> _Intervals:
    out: list[tuple[float, float]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return tuple(out)


def _on_after(spans: _Intervals, t: float) -> float:
    """The earliest time >= t outside every interval of ``spans`` (merged, sorted)."""
    for s, e in spans:
        if s <= t < e:
            return e
        if s > t:
            break
    return t


@dataclass(frozen=True)
class Traces:
    """Off intervals per node and outage intervals per link (index into the clock profile's canonical edges)."""

    node_off: tuple[_Intervals, ...]
    link_off: tuple[_Intervals, ...]

    @property
    def any_nodes(self) -> bool:
        return any(self.node_off)

    def node_on(self, i: int, t: float) -> float:
        """The earliest time >= t at which node i is on."""
        return _on_after(self.node_off[i], t)

    def compute_end(self, i: int, start: float, seconds: float) -> float:
        """When node i, ready at ``start``, has computed for ``seconds`` of its on-time."""
        t = self.node_on(i, start)
        left = float(seconds)
        for s, e in self.node_off[i]:
            if e <= t:
                continue
            if t + left <= s:
                break
            left -= s - t
            t = e
        return t + left

    def compute_ends(self, start: np.ndarray, seconds: np.ndarray) -> np.ndarray:
        """:meth:`compute_end` of every node whose ``seconds`` > 0 (others keep ``start``)."""
        out = np.asarray(start, dtype=np.float64).copy()
        for i in np.flatnonzero(np.asarray(seconds) > 0):
            out[i] = self.compute_end(int(i), float(start[i]), float(seconds[i]))
        return out

    def departure(self, i: int, link: int, t: float) -> float:
        """When a message node i is ready to send at ``t`` on ``link`` leaves: i on and the link up."""
        for _ in range(len(self.node_off[i]) + len(self.link_off[link]) + 1):
            moved = _on_after(self.link_off[link], self.node_on(i, t))
            if moved == t:
                break
            t = moved
        return t

    def arrival(self, i: int, j: int, link: int, sent: float, seconds: float) -> float:
        """When node j receives a message that node i was ready to send at ``sent`` and that takes ``seconds`` on
        ``link``: it leaves at :meth:`departure` and is delivered once j is on."""
        return self.node_on(j, self.departure(i, link, sent) + seconds)


def _rows(path: str, name: str) -> list[tuple[int, str]]:
    try:
        text = Path(path).expanduser().read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ProxGTValueError(f"cannot read the {name} file {path}: {exc}") from None
    return [(k, line.split("#", 1)[0].strip()) for k, line in enumerate(text.splitlines(), start=1)
            if line.split("#", 1)[0].strip()]


def _interval(start: str, end: str, where: str) -> tuple[float, float]:
    try:
        s, e = float(start), float(end)
    except ValueError:
        raise ProxGTValueError(f"{where}: START_S and END_S must be numbers; got {start.strip()!r}, "
                               f"{end.strip()!r}") from None
    if not (math.isfinite(s) and math.isfinite(e)) or s < 0 or e <= s:
        raise ProxGTValueError(f"{where}: an interval needs 0 <= START_S < END_S (finite seconds); got {s:g}, {e:g}")
    return s, e


def _int(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


def _read(path: str, name: str, ids: int, columns: str) -> list[tuple[str, list[int], tuple[float, float]]]:
    """(where, ids, interval) of every data row of a trace file of ``columns``; a first row that does not parse
    as ids is a header."""
    out = []
    for pos, (line, text) in enumerate(_rows(path, name)):
        parts = text.split(",")
        where = f"{name} file {path} line {line}"
        keys = [_int(p) for p in parts[:ids]]
        if len(parts) != ids + 2 or any(k is None for k in keys):
            if pos == 0 and len(parts) == ids + 2:
                continue  # a header
            raise ProxGTValueError(f"{where}: expected {columns}; got {text!r}")
        out.append((where, [int(k) for k in keys if k is not None], _interval(parts[ids], parts[ids + 1], where)))
    return out


def read_traces(availability: str | None, link_outages: str | None, n: int, edges: np.ndarray) -> Traces | None:
    """The :class:`Traces` of the files ``availability`` (NODE,START_S,END_S) and ``link_outages``
    (I,J,START_S,END_S) on a graph of ``n`` nodes and canonical ``edges`` ((E, 2), i < j), or None when neither
    is given. Bad rows are one-line errors naming the file and line."""
    if availability is None and link_outages is None:
        return None
    nodes: list[list[tuple[float, float]]] = [[] for _ in range(n)]
    links: list[list[tuple[float, float]]] = [[] for _ in range(len(edges))]
    if availability is not None:
        for where, (i,), span in _read(availability, "availability", 1, "NODE,START_S,END_S"):
            if not 0 <= i < n:
                raise ProxGTValueError(f"{where}: node {i} is outside 0..{n - 1} (the run has {n} nodes)")
            nodes[i].append(span)
    if link_outages is not None:
        index = {(int(a), int(b)): k for k, (a, b) in enumerate(np.asarray(edges).tolist())}
        for where, (i, j), span in _read(link_outages, "link_outages", 2, "I,J,START_S,END_S"):
            k = index.get((min(i, j), max(i, j)))
            if k is None:
                raise ProxGTValueError(f"{where}: {i}-{j} is not a link of the graph ({n} nodes, {len(index)} links)")
            links[k].append(span)
    return Traces(tuple(_merge(s) for s in nodes), tuple(_merge(s) for s in links))
