"""``proxgt run``: one configuration, all nodes simulated in this process."""

from __future__ import annotations

import argparse
import sys

from proxgt.cli.flags import add_setting_flags, config_from_args, resume_overrides
from proxgt.settings import RESUMABLE

__all__ = ["register", "summary_line"]


def summary_line(hist) -> str:
    """One line with the run's final metrics."""
    last = hist.rows[-1]
    parts = [f"{k}={last[k]:.4g}" for k in ("grad_mapping_sq", "consensus", "objective") if k in last]
    for k in ("test_accuracy", "density"):
        if k in last:
            parts.append(f"{k}={last[k]:.4f}")
    return (f"{hist.config['algorithm']}: {int(last['iter'])} iterations, ifo/node={last['ifo_per_node']:.0f}, "
            f"rounds={int(last['comm_rounds'])}; " + ", ".join(parts))


def _handle(args: argparse.Namespace) -> int:
    from proxgt.executors.simulation import run_simulation
    from proxgt.training.folder import default_run_folder

    progress = sys.stderr.isatty() and not args.no_progress
    if args.resume:
        if args.overwrite:
            raise_conflict("--resume", "--overwrite")
        hist = run_simulation(None, resume=args.resume, progress=progress,
                              overrides=resume_overrides(args, RESUMABLE))
        out = args.resume
    else:
        cfg = config_from_args(args)
        out = cfg.out or default_run_folder(cfg.algorithm, cfg.seed)
        hist = run_simulation(cfg, out=out, progress=progress, overwrite=args.overwrite)
    print(summary_line(hist))
    print(f"wrote {out}/{{config.toml,metrics.csv,final.npz,summary.json}}")
    return 0


def raise_conflict(a: str, b: str) -> None:
    from proxgt.errors import ProxGTValueError

    raise ProxGTValueError(f"{a} and {b} exclude each other: {a} continues the run in the folder, {b} replaces it")


def add_folder_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resume", metavar="DIR", default=None,
                   help="continue the run in folder DIR from its newest checkpoint (settings from the checkpoint)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a run already in the output folder (default: refuse)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run one configuration (all nodes simulated in this process)")
    add_setting_flags(p)
    add_folder_flags(p)
    p.set_defaults(handler=_handle)
