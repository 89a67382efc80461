"""``proxgt run``: one configuration, all nodes simulated in this process."""

from __future__ import annotations

import argparse
import sys

from proxgt.cli.flags import add_setting_flags, config_from_args, resume_overrides
from proxgt.errors import ProxGTValueError
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
    if args.on_failure is not None:  # a setting of processes that can fail alone
        raise ProxGTValueError("on_failure (--on-failure) applies to 'proxgt launch' (several processes, one of "
                               "which may fail); 'proxgt run' is one process: drop it")
    if args.resume:  # continue, extend (--iters) or start over (--overwrite): plan_resume decides
        hist = run_simulation(None, resume=args.resume, progress=progress, overwrite=args.overwrite,
                              overrides=resume_overrides(args, RESUMABLE))
        out = args.resume
    else:
        cfg = config_from_args(args)
        out = cfg.out or default_run_folder(cfg.algorithm, cfg.seed)
        hist = run_simulation(cfg, out=out, progress=progress, overwrite=args.overwrite)
    print(summary_line(hist))
    print(f"wrote {out}/{{config.toml,metrics.csv,final.npz,summary.json}}")
    return 0


def add_folder_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resume", metavar="DIR", default=None,
                   help="continue the unfinished run in folder DIR from its newest usable checkpoint (settings from "
                        "the checkpoint); a finished run only with --iters N larger than its iterations (extends it) "
                        "or --overwrite")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a run already in the output folder (default: refuse); with --resume DIR, start "
                        "DIR's run over with its settings")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run one configuration (all nodes simulated in this process)")
    add_setting_flags(p)
    add_folder_flags(p)
    p.set_defaults(handler=_handle)
