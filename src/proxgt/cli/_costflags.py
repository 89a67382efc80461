"""Cost-model flags shared by ``proxgt plan`` and ``proxgt report``."""

from __future__ import annotations

import argparse
from typing import Any

from proxgt.cli.flags import number_or

__all__ = ["add_cost_flags", "cost_from_args"]


_sample_time = number_or("measure", float, "seconds per sample")


def add_cost_flags(p: argparse.ArgumentParser, *, defaults: bool = True) -> None:
    from proxgt.costmodel import DEFAULT_BANDWIDTH_BPS, DEFAULT_LATENCY_S

    g = p.add_argument_group("cost model")
    g.add_argument("--latency", type=float, default=DEFAULT_LATENCY_S if defaults else None,
                   help=f"seconds per gossip round (default {DEFAULT_LATENCY_S:g})")
    g.add_argument("--bandwidth", type=float, default=DEFAULT_BANDWIDTH_BPS if defaults else None,
                   help=f"bytes per second a node sends (default {DEFAULT_BANDWIDTH_BPS:.3g})")
    g.add_argument("--sample-time", type=_sample_time, default="measure" if defaults else None,
                   help="seconds per component gradient, or 'measure' (time gradients on this machine)")


def cost_from_args(args: argparse.Namespace, cfg: Any = None):
    """A CostModel from the flags (None when every flag is unset and ``cfg`` is None)."""
    from proxgt.costmodel import CostModel, measure_sample_time

    vals: dict[str, float] = {}
    if args.latency is not None:
        vals["latency_s"] = args.latency
    if args.bandwidth is not None:
        vals["bandwidth_Bps"] = args.bandwidth
    if isinstance(args.sample_time, float):
        vals["sample_s"] = args.sample_time
    elif args.sample_time == "measure" and cfg is not None:
        vals["sample_s"] = measure_sample_time(cfg)
    return CostModel.from_dict(vals, source="cost flags")
