"""One process of a distributed run: ``python -m proxgt.executors.launch.worker <run flags>``, started by torchrun or
``proxgt launch``.

Several machines (each runs the same command; the rendezvous of torchrun connects them)::

    torchrun --nnodes 2 --nproc-per-node 4 --node-rank 0 --rdzv-endpoint HOST0:29500 \\
        -m proxgt.executors.launch.worker --nodes 16 --data a9a-synthetic --out runs/dist --timeout 60

The worker reads RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT from the environment (torchrun sets them),
hosts the block of nodes of its rank, and rank 0 writes the run folder. Exit codes: 0 ok, 1 another rank (or
this one) failed, 2 bad input, 3 divergence. Error lines name this process's rank and, for a failure
elsewhere, the failed rank. An elastic restart (``TORCHELASTIC_RESTART_COUNT`` > 0: torchrun --max-restarts, or
``proxgt launch --max-restarts``) resumes from the newest complete checkpoint of the run folder, or starts the
run over when there is none yet (docs/fault-tolerance.md). A worker started by ``proxgt launch``
(``PROXGT_LAUNCHER_PID`` set) ends with exit code 1 and one line as soon as the launcher is gone, however it
ended (even kill -9).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["main", "build_worker_parser", "quiet_cpp_warnings", "set_cpp_log_level"]


def build_worker_parser() -> argparse.ArgumentParser:
    from proxgt.cli._run import add_folder_flags
    from proxgt.cli.flags import add_setting_flags

    p = argparse.ArgumentParser(prog="python -m proxgt.executors.launch.worker",
                                description="One process of a distributed proxgt run (see 'proxgt launch').")
    add_setting_flags(p)
    add_folder_flags(p)
    p.add_argument("--backend", choices=("auto", "gloo", "nccl"), default="auto",
                   help="torch.distributed backend (auto: gloo on CPU, nccl on CUDA)")
    return p


def _exit(code: int) -> int:
    """Leave without running torch.distributed teardown (which can block when peers are gone)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


_watched: tuple[int, int] | None = None  # (launcher pid, parent pid) while watch_launcher watches


def _launcher_lost(wait_s: float) -> bool:
    """Whether the watched launcher is gone, waiting up to ``wait_s`` for the kernel to say so: a process's
    sockets close before its children are re-parented, so an error from the store (the launcher hosts it)
    can come first."""
    if _watched is None:
        return False
    import time

    end = time.monotonic() + wait_s
    while os.getppid() == _watched[1]:
        if time.monotonic() >= end:
            return False
        time.sleep(0.02)
    return True


def _launcher_gone(rank: str, launcher: int) -> None:
    sys.stderr.write(f"proxgt: error: rank {rank}: the launcher (pid {launcher}) is gone; stopping\n")
    sys.stderr.flush()
    os._exit(1)


def watch_launcher(rank: str, poll_s: float = 0.1) -> None:
    """End this process (exit code 1, one line) once the ``proxgt launch`` process that started it is gone.

    The launcher passes its pid in ``PROXGT_LAUNCHER_PID``; when it ends, however (kill -9 included), its
    children are re-parented, which a daemon thread sees within ``poll_s`` (a worker started through a wrapper
    command watches the wrapper). ``os._exit`` skips every teardown (torch.distributed's can block or abort
    once the store, hosted by the launcher, is gone). Nothing is watched without the variable (torchrun, or
    workers started by hand)."""
    value = os.environ.get("PROXGT_LAUNCHER_PID", "")
    if not value.isdigit():
        return
    global _watched
    launcher, parent = int(value), os.getppid()
    _watched = (launcher, parent)
    if parent != launcher:
        try:
            os.kill(launcher, 0)
        except ProcessLookupError:  # gone before this process got here
            _launcher_gone(rank, launcher)
        except OSError:
            pass

    def watch() -> None:
        import time

        while os.getppid() == parent:
            time.sleep(poll_s)
        _launcher_gone(rank, launcher)

    threading.Thread(target=watch, name="proxgt-launcher-watch", daemon=True).start()


def quiet_cpp_warnings() -> None:
    """Raise the C++ log level of torch to ERROR, as ``TORCH_CPP_LOG_LEVEL=ERROR`` would (unless that is set).

    When the launcher is gone, the store clients of torch.distributed (rendezvous, gloo's set-up, the fault
    monitor) log a warning with a C++ stack trace before the error reaches Python; the line this process prints
    instead says all there is. A forked worker has torch loaded already, so the variable would come too late:
    the level itself (``FLAGS_caffe2_log_level`` of libc10) is set."""
    if "TORCH_CPP_LOG_LEVEL" in os.environ:
        return
    os.environ["TORCH_CPP_LOG_LEVEL"] = "ERROR"  # for processes this one starts
    old = set_cpp_log_level(2)
    if old is not None and old > 2:  # already quieter
        set_cpp_log_level(old)


def set_cpp_log_level(value: int) -> int | None:
    """Set torch's C++ log level (``FLAGS_caffe2_log_level`` of libc10: 2 ERROR, 3 FATAL) to ``value``; returns
    the previous level (to restore it), or None where this build of torch does not expose it."""
    try:
        import ctypes
        import glob

        import torch

        for path in glob.glob(os.path.join(os.path.dirname(torch.__file__), "lib", "*c10.*")):
            level = ctypes.c_int.in_dll(ctypes.CDLL(path), "FLAGS_caffe2_log_level")
            old = int(level.value)
            level.value = value
            return old
    except Exception:  # another build of torch: keep its warnings
        pass
    return None


def _restart_plan(args: argparse.Namespace) -> tuple[str | None, dict[str, Any], Any, bool] | None:
    """None on a first start; on an elastic restart (``TORCHELASTIC_RESTART_COUNT`` > 0), (the run folder to
    resume from or None to start over, the resumable settings of this command, its settings, overwrite).

    A restart resumes from the newest usable checkpoint of the run folder (``--resume DIR`` or ``--out``). With
    none yet (no ``--checkpoint-every``, or the failure came before the first one) the run starts over; a folder
    that holds a finished run is never replaced that way (that is the first start's one-line error again)."""
    from pathlib import Path

    from proxgt.cli.flags import config_from_args
    from proxgt.executors.checkpoint import latest_checkpoint
    from proxgt.settings import RESUMABLE
    from proxgt.training.folder import default_run_folder

    count = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    if not count.isdigit() or int(count) == 0:
        return None
    if args.resume:
        # what the first attempt began goes on: an extension left the folder unfinished (or had not started yet,
        # then it is planned again); a start-over by hand starts over until its run is under way
        given = vars(args)
        overrides = {k: given[k] for k in RESUMABLE if given.get(k) is not None}
        again = bool(args.overwrite) and (Path(args.resume) / "summary.json").exists()
        return str(args.resume), overrides, None, again
    cfg = config_from_args(args)
    if not cfg.out:
        cfg = cfg.replace(out=default_run_folder(cfg.algorithm, cfg.seed))
    if (Path(cfg.out) / "summary.json").exists():
        return None
    if latest_checkpoint(cfg.out) is not None:  # this command's run, with the settings of its checkpoint
        return str(cfg.out), {}, cfg, False
    return None, {}, cfg, True


def main(argv: Sequence[str] | None = None, fault_hook: Callable[[int, int], None] | None = None) -> int:
    """Run one worker; ``fault_hook(rank, t)`` runs after every iteration (tests inject failures with it)."""
    rank = os.environ.get("RANK", "?")
    watch_launcher(rank)
    if _watched is not None:
        quiet_cpp_warnings()
    args = build_worker_parser().parse_args(argv)
    import warnings

    import torch.distributed as dist

    def one_line(message: Any, *_: Any, **__: Any) -> None:
        sys.stderr.write(f"proxgt: warning: rank {rank}: {message}\n")

    warnings.showwarning = one_line

    from proxgt.cli._run import summary_line
    from proxgt.cli.flags import config_from_args, resume_overrides
    from proxgt.errors import DivergenceError, ProxGTValueError
    from proxgt.executors.distributed import DistributedFailure, run_distributed
    from proxgt.executors.failures import PublishedValueError
    from proxgt.settings import RESUMABLE

    backend = None if args.backend == "auto" else args.backend
    progress = sys.stderr.isatty() and not args.no_progress
    try:
        restarted = _restart_plan(args)
        if restarted is not None:  # an elastic restart: from the newest checkpoint, or over
            resume_dir, overrides, cfg, overwrite = restarted
            hist = run_distributed(cfg if resume_dir is None else None, resume=resume_dir, backend=backend,
                                   progress=progress, overrides=overrides, overwrite=overwrite,
                                   fault_hook=fault_hook)
        elif args.resume:  # continue, extend (--iters) or start over (--overwrite)
            hist = run_distributed(None, resume=args.resume, backend=backend, progress=progress,
                                   overrides=resume_overrides(args, RESUMABLE), overwrite=args.overwrite,
                                   fault_hook=fault_hook)
        else:
            hist = run_distributed(config_from_args(args), backend=backend, progress=progress,
                                   overwrite=args.overwrite, fault_hook=fault_hook)
    except ProxGTValueError as exc:
        if not (_watched is not None and isinstance(exc, PublishedValueError)):  # else the launcher says it once
            sys.stderr.write(f"proxgt: error: rank {rank}: {exc}\n")
        return _exit(2)
    except DistributedFailure as exc:
        sys.stderr.write(f"proxgt: error: rank {rank}: {exc}\n")
        return _exit(1)
    except DivergenceError as exc:
        sys.stderr.write(f"proxgt: error: rank {rank}: {exc}\n")
        return _exit(3)
    except KeyboardInterrupt:
        sys.stderr.write(f"proxgt: rank {rank} interrupted\n")
        return _exit(130)
    except Exception as exc:  # anything else: the others were told (report_self); say it here too
        if _launcher_lost(1.0):  # e.g. the store (hosted by the launcher) went away with it: not this rank's fault
            _launcher_gone(rank, _watched[0])  # type: ignore[index]
        import traceback

        traceback.print_exc()
        sys.stderr.write(f"proxgt: error: rank {rank} failed: {type(exc).__name__}: {exc}\n")
        return _exit(1)
    info = hist.summary.get("distributed", {}) if hist is not None else {}
    if hist is not None and str(rank) == str(info.get("surviving_ranks", [0])[0]):  # rank 0 or the lowest survivor
        print(summary_line(hist).replace(" iterations,", f" iterations on {info.get('world_size')} processes,", 1))
        print(f"wrote {hist.config.get('out')}/{{config.toml,metrics.csv,final.npz,summary.json}}")
    try:
        dist.destroy_process_group()
    except Exception:
        pass
    return _exit(0)


if __name__ == "__main__":
    raise SystemExit(main())
