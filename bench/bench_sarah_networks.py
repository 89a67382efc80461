"""SARAH-type estimators on networks at their defaults: ProxGT-SR-O and -SR-E against ProxGT-SA at equal passes.

    python bench/bench_sarah_networks.py                     # every case, 2 seeds
    python bench/bench_sarah_networks.py --cases fashion-mlp --splits shards --seeds 1
    python bench/bench_sarah_networks.py --old               # also the former defaults (small step, spec sizes)

Each run is ``proxgt run`` at the defaults (step, batch, big batch and period left to the run) on a ring, with
as many iterations as fit the same number of passes over each node's data (component gradients per node,
initialization included, divided by m; refreshes counted where they fall). Cases:

* ``fashion-mlp``:   Fashion-MNIST (60,000 / 10,000), MLP 784-256-10, 8 nodes, 2 passes.
* ``fashion-lenet``: LeNet-5 on 15,000 Fashion-MNIST training images (a seeded subset, so that a pass is
  cheap on 2 cores; test: 20% of them held out), 8 nodes, 3 passes.
* ``digits-mlp``:    scikit-learn ``digits`` (8 x 8 images, 1,437 / 360; no MNIST here, and LeNet-5 needs 12 x 12
  images), MLP 64-256-10, 4 nodes, 20 passes.

Prints one row per (case, split, algorithm): the resolved step and sizes, iterations, passes done, the test
accuracy (mean over seeds, with the spread), the final training objective, and whether any run diverged
(a non-finite objective or one above twice the initial). ``gap`` is the accuracy minus ProxGT-SA's.
``--old`` adds the defaults before this change (SARAH steps 0.02 MLP / 0.01 LeNet-5 at the spec's sizes).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from proxgt.data import load_dataset
from proxgt.estimators import SarahFinite, SarahOnline
from proxgt.executors.simulation import run_simulation
from proxgt.settings import RunConfig
from proxgt.training import build_run

CASES = {
    "fashion-mlp": dict(data="fashion-mnist", problem="mlp", nodes=8, passes=2.0),
    "fashion-lenet": dict(data="fashion-subset", problem="lenet", nodes=8, passes=3.0),
    "digits-mlp": dict(data="digits", problem="mlp", nodes=4, passes=20.0),
}
ALGORITHMS = ("proxgt-sa", "proxgt-sr-o", "proxgt-sr-e")
OLD_STEPS = {"mlp": 0.02, "lenet": 0.01}  # the former NN_ESTIMATOR_STEPS


def _fashion_subset(folder: Path, size: int = 15000) -> str:
    train, _ = load_dataset("fashion-mnist", seed=0)
    keep = np.random.default_rng(0).permutation(len(train))[:size]
    path = folder / "fashion15k.npz"
    np.savez(path, X=train.X.numpy()[keep], y=train.y.numpy()[keep])
    return str(path)


def _old_sizes(name: str, n: int, m: int) -> dict:
    if name == "proxgt-sr-o":
        e = SarahOnline.from_settings(n_nodes=n, local_size=m)
        return dict(batch=e.batch, big_batch=e.big_batch, period=e.period)
    e = SarahFinite.from_settings(n_nodes=n, local_size=m)
    return dict(batch=e.batch, period=e.period)


def _iters_within(est, m: float, budget: float) -> int:
    """The most iterations whose component gradients per node fit ``budget``: with a period, refreshes (B, or m
    without a big batch) counted where they fall; otherwise ``samples_per_iter`` each."""
    sizes = est.sizes
    if "period" not in sizes:
        return max(1, math.floor(budget / est.samples_per_iter(m)))
    refresh, step = sizes.get("big_batch", m), 2 * sizes["batch"]
    t, spent = 0, 0.0
    while True:
        cost = refresh if (t + 1) % sizes["period"] == 0 else step
        if spent + cost > budget:
            return max(1, t)
        t, spent = t + 1, spent + cost


def _run(base: dict, passes: float) -> dict:
    spec = build_run(RunConfig(**base, iters=1))
    n = spec.settings.nodes
    m = float(spec.node_data.counts.double().mean())
    est = spec.algorithm.estimator
    dry = spec.make_oracle(list(range(n)))
    est.init(dry, spec.initial_rows(list(range(n))))
    init = float(dry.ifo.mean())
    iters = _iters_within(est, m, passes * m - init)
    t0 = time.perf_counter()
    hist = run_simulation(RunConfig(**base, iters=iters, log_every=max(1, iters // 4)))
    obj = hist.column("objective")
    cfg = hist.config
    sizes = "/".join(str(cfg.get(k, "-")) for k in ("batch", "big_batch", "period"))
    return dict(step=cfg["step"], sizes=sizes, iters=iters, passes=hist.column("ifo_per_node")[-1] / m,
                acc=hist.column("test_accuracy")[-1], obj=obj[-1],
                diverged=not all(math.isfinite(o) and o <= 2 * obj[0] for o in obj), secs=time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--splits", default="shards,iid")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--old", action="store_true", help="also run the former defaults")
    ap.add_argument("--algorithms", default=",".join(ALGORITHMS), help="which of them (ProxGT-SA gives the gaps)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    tmp = Path(tempfile.mkdtemp(prefix="sarah-bench-"))
    print(f"{'case':13s} {'split':6s} {'algorithm':16s} {'step':>5s} {'b/B/q':>10s} {'iters':>5s} {'passes':>6s} "
          f"{'test acc':>15s} {'gap':>6s} {'objective':>9s} diverged", flush=True)
    for case in args.cases.split(","):
        c = dict(CASES[case])
        passes = c.pop("passes")
        if c["data"] == "fashion-subset":
            c["data"] = _fashion_subset(tmp)
        for split in args.splits.split(","):
            chosen = args.algorithms.split(",")
            variants = [(a, {}) for a in ALGORITHMS if a in chosen]
            if args.old:
                probe = build_run(RunConfig(**c, split=split, algorithm="proxgt-sa", iters=1, seed=0))
                m = int(round(float(probe.node_data.counts.double().mean())))
                variants += [(a, dict(step=OLD_STEPS[c["problem"]], **_old_sizes(a, c["nodes"], m)))
                             for a in ALGORITHMS[1:] if a in chosen]
            sa_acc = None
            for algorithm, extra in variants:
                rows = [_run(dict(c, split=split, algorithm=algorithm, seed=seed, topology="ring", threads=1,
                                  metrics_samples=500, **extra), passes) for seed in range(args.seeds)]
                accs = [r["acc"] for r in rows]
                acc = statistics.mean(accs)
                sa_acc = acc if algorithm == "proxgt-sa" else sa_acc
                label = algorithm + (" (old)" if extra else "")
                spread = f"{min(accs):.3f}-{max(accs):.3f}" if len(accs) > 1 else ""
                gap = f"{100 * (acc - sa_acc):+5.1f}pt" if sa_acc is not None else "-"
                print(f"{case:13s} {split:6s} {label:16s} {rows[0]['step']:5.3g} {rows[0]['sizes']:>10s} "
                      f"{rows[0]['iters']:5d} {statistics.mean(r['passes'] for r in rows):6.2f} "
                      f"{acc:.4f} {spread:>9s} {gap:>7s} "
                      f"{statistics.mean(r['obj'] for r in rows):9.4g} {any(r['diverged'] for r in rows)}",
                      flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
