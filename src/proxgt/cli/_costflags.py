"""Cost-model flags shared by ``proxgt plan`` and ``proxgt report``, and the network-model flags of ``plan``.

``--link-failure`` and ``--straggler`` (:func:`add_network_flags`) are on ``plan`` only: ``report`` and
``compare`` read runs that happened, whose counters already count what a failing link did (did not) send, so
scaling them by a failure model would count failures twice; and a straggler wait depends on each run's graph,
while a report applies one cost model to series on different graphs.
"""

from __future__ import annotations

import argparse
from typing import Any

from proxgt.cli.flags import number_or

__all__ = ["add_cost_flags", "cost_from_args", "add_network_flags", "network_from_args"]


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


def add_network_flags(p: argparse.ArgumentParser) -> None:
    """``--link-failure P`` (unless the settings table already gave the parser that flag, as the simulation's
    ``link_failure`` setting does) and ``--straggler SPEC``, in the "cost model" group."""
    from proxgt.costmodel import STRAGGLER_SPECS

    g = next((a for a in p._action_groups if a.title == "cost model"), None) or p.add_argument_group("cost model")
    if "--link-failure" not in p._option_string_actions:
        g.add_argument("--link-failure", dest="link_failure", type=float, default=None, metavar="P",
                       help="probability that each link is down in each gossip round, in [0, 1) (default 0)")
    g.add_argument("--straggler", default="none", metavar="SPEC",
                   help=f"per-node, per-round delay: {STRAGGLER_SPECS} (default none). With it and/or "
                        "--link-failure, plan adds the expected cost under both on this graph; its pilots run on a "
                        "reliable network")


def network_from_args(args: argparse.Namespace, cfg: Any = None):
    """A :class:`proxgt.costmodel.NetworkModel` from ``--link-failure`` (else the config's ``link_failure``,
    else 0) and ``--straggler``; one-line errors for a rate outside [0, 1) or a bad spec."""
    from proxgt._validation import param_error
    from proxgt.costmodel import NetworkModel, Straggler

    p = getattr(args, "link_failure", None)
    if p is None:
        p = getattr(cfg, "link_failure", None) or 0.0
    if isinstance(p, bool) or not isinstance(p, int | float) or not (0.0 <= p < 1.0):
        raise param_error("plan", "link-failure", "a number in [0, 1)", p)
    return NetworkModel(float(p), Straggler.parse(args.straggler))
