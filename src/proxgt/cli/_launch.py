"""``proxgt launch --nprocs N <run flags>``: one process per node (or block of nodes) on this machine.

The launcher hosts the rendezvous store on 127.0.0.1 (a free port) and starts N worker processes (on Linux
forked from the launcher once its imports are done, so that they start in well under a second; elsewhere
``python -m proxgt.worker``) with the torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT,
TORCHELASTIC_USE_AGENT_STORE, OMP_NUM_THREADS=1, PROXGT_LAUNCHER_PID), then waits. When a worker fails, the
others detect it within ``--timeout`` seconds and exit naming the failed rank; a worker that ends with an error
before they agreed on one is named by the launcher itself (it saw that process exit first). The launcher waits
``--timeout`` (plus a grace period) after the first failure, kills any worker still running, and exits non-zero
naming the first failed rank. If the launcher itself ends (SIGTERM is forwarded to the workers; after kill -9
they see it gone within a fraction of a second), every worker ends too, with one line at most. For several
machines use torchrun with ``-m proxgt.worker`` (see :mod:`proxgt.worker`).
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from proxgt.cli._run import add_folder_flags, raise_conflict
from proxgt.cli.flags import add_setting_flags, config_from_args, resume_overrides, setting_argv
from proxgt.errors import ProxGTValueError
from proxgt.settings import RESUMABLE

__all__ = ["register", "launch", "worker_argv"]


def worker_argv(args: argparse.Namespace) -> list[str]:
    """The worker command-line flags equivalent to the parsed ``launch`` flags."""
    argv = setting_argv(args)
    if getattr(args, "resume", None):
        argv += ["--resume", str(args.resume)]
    if getattr(args, "overwrite", False):
        argv.append("--overwrite")
    if getattr(args, "backend", "auto") != "auto":
        argv += ["--backend", args.backend]
    if getattr(args, "no_progress", False):
        argv.append("--no-progress")
    return argv


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _can_fork() -> bool:
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def _forked_worker(env: dict[str, str], argv: list[str], fault_hook: Any = None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the launcher's handler: SIGTERM ends a worker quietly
    os.environ.clear()
    os.environ.update(env)
    import torch

    torch.set_num_threads(max(1, int(env.get("OMP_NUM_THREADS", "1") or 1)))
    from proxgt.worker import main

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
            raise subprocess.TimeoutExpired("proxgt.worker", timeout or 0)
        return self._p.exitcode

    def kill(self) -> None:
        self._p.kill()

    def terminate(self) -> None:
        self._p.terminate()


class _Terminated(Exception):
    """The launcher received SIGTERM."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated


def _first_failed(ranks: list[int], codes: list[int | None], verdict: str) -> int:
    """Which of ``ranks``, seen ended with an error in the same poll, failed first: the one the workers' verdict
    names, else one that did not exit with 1 (the code of a worker stopped by another's failure), else the
    lowest."""
    for r in ranks:
        if verdict.startswith(f"rank {r} "):
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
) -> int:
    """Start ``nprocs`` workers ``command + argv`` (default ``python -m proxgt.worker``) and wait; returns the
    launcher's exit code (0, or 1/2/3 naming the first failed rank on stderr; 130 interrupted, 143 SIGTERM).

    The workers get ``PROXGT_LAUNCHER_PID`` and end (exit code 1, one line) as soon as this process is gone,
    however it ends; SIGTERM is forwarded to them. When a worker ends with an error before the workers agreed on
    a failure, that worker failed on its own (a worker that sees another fail publishes the failure before it
    exits): the launcher publishes it, so that every worker names it.

    ``fault_hook(rank, t)`` runs in every worker after every iteration (forked workers only; tests use it to
    kill or hang a worker)."""
    import threading

    import torch.distributed as dist

    base = dict(os.environ if env is None else env)
    base.setdefault("OMP_NUM_THREADS", "1")
    port = _free_port()
    base.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(nprocs),
                LOCAL_WORLD_SIZE=str(nprocs), TORCHELASTIC_USE_AGENT_STORE="True", TORCHELASTIC_RESTART_COUNT="0",
                PROXGT_LAUNCHER_PID=str(os.getpid()))
    envs = [dict(base, RANK=str(r), LOCAL_RANK=str(r)) for r in range(nprocs)]
    old_term = None
    procs: list[Any] = []
    try:
        if command is None and _can_fork():
            # fork after the imports: the workers start without paying for them again
            import proxgt.executors.distributed  # noqa: F401  (imported here so that the children inherit it)
            import proxgt.worker  # noqa: F401

            for e in envs:
                procs.append(_Forked(e, argv, fault_hook))
        else:
            if fault_hook is not None:
                raise ValueError("fault_hook needs forked workers (Linux, no command)")
            cmd = command if command is not None else [sys.executable, "-m", "proxgt.worker"]
            for e in envs:
                procs.append(subprocess.Popen([*cmd, *argv], env=e))
        if threading.current_thread() is threading.main_thread():  # after the fork: the workers keep the default
            old_term = signal.signal(signal.SIGTERM, _on_sigterm)
        # the store comes after the fork, so that no worker inherits its server thread or socket
        store = dist.TCPStore("127.0.0.1", port, nprocs, is_master=True, wait_for_workers=False,
                              timeout=datetime.timedelta(seconds=max(60.0, timeout_s)))
        return _supervise(procs, store, timeout_s)
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


def _supervise(procs: list[Any], store: Any, timeout_s: float) -> int:
    """Wait for the workers; the launcher's exit code and its one-line report of a failure."""
    from proxgt.executors.failures import describe_exit, publish_failure, published_failure

    prefix = "proxgt/0/"  # the workers' key_prefix(): their TORCHELASTIC_RESTART_COUNT is 0
    nprocs = len(procs)
    codes: list[int | None] = [None] * nprocs
    ended: list[float] = [0.0] * nprocs
    first_fail: tuple[int, int] | None = None
    named_by_launcher = False
    deadline: float | None = None
    killed: list[int] = []
    while any(c is None for c in codes):
        now = time.monotonic()
        failed_now = []
        for r, p in enumerate(procs):
            if codes[r] is None and p.poll() is not None:
                codes[r] = p.returncode
                ended[r] = now
                if p.returncode != 0:
                    failed_now.append(r)
        if failed_now and first_fail is None:
            r0 = _first_failed(failed_now, codes, published_failure(store, prefix))
            first_fail = (r0, int(codes[r0]))  # type: ignore[arg-type]
            deadline = now + timeout_s + 10.0
            # nothing published yet: this worker failed on its own; tell the others, who may be waiting for a
            # verdict (their suspicions would name it too, but this is what was seen, not inferred)
            named_by_launcher = publish_failure(store, f"rank {r0} failed: its process {describe_exit(codes[r0])}",
                                                prefix)
        if deadline is not None and time.monotonic() > deadline:
            for r, p in enumerate(procs):
                if codes[r] is None:
                    p.kill()
                    p.wait()
                    codes[r] = p.returncode
                    killed.append(r)
        time.sleep(0.05)
    if first_fail is None:
        return 0
    culprit = "" if named_by_launcher else published_failure(store, prefix)
    r0, c0 = first_fail
    others = [f"rank {r} {describe_exit(c)} {ended[r] - ended[r0]:.1f} s later" for r, c in enumerate(codes)
              if r != r0 and c != 0 and r not in killed]
    msg = f"proxgt: error: launch failed: {culprit + '; ' if culprit else ''}rank {r0} {describe_exit(c0)} first"
    if others:
        msg += "; then " + ", ".join(others)
    if killed:
        msg += f"; killed rank(s) {', '.join(map(str, killed))} still running {timeout_s + 10:g} s later"
    sys.stderr.write(msg + "\n")
    done = [c for c in codes if c is not None]
    if all(c == 2 for c in done):
        return 2
    if 3 in done:
        return 3
    return 1


def _handle(args: argparse.Namespace) -> int:
    from proxgt.executors.driver import resume_settings
    from proxgt.training import RunFolder

    if args.nprocs < 1:
        raise ProxGTValueError(f"--nprocs must be an int >= 1. Got {args.nprocs} instead.")
    if args.resume:
        if args.overwrite:
            raise_conflict("--resume", "--overwrite")
        cfg, world, _ = resume_settings(args.resume, resume_overrides(args, RESUMABLE))
        if world != args.nprocs:
            raise ProxGTValueError(
                f"the checkpoint in {args.resume} was written by {world} process(es); use --nprocs {world}"
            )
    else:
        cfg = config_from_args(args)
        if not cfg.out:
            cfg = cfg.replace(out=f"runs/{cfg.algorithm}-seed{cfg.seed}")
            args.out = cfg.out
    cfg = cfg.validate()
    if args.nprocs > cfg.nodes:
        raise ProxGTValueError(
            f"--nprocs {args.nprocs} exceeds --nodes {cfg.nodes}: every process needs at least one node"
        )
    # refuse a folder in use, or holding another run, here (exit 2) before any worker starts; with --resume or
    # --overwrite the folder's contents are rank 0's to keep or replace
    RunFolder(cfg.out, resume=bool(args.resume or args.overwrite)).close()
    return launch(args.nprocs, worker_argv(args), timeout_s=cfg.timeout_s)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "launch",
        help="run one configuration with N processes on this machine (torch.distributed, one block of nodes each)",
    )
    p.add_argument("--nprocs", type=int, required=True, help="number of worker processes (<= --nodes)")
    add_setting_flags(p)
    add_folder_flags(p)
    p.add_argument("--backend", choices=("auto", "gloo", "nccl"), default="auto",
                   help="torch.distributed backend (auto: gloo on CPU, nccl on CUDA)")
    p.set_defaults(handler=_handle)
