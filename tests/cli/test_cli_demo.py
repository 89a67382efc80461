"""`proxgt demo` on a tiny budget: six runs, a table, a plot, one run folder per run."""

from __future__ import annotations

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
    assert (out / "demo.md").read_text().count("| proxgt-") == 6
    assert len(list((out / "runs").iterdir())) == 6
    # Chebyshev needs fewer rounds per mixing than plain gossip on the ring
    ks = {(r.split("|")[1].strip(), r.split("|")[2].strip()): int(r.split("|")[3]) for r in rows}
    assert all(ks[(a, "chebyshev")] <= ks[(a, "plain")] for a in ("proxgt-sa", "proxgt-sr-o", "proxgt-sr-e"))


def test_demo_rejects_bad_numbers(capsys):
    assert main(["demo", "--seeds", "0"]) == 2
    assert "'seeds'" in capsys.readouterr().err
