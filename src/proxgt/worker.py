"""One process of a distributed run: ``python -m proxgt.worker <run flags>``, started by torchrun or
``proxgt launch``.

Several machines (each runs the same command; the rendezvous of torchrun connects them)::

    torchrun --nnodes 2 --nproc-per-node 4 --node-rank 0 --rdzv-endpoint HOST0:29500 \\
        -m proxgt.worker --nodes 16 --data a9a-synthetic --out runs/dist --timeout 60

The worker reads RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT from the environment (torchrun sets them),
hosts the block of nodes of its rank, and rank 0 writes the run folder. Exit codes: 0 ok, 1 another rank (or
this one) failed, 2 bad input, 3 divergence. Error lines name this process's rank and, for a failure
elsewhere, the failed rank.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

__all__ = ["main", "build_worker_parser"]


def build_worker_parser() -> argparse.ArgumentParser:
    from proxgt.cli._run import add_folder_flags
    from proxgt.cli.flags import add_setting_flags

    p = argparse.ArgumentParser(prog="python -m proxgt.worker",
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


def main(argv: Sequence[str] | None = None, fault_hook: Callable[[int, int], None] | None = None) -> int:
    """Run one worker; ``fault_hook(rank, t)`` runs after every iteration (tests inject failures with it)."""
    rank = os.environ.get("RANK", "?")
    args = build_worker_parser().parse_args(argv)
    import torch.distributed as dist

    from proxgt.cli._run import summary_line
    from proxgt.cli.flags import config_from_args, resume_overrides
    from proxgt.errors import DivergenceError, ProxGTValueError
    from proxgt.executors.distributed import DistributedFailure, run_distributed
    from proxgt.settings import RESUMABLE

    backend = None if args.backend == "auto" else args.backend
    progress = sys.stderr.isatty() and not args.no_progress
    try:
        if args.resume:
            hist = run_distributed(None, resume=args.resume, backend=backend, progress=progress,
                                   overrides=resume_overrides(args, RESUMABLE), fault_hook=fault_hook)
        else:
            hist = run_distributed(config_from_args(args), backend=backend, progress=progress,
                                   overwrite=args.overwrite, fault_hook=fault_hook)
    except ProxGTValueError as exc:
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
        import traceback

        traceback.print_exc()
        sys.stderr.write(f"proxgt: error: rank {rank} failed: {type(exc).__name__}: {exc}\n")
        return _exit(1)
    if str(rank) == "0" and hist is not None:
        info = hist.summary.get("distributed", {})
        print(summary_line(hist).replace(" iterations,", f" iterations on {info.get('world_size')} processes,", 1))
        print(f"wrote {hist.config.get('out')}/{{config.toml,metrics.csv,final.npz,summary.json}}")
    try:
        dist.destroy_process_group()
    except Exception:
        pass
    return _exit(0)


if __name__ == "__main__":
    raise SystemExit(main())
