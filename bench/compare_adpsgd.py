"""Synchronous and asynchronous ProxGT-SA against Prox-AD-PSGD on the virtual clock: virtual seconds until the
gradient mapping stays at or below 1e-3 (breast_cancer, 8 nodes on a ring, node 2 10x slower, exponential link
latency, 3 seeds). Run: ``OMP_NUM_THREADS=1 python bench/compare_adpsgd.py``; the table is in
docs/virtual-clock.md."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

from proxgt.executors.simulation import run_simulation

TARGET = 1e-3


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        speeds = Path(tmp) / "speeds.csv"
        speeds.write_text("node,s\n" + "".join(f"{i},{1e-3 if i == 2 else 1e-4}\n" for i in range(8)))
        print("| method | seed | virtual s to target | final grad mapping |")
        print("|---|---|---|---|")
        for alg, asyn in [("proxgt-sa", False), ("proxgt-sa", True), ("prox-adpsgd", True)]:
            for seed in (0, 1, 2):
                cfg = dict(algorithm=alg, data="breast_cancer", nodes=8, topology="ring", iters=400, log_every=5,
                           batch=16, rounds=1, mixing="plain", node_speed=str(speeds), link_latency="exp:0.002",
                           seed=seed, asynchronous=asyn)
                rows = run_simulation(cfg).rows
                gm = [r["grad_mapping_sq"] for r in rows]
                k = next((i for i in range(len(gm)) if all(v <= TARGET for v in gm[i:])), None)
                t = rows[k]["sim_time_s"] if k is not None else math.inf
                print(f"| {alg} {'async' if asyn else 'sync'} | {seed} | {t:.3g} | {gm[-1]:.2e} |", flush=True)


if __name__ == "__main__":
    main()
