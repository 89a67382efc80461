"""``proxgt plan``: recommend the gossip rounds K (and mixing kind) that minimize modeled time to a target.

Takes the same flags as ``proxgt run`` (the problem, data, graph and algorithm of the planned pilot) plus a
cost model (latency, bandwidth, per-sample time, given or measured here) and a target. Samples-to-target for
each K are estimated by short pilot runs of that very configuration (see
:func:`proxgt.costmodel.plan_rounds`), so keep ``--iters`` to what the target needs. A pilot reaches the target
at the first logged point from which its seed-mean metric stays at or below it to the end (a dip that does not
last does not count; it is shown as a secondary column), and its final value is the median of the seed mean over
the last 20% of the logged points.

``--link-failure P`` and ``--straggler SPEC`` add a network model (:class:`proxgt.costmodel.NetworkModel`): the
pilots run on a reliable network, and their rounds, bytes and time at the target are turned into expected ones
under failures and stragglers on the configured graph (columns "expected ..." and "overhead"); the
recommendation then minimizes the expected time.

With a clock setting (``--node-speed``, ``--link-latency``, ``--link-bandwidth``, as for ``proxgt run``) the
plan predicts each option's virtual time to the target from those specifications (``predicted clock s``,
:class:`proxgt.costmodel.clock.ClockPrediction`; the recommendation minimizes it) and shows the pilots' own
simulated ``sim_time_s`` there beside it (``simulated s``) and their ratio.
"""

from __future__ import annotations

import argparse
import math
import sys

__all__ = ["register"]


def _fmt(v: float, spec: str = ",.0f") -> str:
    return "not reached" if not math.isfinite(v) else format(v, spec)


def _int_list(text: str) -> list[int]:
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return vals


def _handle(args: argparse.Namespace) -> int:
    from proxgt._validation import ProxGTValueError, check_positive_float, check_positive_int
    from proxgt.cli._costflags import cost_from_args, network_from_args
    from proxgt.cli.flags import config_from_args
    from proxgt.costmodel import plan_rounds
    from proxgt.mixing import MIXING_KINDS
    from proxgt.reporting.runs import table_caption

    cfg = config_from_args(args)
    if cfg.asynchronous:
        raise ProxGTValueError("plan predicts synchronous runs (every round waits for the neighbours); leave "
                               "--async off, or compare asynchronous runs on sim_time_s with proxgt run")
    if cfg.availability is not None or cfg.link_outages is not None:
        raise ProxGTValueError("plan predicts time from the speed and link distributions, not from availability or "
                               "outage traces; leave --availability and --link-outages off, or measure them with "
                               "proxgt run (sim_time_s)")
    check_positive_float(args.target, "target", "plan")
    check_positive_int(args.pilot_seeds, "pilot-seeds", "plan")
    mixings = tuple(m.strip() for m in args.mixings.split(",") if m.strip())
    for m in mixings:
        if m not in MIXING_KINDS:
            raise ProxGTValueError(f"The 'mixings' parameter of plan must list {', '.join(MIXING_KINDS)}. Got {m!r}.")
    network_model = network_from_args(args, cfg)
    if cfg.link_failure:
        cfg = cfg.merged({"link_failure": 0.0})  # the pilots run on a reliable network; the model adds failures
    cost = cost_from_args(args, cfg)
    network = None
    if network_model.link_failure > 0 or network_model.straggler.kind != "none":
        from proxgt.registry import TIME_VARYING, TOPOLOGIES
        from proxgt.training import build_run

        if TIME_VARYING in TOPOLOGIES.traits(cfg.topology):
            raise ProxGTValueError(
                f"--link-failure and --straggler in plan model a fixed graph; --topology {cfg.topology} changes it "
                "every round (measure it instead: proxgt run --link-failure P, or a suite)")

        network = network_model.on_topology(build_run(cfg.replace(out=None)).topology, seed=cfg.seed)
    cands, best = plan_rounds(cfg, cost, target=args.target, metric=args.metric, mixings=mixings, ks=args.ks,
                              seeds=args.pilot_seeds, progress=sys.stderr.isatty() and not args.no_progress,
                              network=network)
    print(f"plan: {cfg.algorithm} on a {cfg.nodes}-node {cfg.topology}, target {args.metric} <= {args.target:g}; "
          f"cost: {cost.latency_s:g} s/round, {cost.bandwidth_Bps:.3g} B/s, {cost.sample_s:.3g} s/sample")
    if network is not None:
        print(network.describe())
        print("expected = pilot cost at the target with rounds x round factor, bytes x byte factor and the sustained "
              "straggler wait added to every round's latency; overhead = expected s / modeled s")
    print(table_caption(args.metric, args.target))
    clocked = any(not math.isnan(c.clock_s) for c in cands)
    extra_head = " expected rounds | expected bytes/node | expected s | overhead |" if network is not None else ""
    extra_head += " predicted clock s | simulated s | predicted/simulated |" if clocked else ""
    print("| mixing | K | ||M_K-J|| | iters to target | samples/node to target | rounds to target | "
          "bytes/node to target | modeled s to target | first-dip samples/node | first-dip rounds | final median |"
          + extra_head)
    print("|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" * 4 if network is not None else "")
          + ("---|" * 3 if clocked else ""))
    for c in cands:
        extra = (f" {_fmt(c.expected_rounds)} | {_fmt(c.expected_bytes, '.3g')} | {_fmt(c.expected_s, '.4g')} | "
                 f"{_fmt(c.overhead, '.3g')} |" if network is not None else "")
        if clocked:
            ratio = c.clock_s / c.simulated_s if c.reached and c.simulated_s > 0 else math.nan
            extra += f" {_fmt(c.clock_s, '.4g')} | {_fmt(c.simulated_s, '.4g')} | {_fmt(ratio, '.3g')} |"
        print(f"| {c.mixing} | {c.rounds} | {c.contraction:.3g} | {_fmt(c.iters)} | {_fmt(c.samples_per_node)} | "
              f"{_fmt(c.comm_rounds)} | {_fmt(c.bytes_per_node, '.3g')} | {_fmt(c.modeled_s, '.4g')} | "
              f"{_fmt(c.first_dip_samples)} | {_fmt(c.first_dip_rounds)} | {c.final_median:.3g} |" + extra)
    if best is None:
        print(f"no option reached the target (and stayed at or below it) within {cfg.iters} iterations: raise "
              "--iters or loosen --target")
        return 1
    expected = (f"; expected under the network model: {best.expected_rounds:,.0f} rounds, "
                f"{best.expected_bytes:.3g} bytes, {best.expected_s:.4g} s (x{best.overhead:.3g})"
                if network is not None else "")
    if clocked:
        expected += f"; predicted on the clock: {best.clock_s:.4g} s (simulated {best.simulated_s:.4g} s)"
    print(f"recommended: --mixing {best.mixing} --rounds {best.rounds}: per node {best.samples_per_node:,.0f} "
          f"samples, {best.comm_rounds:,.0f} rounds, {best.bytes_per_node:.3g} bytes, modeled {best.modeled_s:.4g} s "
          f"({best.iters:,.0f} iterations){expected}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from proxgt.cli._costflags import add_cost_flags, add_network_flags
    from proxgt.cli.flags import add_setting_flags

    p = sub.add_parser("plan", help="recommend gossip rounds K and mixing kind minimizing modeled time to a target")
    add_setting_flags(p, with_out=False)
    p.add_argument("--target", type=float, required=True, help="metric value to reach")
    p.add_argument("--metric", default="grad_mapping_sq", help="metrics column (default grad_mapping_sq)")
    p.add_argument("--ks", type=_int_list, default=None,
                   help="K to try, e.g. 1,2,4,8 (default: 1 up to the K with ||M_K - J|| <= 0.05)")
    p.add_argument("--mixings", default="plain,chebyshev", help="mixing kinds to try (default plain,chebyshev)")
    p.add_argument("--pilot-seeds", type=int, default=1, help="seeds per pilot (default 1)")
    add_cost_flags(p)
    add_network_flags(p)
    p.set_defaults(handler=_handle)
