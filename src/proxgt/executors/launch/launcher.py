"""``proxgt launch --nprocs N <run flags>``: one process per node (or block of nodes) on this machine.

The launcher hosts the rendezvous store on 127.0.0.1 (a free port) and starts N worker processes (on Linux
forked from the launcher once its imports are done, so that they start in well under a second; elsewhere
``python -m proxgt.executors.launch.worker``) with the torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR/PORT, TORCHELASTIC_USE_AGENT_STORE, OMP_NUM_THREADS=1, PROXGT_LAUNCHER_PID), then waits. When a worker
fails, the
others detect it within ``--timeout`` seconds and exit naming the failed rank; a worker that ends with an error
before they agreed on one is named by the launcher itself (it saw that process exit first). The launcher waits
``--timeout`` (plus a grace period) after the first failure, kills any worker still running, and exits non-zero
naming the first failed rank. If the launcher itself ends (SIGTERM is forwarded to the workers; after kill -9
they see it gone within a fraction of a second), every worker ends too, with one line at most. Several
machines: ``--nnodes N --node-rank R --master-addr HOST --master-port P`` on each (node rank 0's launcher hosts
the store on P; see :func:`launch` and docs/multi-machine.md); torchrun with
``-m proxgt.executors.launch.worker`` works too.
"""

from __future__ import annotations

import contextlib
import datetime
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from typing import Any

from proxgt.executors._sockets import free_ports, listen_on_loopback, store_socket

__all__ = ["launch"]


def _free_port() -> int:
    return free_ports(1)[0]


def _store_client(host: str, port: int, world: int, timeout_s: float) -> Any:
    """A client of node rank 0's store, connected within ``timeout_s`` (launchers may start in any order within
    that time); None after one line saying why not. Torch's C++ stack traces of every failed try are kept quiet:
    the line says it all."""
    import torch.distributed as dist

    from proxgt.executors.launch.worker import quiet_cpp_warnings, set_cpp_log_level

    quiet_cpp_warnings()  # also later, when node rank 0's launcher is gone
    old = set_cpp_log_level(3)
    try:
        return dist.TCPStore(host, port, world, is_master=False, timeout=datetime.timedelta(seconds=timeout_s))
    except Exception as exc:  # nothing there in time, or something that is not a store
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        sys.stderr.write(f"proxgt: error: launch: cannot reach the rendezvous store at {host}:{port} (node rank 0's "
                         f"launcher) within --timeout {timeout_s:g} s: {detail}\n")
        return None
    finally:
        if old is not None:
            set_cpp_log_level(old)


def _can_fork() -> bool:
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def _forked_worker(env: dict[str, str], argv: list[str], fault_hook: Any = None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the launcher's handler: SIGTERM ends a worker quietly
    os.environ.clear()
    os.environ.update(env)
    import torch

    torch.set_num_threads(max(1, int(env.get("OMP_NUM_THREADS", "1") or 1)))
    from proxgt.executors.launch.worker import main

    os._exit(main(argv, fault_hook=fault_hook))


class _Forked:
    """A forked worker with the part of the ``subprocess.Popen`` interface the launcher uses."""

    def __init__(self, env: dict[str, str], argv: list[str], fault_hook: Any = None):
        self._p = multiprocessing.get_context("fork").Process(target=_forked_worker, args=(env, argv, fault_hook))
        self._p.start()

    @property
    def returncode(self) -> int | None:
        return self._p.exitcode

    def poll(self) -> int | None:
        self._p.join(0)
        return self._p.exitcode

    def wait(self, timeout: float | None = None) -> int | None:
        self._p.join(timeout)
        if self._p.exitcode is None:
            raise subprocess.TimeoutExpired("proxgt.executors.launch.worker", timeout or 0)
        return self._p.exitcode

    def kill(self) -> None:
        self._p.kill()

    def terminate(self) -> None:
        self._p.terminate()


class _Terminated(Exception):
    """The launcher received SIGTERM."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated


def _first_failed(ranks: list[int], codes: list[int | None], verdict: str, first_rank: int = 0) -> int:
    """Which of ``ranks``, seen ended with an error in the same poll, failed first: the one the workers' verdict
    names, else one that did not exit with 1 (the code of a worker stopped by another's failure), else the
    lowest. ``ranks`` are local; the verdict names global ranks (local + ``first_rank``)."""
    for r in ranks:
        if verdict.startswith(f"rank {r + first_rank} "):
            return r
    return min(ranks, key=lambda r: (codes[r] == 1, r))


def _stop_workers(procs: list[Any]) -> None:
    """SIGTERM to the running workers (its default action: a quiet exit); SIGKILL to those left after 5 s."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    end = time.monotonic() + 5.0
    for p in procs:
        try:
            p.wait(timeout=max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def launch(
    nprocs: int,
    argv: list[str],
    *,
    timeout_s: float,
    env: dict[str, str] | None = None,
    command: list[str] | None = None,
    fault_hook: Any = None,
    nnodes: int = 1,
    node_rank: int = 0,
    master_addr: str | None = None,
    master_port: int | None = None,
    on_failure: str = "abort",
    max_restarts: int = 0,
    restart: int = 0,
) -> int:
    """Start ``nprocs`` workers ``command + argv`` (default ``python -m proxgt.executors.launch.worker``) and wait;
    returns the launcher's exit code (0, or 1/2/3 naming the first failed rank on stderr; 130 interrupted, 143 SIGTERM).

    The workers get ``PROXGT_LAUNCHER_PID`` and end (exit code 1, one line) as soon as this process is gone,
    however it ends; SIGTERM is forwarded to them. When a worker ends with an error before the workers agreed on
    a failure, that worker failed on its own (a worker that sees another fail publishes the failure before it
    exits): the launcher publishes it, so that every worker names it.

    ``fault_hook(rank, t)`` runs in every worker after every iteration (forked workers only; tests use it to
    kill or hang a worker).

    ``on_failure = "continue"`` (docs/fault-tolerance.md): a worker that ends with an error is reported to the
    others (``exited/<rank>`` in the store) instead of failing the run; the launch exits 0 when the survivors
    finished and every other worker was one they dropped. ``max_restarts`` N > 0: after a failed attempt, all
    workers are started again (``TORCHELASTIC_RESTART_COUNT`` = the attempt) at most N times, on a fresh store;
    they resume from the newest checkpoint (``restart`` is the attempt number, for that recursion).

    Several machines: every machine runs a launcher with the same ``nnodes``, ``nprocs``, ``master_addr`` and
    ``master_port`` and its own ``node_rank``; its workers get the global ranks ``node_rank * nprocs + i``.
    The launcher of node rank 0 hosts the store on ``master_addr:master_port`` (that address only: it must be
    one of this machine's; one machine: 127.0.0.1, and gloo listens on the loopback interface) and keeps it until every
    launcher has reported its workers done (at most ``timeout_s`` + 10 s after its own workers ended); the others
    connect to ``master_addr:master_port`` and stop their workers, naming the cause, when the store is lost
    (node rank 0's launcher gone) while workers still run (see :func:`_supervise`)."""
    import threading

    import torch.distributed as dist

    if max_restarts > 0:  # elastic restarts (docs/fault-tolerance.md): the whole group again, from the checkpoint
        for attempt in range(max_restarts + 1):
            code = launch(nprocs, argv, timeout_s=timeout_s, env=env, command=command, fault_hook=fault_hook,
                          nnodes=nnodes, node_rank=node_rank, master_addr=master_addr, master_port=master_port,
                          on_failure=on_failure, restart=attempt)
            if code != 1 or attempt == max_restarts:  # success, bad input, divergence, interrupted: final
                return code
            sys.stderr.write(f"proxgt: restarting all {nprocs} workers from the newest checkpoint "
                             f"(restart {attempt + 1} of at most {max_restarts})\n")
        return 1
    base = dict(os.environ if env is None else env)
    base.setdefault("OMP_NUM_THREADS", "1")
    host = master_addr or "127.0.0.1"
    port = master_port or _free_port()
    world, first_rank = nnodes * nprocs, node_rank * nprocs
    if nnodes == 1:
        # one machine: gloo (and nccl's bootstrap) listen on loopback too, not on the host name's interface
        listen_on_loopback(base)
    base.update(MASTER_ADDR=host, MASTER_PORT=str(port), WORLD_SIZE=str(world), GROUP_RANK=str(node_rank),
                LOCAL_WORLD_SIZE=str(nprocs), TORCHELASTIC_USE_AGENT_STORE="True",
                TORCHELASTIC_RESTART_COUNT=str(restart), PROXGT_LAUNCHER_PID=str(os.getpid()))
    envs = [dict(base, RANK=str(first_rank + r), LOCAL_RANK=str(r)) for r in range(nprocs)]
    old_term = None
    procs: list[Any] = []
    store = None
    if node_rank != 0:
        # connected before any worker starts: an unreachable store (or something else on that port) is this one
        # line, not every worker's report of it
        store = _store_client(host, port, world, timeout_s)
        if store is None:
            return 2
    try:
        if command is None and _can_fork():
            # fork after the imports: the workers start without paying for them again
            import proxgt.executors.distributed  # noqa: F401  (imported here so that the children inherit it)
            import proxgt.executors.launch.worker  # noqa: F401

            for e in envs:
                procs.append(_Forked(e, argv, fault_hook))
        else:
            if fault_hook is not None:
                raise ValueError("fault_hook needs forked workers (Linux, no command)")
            cmd = command if command is not None else [sys.executable, "-m", "proxgt.executors.launch.worker"]
            for e in envs:
                procs.append(subprocess.Popen([*cmd, *argv], env=e))
        if threading.current_thread() is threading.main_thread():  # after the fork: the workers keep the default
            old_term = signal.signal(signal.SIGTERM, _on_sigterm)
        # the store's server comes after the fork, so that no worker inherits its server thread or socket
        if store is None:
            try:
                # node rank 0 serves on the address given (127.0.0.1 on one machine) only: the store is
                # unauthenticated, so it must not be reachable from elsewhere when no other machine needs it
                fd = store_socket(host, port).detach()  # the store owns it from here
                store = dist.TCPStore(host, port, world, is_master=True, wait_for_workers=False, master_listen_fd=fd,
                                      timeout=datetime.timedelta(seconds=max(60.0, timeout_s)))
            except Exception as exc:  # port taken
                _stop_workers(procs)
                detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
                sys.stderr.write(f"proxgt: error: launch: cannot host the rendezvous store on {host}:{port}: "
                                 f"{detail}\n")
                return 1
        if node_rank != 0:
            with contextlib.suppress(Exception):
                store.set(f"proxgt/{restart}/{_JOINED}{node_rank}", "1")
        if nnodes == 1:
            return _supervise(procs, store, timeout_s, prefix=f"proxgt/{restart}/", on_failure=on_failure)
        return _supervise_node(procs, store, timeout_s, nnodes, node_rank, f"{host}:{port}",
                               prefix=f"proxgt/{restart}/", on_failure=on_failure)
    except KeyboardInterrupt:
        _stop_workers(procs)
        sys.stderr.write("proxgt: interrupted\n")
        return 130
    except _Terminated:
        _stop_workers(procs)
        sys.stderr.write("proxgt: terminated (SIGTERM); the workers were stopped\n")
        return 143
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)


def _supervise(procs: list[Any], store: Any, timeout_s: float, first_rank: int = 0,
               store_lost: Any = None, prefix: str = "proxgt/0/", on_failure: str = "abort") -> int:
    """Wait for the workers; the launcher's exit code and its one-line report of a failure.

    ``first_rank``: the global rank of the first local worker (several machines). ``store_lost()``, polled
    while workers run, returns why the store is gone ('' while it is there): the running workers are then
    stopped and the launcher exits 1 saying why."""
    from proxgt.executors.failures import describe_exit, publish_failure, published_failure, refused_settings

    # prefix: the workers' key_prefix(), from their TORCHELASTIC_RESTART_COUNT
    nprocs = len(procs)
    codes: list[int | None] = [None] * nprocs
    ended: list[float] = [0.0] * nprocs
    first_fail: tuple[int, int] | None = None
    named_by_launcher = False
    deadline: float | None = None
    killed: list[int] = []
    while any(c is None for c in codes):
        now = time.monotonic()
        lost = store_lost() if store_lost is not None else ""
        if lost:
            running = [r for r, c in enumerate(codes) if c is None]
            _stop_workers([procs[r] for r in running])
            sys.stderr.write(f"proxgt: error: launch failed: {lost}; stopped rank(s) "
                             f"{', '.join(str(r + first_rank) for r in running)} still running\n")
            return 1
        failed_now = []
        for r, p in enumerate(procs):
            if codes[r] is None and p.poll() is not None:
                codes[r] = p.returncode
                ended[r] = now
                if p.returncode != 0:
                    failed_now.append(r)
        if on_failure == "continue" and first_fail is None:  # a lost worker is the survivors' business
            failed_now = _lost_or_failed(store, prefix, failed_now, codes, first_rank)
        if failed_now and first_fail is None:
            r0 = _first_failed(failed_now, codes, published_failure(store, prefix), first_rank)
            c_first = codes[r0]
            assert c_first is not None  # r0 is one of failed_now: ranks seen ended
            first_fail = (r0, c_first)
            deadline = now + timeout_s + 10.0
            # nothing published yet: this worker failed on its own; tell the others, who may be waiting for a
            # verdict (their suspicions would name it too, but this is what was seen, not inferred)
            named_by_launcher = publish_failure(
                store, f"rank {r0 + first_rank} failed: its process {describe_exit(c_first)}", prefix)
        if deadline is not None and time.monotonic() > deadline:
            for r, p in enumerate(procs):
                if codes[r] is None:
                    p.kill()
                    p.wait()
                    codes[r] = p.returncode
                    killed.append(r)
        time.sleep(0.05)
    if first_fail is None and on_failure == "continue":
        return _report_survivors(store, prefix, codes, first_rank)
    if first_fail is None:
        return 0
    culprit = "" if named_by_launcher else published_failure(store, prefix)
    r0, c0 = first_fail
    refused = refused_settings(culprit)
    if refused is not None and not killed and all(c == 2 for c in codes if c is not None):
        # bad settings, refused alike by every worker (which left the saying to this launcher): one line
        sys.stderr.write(f"proxgt: error: {refused}\n")
        return 2
    others = [f"rank {r + first_rank} {describe_exit(c)} {ended[r] - ended[r0]:.1f} s later"
              for r, c in enumerate(codes) if c is not None and r != r0 and c != 0 and r not in killed]
    msg = (f"proxgt: error: launch failed: {culprit + '; ' if culprit else ''}"
           f"rank {r0 + first_rank} {describe_exit(c0)} first")
    if others:
        msg += "; then " + ", ".join(others)
    if killed:
        msg += (f"; killed rank(s) {', '.join(str(r + first_rank) for r in killed)} still running "
                f"{timeout_s + 10:g} s later")
    sys.stderr.write(msg + "\n")
    done = [c for c in codes if c is not None]
    if all(c == 2 for c in done):
        return 2
    if 3 in done:
        return 3
    return 1


def _lost_or_failed(store: Any, prefix: str, failed_now: list[int], codes: list[int | None],
                    first_rank: int) -> list[int]:
    """On_failure = continue: tell the survivors which workers ended (``exited/<rank>``, so that they need not wait
    for them); the workers that failed, for the launcher, only once the run itself failed (a published verdict)."""
    from proxgt.executors.failures import describe_exit, published_failure

    for r in failed_now:
        with contextlib.suppress(Exception):
            store.set(f"{prefix}exited/{r + first_rank}", describe_exit(int(codes[r])))  # type: ignore[arg-type]
    if not published_failure(store, prefix):
        return []
    return [r for r, c in enumerate(codes) if c not in (None, 0)]


def _report_survivors(store: Any, prefix: str, codes: list[int | None], first_rank: int) -> int:
    """On_failure = continue, every worker ended and the run did not fail: 0 when the survivors finished and every
    other worker was one the survivors dropped (one line each), else 1."""
    from proxgt.executors.failures import describe_exit, published_verdicts

    lost = {r: v for v in published_verdicts(store, prefix) for r in v.lost}
    unexplained = [r for r, c in enumerate(codes) if c != 0 and r + first_rank not in lost]
    if unexplained or all(c != 0 for c in codes):
        what = ", ".join(f"rank {r + first_rank} {describe_exit(int(codes[r]))}" for r in unexplained)  # type: ignore[arg-type]
        sys.stderr.write(f"proxgt: error: launch failed: {what or 'no worker finished'}\n")
        return 1
    for r, v in sorted(lost.items()):
        sys.stderr.write(f"proxgt: lost rank {r} at iteration {v.iteration} ({v.lost[r]}); "
                         f"{len(v.survivors)} process(es) went on\n")
    return 0


_DONE = "launch/done/"  # after the attempt prefix, + node rank: that machine's workers all ended (value: exit code)
_JOINED = "launch/joined/"  # after the attempt prefix, + node rank: that machine's launcher reached the store


def _checked(store: Any, key: str) -> bool:
    try:
        return bool(store.check([key]))
    except Exception:
        return False


class _StoreWatch:
    """``store_lost()`` of :func:`_supervise` on node ranks > 0: why the store (node rank 0's launcher) is gone,
    once it has not answered for ``grace_s``; '' while it answers. Pings at most every 0.5 s."""

    def __init__(self, store: Any, address: str, grace_s: float = 2.0):
        self.store, self.address, self.grace_s = store, address, grace_s
        self._next = self._since = 0.0
        self.reported = False

    def __call__(self) -> str:
        now = time.monotonic()
        if now < self._next:
            return ""
        self._next = now + 0.5
        try:
            self.store.check([_DONE + "0"])
            self._since = 0.0
            return ""
        except Exception:
            self._since = self._since or now
            if now - self._since < self.grace_s:
                return ""
            self.reported = True
            return f"lost the rendezvous store at {self.address}: node rank 0's launcher is gone or unreachable"


def _supervise_node(procs: list[Any], store: Any, timeout_s: float, nnodes: int, node_rank: int,
                    address: str, prefix: str = "proxgt/0/", on_failure: str = "abort") -> int:
    """Several machines: supervise this machine's workers (:func:`_supervise`), then report them done in the
    store. Node rank 0's launcher hosts the store, so it waits (at most ``timeout_s`` + 10 s) for every other
    launcher's report before it returns: a worker elsewhere may still need the store (a verdict to read, the
    end of its run). The others stop their workers when the store is lost while they run."""
    nprocs = len(procs)
    lost = _StoreWatch(store, address) if node_rank else None
    code = _supervise(procs, store, timeout_s, node_rank * nprocs, lost, prefix=prefix, on_failure=on_failure)
    try:
        store.set(f"{prefix}{_DONE}{node_rank}", str(code))
    except Exception:
        if code != 0 and not (lost is not None and lost.reported):
            sys.stderr.write(f"proxgt: error: launch: the rendezvous store at {address} is gone too: node rank 0's "
                             "launcher has ended (a failure there, or it was killed)\n")
    if node_rank != 0:
        return code
    end = time.monotonic() + timeout_s + 10.0
    # a machine that never connected has no worker that could still need the store: not waited for (its absence
    # is what this machine's workers reported). Its launcher may connect after its workers: a machine whose first
    # worker published its settings (executors/agreement.py) is present too; node rank 0's workers end only after
    # reading those, or after waiting --timeout for them
    absent = [k for k in range(1, nnodes)
              if not (_checked(store, f"{prefix}{_JOINED}{k}") or _checked(store, f"{prefix}settings/{k}.0"))]
    missing = [k for k in range(1, nnodes) if k not in absent]
    while missing and time.monotonic() < end:
        missing = [k for k in missing if not store.check([f"{prefix}{_DONE}{k}"])]
        time.sleep(0.1)
    if absent and not missing:
        return code or 1
    if missing:
        sys.stderr.write(f"proxgt: error: launch: node rank(s) {', '.join(map(str, missing))} did not report their "
                         f"workers done within {timeout_s + 10:g} s of this machine's\n")
        return code or 1
    return code
