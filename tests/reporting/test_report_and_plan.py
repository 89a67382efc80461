"""Reports from a tiny suite, the cost model, and ``plan`` choosing the K that minimizes modeled time."""

from __future__ import annotations

import csv
import io
import math

import pytest

from proxgt._validation import ProxGTValueError
from proxgt.cli import main
from proxgt.costmodel import Candidate, CostModel, candidate_from_runs, plan_rounds, recommend
from proxgt.reporting.report import write_report
from proxgt.settings import RunConfig
from proxgt.suites import load_suite, run_suite

SUITE = """
[suite]
name = "rep"
target = 0.05
group_by = "topology"
[suite.cost]
latency_s = 0.5
bandwidth_Bps = 1e9
sample_s = 0.001
[base]
data = "breast_cancer"
nodes = 4
iters = 10
log_every = 2
[grid]
algorithm = ["proxgt-sa", "central-prox-sgd"]
topology = ["ring", "complete"]
seed = [0, 1]
"""


@pytest.fixture(scope="module")
def suite_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("rep")
    (d / "s.toml").write_text(SUITE)
    s = load_suite(d / "s.toml")
    assert not run_suite(s).failed
    return s


def test_report_files_and_table(suite_dir):
    md_path = write_report(suite_dir.out)
    md = md_path.read_text()
    for name in ("report-ring.png", "report-complete.png"):
        assert (suite_dir.out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in md
    assert not (suite_dir.out / "report-pooled.png").exists()  # the pooled reference is drawn in every figure
    assert "| algorithm=central-prox-sgd, topology=pooled | central-prox-sgd | pooled | 4 |" in md
    rows = list(csv.DictReader(io.StringIO((suite_dir.out / "table.csv").read_text())))
    assert len(rows) == 3
    row = rows[0]
    # modeled time at the target = samples * 1 ms + rounds * 0.5 s + bytes / 1e9, read at the same row
    ifo, rounds, b = float(row["samples_to_target"]), float(row["rounds_to_target"]), float(row["bytes_to_target"])
    assert float(row["modeled_s_to_target"]) == pytest.approx(ifo * 1e-3 + rounds * 0.5 + b / 1e9)


def test_report_cli_overrides_and_errors(suite_dir, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["report", str(suite_dir.out), "--out", str(out), "--latency", "0", "--target", "1e-9"]) == 0
    md = (out / "report.md").read_text()
    assert "latency 0 s" in md and "not reached" in md
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "report folder not found" in capsys.readouterr().err


def test_cost_model_by_hand():
    c = CostModel(latency_s=0.01, bandwidth_Bps=1e6, sample_s=1e-5)
    assert c.time(1000, 10, 2e6) == pytest.approx(0.01 + 0.1 + 2.0)
    assert c.with_modeled([{"ifo_per_node": 0, "comm_rounds": 1, "bytes_per_node": 0}])[0]["modeled_s"] == 0.01
    with pytest.raises(ProxGTValueError, match="unknown setting 'latency'"):
        CostModel.from_dict({"latency": 1})


def _rows(iters_to_target: int, K: int, b: int = 10, d_bytes: float = 100.0) -> list[dict]:
    """A synthetic run reaching 1e-3 exactly at iteration ``iters_to_target``: b samples and 2K rounds per
    iteration, each round d_bytes per node."""
    out = []
    for t in range(0, 2 * iters_to_target + 1, 10):
        out.append({"iter": t, "ifo_per_node": b * t, "comm_rounds": 2 * K * t, "bytes_per_node": 2 * K * t * d_bytes,
                    "grad_mapping_sq": 1e-3 if t >= iters_to_target else 1.0})
    return out


def test_plan_picks_minimizing_K_by_hand():
    # K = 1 needs 1000 iterations, K = 2 needs 300, K = 4 needs 250, K = 8 needs 240.
    # modeled time = T * (10 samples * 1e-3 s + 2K rounds * 0.01 s) (bytes free):
    #   K=1: 1000 * 0.03 = 30 s;  K=2: 300 * 0.05 = 15 s;  K=4: 250 * 0.09 = 22.5 s;  K=8: 240 * 0.17 = 40.8 s
    cost = CostModel(latency_s=0.01, bandwidth_Bps=1e30, sample_s=1e-3)
    cands = [candidate_from_runs("plain", K, 0.5, [_rows(T, K)], target=1e-3, metric="grad_mapping_sq", cost=cost)
             for K, T in ((1, 1000), (2, 300), (4, 250), (8, 240))]
    assert [c.modeled_s for c in cands] == pytest.approx([30.0, 15.0, 22.5, 40.8])
    best = recommend(cands)
    assert (best.rounds, best.iters, best.samples_per_node, best.comm_rounds) == (2, 300, 3000, 1200)
    # with free communication the fewest samples win: K = 8
    free = CostModel(latency_s=0.0, bandwidth_Bps=1e30, sample_s=1e-3)
    assert recommend([candidate_from_runs("plain", K, 0.5, [_rows(T, K)], target=1e-3, metric="grad_mapping_sq",
                                          cost=free) for K, T in ((1, 1000), (2, 300), (8, 240))]).rounds == 8
    assert recommend([Candidate("plain", 1, 0.5, *(math.nan,) * 5)]) is None


def test_plan_on_complete_graph_picks_one_round():
    # W = J on a complete graph: every K gives the same iterates, so the samples are equal and K = 1 is cheapest.
    cfg = RunConfig(data="breast_cancer", nodes=4, topology="complete", iters=20, log_every=2)
    cands, best = plan_rounds(cfg, CostModel(sample_s=1e-6), target=0.05, ks=[1, 2, 4], mixings=("plain",))
    assert len({c.samples_per_node for c in cands}) == 1 and math.isfinite(cands[0].samples_per_node)
    assert [c.comm_rounds for c in cands] == [cands[0].comm_rounds * k for k in (1, 2, 4)]
    assert (best.mixing, best.rounds) == ("plain", 1)


def test_plan_cli(capsys):
    base = ["plan", "--data", "breast_cancer", "--nodes", "4", "--topology", "complete", "--iters", "10",
            "--log-every", "2", "--ks", "1,2", "--sample-time", "1e-6", "--no-progress"]
    assert main([*base, "--target", "0.05", "--mixings", "plain"]) == 0
    assert "recommended: --mixing plain --rounds 1" in capsys.readouterr().out
    assert main([*base, "--target", "0.05", "--mixings", "gossip"]) == 2
    assert "mixings" in capsys.readouterr().err
    assert main([*base, "--target", "1e-30", "--mixings", "plain"]) == 1  # unreachable target
    assert "no option reached the target" in capsys.readouterr().out


def test_report_and_its_table_say_how_target_and_final_are_measured(suite_dir, tmp_path):
    out = tmp_path / "captioned"
    md = write_report(suite_dir.out, out=out).read_text()
    caption = "Target: seed-mean `grad_mapping_sq` <= 0.05; \"to target\" costs are read at the first logged point"
    assert caption in md and (out / "table.md").read_text().startswith(caption)
    assert "medians of the seed-mean curve over the last 20% of the logged points" in md
    header = next(line for line in md.splitlines() if line.startswith("| series |"))
    assert "| samples_to_target |" in header and "| first_dip_samples |" in header and "| final_median |" in header


def test_plan_cli_prints_sustained_and_first_dip_columns(capsys):
    assert main(["plan", "--data", "breast_cancer", "--nodes", "4", "--topology", "complete", "--iters", "10",
                 "--log-every", "2", "--ks", "1", "--sample-time", "1e-6", "--no-progress", "--target", "0.05",
                 "--mixings", "plain"]) == 0
    out = capsys.readouterr().out
    assert "stays at or below the target to the end of the run" in out and "last 20%" in out
    assert "| samples/node to target |" in out and "| first-dip samples/node |" in out and "| final median |" in out
