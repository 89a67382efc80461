"""Scale benchmark: thousands of simulated nodes, and sparse high-dimensional data.

    python bench/bench_scale.py                 # ring and random-geometric, n in {100, 1000, 10000}
    python bench/bench_scale.py --sizes 100 1000 --topologies ring
    python bench/bench_scale.py --sparse-only   # the 1,000,000-feature LIBSVM run only

1. Many nodes: for each (topology, n), in a fresh subprocess, on a9a-synthetic (32561 x 123, d = 123; about 3
   samples per node at n = 10,000): the time to build the topology (graph, Metropolis W, lambda), the median time
   of one ProxGT-SR-E iteration (batch 1, one gossip round per mixing, so the per-node figure compares sizes),
   that time divided by n, and the peak memory above the interpreter's own (ru_maxrss after the run minus after
   the imports) against the bytes of the node states (algorithm state tensors and each node's sample-stream
   generator) plus the data (node shards and the pooled training set they were cut from).
   Targets: time per iteration / n flat within 2x from 1,000 to 10,000 nodes; memory within 2x of states + data.
2. Sparse data: ``proxgt run`` on a LIBSVM file of 2,000 rows with feature indices up to 1,000,000 (written here,
   seeded), default settings (16 nodes) with ProxGT-SA, -SR-E and -SR-O, 5 iterations; peak RSS of each child
   process (target < 1 GB; the 16 node states of 10^6 float32 entries are 64 MiB each).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_CHILD = r"""
import json, resource, statistics, sys, time
import torch
from proxgt.mixing import Mixer, SimulatedCommunicator
from proxgt.settings import RunConfig
from proxgt.topology import make_topology
from proxgt.training import build_run
torch.set_num_threads(1)
topology, n, iters = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
t0 = time.perf_counter(); make_topology(topology, n, seed=0); t_build = time.perf_counter() - t0
cfg = RunConfig(algorithm="proxgt-sr-e", nodes=n, topology=topology, rounds=1, iters=iters, batch=1,
                test_fraction=0.0, data="a9a-synthetic")
spec = build_run(cfg)
oracle = spec.make_oracle(list(range(n)))
comm = SimulatedCommunicator(spec.topology.W, spec.topology.degrees)
mix = Mixer(comm, cfg.mixing, spec.rounds, lam=spec.topology.lam)
alg = spec.algorithm
state = alg.init(spec.initial_rows(list(range(n))), oracle, mix)
times = []
for _ in range(iters):
    t0 = time.perf_counter(); state = alg.update(state, oracle, mix); times.append(time.perf_counter() - t0)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
states = sum(v.numel() * v.element_size() for v in state if isinstance(v, torch.Tensor))
nd, tr = spec.node_data, spec.train
data = sum(t.numel() * t.element_size() for t in (nd.X, nd.y, tr.X, tr.y))  # node shards + pooled train set
rng = sum(g.get_state().numel() for g in oracle.generators)  # one sample stream per node
print(json.dumps({"build_s": t_build, "iter_s": statistics.median(times), "extra_bytes": peak - base,
                  "states_bytes": states + rng, "data_bytes": data}))
"""


def bench_nodes(topologies: list[str], sizes: list[int], iters: int) -> None:
    print("== ProxGT-SR-E with many simulated nodes (a9a-synthetic, d = 123, batch 1, 1 round per mixing) ==")
    print(f"{'topology':>16} {'n':>6} {'build s':>8} {'iter ms':>9} {'us/node':>8} {'extra MiB':>10} "
          f"{'states+data MiB':>16} {'ratio':>6}")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for topo in topologies:
        for n in sizes:
            out = subprocess.run([sys.executable, "-W", "ignore", "-c", _CHILD, topo, str(n), str(iters)],
                                 capture_output=True, text=True, env=env, check=False)
            if out.returncode != 0:
                print(f"{topo:>16} {n:>6} failed: {out.stderr.strip().splitlines()[-1]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            sd = (r["states_bytes"] + r["data_bytes"]) / 2**20
            extra = r["extra_bytes"] / 2**20
            print(f"{topo:>16} {n:>6} {r['build_s']:>8.2f} {r['iter_s'] * 1e3:>9.2f} "
                  f"{r['iter_s'] / n * 1e6:>8.2f} {extra:>10.1f} {sd:>16.1f} {extra / sd:>6.2f}", flush=True)


def write_wide_libsvm(path: Path, rows: int = 2000, width: int = 1_000_000, seed: int = 0) -> None:
    """A seeded LIBSVM file: ``rows`` rows of 5..40 entries at indices up to ``width`` (the first row uses it)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    with path.open("w") as fh:
        for i in range(rows):
            idx = np.sort(rng.choice(width, size=int(rng.integers(5, 41)), replace=False)) + 1
            if i == 0:
                idx[-1] = width
            label = 1 if rng.random() < 0.5 else -1
            fh.write(f"{label} " + " ".join(f"{j}:{rng.random():.3f}" for j in idx) + "\n")


def _peak_run(cmd: list[str]) -> tuple[int, float, float, str]:
    """(exit code, wall seconds, peak RSS in MiB of that child alone, last stderr line) of one command."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        lines = err.read().decode(errors="replace").strip().splitlines()
    return proc.returncode, time.perf_counter() - t0, usage.ru_maxrss / 2**10, lines[-1] if lines else ""


def bench_sparse() -> None:
    print("\n== sparse LIBSVM: 2,000 rows, feature indices up to 1,000,000 (default 16 nodes, 5 iterations) ==")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "wide.svm"
        write_wide_libsvm(path)
        for algorithm in ("proxgt-sa", "proxgt-sr-e", "proxgt-sr-o"):
            cmd = ["proxgt", "run", "--data", str(path), "--algorithm", algorithm, "--iters", "5",
                   "--out", str(Path(tmp) / algorithm), "--no-progress"]
            code, wall, peak, last = _peak_run(cmd)
            print(f"proxgt run --data wide.svm --algorithm {algorithm} --iters 5: exit {code}, {wall:.1f} s, "
                  f"peak RSS {peak:.0f} MiB = {peak * 2**20 / 1e9:.3f} GB (target < 1 GB)"
                  + ("" if code == 0 else f"\n    {last}"), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--topologies", nargs="+", default=["ring", "random_geometric"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[100, 1000, 10000])
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--sparse-only", action="store_true")
    args = ap.parse_args()
    if not args.sparse_only:
        bench_nodes(args.topologies, args.sizes, args.iters)
    bench_sparse()


if __name__ == "__main__":
    main()
