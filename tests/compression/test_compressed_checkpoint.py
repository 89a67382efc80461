"""A compressed run resumed from a checkpoint ends exactly like the uninterrupted run: the public copies and the
random operators' generators travel in the checkpoint."""

from __future__ import annotations

import pytest
import torch

from ..executors.resuming import stopped_and_resumed


@pytest.mark.parametrize("algorithm,compress,network", [
    ("proxgt-sr-e", "randk:0.3", {}), ("cdproxsgt", "topk:0.2", {}), ("proxgt-sa", "qsgd:4", {}),
    # per-link public copies on a changing graph travel in the checkpoint as well
    ("proxgt-sr-e", "randk:0.3", {"link_failure": 0.3, "node_dropout": 0.2}),
    ("proxgt-sa", "topk:0.2", {"topology": "random-matching"}),
])
def test_compressed_run_resumes_exactly(algorithm, compress, network, tmp_path, monkeypatch):
    cfg = {"data": "breast_cancer", "nodes": 4, "iters": 30, "log_every": 5, "batch": 8, "algorithm": algorithm,
           "compress": compress, "mixing": "plain", "rounds": 1, "test_fraction": 0.0, "dtype": "float64",
           **network}
    ref, hist = stopped_and_resumed(cfg, tmp_path / "r", monkeypatch)
    for ra, rb in zip(ref.rows, hist.rows, strict=True):
        assert {c: v for c, v in ra.items() if c != "wall_s"} == {c: v for c, v in rb.items() if c != "wall_s"}
    assert torch.equal(hist.x, ref.x)
