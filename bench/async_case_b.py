"""Issue 18, case (b): one node 10x slower. Synchronous against asynchronous ProxGT-SR-E on real a9a, 16 nodes,
same seed and clock profile: virtual seconds until grad_mapping_sq stays at or below the target.

    OMP_NUM_THREADS=1 python bench/async_case_b.py                      # ring, seeds 0 1 2
    OMP_NUM_THREADS=1 python bench/async_case_b.py --topology random_geometric --staleness 4 16

Profile: 1e-4 s per component gradient, 1e-3 s on node 5 (a ``--node-speed`` file), 5 ms per message on every
link; ``--mixing plain --rounds 1`` (what ``--async`` uses) for both designs, SR-E's default sizes and step.
The time to target is the suites' sustained rule (:func:`proxgt.reporting.sustained_index`: the first logged row
from which the metric stays at or below the target to the end of the run). Times are virtual (sim_time_s), so
they do not depend on this machine; the asynchronous runs end when every node has done ``--iters`` iterations.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

from proxgt.executors.simulation import run_simulation
from proxgt.reporting import sustained_index

N, SLOW = 16, 5


def time_to_target(rows: list[dict[str, float]], target: float) -> float:
    """sim_time_s of the first logged row from which grad_mapping_sq stays <= target (inf if never)."""
    k = sustained_index([r["grad_mapping_sq"] for r in rows], target)
    return math.inf if k is None else rows[k]["sim_time_s"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--staleness", type=int, nargs="+", default=[4], help="--max-staleness values of the async runs")
    p.add_argument("--topology", default="ring")
    p.add_argument("--iters", type=int, default=400, help="iterations of the synchronous runs")
    p.add_argument("--async-iters", type=int, default=None, help="iterations every async node does [--iters]")
    p.add_argument("--targets", type=float, nargs="+", default=[1e-4])
    p.add_argument("--latency", type=float, default=0.005)
    p.add_argument("--bandwidth", type=float, default=None, help="bytes per second on every link [unlimited]")
    p.add_argument("--fast", type=float, default=1e-4, help="seconds per component gradient of the other nodes")
    p.add_argument("--slow-node", type=int, default=SLOW, help="the node 10x slower")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        speeds = Path(tmp) / "speeds.csv"
        speeds.write_text("node,seconds_per_gradient\n" + "".join(
            f"{i},{args.fast * (10 if i == args.slow_node else 1):g}\n" for i in range(N)))
        base = dict(data="a9a", nodes=N, topology=args.topology, algorithm="proxgt-sr-e", iters=args.iters,
                    log_every=10, mixing="plain", rounds=1, node_speed=str(speeds), link_latency=args.latency)
        if args.bandwidth:
            base["link_bandwidth"] = args.bandwidth
        print(f"grad_mapping_sq targets (sustained); virtual seconds to target (ratio async / sync); {args.topology}, "
              f"node {args.slow_node} 10x slower ({args.fast:g} s per gradient elsewhere), latency {args.latency:g} s, "
              f"bandwidth {args.bandwidth or 'unlimited'}")
        print("| target | seed | sync | " + " | ".join(f"async S={s}" for s in args.staleness) + " |")
        print("|---" * (3 + len(args.staleness)) + "|")
        for seed in args.seeds:
            sync = run_simulation(dict(base, seed=seed)).rows
            runs = [run_simulation(dict(base, seed=seed, asynchronous=True, max_staleness=s,
                                        iters=args.async_iters or args.iters)).rows for s in args.staleness]
            for target in args.targets:
                t_sync = time_to_target(sync, target)
                cells = [time_to_target(rows, target) for rows in runs]
                print(f"| {target:g} | {seed} | {t_sync:.2f} | "
                      + " | ".join(f"{t:.2f} ({t / t_sync:.2f})" for t in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
