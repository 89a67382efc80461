"""The network results table (docs/neural-networks.md) from the runs experiments/run_device.sh writes to
experiments/runs/nn-results/.

Usage (repository root): python experiments/nn_results.py [RUNS_DIR] -> experiments/reports/nn-results/table.md
Per run: batch, K, step, passes per node (component gradients per node / local samples), and at the last logged
row the test accuracy at the network average and the density of the proximal point there; plus, from the run's
sparsity.json (proxgt.reporting.tradeoff), the largest density of a node's own model and the test accuracy of the
worst node model.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from proxgt._io import atomic_write_text
from proxgt.reporting.runs import load_run
from proxgt.reporting.tradeoff import run_sparsity

ORDER = ["mlp-sa-b32", "mlp-sa-b128", "mlp-sro", "mlp-sa-mixprox", "lenet-sa", "lenet-sa-step0.3", "lenet-sro"]
TARGET = {"mlp": 0.84, "lenet": 0.87}  # the accuracy targets of docs/neural-networks.md


def main(root: Path) -> str:
    lines = ["| run | model | algorithm | order | batch/node | K | step | passes | test acc. (target) | density (prox "
             "point at avg) | node-model density (max) | node-model test acc. (min) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in ORDER:
        p = root / name
        if not (p / "summary.json").is_file():
            lines.append(f"| {name} | not finished | | | | | | | | | | |")
            continue
        rec = load_run(p)
        s = json.loads((p / "summary.json").read_text())
        cfg, last = rec.config, rec.rows[-1]
        local = 60000 / int(cfg.get("nodes", 8))
        batch = cfg.get("batch")
        if cfg.get("algorithm") == "proxgt-sr-o":
            batch = f"{batch}, B {cfg.get('big_batch')}, q {cfg.get('period')}"
        sp = run_sparsity(p) or {}
        model = cfg.get("problem")
        acc = last.get("test_accuracy", float("nan"))
        mark = "**" if acc >= TARGET.get(model, 1.0) else ""
        nd = f"{max(sp['node_density']):.3f}" if sp else "-"
        na = f"{100 * min(sp['node_test_accuracy']):.1f}%" if sp else "-"
        lines.append(
            f"| {name} | {model} | {cfg.get('algorithm')} | {cfg.get('order', 'prox-mix')} | {batch} "
            f"| {s.get('rounds')} | {s.get('step'):g} | {last['ifo_per_node'] / local:.2f} "
            f"| {mark}{100 * acc:.1f}%{mark} "
            f"({100 * TARGET.get(model, 0):.0f}%) | {last.get('density', float('nan')):.3f} | {nd} | {na} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("experiments/runs/nn-results")
    md = main(root)
    out = Path("experiments/reports/nn-results")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "table.md", md)
    print(md)
