"""Suites: grid expansion, overrides, pooled centralized cells, validation, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proxgt._validation import ProxGTValueError
from proxgt.cli import main
from proxgt.suites import cell_is_done, load_suite, pooled_config, run_suite

SUITE = """
[suite]
name = "tiny"
out = "out"
target = 1e-2
[suite.cost]
sample_s = 1e-6
[base]
data = "breast_cancer"
nodes = 3
iters = 12
log_every = 4
[grid]
seed = [0, 1]
algorithm = ["proxgt-sa", "prox-dsgd", "central-prox-sgd"]
[[cell]]
match = { algorithm = "prox-dsgd" }
set = { batch = 8 }
"""


def _write(tmp_path: Path, text: str = SUITE) -> Path:
    p = tmp_path / "suite.toml"
    p.write_text(text)
    return p


def test_grid_overrides_and_pooled_cells(tmp_path):
    s = load_suite(_write(tmp_path))
    assert s.out == tmp_path / "out"
    assert [c.name for c in s.cells] == [
        "proxgt-sa__seed0", "proxgt-sa__seed1", "prox-dsgd__seed0", "prox-dsgd__seed1",
        "central-prox-sgd__seed0", "central-prox-sgd__seed1",
    ]
    assert s.cells[2].config["batch"] == 8 and "batch" not in s.cells[0].config
    central = s.cells[4].config
    assert central["nodes"] == 1 and central["extra"]["pooled_nodes"] == 3
    from proxgt.training import build_run

    # the pooled batch of 3 nodes of SA's default 32, resolved by the algorithm from extra.pooled_nodes
    assert build_run(central).resolved.batch == 3 * 32
    assert s.cells[0].series == "algorithm=proxgt-sa"


def test_skip_drops_the_cells_it_matches(tmp_path):
    text = SUITE.replace('algorithm = ["proxgt-sa", "prox-dsgd", "central-prox-sgd"]',
                         'algorithm = ["proxgt-sa", "prox-adpsgd"]\nasynchronous = [false, true]')
    text = text.replace('match = { algorithm = "prox-dsgd" }\nset = { batch = 8 }',
                        'match = { algorithm = "prox-adpsgd", asynchronous = false }\nskip = true')
    s = load_suite(_write(tmp_path, text))
    assert [c.name for c in s.cells if c.config["seed"] == 0] == [
        "proxgt-sa__asynchronousFalse__seed0", "proxgt-sa__asynchronousTrue__seed0",
        "prox-adpsgd__asynchronousTrue__seed0"]
    for bad in ("skip = true\nset = { batch = 8 }", "skip = false"):
        with pytest.raises(ProxGTValueError, match="either a 'set' table or skip = true"):
            load_suite(_write(tmp_path, text.replace("skip = true", bad)))


def test_pooled_config_leaves_decentralized_cells_alone():
    cfg = {"algorithm": "proxgt-sa", "nodes": 8}
    assert pooled_config(cfg) is cfg
    assert pooled_config({"algorithm": "central-proxsarah", "nodes": 4, "batch": 2})["batch"] == 8


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (SUITE.replace('name = "tiny"', 'name = "a b"'), "suite.name"),
        (SUITE.replace("target = 1e-2", "target = -1"), "suite.target"),
        (SUITE.replace("seed = [0, 1]", "seed = []"), "grid.seed must be a non-empty list"),
        (SUITE.replace("nodes = 3", "nodez = 3"), "unknown setting 'nodez' in \\[base\\]"),
        (SUITE.replace('"prox-dsgd" }', '"sppdm" }'), "cell #1 matches no grid cell"),
        (SUITE.replace('"central-prox-sgd"]', '"nope"]'), "unknown algorithm 'nope'"),
        (SUITE + "\n[extra]\n", "unknown table \\[extra\\]"),
        ("[suite\n", "invalid TOML"),
    ],
)
def test_validation_one_line(tmp_path, text, match):
    with pytest.raises(ProxGTValueError, match=match) as info:
        load_suite(_write(tmp_path, text))
    assert "\n" not in str(info.value)


def test_run_then_resume_runs_nothing(tmp_path, capsys):
    path = _write(tmp_path)
    s = load_suite(path)
    res = run_suite(s)
    assert len(res.ran) == 6 and not res.failed
    assert all(cell_is_done(s.folder(c), c) for c in s.cells)
    # second invocation (through the CLI): nothing is rerun, the table is rewritten
    assert main(["compare", "-c", str(path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "ran 0 cells" in out and "skipped 6" in out
    table = (s.out / "table.csv").read_text().splitlines()
    assert len(table) == 1 + 3 and table[1].startswith("algorithm=proxgt-sa,proxgt-sa,ring,3")
    header = table[0].split(",")
    assert header.index("samples_to_target") < header.index("first_dip_samples") < header.index("final_median")
    assert "samples_per_node" not in header and "final" not in header
    # the table says how "to target" and "final" are measured, in the file and on the terminal
    md = (s.out / "table.md").read_text()
    caption = md.splitlines()[0]
    assert caption.startswith("Target: seed-mean `grad_mapping_sq` <= 0.01;") and caption in out
    assert "stays at or below the target to the end of the run" in caption and "last 20%" in caption
    # a changed setting reruns exactly the affected cells
    s2 = load_suite(_write(tmp_path, SUITE.replace("set = { batch = 8 }", "set = { batch = 4 }")))
    res2 = run_suite(s2)
    assert sorted(res2.ran) == ["prox-dsgd__seed0", "prox-dsgd__seed1"]
    # an interrupted cell (no summary.json) is rerun
    (s.folder(s.cells[0]) / "summary.json").unlink()
    assert run_suite(s2).ran == ["proxgt-sa__seed0"]
    info = json.loads((s.out / "suite.json").read_text())
    assert info["target"] == 1e-2 and len(info["cells"]) == 6


def test_parallel_jobs(tmp_path):
    text = SUITE.replace('algorithm = ["proxgt-sa", "prox-dsgd", "central-prox-sgd"]', 'algorithm = ["proxgt-sa"]')
    s = load_suite(_write(tmp_path, text.replace("[[cell]]\nmatch = { algorithm = \"prox-dsgd\" }\n"
                                                  "set = { batch = 8 }\n", "")))
    res = run_suite(s, jobs=2)
    assert sorted(res.ran) == ["seed0", "seed1"] and not res.failed
    assert all((s.folder(c) / "summary.json").is_file() for c in s.cells)


def test_gpu_cells_start_their_workers_with_spawn(tmp_path, monkeypatch):
    import multiprocessing as mp

    import proxgt.suites.runner as suites

    s = load_suite(_write(tmp_path))
    fork = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    assert suites._start_method(s.cells) == fork
    gpu = [type(c)(**{**c.__dict__, "config": {**c.config, "device": "cuda:0"}}) for c in s.cells[:1]]
    assert suites._start_method(s.cells[1:] + gpu) == "spawn"
    # spawned workers (as for GPU cells; here on the CPU) import what they need and run the cells
    monkeypatch.setattr(suites, "_start_method", lambda cells: "spawn")
    text = SUITE.replace('algorithm = ["proxgt-sa", "prox-dsgd", "central-prox-sgd"]', 'algorithm = ["proxgt-sa"]')
    text = text.replace('[[cell]]\nmatch = { algorithm = "prox-dsgd" }\nset = { batch = 8 }\n', "")
    spawned = load_suite(_write(tmp_path, text.replace('out = "out"', 'out = "spawned"')))
    res = run_suite(spawned, jobs=2)
    assert sorted(res.ran) == ["seed0", "seed1"] and not res.failed
    assert all((spawned.folder(c) / "summary.json").is_file() for c in spawned.cells)


def test_progress_counts_cells_done_of_all_with_the_time_left(tmp_path, capsys):
    s = load_suite(_write(tmp_path))
    first = s.cells[:2]
    s.cells = first  # two cells finish first, then the whole suite runs: the line starts at 2 of 6 done
    run_suite(s, jobs=1)
    capsys.readouterr()
    s = load_suite(_write(tmp_path))
    res = run_suite(s, jobs=1, progress=True)
    assert sorted(res.skipped) == sorted(c.name for c in first) and len(res.ran) == 4
    frames = [f.strip() for f in capsys.readouterr().err.replace("\r", "\n").splitlines() if "cells done" in f]
    done = [int(f.split(": ", 1)[1].split("/")[0]) for f in frames]
    assert done[0] == 2 and done[-1] == 6 and done == sorted(done)
    assert all("/6 cells done" in f for f in frames)
    assert "about ? left" in frames[0] and "left" in frames[-1] and "about ? left" not in frames[-1]
