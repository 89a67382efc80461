"""``proxgt report DIR``: plots and report.md for a suite folder (or any folder of run folders)."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def _handle(args: argparse.Namespace) -> int:
    from proxgt.reporting.report import write_report

    cost: dict = {}
    for key, val in (("latency_s", args.latency), ("bandwidth_Bps", args.bandwidth), ("sample_s", args.sample_time)):
        if val is not None:
            cost[key] = val
    path = write_report(args.dir, out=args.out, target=args.target, metric=args.metric, cost=cost,
                        group_by=args.group_by)
    print(f"wrote {path} (with table.csv, table.md and PNG plots beside it)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from proxgt.cli._costflags import add_cost_flags

    p = sub.add_parser("report", help="PNG plots and report.md for a suite folder or a folder of runs")
    p.add_argument("dir", help="a suite's output folder, or any folder holding run folders")
    p.add_argument("--out", default=None, help="where to write (default DIR)")
    p.add_argument("--target", type=float, default=None, help="metric target (default: the suite's)")
    p.add_argument("--metric", default=None, help="metrics column (default: the suite's, else grad_mapping_sq)")
    p.add_argument("--group-by", default=None, help="one figure per value of this setting (e.g. topology)")
    add_cost_flags(p, defaults=False)
    p.set_defaults(handler=_handle)
