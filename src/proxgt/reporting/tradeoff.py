"""Density / test-accuracy trade-off of a folder of runs that sweeps the regularizer's strength (``reg_strength``).

For every finished run this reads ``final.npz`` (the n node iterates ``x`` and their average) and measures, on the
run's test set, what the logged metrics do not show: the density (share of non-zero entries over the coordinates
the problem's ``density_mask`` counts, e.g. a network's weights without biases) of **each node's model** and of
**the network average**, and the test accuracy of each. (The logged ``density`` column is the density of the
proximal point at the average, a third model; it is kept as ``prox_density``.) With ``order = "mix-prox"`` the
node iterates are prox outputs and exactly sparse, while their average is sparse only where the nodes agree on
the support.

The measurements are cached per run in ``<run>/sparsity.json`` (keyed by final.npz's size and mtime), so a
report re-reads them instead of re-evaluating the test set. :func:`write_tradeoff` writes ``tradeoff.csv``,
``tradeoff.md`` and ``tradeoff.png`` (density against test accuracy, one panel per group of runs that differ
only by ``reg_strength`` and seed) and names, per group, the sparsest setting whose accuracy stays within
``tolerance`` (default 1.0 point) of the dense model's (``reg_strength = 0``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from proxgt._io import atomic_write_text
from proxgt.reporting.runs import COMPLETE_STATUSES, RunRecord, find_runs, load_run

__all__ = ["SPARSITY_FILE", "run_sparsity", "sweeps_reg_strength", "tradeoff_rows", "write_tradeoff"]

SPARSITY_FILE = "sparsity.json"
_IGNORED = {"seed", "out", "meta", "data_dir", "threads", "device", "reg_strength", "step", "rounds", "batch", "iters",
            "epochs", "log_every",
            "big_batch", "period"}


def _stamp(npz: Path) -> list[int]:
    st = npz.stat()
    return [int(st.st_size), int(st.st_mtime_ns)]


def _accuracies(problem: Any, X: Any, test: Any, chunk: int = 1024) -> list[float]:
    """Test accuracy of each row of ``X`` (k, d) on the test set, ``chunk`` samples per forward pass."""
    import torch

    N = len(test)
    correct = torch.zeros(X.shape[0], dtype=torch.float64)
    with torch.no_grad():
        for s in range(0, N, chunk):
            feats = test.X[s : s + chunk]
            labels = test.y[s : s + chunk]
            feats = feats.unsqueeze(0).expand(X.shape[0], *feats.shape)
            pred = problem.predict(X, feats)
            correct += (pred == labels.unsqueeze(0)).sum(dim=1).double()
    return (correct / N).tolist()


def run_sparsity(folder: str | Path) -> dict[str, Any] | None:
    """Density and test accuracy of each node model and of the average of a finished run (None: no final.npz,
    no test set or not a classification problem). Cached in ``<folder>/sparsity.json``."""
    import numpy as np
    import torch

    folder = Path(folder)
    npz = folder / "final.npz"
    cache = folder / SPARSITY_FILE
    if not npz.is_file():  # a run folder brought back without its final.npz keeps its measurements
        try:
            return json.loads(cache.read_text()) if cache.is_file() else None
        except ValueError:
            return None
    if cache.is_file():
        try:
            info = json.loads(cache.read_text())
            if info.get("stamp") == _stamp(npz):
                return info
        except ValueError:
            pass
    from proxgt.data import load_dataset, train_test_split
    from proxgt.registry import PROBLEMS
    from proxgt.settings import RunConfig

    rec = load_run(folder)
    cfg = RunConfig.from_dict({k: v for k, v in rec.config.items() if k not in ("meta", "out", "device")})
    train, test = load_dataset(cfg.data, seed=cfg.seed, data_dir=cfg.data_dir)
    if test is None and cfg.test_fraction > 0 and len(train) >= 10:  # as proxgt.training.build.build_run
        train, test = train_test_split(train, cfg.test_fraction, seed=cfg.seed)
    if test is None or len(test) == 0 or train.n_classes < 2:
        return None
    problem = PROBLEMS.get(cfg.problem)(cfg, train)
    with np.load(npz) as f:
        x = torch.from_numpy(np.asarray(f["x"], dtype=np.float32))
    models = torch.cat([x, x.mean(dim=0, keepdim=True)], dim=0)
    mask = getattr(problem, "density_mask", None)
    counted = models if mask is None else models[:, mask]
    density = ((counted != 0).sum(dim=1).double() / max(1, counted.shape[1])).tolist()
    acc = _accuracies(problem, models, test)
    last = rec.rows[-1] if rec.rows else {}
    info = {
        "stamp": _stamp(npz),
        "node_density": density[:-1], "avg_density": density[-1],
        "node_test_accuracy": acc[:-1], "avg_test_accuracy": acc[-1],
        "prox_density": last.get("density"), "logged_test_accuracy": last.get("test_accuracy"),
    }
    atomic_write_text(cache, json.dumps(info, indent=2) + "\n")
    return info


def sweeps_reg_strength(records: list[RunRecord]) -> bool:
    """True when the runs use more than one ``reg_strength``."""
    return len({float(r.config.get("reg_strength", math.nan)) for r in records}) > 1


def _group_key(rec: RunRecord, varying: list[str]) -> str:
    return ", ".join(f"{k}={rec.config.get(k)}" for k in varying) or "all runs"


def _mean(vals: list[float]) -> float:
    return sum(vals) / len(vals) if vals else math.nan


def tradeoff_rows(records: list[RunRecord]) -> list[dict[str, Any]]:
    """One row per (group, reg_strength), seed means: densities and test accuracies of the node models (mean,
    and max density / min accuracy over nodes and seeds) and of their average."""
    done = [r for r in records if r.status in COMPLETE_STATUSES
            and ((r.path / "final.npz").is_file() or (r.path / SPARSITY_FILE).is_file())]
    keys = sorted({k for r in done for k in r.config if k not in _IGNORED and not isinstance(r.config[k], dict)})
    varying = [k for k in keys if len({json.dumps(r.config.get(k)) for r in done}) > 1]
    cells: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in done:
        info = run_sparsity(r.path)
        if info is None:
            continue
        cells.setdefault((_group_key(r, varying), float(r.config.get("reg_strength", 0.0))), []).append(info)
    rows = []
    for (group, lam), infos in sorted(cells.items()):
        nd = [v for i in infos for v in i["node_density"]]
        na = [v for i in infos for v in i["node_test_accuracy"]]
        rows.append({
            "group": group, "reg_strength": lam, "seeds": len(infos),
            "node_density_mean": _mean(nd), "node_density_max": max(nd),
            "avg_density": _mean([i["avg_density"] for i in infos]),
            "prox_density": _mean([i["prox_density"] for i in infos if i.get("prox_density") is not None]),
            "node_test_accuracy_mean": _mean(na), "node_test_accuracy_min": min(na),
            "avg_test_accuracy": _mean([i["avg_test_accuracy"] for i in infos]),
        })
    return rows


def _best(rows: list[dict[str, Any]], density: str, accuracy: str, tolerance: float) -> dict[str, Any] | None:
    dense = next((r for r in rows if r["reg_strength"] == 0.0), None)
    if dense is None:
        return None
    ok = [r for r in rows if r[accuracy] >= dense["avg_test_accuracy"] - tolerance]
    return min(ok, key=lambda r: (r[density], -r[accuracy])) if ok else None


_COLUMNS = ("group", "reg_strength", "seeds", "node_density_mean", "node_density_max", "avg_density", "prox_density",
            "node_test_accuracy_mean", "node_test_accuracy_min", "avg_test_accuracy")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def _plot(rows: list[dict[str, Any]], path: Path, target_density: float, tolerance: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys(r["group"] for r in rows))
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 4.2), squeeze=False)
    for ax, g in zip(axes[0], groups, strict=True):
        rs = [r for r in rows if r["group"] == g]
        ax.plot([r["node_density_mean"] for r in rs], [100 * r["node_test_accuracy_mean"] for r in rs], "o-",
                label="node models (mean over nodes)")
        ax.plot([r["avg_density"] for r in rs], [100 * r["avg_test_accuracy"] for r in rs], "s--",
                label="network average")
        for r in rs:
            ax.annotate(f"{r['reg_strength']:g}", (r["node_density_mean"], 100 * r["node_test_accuracy_mean"]),
                        textcoords="offset points", xytext=(4, 4), fontsize=7)
        dense = next((r for r in rs if r["reg_strength"] == 0.0), None)
        if dense is not None:
            ax.axhline(100 * (dense["avg_test_accuracy"] - tolerance), color="gray", ls=":",
                       label=f"dense - {100 * tolerance:g} point")
        ax.axvline(target_density, color="red", ls=":", label=f"density {target_density:g}")
        ax.set_xlabel("density (share of non-zero weights)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(g, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("l1 sweep: density vs test accuracy (labels: reg_strength)", fontsize=10)
    fig.tight_layout()
    buf_path = path.with_suffix(".tmp.png")
    fig.savefig(buf_path, dpi=110)
    plt.close(fig)
    buf_path.replace(path)


def write_tradeoff(root: str | Path, out: str | Path | None = None, *, records: list[RunRecord] | None = None,
                   tolerance: float = 0.01, target_density: float = 0.2) -> tuple[Path, str] | None:
    """Write ``tradeoff.csv``, ``tradeoff.md`` and ``tradeoff.png`` into ``out`` (default ``root``) for the runs
    under ``root`` (or ``records``); returns (markdown path, markdown text), or None when the runs do not sweep
    ``reg_strength`` or none has a final.npz with a test set."""
    root = Path(root)
    out = Path(out) if out is not None else root
    records = find_runs(root) if records is None else records
    if not sweeps_reg_strength(records):
        return None
    rows = tradeoff_rows(records)
    if not rows:
        return None
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "tradeoff.csv", ",".join(_COLUMNS) + "\n" + "".join(
        ",".join(f'"{r[c]}"' if c == "group" else _fmt(r[c]) for c in _COLUMNS) + "\n" for r in rows))
    lines = [
        "## Density / test-accuracy trade-off",
        "",
        "Measured from each run's final.npz on the test set: density = share of non-zero entries over the "
        "regularized weights (biases excluded) of each node's model (mean and max over nodes and seeds) and of the "
        "network average; `prox_density` is the logged density of the proximal point at the average. Test "
        "accuracy of each node's own model (mean and min) and of the average. Seed means.",
        "",
        "| " + " | ".join(_COLUMNS) + " |",
        "|" + "---|" * len(_COLUMNS),
        *("| " + " | ".join(_fmt(r[c]) for c in _COLUMNS) + " |" for r in rows),
        "",
    ]
    for g in dict.fromkeys(r["group"] for r in rows):
        rs = [r for r in rows if r["group"] == g]
        dense = next((r for r in rs if r["reg_strength"] == 0.0), None)
        if dense is None:
            lines.append(f"- {g}: no dense run (reg_strength = 0) to compare with.")
            continue
        base = f"- {g}: dense model (reg_strength 0) {100 * dense['avg_test_accuracy']:.2f}% at the average"
        node = _best(rs, "node_density_max", "node_test_accuracy_min", tolerance)
        avg = _best(rs, "avg_density", "avg_test_accuracy", tolerance)
        parts = []
        if node is not None:
            met = "meets" if node["node_density_max"] <= target_density else "misses"
            parts.append(f"sparsest node models with every node within {100 * tolerance:g} point: reg_strength "
                         f"{node['reg_strength']:g}, density <= {node['node_density_max']:.3f} (mean "
                         f"{node['node_density_mean']:.3f}), accuracy >= {100 * node['node_test_accuracy_min']:.2f}% "
                         f"({met} the density {target_density:g} target)")
        if avg is not None:
            met = "meets" if avg["avg_density"] <= target_density else "misses"
            parts.append(f"sparsest average within {100 * tolerance:g} point: reg_strength {avg['reg_strength']:g}, "
                         f"density {avg['avg_density']:.3f}, accuracy {100 * avg['avg_test_accuracy']:.2f}% "
                         f"({met} the target)")
        sparse = [r for r in rs if r["node_density_max"] <= target_density]
        if sparse:  # the target's density: how far its best accuracy is from the dense model's
            top = max(sparse, key=lambda r: r["node_test_accuracy_min"])
            gap = 100 * (dense["avg_test_accuracy"] - top["node_test_accuracy_min"])
            parts.append(f"at density <= {target_density:g} the most accurate node models (reg_strength "
                         f"{top['reg_strength']:g}, density {top['node_density_max']:.3f}) reach "
                         f"{100 * top['node_test_accuracy_min']:.2f}%, {gap:.2f} points below the dense model")
        lines.append(base + ("; " + "; ".join(parts) if parts else "") + ".")
    lines += ["", "![tradeoff.png](tradeoff.png)", ""]
    md = "\n".join(lines)
    atomic_write_text(out / "tradeoff.md", md)
    _plot(rows, out / "tradeoff.png", target_density, tolerance)
    return out / "tradeoff.md", md
