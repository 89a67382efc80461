"""`proxgt demo` on a tiny budget: six runs, a table, a plot, one run folder per run."""

from __future__ import annotations

import csv
import io
import math
from types import SimpleNamespace

import pytest

from proxgt.cli import main


def test_demo_writes_table_plot_and_runs(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(["demo", "--nodes", "4", "--iters", "20", "--seeds", "1", "--target", "1e-2", "--out", str(out),
                 "--no-progress"])
    stdout = capsys.readouterr().out
    assert code == 0
    rows = [line for line in stdout.splitlines() if line.startswith("| proxgt-")]
    assert len(rows) == 6  # 3 instances x {plain, chebyshev}
    assert (out / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "demo.md").read_text()
    assert md.count("| proxgt-") == 6
    assert "stays at or below the target to the end of the run" in md and "over the last 20%" in md
    assert md.count("\nClaim (a), ") == 1 and md.count("\nClaim (b), ") == 1
    table = list(csv.DictReader(io.StringIO((out / "demo.csv").read_text())))
    assert list(table[0]) == ["algorithm", "mixing", "K", "samples_to_target", "rounds_to_target", "final_median"]
    assert len(table) == 6 and all(float(r["final_median"]) > 0 for r in table)
    assert len(list((out / "runs").iterdir())) == 6
    # Chebyshev needs fewer rounds per mixing than plain gossip on the ring
    ks = {(r.split("|")[1].strip(), r.split("|")[2].strip()): int(r.split("|")[3]) for r in rows}
    assert all(ks[(a, "chebyshev")] <= ks[(a, "plain")] for a in ("proxgt-sa", "proxgt-sr-o", "proxgt-sr-e"))


def test_demo_rejects_bad_numbers(capsys):
    assert main(["demo", "--seeds", "0"]) == 2
    assert "'seeds'" in capsys.readouterr().err


def test_demo_plot_shows_plain_and_chebyshev_even_where_they_coincide(tmp_path, monkeypatch):
    """Plain and Chebyshev runs of one algorithm take the same samples: their curves over samples per node are
    identical. Every one of the six series must still be drawn distinguishably and have a legend entry."""
    import proxgt.executors.simulation as simulation
    import proxgt.reporting as reporting
    from proxgt.cli._demo import run_demo

    def fake_run(cfg, **_):
        k = 9 if cfg.mixing == "plain" else 3
        scale = {"proxgt-sa": 1.0, "proxgt-sr-o": 0.5, "proxgt-sr-e": 0.2}[cfg.algorithm]
        rows = [{"iter": float(t), "ifo_per_node": 10.0 * t, "comm_rounds": float(k * t), "bytes_per_node": 0.0,
                 "wall_s": 0.0, "grad_mapping_sq": scale * 0.9**t} for t in range(30)]
        return SimpleNamespace(rows=rows, config={"rounds": k})

    figures = []

    def keep_figure(curves, path, **kw):
        figures.append(reporting.curves_figure(curves, **{k: v for k, v in kw.items() if k != "path"}))

    monkeypatch.setattr(simulation, "run_simulation", fake_run)
    monkeypatch.setattr(reporting, "plot_curves", keep_figure)
    _, table = run_demo(tmp_path / "demo", nodes=4, iters=30, seeds=1, target=1e-2)
    assert len(table) == 6 and len(figures) == 1
    fig = figures[0]
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert len(labels) == 7 and labels[-1] == "target 0.01"  # six series and the target
    samples_panel = fig.axes[0]
    lines = {ln.get_label(): ln for ln in samples_panel.get_lines() if ln.get_label() in labels[:6]}
    for alg in ("proxgt-sa", "proxgt-sr-o", "proxgt-sr-e"):
        plain = lines[f"{alg} plain K=9"]
        cheb = lines[f"{alg} chebyshev K=3"]
        assert list(plain.get_ydata()) == list(cheb.get_ydata())  # they coincide ...
        assert (plain.get_linestyle(), plain.get_marker()) != (cheb.get_linestyle(), cheb.get_marker())
        assert plain.get_markevery() != cheb.get_markevery()  # ... but both stay visible
        assert plain.get_linewidth() > cheb.get_linewidth()


def _fake_runs(curves: dict[str, list[float]], ks: dict[str, int]):
    """A run_simulation stand-in: per algorithm a metric curve (one point per logged iteration), 10 samples and
    2K rounds per iteration; Chebyshev's K is ks["chebyshev"], plain's ks["plain"]."""

    def fake_run(cfg, **_):
        k = ks[cfg.mixing]
        rows = [{"iter": float(t), "ifo_per_node": 10.0 * t, "comm_rounds": 2.0 * k * t, "bytes_per_node": 0.0,
                 "wall_s": 0.0, "grad_mapping_sq": v} for t, v in enumerate(curves[cfg.algorithm])]
        return SimpleNamespace(rows=rows, config={"rounds": k})

    return fake_run


SETTLE_EARLY = [1.0, 0.5, 0.05, 0.04, 0.03, 0.02, 0.02, 0.02, 0.02, 0.02]
SETTLE_LATE = [1.0, 0.5, 0.3, 0.2, 0.05, 0.04, 0.03, 0.02, 0.02, 0.02]
DIP_THEN_RISE = [1.0, 0.05, 0.3, 0.2, 0.3, 0.2, 0.3, 0.2, 0.3, 0.5]  # below 0.1 at t = 1 only


@pytest.fixture
def no_plots(monkeypatch):
    import proxgt.reporting as reporting

    monkeypatch.setattr(reporting, "plot_curves", lambda *a, **k: None)


def test_demo_counts_a_target_as_reached_only_where_the_curve_stays(tmp_path, monkeypatch, no_plots):
    import proxgt.executors.simulation as simulation
    from proxgt.cli._demo import run_demo

    curves = {"proxgt-sa": DIP_THEN_RISE, "proxgt-sr-o": SETTLE_EARLY, "proxgt-sr-e": SETTLE_LATE}
    monkeypatch.setattr(simulation, "run_simulation", _fake_runs(curves, {"plain": 9, "chebyshev": 3}))
    md, table = run_demo(tmp_path / "demo", nodes=4, iters=10, seeds=1, target=0.1)
    sa = next(r for r in table if r["algorithm"] == "proxgt-sa" and r["mixing"] == "plain")
    # SA dips below 0.1 at t = 1 (10 samples) but ends at 0.5: not reached; the first dip is kept aside
    assert sa["samples_to_target"] == math.inf and sa["first_dip_samples"] == 10.0
    assert sa["final_median"] == pytest.approx(0.4)  # median of the last 2 of 10 points: 0.3 and 0.5
    sre = next(r for r in table if r["algorithm"] == "proxgt-sr-e" and r["mixing"] == "chebyshev")
    assert (sre["samples_to_target"], sre["rounds_to_target"]) == (40.0, 24.0)
    assert "| proxgt-sa | plain | 9 | not reached | not reached | 10 | 18 | 4.00e-01 |" in md
    assert ("Claim (a), SR-O and SR-E reach the target with fewer samples per node than SA: held (samples per "
            "node to target, plain gossip: SA not reached, SR-O 20, SR-E 40; Chebyshev: SA not reached, SR-O 20, "
            "SR-E 40).") in md
    assert ("Claim (b), Chebyshev reaches the target with fewer communication rounds than plain gossip: held "
            "(rounds to target, Chebyshev vs plain: SR-O 12 vs 36, SR-E 24 vs 72; SA reached it with "
            "neither).") in md
    rows = list(csv.DictReader(io.StringIO((tmp_path / "demo" / "demo.csv").read_text())))
    assert rows[0] == {"algorithm": "proxgt-sa", "mixing": "plain", "K": "9", "samples_to_target": "inf",
                       "rounds_to_target": "inf", "final_median": "0.4"}
    assert float(rows[5]["samples_to_target"]) == 40.0 and float(rows[5]["rounds_to_target"]) == 24.0


def test_demo_says_when_a_claim_does_not_hold(tmp_path, monkeypatch, no_plots):
    import proxgt.executors.simulation as simulation
    from proxgt.cli._demo import run_demo

    # SA settles first; SR-O only dips; Chebyshev is given more rounds per mixing than plain
    curves = {"proxgt-sa": SETTLE_EARLY, "proxgt-sr-o": DIP_THEN_RISE, "proxgt-sr-e": SETTLE_LATE}
    monkeypatch.setattr(simulation, "run_simulation", _fake_runs(curves, {"plain": 2, "chebyshev": 5}))
    md, _ = run_demo(tmp_path / "demo", nodes=4, iters=10, seeds=1, target=0.1)
    claims = [line for line in md.splitlines() if line.startswith("Claim ")]
    assert len(claims) == 2
    assert "than SA: did not hold (" in claims[0] and "SA 20, SR-O not reached, SR-E 40" in claims[0]
    assert "than plain gossip: did not hold (" in claims[1] and "SA 20 vs 8, SR-E 40 vs 16" in claims[1]
    assert "SR-O reached it with neither" in claims[1]
    # nothing reaches the target: claim (b) cannot be checked
    md, _ = run_demo(tmp_path / "none", nodes=4, iters=10, seeds=1, target=1e-6)
    assert "plain gossip: could not be checked (no algorithm reached the target with either mixing)." in md
    assert "than SA: did not hold" in md


def test_demo_default_target_and_data_are_the_documented_ones():
    from proxgt.cli._demo import DEFAULT_DATA, DEFAULT_TARGET, run_demo
    from proxgt.cli.main import build_parser
    from proxgt.registry import DATASETS

    args = build_parser().parse_args(["demo"])
    assert args.target == DEFAULT_TARGET == run_demo.__kwdefaults__["target"] == 4e-4
    assert args.data == DEFAULT_DATA == run_demo.__kwdefaults__["data"] == "a9a"  # the real a9a, not the stand-in
    assert "a9a-synthetic" in DATASETS.names()
    assert (args.nodes, args.iters, args.seeds) == (16, 800, 3)


def test_demo_data_option_reaches_every_run_and_the_table(tmp_path, monkeypatch, no_plots):
    import proxgt.executors.simulation as simulation

    seen = []
    fake = _fake_runs({a: SETTLE_EARLY for a in ("proxgt-sa", "proxgt-sr-o", "proxgt-sr-e")},
                      {"plain": 9, "chebyshev": 3})
    monkeypatch.setattr(simulation, "run_simulation", lambda cfg, **kw: (seen.append(cfg.data), fake(cfg))[1])
    out = tmp_path / "demo"
    assert main(["demo", "--data", "a9a-synthetic", "--nodes", "4", "--iters", "10", "--seeds", "1",
                 "--out", str(out), "--no-progress"]) == 0
    assert seen == ["a9a-synthetic"] * 6
    assert (out / "demo.md").read_text().startswith("ProxGT demo: 4-node ring, a9a-synthetic, 1 seed, ")


def test_demo_data_must_be_a_registered_name(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--data", "no-such-set"])
    assert exc.value.code == 2
    assert "invalid choice: 'no-such-set'" in capsys.readouterr().err
