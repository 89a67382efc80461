"""The sparse path on Fashion-MNIST (docs/neural-networks.md): dense runs and sparse-path runs with the same number
of passes, MLP 784-256-10 and LeNet-5, 8-node ring, shards and iid splits, ProxGT-SA (b = 32, step 0.1).

Usage (repository root, PYTHONPATH=src):
    python experiments/sparse_path.py run [NAME_PREFIX ...]  # skips finished runs; -> experiments/runs/sparse-path
    python experiments/sparse_path.py report                  # -> experiments/reports/sparse-path/{table.md,table.csv,
                                                              #    sparse-path.png} (+ docs/images/sparse-path.png)
A sparse run: l1 ``STRENGTH`` with a warm-up over the first 10% of the iterations, at half of the iterations the
network agrees on the magnitude threshold for the target density and prunes, then trains on the support.
"""

from __future__ import annotations

import csv
import io
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from proxgt._io import atomic_write_bytes, atomic_write_text

RUNS = Path("experiments/runs/sparse-path")
REPORT = Path("experiments/reports/sparse-path")
DOCS_IMAGE = Path("docs/images/sparse-path.png")
ITERS_PER_PASS = 234  # 60000 / 8 nodes = 7500 samples per node, b = 32
PASSES = {"mlp": 10, "lenet": 5}  # LeNet-5: ~0.16 s per iteration on one core
STRENGTH = 3e-4
DENSITIES = {"mlp": (0.05, 0.1, 0.2), "lenet": (0.1, 0.2)}
TARGETS = ((0.1, 1.0), (0.2, 0.5))  # (at most this density, within this many points of the dense model)


def base_args(model: str, split: str, seed: int) -> list[str]:
    iters = PASSES[model] * ITERS_PER_PASS
    return ["--problem", model, "--data", "fashion-mnist", "--split", split, "--nodes", "8", "--topology", "ring",
            "--algorithm", "proxgt-sa", "--batch", "32", "--step", "0.1", "--iters", str(iters),
            "--log-every", str(iters // 5), "--metrics-samples", "500", "--threads", "1", "--seed", str(seed)]


def runs() -> dict[str, list[str]]:
    """name -> proxgt run arguments (out excluded)."""
    out: dict[str, list[str]] = {}
    for model in ("mlp", "lenet"):
        for split in ("shards", "iid"):
            seed = 0
            base = base_args(model, split, seed)
            out[f"{model}-{split}-dense"] = base + ["--reg", "none"]
            for dens in DENSITIES[model]:
                out[f"{model}-{split}-d{dens:g}"] = base + [
                    "--reg", "l1", "--reg-strength", f"{STRENGTH:g}", "--reg-warmup", "0.1",
                    "--sparsify-density", f"{dens:g}", "--sparsify-at", "0.5"]
    return out


def command(name: str, args: list[str]) -> str:
    return "proxgt run " + " ".join(shlex.quote(a) for a in args) + f" --out {RUNS / name}"


def run(prefixes: list[str]) -> None:
    for name, args in runs().items():
        if prefixes and not any(name.startswith(p) for p in prefixes):
            continue
        if (RUNS / name / "summary.json").is_file():
            continue
        print(command(name, args), flush=True)
        subprocess.run([sys.executable, "-m", "proxgt.cli", "run", *args, "--out", str(RUNS / name), "--overwrite"],
                       check=True)


def _row(name: str) -> dict[str, object] | None:
    p = RUNS / name
    if not (p / "summary.json").is_file():
        return None
    summary = json.loads((p / "summary.json").read_text())
    with open(p / "metrics.csv", newline="") as f:
        last = list(csv.DictReader(f))[-1]
    model, split, variant = name.split("-", 2)
    path = summary.get("sparse_path", {})
    return {"run": name, "model": model, "split": split, "variant": variant,
            "passes": float(last["ifo_per_node"]) / 7500, "test_accuracy": float(last["test_accuracy"]),
            "density": float(last["density"]), "threshold": path.get("threshold"),
            "target_density": path.get("target_density")}


def report() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in (_row(n) for n in runs()) if r is not None]
    lines = ["| model | split | run | passes | density (weights) | test accuracy | vs dense (points) | target |",
             "|---|---|---|---|---|---|---|---|"]
    verdicts = []
    groups = sorted({(str(r["model"]), str(r["split"])) for r in rows}, key=lambda g: (g[0] != "mlp", g[1]))
    for model, split in groups:
        group = [r for r in rows if (r["model"], r["split"]) == (model, split)]
        dense = next((r for r in group if r["variant"] == "dense"), None)
        for r in group:
            gap = None if dense is None else 100 * (float(r["test_accuracy"]) - float(dense["test_accuracy"]))
            mark = ""
            if gap is not None and r["variant"] != "dense":
                held = [f"<= {d:.0%} within {p:g}" for d, p in TARGETS if float(r["density"]) <= d and -gap <= p]
                mark = ", ".join(held) if held else "-"
            lines.append(f"| {model} | {split} | {r['variant']} | {float(r['passes']):.2f} | "
                         f"{float(r['density']):.4f} | {100 * float(r['test_accuracy']):.2f}% | "
                         f"{'' if gap is None or r['variant'] == 'dense' else f'{gap:+.2f}'} | {mark} |")
        if dense is not None:
            for d, p in TARGETS:
                ok = [r for r in group if r["variant"] != "dense" and float(r["density"]) <= d
                      and 100 * (float(dense["test_accuracy"]) - float(r["test_accuracy"])) <= p]
                verdicts.append(f"- {model}, {split}: at most {d:.0%} non-zero weights within {p:g} point of the dense "
                                f"model ({100 * float(dense['test_accuracy']):.2f}%): "
                                + ("**holds** (" + ", ".join(f"{r['variant']}: density {float(r['density']):.4f}, "
                                                            f"{100 * float(r['test_accuracy']):.2f}%" for r in ok) + ")"
                                   if ok else "**misses**"))
    md = ("## Sparse path: density vs test accuracy (Fashion-MNIST, 8-node ring, ProxGT-SA, b = 32, step 0.1)\n\n"
          "Dense: reg none. Sparse dN: l1 3e-4 (warm-up over the first 10% of the iterations), at half of the "
          "iterations the network agrees on a magnitude threshold for density N and prunes, then trains on the "
          "support. Same passes per node for dense and sparse runs; seed 0; density over the weights (biases "
          "excluded) of the proximal point at the network average; test accuracy at the network average on the "
          "10000 test images. Commands: `python experiments/sparse_path.py run`.\n\n"
          + "\n".join(lines) + "\n\n" + "\n".join(verdicts) + "\n\n![sparse-path.png](sparse-path.png)\n")
    REPORT.mkdir(parents=True, exist_ok=True)
    atomic_write_text(REPORT / "table.md", md)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) + ["command"])
    writer.writeheader()
    for r in rows:
        writer.writerow({**r, "command": command(str(r["run"]), runs()[str(r["run"])])})
    atomic_write_text(REPORT / "table.csv", buf.getvalue())

    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.6), squeeze=False)
    for ax, (model, split) in zip(axes[0], groups, strict=True):
        group = [r for r in rows if (r["model"], r["split"]) == (model, split)]
        dense = next((r for r in group if r["variant"] == "dense"), None)
        sparse = sorted((r for r in group if r["variant"] != "dense"), key=lambda r: float(r["density"]))
        if dense is not None:
            acc = 100 * float(dense["test_accuracy"])
            ax.axhline(acc, color="k", lw=1, label=f"dense {acc:.1f}%")
            ax.axhspan(acc - 0.5, acc, color="tab:green", alpha=0.15, label="-0.5 point")
            ax.axhspan(acc - 1.0, acc - 0.5, color="tab:orange", alpha=0.15, label="-1 point")
        for d in (0.1, 0.2):
            ax.axvline(d, color="grey", ls="--", lw=1)
        ax.plot([float(r["density"]) for r in sparse], [100 * float(r["test_accuracy"]) for r in sparse], "o-",
                color="tab:blue", label="sparse path")
        ax.set_xscale("log")
        ax.set_xlabel("non-zero weights (share)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{'MLP' if model == 'mlp' else 'LeNet-5'}, {split}")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, dpi=110)
    atomic_write_bytes(REPORT / "sparse-path.png", png.getvalue())
    DOCS_IMAGE.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPORT / "sparse-path.png", DOCS_IMAGE)
    print(md)


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("run", "report"):
        sys.exit(__doc__)
    if sys.argv[1] == "run":
        run(sys.argv[2:])
    else:
        report()
