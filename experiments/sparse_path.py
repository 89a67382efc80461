"""The sparse path on Fashion-MNIST (docs/neural-networks.md): dense runs and sparse-path runs with the same number
of passes, MLP 784-256-10 and LeNet-5, 8-node ring, shards and iid splits, ProxGT-SA (b = 32, step 0.1).

Usage (repository root, PYTHONPATH=src):
    python experiments/sparse_path.py run [NAME_PREFIX ...]  # skips finished runs; -> experiments/runs/sparse-path
    python experiments/sparse_path.py report  # -> experiments/reports/sparse-path/{table.md,report.md,table.csv,
                                              #    sparse-path.png} (+ docs/images/sparse-path.png)
A sparse run (``SPARSE``): l1 with a warm-up over the first 10% of the iterations, at half of the iterations the
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
from typing import Any

from proxgt._io import atomic_write_bytes, atomic_write_text

RUNS = Path("experiments/runs/sparse-path")
REPORT = Path("experiments/reports/sparse-path")
DOCS_IMAGE = Path("docs/images/sparse-path.png")
ITERS_PER_PASS = 234  # 60000 / 8 nodes = 7500 samples per node, b = 32
PASSES = {"mlp": 10, "lenet": 5}  # LeNet-5: ~0.16 s per iteration on one core
#: the sparse runs of each model: (target density, l1 strength); l1 3e-4 was tried first on the MLP and cost
#: 1.4 points before the switch already, so the later runs use 1e-4
#: (density, strength, steps): steps > 1 prunes gradually (sparsify_steps)
SPARSE = {"mlp": ((0.1, 3e-4, 1), (0.2, 3e-4, 1), (0.1, 1e-4, 1), (0.2, 1e-4, 1), (0.1, 1e-4, 4)),
          "lenet": ((0.1, 1e-4, 1), (0.2, 1e-4, 1), (0.1, 1e-4, 4), (0.2, 1e-4, 4))}
#: seeds per model; seeds other than 0 run the dense model and the SEEDED sparse runs only
SEEDS = {"mlp": (0, 1), "lenet": (0,)}
SEEDED = ((0.1, 1e-4, 1), (0.2, 1e-4, 1))
TARGETS = ((0.1, 1.0), (0.2, 0.5))  # (at most this density, within this many points of the dense model)


def base_args(model: str, split: str, seed: int) -> list[str]:
    iters = PASSES[model] * ITERS_PER_PASS
    return ["--problem", model, "--data", "fashion-mnist", "--split", split, "--nodes", "8", "--topology", "ring",
            "--algorithm", "proxgt-sa", "--batch", "32", "--step", "0.1", "--iters", str(iters),
            "--log-every", str(iters // (5 if model == "mlp" else 3)), "--metrics-samples", "500", "--threads", "1",
            "--seed", str(seed)]


def variant_name(density: float, strength: float, steps: int) -> str:
    return f"d{density:g}-l1-{strength:g}" + (f"-steps{steps}" if steps > 1 else "")


def runs() -> dict[str, list[str]]:
    """name -> proxgt run arguments (out excluded)."""
    out: dict[str, list[str]] = {}
    for model in ("mlp", "lenet"):
        for split in ("shards", "iid"):
            for seed in SEEDS[model]:
                tail = f"-seed{seed}" if seed else ""
                base = base_args(model, split, seed)
                out[f"{model}-{split}-dense{tail}"] = base + ["--reg", "none"]
                for dens, strength, steps in SPARSE[model]:
                    if steps > 1 and split != "shards":  # gradual pruning was tried on the shards split only (CPU)
                        continue
                    if seed and (dens, strength, steps) not in SEEDED:
                        continue
                    gradual = ["--sparsify-steps", str(steps)] if steps > 1 else []
                    out[f"{model}-{split}-{variant_name(dens, strength, steps)}{tail}"] = base + [
                        "--reg", "l1", "--reg-strength", f"{strength:g}", "--reg-warmup", "0.1",
                        "--sparsify-density", f"{dens:g}", "--sparsify-at", "0.5", *gradual]
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


def _row(name: str) -> dict[str, Any] | None:
    p = RUNS / name
    if not (p / "summary.json").is_file():
        return None
    summary = json.loads((p / "summary.json").read_text())
    with open(p / "metrics.csv", newline="") as f:
        last = list(csv.DictReader(f))[-1]
    model, split, variant = name.split("-", 2)
    seed = 0
    if "-seed" in variant:
        variant, tail = variant.rsplit("-seed", 1)
        seed = int(tail)
    path = summary.get("sparse_path", {})
    kind = ""  # the line of the plot: l1 strength and pruning steps
    for dens, strength, steps in SPARSE[model]:
        if variant == variant_name(dens, strength, steps):
            kind = f"l1 {strength:g}" + (f", {steps} prunes" if steps > 1 else "")
    return {"run": name, "model": model, "split": split, "variant": variant, "seed": seed, "kind": kind,
            "passes": float(last["ifo_per_node"]) / 7500, "test_accuracy": float(last["test_accuracy"]),
            "density": float(last["density"]), "threshold": path.get("threshold"),
            "target_density": path.get("target_density")}


def _closest(group: list[dict[str, Any]], density: float) -> str:
    """`` (closest: RUN, N points below)`` for the run closest to the dense model at most ``density`` dense."""
    within = [r for r in group if r["variant"] != "dense" and r["gap"] is not None and float(r["density"]) <= density]
    if not within:
        return ""
    best = max(within, key=lambda r: float(r["gap"]))
    return (f" (closest: {best['variant']}, density {float(best['density']):.4f}, {-float(best['gap']):.2f} points "
            "below)")


def _seed_means(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (model, split, variant): means over its seeds; ``gap`` is the mean over seeds of the accuracy
    minus the dense model's of the same seed (``gaps`` per seed), None without a dense run of those seeds."""
    out = []
    keys = list(dict.fromkeys((r["model"], r["split"], r["variant"]) for r in found))
    for key in keys:
        rs = [r for r in found if (r["model"], r["split"], r["variant"]) == key]
        dense = {r["seed"]: r for r in found if (r["model"], r["split"], r["variant"]) == (*key[:2], "dense")}
        gaps = [100 * (float(r["test_accuracy"]) - float(dense[r["seed"]]["test_accuracy"])) for r in rs
                if r["seed"] in dense]
        mean = {c: sum(float(r[c]) for r in rs) / len(rs) for c in ("passes", "test_accuracy", "density")}
        out.append({**rs[0], **mean, "seeds": len(rs), "gaps": gaps,
                    "gap": sum(gaps) / len(gaps) if len(gaps) == len(rs) else None})
    return out


def report() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs_found = [r for r in (_row(n) for n in runs()) if r is not None]
    rows = _seed_means(runs_found)
    lines = ["| model | split | run | seeds | passes | density (weights) | test accuracy | vs dense (points; per seed) "
             "| target |", "|---|---|---|---|---|---|---|---|---|"]
    verdicts = []
    groups = sorted({(str(r["model"]), str(r["split"])) for r in rows}, key=lambda g: (g[0] != "mlp", g[1] != "shards"))
    for model, split in groups:
        group = [r for r in rows if (r["model"], r["split"]) == (model, split)]
        dense = next((r for r in group if r["variant"] == "dense"), None)
        for r in group:
            gap = r["gap"]
            mark = ""
            if gap is not None and r["variant"] != "dense":
                held = [f"<= {d:.0%} within {p:g}" for d, p in TARGETS if float(r["density"]) <= d and -gap <= p]
                mark = ", ".join(held) if held else "-"
            per_seed = "" if r["variant"] == "dense" or gap is None else \
                f"{gap:+.2f}" + (f" ({', '.join(f'{g:+.2f}' for g in r['gaps'])})" if len(r["gaps"]) > 1 else "")
            lines.append(f"| {model} | {split} | {r['variant']} | {r['seeds']} | {float(r['passes']):.2f} | "
                         f"{float(r['density']):.4f} | {100 * float(r['test_accuracy']):.2f}% | {per_seed} | {mark} |")
        if dense is not None:
            for d, p in TARGETS:
                ok = [r for r in group if r["variant"] != "dense" and r["gap"] is not None
                      and float(r["density"]) <= d and -float(r["gap"]) <= p]
                verdicts.append(f"- {model}, {split}: at most {d:.0%} non-zero weights within {p:g} point of the dense "
                                f"model ({100 * float(dense['test_accuracy']):.2f}%, {dense['seeds']} seed(s)): "
                                + ("**holds** (" + ", ".join(f"{r['variant']}: density {float(r['density']):.4f}, "
                                                            f"{100 * float(r['test_accuracy']):.2f}%, "
                                                            f"{float(r['gap']):+.2f}" for r in ok) + ")"
                                   if ok else "**misses**" + _closest(group, d)))
    md = ("#### Sparse path: density vs test accuracy (Fashion-MNIST, 8-node ring, ProxGT-SA, b = 32, step 0.1)\n\n"
          "Dense: reg none. Sparse dN-l1-S: l1 S (warm-up over the first 10% of the iterations), at half of the "
          "iterations the network agrees on a magnitude threshold for density N and prunes, then trains on the "
          "support; -stepsK: K gradual prunes (sparsify_steps) at 1/K, 2/K, .. of the first half. MLP 10 passes "
          "per node, LeNet-5 5 (dense and sparse always with the same passes). "
          "Seed 0 (MLP: seeds 0 and 1 for the dense model and the l1 1e-4 one-shot runs; values are seed means, "
          "the gap is the mean of the per-seed gaps to the dense model of the same seed, per seed in brackets); "
          "density over the weights (biases "
          "excluded) of the proximal point at the network average; test accuracy at the network average on the "
          "10000 test images. Commands: `python experiments/sparse_path.py run`.\n\n"
          + "\n".join(lines) + "\n\n" + "\n".join(verdicts) + "\n")
    REPORT.mkdir(parents=True, exist_ok=True)
    atomic_write_text(REPORT / "table.md", md)  # included as it is by docs/neural-networks.md
    atomic_write_text(REPORT / "report.md", md + "\n![sparse-path.png](sparse-path.png)\n")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(runs_found[0]) + ["command"])
    writer.writeheader()
    for r in runs_found:
        writer.writerow({**r, "command": command(str(r["run"]), runs()[str(r["run"])])})
    atomic_write_text(REPORT / "table.csv", buf.getvalue())

    kinds = sorted({str(r["kind"]) for r in rows if r["variant"] != "dense"})  # one style per kind, every panel
    cols = min(2, len(groups))
    nrows = (len(groups) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(5.2 * cols, 3.8 * nrows), squeeze=False)
    for ax in axes.flat[len(groups):]:
        ax.set_visible(False)
    for ax, (model, split) in zip(axes.flat, groups, strict=False):
        group = [r for r in rows if (r["model"], r["split"]) == (model, split)]
        dense = next((r for r in group if r["variant"] == "dense"), None)
        sparse = sorted((r for r in group if r["variant"] != "dense"), key=lambda r: float(r["density"]))
        if dense is not None:
            acc = 100 * float(dense["test_accuracy"])
            ax.axhline(acc, color="k", lw=1, label=f"dense {acc:.1f}%")
            ax.axhspan(acc - 0.5, acc, color="tab:green", alpha=0.15, label="-0.5 point")
            ax.axhspan(acc - 1.0, acc - 0.5, color="tab:orange", alpha=0.15, label="-1 point")
            ax.plot([1.0], [acc], "k*", ms=9)
        for d in (0.1, 0.2):
            ax.axvline(d, color="grey", ls="--", lw=1)
            ax.annotate(f"{d:.0%}", (d, 0.02), xycoords=("data", "axes fraction"), fontsize=7, color="grey",
                        xytext=(2, 0), textcoords="offset points")
        for k, kind in enumerate(kinds):
            pts = [r for r in sparse if r["kind"] == kind]
            if not pts:
                continue
            ax.plot([float(r["density"]) for r in pts], [100 * float(r["test_accuracy"]) for r in pts],
                    "os^"[k % 3] + "-", color=("tab:blue", "tab:purple", "tab:red")[k % 3], label=f"sparse, {kind}")
        ax.set_xscale("log")
        ax.set_xlim(0.06, 1.3)
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
