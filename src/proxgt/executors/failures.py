"""Detecting and naming a failed process of a distributed run.

A process that sees a peer fail (connection lost) or stop answering (timeout) records a *suspicion*
(communication op index, peer) in the rendezvous store, waits a short grace period for the others' suspicions,
then names the culprit: the peer suspected at the earliest op (a crashed or hung process stops the op count of
its neighbours first; the failures that cascade from their exit are seen at later ops). A process that fails on
its own (an exception) reports itself. The first resolved culprit is published in the store; a watchdog thread
in every process polls it and ends the process (exit code 1) with a message naming the failed rank, so no
process hangs.
"""

from __future__ import annotations

import os
import sys
import threading
import time

import torch.distributed as dist

__all__ = ["DistributedFailure", "FaultMonitor", "key_prefix"]


def key_prefix() -> str:
    """Store keys of this attempt (torchrun restarts a failed job as a new attempt on the same store)."""
    return f"proxgt/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/"


class DistributedFailure(RuntimeError):
    """Another process of the run failed or stopped answering; the message names its rank."""


class FaultMonitor:
    """Failure detection and naming through the rendezvous store (see the module docstring).

    ``op`` counts the communication operations this process entered; suspicions carry it so that the
    earliest one (the root cause) wins over the ones that cascade from it.
    """

    def __init__(self, store: dist.Store | None, rank: int, world: int, timeout_s: float,
                 watch_store: dist.Store | None = None):
        self.store, self.rank, self.world = store, int(rank), int(world)
        self.prefix = key_prefix()
        self.timeout_s = float(timeout_s)
        self.grace_s = min(2.0, max(0.5, self.timeout_s / 10.0))
        self.op = 0
        self._watch_store = watch_store
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._exiting = False

    # ------------------------------------------------------------ store helpers (never raise)
    def _set(self, key: str, value: str) -> None:
        try:
            if self.store is not None:
                self.store.set(self.prefix + key, value)
        except Exception:  # the store host may be gone: fall back to local knowledge
            pass

    def _get(self, store: dist.Store | None, key: str) -> str | None:
        try:
            if store is not None and store.check([self.prefix + key]):
                return store.get(self.prefix + key).decode()
        except Exception:
            pass
        return None

    # ------------------------------------------------------------ reporting
    def report_self(self, reason: str) -> None:
        """This process failed on its own (an exception): the others will name this rank."""
        msg = f"rank {self.rank} failed: {reason}"
        self._set(f"suspect/{self.rank}", f"-1 {self.rank} {reason}")
        self._publish(msg)

    def _publish(self, msg: str) -> None:
        try:
            if self.store is not None:
                self.store.compare_set(self.prefix + "failed", "", msg)
        except Exception:
            pass

    def fail(self, peer: int | None, reason: str) -> DistributedFailure:
        """Record a suspicion against ``peer`` (None: unknown, e.g. a collective), resolve the culprit after a
        grace period, publish it, and return the exception to raise."""
        self._set(f"suspect/{self.rank}", f"{self.op} {-2 if peer is None else peer} {reason}")
        if os.environ.get("PROXGT_DEBUG_FAIL"):
            sys.stderr.write(f"DEBUG {time.time():.3f} rank {self.rank} suspects {peer} at op {self.op}: {reason}\n")
        time.sleep(self.grace_s)
        published = self._get(self.store, "failed")
        if published:
            return DistributedFailure(published)
        best: tuple[int, int, str] | None = None
        for r in range(self.world):
            val = self._get(self.store, f"suspect/{r}")
            if val is None:
                continue
            op_s, peer_s, why = (val.split(" ", 2) + [""])[:3]
            op, who = int(op_s), int(peer_s)
            if who == -2:
                continue
            if best is None or (op, who) < (best[0], best[1]):
                best = (op, who, why)
        if best is None:
            who = "an unknown rank" if peer is None else f"rank {peer}"
            msg = f"{who} failed or stopped answering ({reason})"
        elif best[0] == -1:
            msg = f"rank {best[1]} failed: {best[2]}"
        else:
            msg = f"rank {best[1]} failed or stopped answering ({best[2]})"
        self._publish(msg)
        return DistributedFailure(self._get(self.store, "failed") or msg)

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
        while not self._stop.wait(0.25):
            try:
                if not self._watch_store.check([self.prefix + "failed"]):
                    continue
                msg = self._watch_store.get(self.prefix + "failed").decode()
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


