"""``proxgt launch``: the command line of the torch.distributed launcher (:mod:`proxgt.executors.launch`)."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from proxgt.cli._run import add_folder_flags
from proxgt.cli.flags import add_setting_flags, config_from_args, resume_overrides, setting_argv
from proxgt.errors import ProxGTValueError
from proxgt.settings import RESUMABLE

__all__ = ["register", "worker_argv"]

#: the shortest --timeout a launch accepts: the store and gloo connect with it (torch counts it in milliseconds)
MIN_TIMEOUT_S = 1.0


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



def _handle(args: argparse.Namespace) -> int:
    from proxgt.executors.driver import plan_resume
    from proxgt.executors.launch.launcher import launch
    from proxgt.mixing.clock import refuse_on_real_time
    from proxgt.training import RunFolder
    from proxgt.training.folder import default_run_folder

    if args.nprocs < 1:
        raise ProxGTValueError(f"--nprocs must be an int >= 1. Got {args.nprocs} instead.")
    _check_machines(args)
    world = args.nprocs * args.nnodes
    start_over = False
    if args.resume:
        # rank 0 names a corrupt checkpoint it falls back from; a start-over reads only the settings, here
        plan = plan_resume(args.resume, resume_overrides(args, RESUMABLE), overwrite=args.overwrite,
                           warn=args.overwrite)
        cfg, start_over = plan.cfg, plan.start_over
        if not start_over and plan.world != world:
            raise ProxGTValueError(
                f"the checkpoint in {args.resume} was written by {plan.world} process(es); use --nprocs {plan.world}"
                + (" in all, --nprocs x --nnodes" if args.nnodes > 1 else "")
            )
    else:
        cfg = config_from_args(args)
        if not cfg.out:
            cfg = cfg.replace(out=default_run_folder(cfg.algorithm, cfg.seed))
            args.out = cfg.out
    cfg = cfg.validate()
    refuse_on_real_time(cfg)
    from proxgt.mixing.compressed import check_launchable  # torch: not imported for --help
    from proxgt.training.privacy import dp_requested, private_across_processes

    check_launchable(cfg)
    if dp_requested(cfg):
        private_across_processes(cfg)
        import opacus.accountants  # noqa: F401  (the forked workers inherit it: each would import it anew)
    _check_backend(args, cfg)
    if cfg.timeout_s < MIN_TIMEOUT_S:
        raise ProxGTValueError(f"--timeout must be >= {MIN_TIMEOUT_S:g} s for launch: the processes need that long to "
                               f"connect. Got {cfg.timeout_s:g} instead.")
    if world > cfg.nodes:
        procs = f"--nprocs {args.nprocs}" + (f" x --nnodes {args.nnodes} = {world}" if args.nnodes > 1 else "")
        raise ProxGTValueError(f"{procs} exceeds --nodes {cfg.nodes}: every process needs at least one node")
    if args.nnodes > 1:  # before the run folder is claimed or replaced below
        _check_master_addr(args)
    # refuse a folder in use, or holding another run, here (exit 2) before any worker starts; with --resume or
    # --overwrite the folder's contents are rank 0's to keep or replace (rank 0 runs on node rank 0)
    if args.node_rank == 0:
        RunFolder(cfg.out, resume=bool(args.resume or args.overwrite)).close()
    if args.max_restarts < 0:
        raise ProxGTValueError(f"--max-restarts must be an int >= 0. Got {args.max_restarts} instead.")
    if args.max_restarts and not cfg.checkpoint_every:
        raise ProxGTValueError("--max-restarts needs --checkpoint-every N > 0: a restart resumes from the newest "
                               "checkpoint of the run folder")
    if cfg.on_failure == "continue" and args.nnodes > 1:
        raise ProxGTValueError("--on-failure continue works on one machine (--nnodes 1) for now: the launchers of "
                               "several machines do not yet tell the survivors which workers ended")
    if args.max_restarts and args.nnodes > 1:
        raise ProxGTValueError("--max-restarts works on one machine; for several, use torchrun --max-restarts "
                               "with -m proxgt.executors.launch.worker (docs/fault-tolerance.md)")
    if args.overwrite and args.node_rank == 0:
        # replaced here, before any worker starts: a restart (--max-restarts) must never find the old run's
        # checkpoints and resume that run instead of this one
        RunFolder(cfg.out, overwrite=True).close()
    with tempfile.TemporaryDirectory(prefix="proxgt-launch-") as tmp:
        argv = worker_argv(args)
        if start_over:  # the workers start a fresh run with the settings of DIR's checkpoint
            argv = _fresh_run_argv(args, cfg, Path(tmp) / "settings.toml")
        return launch(args.nprocs, argv, timeout_s=cfg.timeout_s, nnodes=args.nnodes,
                      node_rank=args.node_rank, master_addr=args.master_addr, master_port=args.master_port,
                      on_failure=cfg.on_failure, max_restarts=args.max_restarts)


def _fresh_run_argv(args: argparse.Namespace, cfg: Any, path: Path) -> list[str]:
    """Worker flags that run ``cfg`` from the start in its folder (``--resume DIR --overwrite``): the settings go
    in a TOML file that lives as long as the launcher, so that every restart reads the same ones."""
    import tomli_w

    from proxgt._io import atomic_write_text, json_safe

    atomic_write_text(path, tomli_w.dumps(json_safe(cfg.to_toml_dict())))
    return worker_argv(argparse.Namespace(config=str(path), overwrite=True, backend=args.backend,
                                          no_progress=args.no_progress))


def _check_machines(args: argparse.Namespace) -> None:
    """--nnodes/--node-rank/--master-addr/--master-port: one-line errors (exit 2)."""
    if args.nnodes < 1:
        raise ProxGTValueError(f"--nnodes must be an int >= 1. Got {args.nnodes} instead.")
    if not 0 <= args.node_rank < args.nnodes:
        raise ProxGTValueError(
            f"--node-rank must be an int in [0, {args.nnodes}) (0 .. --nnodes - 1). Got {args.node_rank} instead."
        )
    if args.master_port is not None and not 1 <= args.master_port <= 65535:
        raise ProxGTValueError(f"--master-port must be an int in [1, 65535]. Got {args.master_port} instead.")
    if args.nnodes > 1:
        if not args.master_addr:
            raise ProxGTValueError(
                "--nnodes > 1 needs --master-addr: the host name or address of the machine with --node-rank 0"
            )
        if args.master_port is None:
            args.master_port = 29500


def _check_master_addr(args: argparse.Namespace) -> None:
    """--master-addr must resolve; on node rank 0 it must be one of this machine's addresses (the store listens
    there only): one-line errors (exit 2) instead of a store that retries until it times out."""
    import errno
    import socket

    from proxgt.executors._sockets import store_socket

    try:
        socket.getaddrinfo(args.master_addr, args.master_port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise ProxGTValueError(f"--master-addr {args.master_addr!r} does not resolve to an address ({exc})") from None
    if args.node_rank != 0:
        return
    try:
        store_socket(args.master_addr, args.master_port).close()
    except OSError as exc:
        if exc.errno == errno.EADDRNOTAVAIL:
            raise ProxGTValueError(
                f"--master-addr {args.master_addr} is not an address of this machine: node rank 0 hosts the "
                "rendezvous store there (give this machine's address on the network the others reach it by)"
            ) from None
        # a port taken now may be free when the store starts: the launcher says so then


def _check_backend(args: argparse.Namespace, cfg: Any) -> None:
    """--backend nccl needs CUDA and a torch built with NCCL on this machine: a one-line error before any
    worker starts, instead of every worker's traceback."""
    import torch
    import torch.distributed as dist

    if args.backend != "nccl":
        return
    if not (torch.cuda.is_available() and dist.is_nccl_available()):
        raise ProxGTValueError("--backend nccl needs CUDA GPUs and a torch built with NCCL; this machine has "
                               f"{'no CUDA GPU' if not torch.cuda.is_available() else 'no NCCL'}: use --backend gloo")
    if not str(cfg.device).startswith("cuda"):
        raise ProxGTValueError(f"--backend nccl runs on GPUs: give --device cuda (got --device {cfg.device})")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "launch",
        help="run one configuration with N processes on this machine (torch.distributed, one block of nodes each)",
    )
    p.add_argument("--nprocs", type=int, required=True,
                   help="number of worker processes on this machine (in all, --nprocs x --nnodes <= --nodes)")
    m = p.add_argument_group("several machines (run the same command on each, with its own --node-rank)")
    m.add_argument("--nnodes", type=int, default=1, help="number of machines (default 1)")
    m.add_argument("--node-rank", type=int, default=0,
                   help="this machine's rank in [0, --nnodes); node rank 0 hosts the rendezvous store and writes "
                        "the run folder")
    m.add_argument("--master-addr", default=None,
                   help="host name or address of the machine with --node-rank 0 (required when --nnodes > 1)")
    m.add_argument("--master-port", type=int, default=None,
                   help="TCP port of the rendezvous store on that machine (default 29500 with --nnodes > 1, "
                        "else a free port)")
    add_setting_flags(p)
    add_folder_flags(p)
    p.add_argument("--max-restarts", type=int, default=0, metavar="N",
                   help="when a worker fails, restart all workers from the newest checkpoint, at most N times "
                        "(needs --checkpoint-every; as torchrun's --max-restarts)")
    p.add_argument("--backend", choices=("auto", "gloo", "nccl"), default="auto",
                   help="torch.distributed backend (auto: gloo on CPU, nccl on CUDA)")
    p.set_defaults(handler=_handle)
