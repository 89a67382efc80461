"""The simulator's virtual clock: when each node would be done, given compute speeds and link delays.

Every node i has a clock c_i (seconds of virtual time, 0 at the start). Two things advance it:

* **compute**: the component gradients node i evaluated since its clock was last charged (the oracle's counts,
  :attr:`proxgt.problems.oracle.GradientOracle.ifo`) times its seconds per gradient s_i. s_i is drawn from the
  node's ``node_speed`` distribution once per compute phase (the work between two gossip rounds), so ``exp``
  or ``lognormal`` make some phases slow, and a CSV file can give each node its own distribution;
* **a gossip round**: every node sends one message to each neighbour whose link is up. The message from j
  reaches i at ``c_j + latency_ji + bytes / bandwidth_ji`` (latency and bandwidth drawn per message from the
  link's distributions), and i finishes the round when it has every message it waits for::

      c_i <- max(c_i, max_{j in N_r(i)} (c_j + latency_ji + bytes / bandwidth_ji))

  with N_r(i) i's neighbours over the links up in round r. A node waits for its neighbours only, so a slow
  node holds its neighbours back in the next round and nodes k hops away k rounds later (no global barrier).

**Round deadlines** (``round_deadline D``): node i waits for its neighbours' messages at most D seconds past
its own ready time c_i. A message that arrives later is *late*: i ends the round at ``c_i + D`` without it,
and the mixer (:mod:`proxgt.mixing.running_sums`) treats it as a message that is made good by the next one.

The virtual time of a logged state is ``max_i c_i`` after every node's pending compute is charged: the moment
the last node holds its part of the state. Each link's bandwidth is its own (messages to several neighbours
do not share an uplink); unset settings cost nothing (speed 0, latency 0, infinite bandwidth).

Every draw is a pure function of ``(seed, what, round)`` (``numpy.random.SeedSequence``), so the same seed
gives the same times, a resumed run continues them exactly, and there is nothing random to checkpoint. Nothing
sleeps: the clock is arithmetic on per-node arrays, advanced by the communicator in each round.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from proxgt.delays import Delay, parse_delay_or_file
from proxgt.errors import ProxGTValueError
from proxgt.mixing.traces import Traces, read_traces
from proxgt.settings.table import BY_NAME

__all__ = ["CLOCK_SETTINGS", "ClockProfile", "CountsGradients", "DelayTable", "VirtualClock", "canonical_edges",
           "clock_profile", "read_link_file", "read_node_file", "refuse_on_real_time"]

#: the settings that drive the clock (a run that sets any of them logs sim_time_s)
CLOCK_SETTINGS = ("node_speed", "link_latency", "link_bandwidth", "availability", "link_outages")

_TAG_SPEED, _TAG_LATENCY, _TAG_BANDWIDTH = 0x5EED, 0x1A7E, 0xBA4D
_KIND_CODE = {"none": 0, "const": 0, "exp": 1, "lognormal": 2}


def canonical_edges(edges: Any) -> np.ndarray:
    """(E, 2) int64 links ``(i, j)`` with i < j, each once, sorted: the order in which per-link values are kept."""
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    e = np.sort(e[e[:, 0] != e[:, 1]], axis=1)
    return np.unique(e, axis=0) if e.size else e


def _rng(*words: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(w) for w in words]))


@dataclass(frozen=True)
class DelayTable:
    """One :class:`~proxgt.delays.Delay` per entity (node or link), as arrays for vectorized draws.

    Attributes:
        kind: (N,) 0 constant (``none``, ``const``), 1 exponential, 2 lognormal.
        a: (N,) the constant, the mean, or MU.
        b: (N,) SIGMA of a lognormal (0 elsewhere).
    """

    kind: np.ndarray
    a: np.ndarray
    b: np.ndarray

    @classmethod
    def of(cls, delays: Sequence[Delay]) -> DelayTable:
        kind = np.array([_KIND_CODE[d.kind] for d in delays], dtype=np.int8)
        a = np.array([d.params[0] if d.params else 0.0 for d in delays], dtype=np.float64)
        b = np.array([d.params[1] if d.kind == "lognormal" else 0.0 for d in delays], dtype=np.float64)
        return cls(kind, a, b)

    @property
    def random(self) -> bool:
        return bool(self.kind.any())

    def draw(self, rng: np.random.Generator | None, copies: int = 1) -> np.ndarray:
        """(copies, N) draws: each entity's own distribution, independent across entities and copies. The
        standard variates are drawn for every entity, so an entity's draws do not depend on the others' kinds."""
        out = np.broadcast_to(self.a, (copies, self.a.size)).copy()
        if rng is None or not self.random:
            return out
        exp, logn = self.kind == 1, self.kind == 2
        if exp.any():
            e = rng.standard_exponential((copies, self.a.size))
            out[:, exp] = self.a[exp] * e[:, exp]
        if logn.any():
            z = rng.standard_normal((copies, self.a.size))
            out[:, logn] = np.exp(self.a[logn] + self.b[logn] * z[:, logn])
        return out


@dataclass(frozen=True)
class ClockProfile:
    """The fixed part of a run's clock, built once by the run builder: the graph's links and the distributions
    of compute and link times.

    Attributes:
        n: nodes.
        edges: (E, 2) int64 links ``(i, j)``, i < j, in canonical order (every link a round may use).
        speed: per node, seconds per component gradient.
        latency: per link, seconds per message besides its size.
        bandwidth: per link, bytes per second (``inf``: size costs nothing).
        seed: the run seed.
        deadline: seconds a node waits for a round's messages past its own ready time (None: for all of them).
        traces: when nodes are off and links down (:mod:`proxgt.mixing.traces`), or None.
    """

    n: int
    edges: np.ndarray
    speed: DelayTable
    latency: DelayTable
    bandwidth: DelayTable
    seed: int = 0
    deadline: float | None = None
    traces: Traces | None = None

    def __post_init__(self) -> None:
        e = self.edges
        object.__setattr__(self, "_keys", e[:, 0] * self.n + e[:, 1])

    def link_index(self, edges: np.ndarray) -> np.ndarray:
        """Positions in :attr:`edges` of the links ``edges`` ((E', 2), i < j)."""
        keys: np.ndarray = edges[:, 0] * self.n + edges[:, 1]
        idx = np.searchsorted(self._keys, keys)  # type: ignore[attr-defined]
        return idx

    def speeds(self, r: int) -> np.ndarray:
        """(n,) seconds per gradient of the compute phase that ends at round ``r``."""
        rng = _rng(self.seed, _TAG_SPEED, r) if self.speed.random else None
        speeds: np.ndarray = self.speed.draw(rng)[0]
        return speeds

    def link_times(self, r: int, nbytes: int) -> np.ndarray:
        """(2, E) seconds a message of ``nbytes`` takes in round ``r``: row 0 from i to j, row 1 from j to i."""
        lat = self.latency.draw(_rng(self.seed, _TAG_LATENCY, r) if self.latency.random else None, 2)
        bw = self.bandwidth.draw(_rng(self.seed, _TAG_BANDWIDTH, r) if self.bandwidth.random else None, 2)
        return lat + nbytes / bw

    def computed(self, start: np.ndarray, seconds: np.ndarray) -> np.ndarray:
        """(n,) when each node, ready at ``start``, has computed for ``seconds`` (paused while it is off)."""
        if self.traces is None:
            done: np.ndarray = start + seconds
            return done
        return self.traces.compute_ends(start, seconds)

    def arrival(self, i: int, j: int, link: int, sent: float, seconds: float) -> float:
        """When j receives what i was ready to send at ``sent`` over ``link`` (``seconds`` on the wire): after the
        traces' waits for i, the link and j (:mod:`proxgt.mixing.traces`)."""
        if self.traces is None:
            return sent + seconds
        return self.traces.arrival(i, j, link, sent, seconds)


class CountsGradients(Protocol):
    """What the clock reads compute from: cumulative component gradients per node (the gradient oracle)."""

    ifo: np.ndarray


class VirtualClock:
    """Per-node virtual clocks of a simulated run (module docstring), advanced by the communicator.

    Example: two nodes, 1 s per gradient on node 0 and 3 s on node 1, a 0.5 s link::

        >>> e = np.array([[0, 1]])
        >>> p = ClockProfile(2, e, DelayTable.of([Delay("const", (1.0,)), Delay("const", (3.0,))]),
        ...                  DelayTable.of([Delay("const", (0.5,))]), DelayTable.of([Delay("const", (1e9,))]))
        >>> clock = VirtualClock(p)
        >>> class Work:
        ...     ifo = np.array([2, 2])
        >>> clock.follow(Work())
        >>> clock.exchange(0)  # computes end at 2 s and 6 s; node 0 then waits for node 1's message
        >>> clock.time.tolist()
        [6.5, 6.0]
    """

    def __init__(self, profile: ClockProfile):
        self.profile = profile
        self.time = np.zeros(profile.n)
        self.rounds = 0
        #: bool (2, E) messages of the last round that missed their receiver's deadline (row 0: i -> j of each
        #: link (i, j), row 1: j -> i); all False without a deadline
        self.late = np.zeros((2, len(profile.edges)), dtype=bool)
        self._charged = np.zeros(profile.n, dtype=np.int64)
        self._work: CountsGradients | None = None

    def follow(self, work: CountsGradients) -> None:
        """Charge compute from ``work``'s gradient counts (every node's, in node order)."""
        if np.shape(work.ifo) != (self.profile.n,):
            raise ProxGTValueError(f"the virtual clock needs the gradient counts of all {self.profile.n} nodes; "
                                   f"got {np.shape(work.ifo)}")
        self._work = work

    def _charge(self) -> None:
        if self._work is None:
            return
        ifo = np.asarray(self._work.ifo, dtype=np.int64)
        delta = ifo - self._charged
        if delta.any():
            self.time = self.profile.computed(self.time, delta * self.profile.speeds(self.rounds))
            self._charged = ifo.copy()

    def exchange(self, nbytes: int, edges: np.ndarray | None = None) -> None:
        """One gossip round of messages of ``nbytes`` over ``edges`` ((E', 2), i < j, the links up; None: all
        links of the profile)."""
        self._charge()
        p = self.profile
        times = p.link_times(self.rounds, int(nbytes))
        idx: slice | np.ndarray
        if edges is None:
            e, idx = p.edges, slice(None)
        else:
            e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
            idx = p.link_index(e)
        self.late = np.zeros((2, len(p.edges)), dtype=bool)
        if len(e):
            i, j = e[:, 0], e[:, 1]
            to_j, to_i = self.time[i] + times[0, idx], self.time[j] + times[1, idx]  # arrivals
            if p.traces is not None:  # waits for an off sender or receiver and a link that is down
                ks = np.arange(len(p.edges))[idx]
                to_j = np.array([p.arrival(a, b, k, self.time[a], t) for a, b, k, t in
                                 zip(i.tolist(), j.tolist(), ks.tolist(), times[0, idx].tolist(), strict=True)])
                to_i = np.array([p.arrival(b, a, k, self.time[b], t) for a, b, k, t in
                                 zip(i.tolist(), j.tolist(), ks.tolist(), times[1, idx].tolist(), strict=True)])
            if p.deadline is not None:  # a late message is not waited for beyond the receiver's deadline
                due_j, due_i = self.time[j] + p.deadline, self.time[i] + p.deadline
                late_j, late_i = to_j > due_j, to_i > due_i
                to_j, to_i = np.where(late_j, due_j, to_j), np.where(late_i, due_i, to_i)
                self.late[0, idx], self.late[1, idx] = late_j, late_i
            new = self.time.copy()
            np.maximum.at(new, j, to_j)
            np.maximum.at(new, i, to_i)
            self.time = new
        self.rounds += 1

    def now(self) -> float:
        """Virtual seconds at which the current state exists: every node's compute charged, the latest node."""
        self._charge()
        return float(self.time.max()) if self.time.size else 0.0

    def state_dict(self) -> dict[str, Any]:
        return {"time": self.time.tolist(), "charged": self._charged.tolist(), "rounds": self.rounds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.time = np.asarray(state["time"], dtype=np.float64).copy()
        self._charged = np.asarray(state["charged"], dtype=np.int64).copy()
        self.rounds = int(state["rounds"])


# ----------------------------------------------------------------------------------- building from settings
def _setting(name: str) -> tuple[str, str]:
    """(name, what it accepts) of a clock setting, as the settings table words it."""
    return name, BY_NAME[name].constraint.describe()


def _rows(path: str, name: str) -> list[tuple[int, str]]:
    """(line number, text) of the data rows of a CSV file: blank lines and ``#`` comments skipped."""
    try:
        text = Path(path).expanduser().read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ProxGTValueError(f"cannot read the {name} file {path}: {exc}") from None
    out = []
    for k, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if line:
            out.append((k, line))
    return out


def _cell(text: str, where: str, name: str, expected: str, positive: bool) -> Delay:
    try:
        d = parse_delay_or_file(text.strip(), name, expected, positive=positive)
    except ProxGTValueError:
        raise ProxGTValueError(f"{where}: the value {text.strip()!r} must be {expected.rpartition(' or ')[0]}") \
            from None
    if not isinstance(d, Delay):
        raise ProxGTValueError(f"{where}: a value must be a distribution, not a file ({text.strip()!r})")
    return d


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def read_node_file(path: str, n: int, name: str = "node_speed", expected: str = "a distribution") -> list[Delay]:
    """One :class:`Delay` per node from a CSV file of ``NODE,SPEC`` rows (SPEC a number or a distribution; a
    header row is allowed), every node 0..n-1 exactly once."""
    values: dict[int, Delay] = {}
    for pos, (line, text) in enumerate(_rows(path, name)):
        node, sep, spec = text.partition(",")
        where = f"{name} file {path} line {line}"
        if not sep or not _is_int(node.strip()):
            if pos == 0:  # a header
                continue
            raise ProxGTValueError(f"{where}: expected NODE,SPEC; got {text!r}")
        i = int(node)
        if i in values:
            raise ProxGTValueError(f"{where}: node {i} is listed twice")
        values[i] = _cell(spec, where, name, expected, positive=False)
    outside = sorted(i for i in values if not 0 <= i < n)
    if outside or len(values) != n:
        shown = f"nodes {', '.join(map(str, outside[:3]))} outside 0..{n - 1}" if outside else f"{len(values)} nodes"
        raise ProxGTValueError(f"the {name} file {path} gives {shown}; the run has {n} nodes (one row NODE,SPEC for "
                               f"each of 0..{n - 1})")
    return [values[i] for i in range(n)]


def read_link_file(path: str, n: int, edges: np.ndarray, name: str, expected: str, *,
                   positive: bool = False) -> list[Delay]:
    """One :class:`Delay` per link of ``edges`` from a CSV file of ``I,J,SPEC`` rows (either orientation; a
    header row is allowed) and at most one default row ``*,*,SPEC`` for the links not listed."""
    index = {(int(i), int(j)): k for k, (i, j) in enumerate(edges.tolist())}
    values: dict[int, Delay] = {}
    default: Delay | None = None
    for pos, (line, text) in enumerate(_rows(path, name)):
        parts = text.split(",", 2)
        where = f"{name} file {path} line {line}"
        if len(parts) == 3 and parts[0].strip() == parts[1].strip() == "*":
            if default is not None:
                raise ProxGTValueError(f"{where}: a second default row *,*,SPEC")
            default = _cell(parts[2], where, name, expected, positive)
            continue
        if len(parts) != 3 or not (_is_int(parts[0].strip()) and _is_int(parts[1].strip())):
            if pos == 0:
                continue
            raise ProxGTValueError(f"{where}: expected I,J,SPEC or *,*,SPEC; got {text!r}")
        i, j = sorted((int(parts[0]), int(parts[1])))
        k = index.get((i, j))
        if k is None:
            raise ProxGTValueError(f"{where}: {i}-{j} is not a link of the graph ({n} nodes, {len(index)} links)")
        if k in values:
            raise ProxGTValueError(f"{where}: link {i}-{j} is listed twice")
        values[k] = _cell(parts[2], where, name, expected, positive)
    missing = [k for k in range(len(index)) if k not in values]
    if missing and default is None:
        i, j = edges[missing[0]].tolist()
        more = f" and {len(missing) - 1} other links" if len(missing) > 1 else ""
        raise ProxGTValueError(f"the {name} file {path} gives no value for link {i}-{j}{more}; add a row I,J,SPEC "
                               "for each link or a default row *,*,SPEC")
    return [values.get(k, default) for k in range(len(index))]  # type: ignore[misc]


def _node_delays(value: Any, n: int) -> DelayTable:
    name, expected = _setting("node_speed")
    if value is None:
        return DelayTable.of([Delay()] * n)
    d = parse_delay_or_file(value, name, expected)
    return DelayTable.of([d] * n if isinstance(d, Delay) else read_node_file(d, n, name, expected))


def _link_delays(value: Any, n: int, edges: np.ndarray, name: str, *, positive: bool, unset: float) -> DelayTable:
    name, expected = _setting(name)
    if value is None:
        E = len(edges)
        return DelayTable(np.zeros(E, dtype=np.int8), np.full(E, unset), np.zeros(E))
    d = parse_delay_or_file(value, name, expected, positive=positive)
    return DelayTable.of([d] * len(edges) if isinstance(d, Delay)
                         else read_link_file(d, n, edges, name, expected, positive=positive))


def clock_profile(cfg: Any, n: int, edges: np.ndarray) -> ClockProfile | None:
    """The run's :class:`ClockProfile` from its settings (``node_speed``, ``link_latency``, ``link_bandwidth``,
    the trace files ``availability`` and ``link_outages``) on a graph of ``n`` nodes and links ``edges``
    ((E, 2)), or None when none of them is set (no clock, no ``sim_time_s`` column). Bad values and files are
    one-line errors."""
    if all(getattr(cfg, name) is None for name in CLOCK_SETTINGS):
        if cfg.round_deadline is not None:
            raise ProxGTValueError("round_deadline (--round-deadline) needs the virtual clock: set node_speed, "
                                   "link_latency or link_bandwidth (--node-speed, --link-latency, --link-bandwidth)")
        return None
    e = canonical_edges(edges)
    return ClockProfile(n, e, _node_delays(cfg.node_speed, n),
                        _link_delays(cfg.link_latency, n, e, "link_latency", positive=False, unset=0.0),
                        _link_delays(cfg.link_bandwidth, n, e, "link_bandwidth", positive=True, unset=math.inf),
                        seed=int(cfg.seed), deadline=cfg.round_deadline,
                        traces=read_traces(cfg.availability, cfg.link_outages, n, e))


def refuse_on_real_time(cfg: Any) -> None:
    """The distributed executor runs on real time and a real network, not on the simulator's clock and loss
    pattern: a clock setting or ``message_loss`` there is a one-line error rather than a silently ignored one."""
    if cfg.round_deadline is not None:
        raise ProxGTValueError("round_deadline (--round-deadline) is a deadline on the simulator's virtual clock "
                               "(proxgt run); leave it unset with proxgt launch")
    if cfg.asynchronous:
        raise ProxGTValueError("asynchronous (--async) runs on the simulator's virtual clock (proxgt run); the "
                               "distributed executor does not run asynchronously yet: leave it off with proxgt launch")
    if float(cfg.message_loss or 0.0) > 0.0:
        raise ProxGTValueError("message_loss (--message-loss) simulates lost messages (proxgt run); the distributed "
                               "executor's messages are real: leave it at 0 with proxgt launch")
    if cfg.link_trace is not None:
        raise ProxGTValueError("link_trace (--link-trace) replays a site runtime's late and lost messages in the "
                               "simulator (proxgt run); the distributed executor's messages are real: leave it unset "
                               "with proxgt launch")
    given = [name for name in CLOCK_SETTINGS if getattr(cfg, name) is not None]
    if given:
        flags = ", ".join(f"{name} (--{name.replace('_', '-')})" for name in given)
        raise ProxGTValueError(f"the clock settings ({flags}) drive the simulator's virtual clock (proxgt run); the "
                               "distributed executor runs on real time: leave them unset with proxgt launch")
