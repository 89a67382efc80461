"""Detecting and naming a failed process of a distributed run.

A process that sees a peer fail (connection lost, also when posting a message) or stop answering (timeout)
records a *suspicion* (communication op index, peer) in the rendezvous store, then waits a short grace period
for a verdict or for the others' suspicions. The culprit is named, in order of evidence:

1. a verdict already published: by the first process to resolve, or by ``proxgt launch``, which sees the
   worker processes exit and publishes the first one that ended with an error before any verdict existed
   (a worker that detects another's failure always publishes before it exits, so that one failed on its own);
2. a process that failed on its own (an exception) and reported itself;
3. the peer suspected at the earliest op, *ignoring suspicions of a peer that itself recorded a suspicion at
   the same or an earlier op*: that peer was alive and had lost contact with someone else first, so the
   suspicion against it is a cascade (its neighbours see it stop or exit because it detected the real failure;
   the op index alone cannot tell them apart when both are at the same op, e.g. right after a collective);
4. the only process that recorded nothing while every other one did (a failure seen only inside collectives,
   which name no peer); until then the verdict waits, at most ``timeout_s``, since every process still alive
   detects something within that time.

The first verdict is published in the store; a watchdog thread in every process polls it and ends the process
(exit code 1) with a message naming the failed rank, so no process hangs.

With ``on_failure = "continue"`` a lost peer is not the end of the run: :meth:`FaultMonitor.fail` returns a
:class:`PeerLost` at once, and the survivors agree on who left with :meth:`FaultMonitor.agree` (the membership
protocol below; docs/fault-tolerance.md). Keys, under this attempt's prefix, for membership epoch ``e``:

* ``exited/<r>``: written by ``proxgt launch`` when worker r's process ended with an error (how it ended);
* ``epoch<e>/alive/<r>``: "<iteration in progress> <suspected peer> <reason>", written by every member r that
  saw the failure; a member that is alive writes it within about ``timeout_s`` (it waits at most that long
  for any message), a dead or hung one never does;
* ``epoch<e>/verdict``: JSON ``{"survivors", "lost", "iteration"}``, published with compare-and-set, so there
  is exactly one per epoch and every survivor reads the same one. It is decided by the first member that sees
  every member either alive or exited, or, failing that, ``2 timeout_s + 5`` seconds after it wrote its own
  record (the members still silent then are lost). ``iteration`` T is the smallest iteration in progress among
  the survivors: every survivor completed iteration T - 1 on the old graph and none completed T, so all of
  them hold the state after T - 1 and redo T on the surviving graph;
* ``lost/<r>``: the reason rank r was dropped; its watchdog ends it should it still be running (a hung rank).

Assumption: the store outlives the failure (``proxgt launch`` hosts it; a worker that hosts it, rank 0 without
an agent store, must not be the one lost), and a member that wrote its record stays alive until the verdict.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import torch.distributed as dist

from proxgt.errors import ProxGTValueError

__all__ = [
    "DistributedFailure",
    "FaultMonitor",
    "PeerLost",
    "Verdict",
    "published_verdicts",
    "describe_exit",
    "key_prefix",
    "publish_failure",
    "published_failure",
    "resolve_culprit",
    "PublishedValueError",
    "refused_settings",
]

_FAILED = "failed"


def key_prefix() -> str:
    """Store keys of this attempt (torchrun restarts a failed job as a new attempt on the same store)."""
    return f"proxgt/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/"


def published_failure(store: Any, prefix: str | None = None) -> str:
    """The failure the run agreed on (the first verdict published), or '' (also when the store is gone)."""
    key = (key_prefix() if prefix is None else prefix) + _FAILED
    try:
        return store.get(key).decode() if store is not None and store.check([key]) else ""
    except Exception:
        return ""


class PublishedValueError(ProxGTValueError):
    """A worker's bad-input error that was published as the run's verdict: the launcher prints it, once for all
    of its workers (every worker refuses the same settings alike; :func:`refused_settings`)."""


def refused_settings(verdict: str | None) -> str | None:
    """The one-line error of a verdict that a worker's refused settings made (``FaultMonitor.report_self`` of a
    ProxGTValueError, see :class:`PublishedValueError`), or None for any other verdict."""
    m = re.fullmatch(r"rank \d+ failed: ProxGTValueError: (.*)", verdict or "")
    return m.group(1) if m else None


def publish_failure(store: Any, msg: str, prefix: str | None = None) -> bool:
    """Publish ``msg`` as the run's verdict unless one exists; True when ``msg`` is (now) the verdict."""
    key = (key_prefix() if prefix is None else prefix) + _FAILED
    try:
        return store.compare_set(key, "", msg).decode() == msg
    except Exception:
        return False


def describe_exit(code: int) -> str:
    """'exited with code 17' or 'was killed by signal 9 (SIGKILL)' for a process exit status (Popen style)."""
    if code >= 0:
        return f"exited with code {code}"
    try:
        name = f" ({signal.Signals(-code).name})"
    except ValueError:
        name = ""
    return f"was killed by signal {-code}{name}"


def resolve_culprit(records: dict[int, tuple[int, int, str]], world: int) -> str | None:
    """The verdict from the suspicions ``rank -> (op, peer, reason)`` (op -1: the rank reported itself; peer
    -2: unknown, a collective), or None while they name nobody (see the module docstring, steps 2 to 4)."""
    selves = sorted((r, why) for r, (op, _, why) in records.items() if op == -1)
    if selves:
        return f"rank {selves[0][0]} failed: {selves[0][1]}"
    candidates = []
    for op, peer, why in records.values():
        if peer < 0:
            continue
        own = records.get(peer)
        if own is not None and own[0] <= op:
            continue  # the peer was alive and had lost contact itself, no later than this: a cascade
        candidates.append((op, peer, why))
    if candidates:
        _, peer, why = min(candidates)
        return f"rank {peer} failed or stopped answering ({why})"
    silent = [r for r in range(world) if r not in records]
    if len(silent) == 1 and records:
        why = next(iter(records.values()))[2]
        return f"rank {silent[0]} failed or stopped answering (every other rank lost contact: {why})"
    return None


class DistributedFailure(RuntimeError):
    """Another process of the run failed or stopped answering; the message names its rank."""


class PeerLost(DistributedFailure):
    """Under ``on_failure = "continue"``: a communication op failed (``peer``: the rank it names, or None for a
    collective); the survivors now agree on who left (:meth:`FaultMonitor.agree`)."""

    def __init__(self, peer: int | None, reason: str):
        super().__init__(f"{'an unknown rank' if peer is None else f'rank {peer}'} failed or stopped answering "
                         f"({reason})")
        self.peer, self.reason = peer, reason


@dataclass(frozen=True)
class Verdict:
    """What the survivors of membership epoch ``epoch`` agreed on: who goes on, who was lost (rank -> reason)
    and the iteration every survivor redoes on the surviving graph."""

    epoch: int
    survivors: tuple[int, ...]
    lost: dict[int, str]
    iteration: int

    def to_json(self) -> str:
        return json.dumps({"survivors": list(self.survivors), "lost": {str(r): w for r, w in self.lost.items()},
                           "iteration": self.iteration})

    @classmethod
    def from_json(cls, epoch: int, text: str) -> Verdict:
        d = json.loads(text)
        return cls(epoch, tuple(int(r) for r in d["survivors"]), {int(r): str(w) for r, w in d["lost"].items()},
                   int(d["iteration"]))


def published_verdicts(store: Any, prefix: str | None = None) -> list[Verdict]:
    """Every membership verdict of this attempt, in order (empty when none, or when the store is gone)."""
    prefix = key_prefix() if prefix is None else prefix
    out: list[Verdict] = []
    try:
        while store is not None and store.check([f"{prefix}epoch{len(out)}/verdict"]):
            out.append(Verdict.from_json(len(out), store.get(f"{prefix}epoch{len(out)}/verdict").decode()))
    except Exception:
        pass
    return out


class FaultMonitor:
    """Failure detection and naming through the rendezvous store (see the module docstring).

    ``op`` counts the communication operations this process entered; suspicions carry it so that the
    earliest one (the root cause) wins over the ones that cascade from it.
    """

    poll_s = 0.05

    def __init__(self, store: dist.Store | None, rank: int, world: int, timeout_s: float,
                 watch_store: dist.Store | None = None):
        self.store, self.rank, self.world = store, int(rank), int(world)
        self.prefix = key_prefix()
        self.timeout_s = float(timeout_s)
        self.grace_s = min(2.0, max(0.5, self.timeout_s / 10.0))
        self.op = 0
        self.on_failure = "abort"
        # membership (on_failure = continue): the current epoch, its members and the iteration in progress
        self.epoch = 0
        self.members: tuple[int, ...] = tuple(range(self.world))
        self.iteration = 0
        self._watch_store = watch_store
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ store helpers (never raise)
    def _set(self, key: str, value: str) -> None:
        try:
            if self.store is not None:
                self.store.set(self.prefix + key, value)
        except Exception:  # the store host may be gone: fall back to local knowledge
            pass

    def _records(self) -> dict[int, tuple[int, int, str]] | None:
        """Every rank's recorded suspicion, or None when the store cannot be read."""
        if self.store is None:
            return None
        out = {}
        try:
            for r in range(self.world):
                key = f"{self.prefix}suspect/{r}"
                if self.store.check([key]):
                    op_s, peer_s, why = (self.store.get(key).decode().split(" ", 2) + [""])[:3]
                    out[r] = (int(op_s), int(peer_s), why)
        except Exception:
            return None
        return out

    # ------------------------------------------------------------ reporting
    def report_self(self, reason: str) -> None:
        """This process failed on its own (an exception): the others will name this rank."""
        self._set(f"suspect/{self.rank}", f"-1 {self.rank} {reason}")
        publish_failure(self.store, f"rank {self.rank} failed: {reason}", self.prefix)

    def fail(self, peer: int | None, reason: str) -> DistributedFailure:
        """Record a suspicion against ``peer`` (None: unknown, e.g. a collective), wait for a verdict (at least
        the grace period, for the others' suspicions), publish it, and return the exception to raise.
        Under ``on_failure = "continue"``: a :class:`PeerLost` at once (the caller then calls :meth:`agree`)."""
        if self.on_failure == "continue":
            return PeerLost(peer, reason)
        self._set(f"suspect/{self.rank}", f"{self.op} {-2 if peer is None else peer} {reason}")
        start = time.monotonic()
        msg = None
        while True:
            published = published_failure(self.store, self.prefix)
            if published:
                return DistributedFailure(published)
            waited = time.monotonic() - start
            if waited >= self.grace_s:
                records = self._records()
                if records is None:
                    break
                msg = resolve_culprit(records, self.world)
                if msg is not None or waited >= self.grace_s + self.timeout_s:
                    break
            time.sleep(self.poll_s)
        if msg is None:
            who = "an unknown rank" if peer is None else f"rank {peer}"
            msg = f"{who} failed or stopped answering ({reason})"
        publish_failure(self.store, msg, self.prefix)
        return DistributedFailure(published_failure(self.store, self.prefix) or msg)

    # ------------------------------------------------------------ membership (on_failure = continue)
    def agree(self, lost: PeerLost) -> Verdict:
        """Write this rank's record for the current epoch and return the epoch's verdict (module docstring);
        advances the epoch. Raises DistributedFailure when this rank was dropped or the store is unreachable."""
        if self.store is None:
            raise DistributedFailure(f"{lost} and there is no store to agree on the survivors through")
        e, members = self.epoch, self.members
        base = f"{self.prefix}epoch{e}/"
        peer = -2 if lost.peer is None else lost.peer
        try:
            self.store.set(f"{base}alive/{self.rank}", f"{self.iteration} {peer} {lost.reason}")
        except Exception:
            raise DistributedFailure(f"{lost}; the store is unreachable, so the survivors cannot agree") from None
        deadline = time.monotonic() + 2 * self.timeout_s + 5.0
        while True:
            try:
                if self.store.check([base + "verdict"]):
                    verdict = Verdict.from_json(e, self.store.get(base + "verdict").decode())
                    break
                alive: dict[int, tuple[int, int, str]] = {}
                exited: dict[int, str] = {}
                for r in members:
                    if self.store.check([f"{base}alive/{r}"]):
                        it, who, why = (self.store.get(f"{base}alive/{r}").decode().split(" ", 2) + [""])[:3]
                        alive[r] = (int(it), int(who), why)
                    elif self.store.check([f"{self.prefix}exited/{r}"]):
                        exited[r] = self.store.get(f"{self.prefix}exited/{r}").decode()
                if len(alive) + len(exited) == len(members) or time.monotonic() >= deadline:
                    reasons = {}
                    for r in members:
                        if r in alive:
                            continue
                        named = sorted((it, why) for it, who, why in alive.values() if who == r)
                        reasons[r] = (f"its process {exited[r]}" if r in exited else named[0][1] if named else
                                      f"it did not answer the survivors within {2 * self.timeout_s + 5:g} s")
                    cand = Verdict(e, tuple(sorted(alive)), reasons, min(it for it, _, _ in alive.values()))
                    self.store.compare_set(base + "verdict", "", cand.to_json())
            except DistributedFailure:
                raise
            except Exception:
                raise DistributedFailure(f"{lost}; the store is unreachable, so the survivors cannot agree") from None
            time.sleep(self.poll_s)
        for r, why in verdict.lost.items():
            self._set(f"lost/{r}", f"at iteration {verdict.iteration}: {why}")
        if self.rank not in verdict.survivors:
            raise DistributedFailure(f"the other ranks went on without this process from iteration "
                                     f"{verdict.iteration} ({verdict.lost.get(self.rank, '')})")
        self.epoch, self.members = e + 1, verdict.survivors
        return verdict

    # ------------------------------------------------------------ watchdog
    def start(self) -> None:
        if self._watch_store is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._watch, name="proxgt-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None

    def _watch(self) -> None:
        store = self._watch_store
        if store is None:  # start() runs the watchdog only with a store
            return
        key = self.prefix + _FAILED
        dropped = f"{self.prefix}lost/{self.rank}"
        while not self._stop.wait(0.25):
            try:
                if self.on_failure == "continue" and store.check([dropped]):
                    # the survivors went on without this process (it was hung, or too slow to answer)
                    why = store.get(dropped).decode()
                    if self._stop.wait(self.grace_s + 1.0):
                        return
                    sys.stderr.write(f"proxgt: error: rank {self.rank}: the other ranks went on without this "
                                     f"process ({why})\n")
                    sys.stderr.flush()
                    os._exit(1)
                if not store.check([key]):
                    continue
                msg = store.get(key).decode()
            except Exception:  # store gone (e.g. its host finished): nothing left to watch
                return
            # give the main thread the chance to raise (and report) the same failure itself
            if self._stop.wait(self.grace_s + 1.0):
                return
            if msg.startswith(f"rank {self.rank} "):
                msg = f"the other ranks report this process: {msg}"
            sys.stderr.write(f"proxgt: error: rank {self.rank}: {msg}\n")
            sys.stderr.flush()
            os._exit(1)
