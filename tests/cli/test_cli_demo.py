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


def test_demo_plot_shows_plain_and_chebyshev_even_where_they_coincide(tmp_path, monkeypatch):
    """Plain and Chebyshev runs of one algorithm take the same samples: their curves over samples per node are
    identical. Every one of the six series must still be drawn distinguishably and have a legend entry."""
    from types import SimpleNamespace

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
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
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
