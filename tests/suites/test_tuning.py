"""Suites with a [tune] table: pilots per series, the robust choice, tuned cells, resume, report, validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proxgt._validation import ProxGTValueError
from proxgt.cli import main
from proxgt.settings import load_config_file
from proxgt.suites import load_suite, run_suite
from proxgt.suites.tuning import apply_setting

# least squares on breast_cancer: step 100 blows up (NaN/Inf within the pilot), 0.001 and 0.003 are slow, 0.01 wins
SUITE = """
[suite]
name = "tuned"
out = "out"
target = 1e-2
[suite.cost]
sample_s = 1e-6
[base]
data = "breast_cancer"
problem = "least_squares"
nodes = 4
iters = 30
log_every = 5
[grid]
algorithm = ["proxgt-sa", "prox-dsgd"]
seed = [0, 1]
[tune]
iters = 20
[tune.grid]
"proxgt-sa" = { step = [0.001, 0.01, 100.0] }
"*" = { step = [0.003, 100.0] }
"""


def _write(tmp_path: Path, text: str = SUITE) -> Path:
    p = tmp_path / "suite.toml"
    p.write_text(text)
    return p


def test_pilots_pick_the_step_cells_use_it_and_resume_reruns_nothing(tmp_path, capsys):
    path = _write(tmp_path)
    assert main(["compare", "-c", str(path), "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert "pilot tune/proxgt-sa__step100.0__seed0:" in dry and "(tuned: step)" in dry
    assert "4 cells, 5 tuning pilots" in dry

    s = load_suite(path)
    res = run_suite(s)
    assert not res.failed and len(res.pilots_ran) == 5 and len(res.ran) == 4
    info = json.loads((s.out / "tune" / "tuning.json").read_text())
    by_series = {x["series"]: x for x in info["series"]}
    sa, dsgd = by_series["algorithm=proxgt-sa"], by_series["algorithm=prox-dsgd"]
    assert sa["choice"] == {"step": 0.01} and dsgd["choice"] == {"step": 0.003}  # "*" applies to prox-dsgd
    status = {p["setting"]["step"]: p["status"] for p in sa["pilots"]}
    assert status == {0.001: "ok", 0.01: "ok", 100.0: "diverged"}
    assert sa["ifo_per_node"] > 0 and sa["wall_s"] > 0
    # the main cells run with the chosen step (config.toml and cell.json)
    for c in s.cells:
        want = 0.01 if c.config["algorithm"] == "proxgt-sa" else 0.003
        assert load_config_file(s.folder(c) / "config.toml")["step"] == want
        cell = json.loads((s.folder(c) / "cell.json").read_text())
        assert cell["tuned"] == {"step": want} and cell["config"]["iters"] == 30
    pilot = load_config_file(s.out / "tune" / "proxgt-sa__step0.01__seed0" / "config.toml")
    assert pilot["iters"] == 20 and pilot["seed"] == 0

    # resume (a fresh load, through the CLI): neither pilots nor cells rerun; report with a Tuning section
    assert main(["compare", "-c", str(path), "--no-progress", "--report"]) == 0
    out = capsys.readouterr().out
    assert "ran 0 cells" in out and "skipped 4" in out and "ran 0 pilots, skipped 5" in out
    for name in ("report.md", "table.md"):
        md = (s.out / name).read_text()
        section = md[md.index("## Tuning"):]
        assert "5 pilot runs" in section and "component gradients per node" in section
        row = next(line for line in section.splitlines() if line.startswith("| algorithm=proxgt-sa |"))
        assert "step: 0.001, 0.01, 100" in row and "step=100: diverged" in row and "| step=0.01 |" in row
    # a cell whose pilots are all lost is held back; a changed grid reruns only the new pilots
    s2 = load_suite(_write(tmp_path, SUITE.replace('"*" = { step = [0.003, 100.0] }', '"*" = { step = [100.0] }')))
    res2 = run_suite(s2)
    assert res2.pilots_ran == [] and sorted(res2.failed) == ["prox-dsgd__seed0", "prox-dsgd__seed1"]
    assert sorted(res2.skipped) == ["proxgt-sa__seed0", "proxgt-sa__seed1"]


def test_method_settings_seeds_and_default_budget(tmp_path):
    text = SUITE.replace('algorithm = ["proxgt-sa", "prox-dsgd"]', 'algorithm = ["deepstorm", "prox-dsgd"]')
    text = text.replace("iters = 20\n", "seeds = 2\n").replace(
        '"proxgt-sa" = { step = [0.001, 0.01, 100.0] }', '"deepstorm" = { step = [0.1], "extra.beta" = [0.5, 1.0] }')
    s = load_suite(_write(tmp_path, text))
    pilots = s.tune.all_pilots()
    assert [p.name for p in pilots[:4]] == ["deepstorm__step0.1__beta0.5__seed0", "deepstorm__step0.1__beta0.5__seed1",
                                            "deepstorm__step0.1__beta1.0__seed0", "deepstorm__step0.1__beta1.0__seed1"]
    assert pilots[0].config["extra"] == {"deepstorm": {"beta": 0.5}}
    assert pilots[0].config["iters"] == 6 and pilots[0].config["log_every"] == 1  # a fifth of 30 iterations
    assert len(pilots) == 4 + 2 * 2
    cfg = apply_setting({"algorithm": "deepstorm", "extra": {"deepstorm": {"alpha": 1}}}, {"extra.beta": 2.0})
    assert cfg["extra"] == {"deepstorm": {"alpha": 1, "beta": 2.0}}


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        ('"*" = {', '"nope" = {', "unknown algorithm 'nope'"),
        ('"*" = {', '"deepstorm" = {', "algorithm 'deepstorm' is not in the suite"),
        ("step = [0.003, 100.0]", "stepp = [0.003]", "unknown setting 'stepp'"),
        ("step = [0.003, 100.0]", "seed = [1]", "unknown setting 'seed'"),
        ("step = [0.003, 100.0]", "step = []", "tune.grid.\\*.step must be a non-empty list"),
        ("step = [0.003, 100.0]", "step = [-1.0]", "tune pilot prox-dsgd__step-1.0__seed0: .*step"),
        ("iters = 20", 'iters = 30\nmetric = "loss"', "tune.metric must be one of"),
        ("iters = 20", "iters = 0", "tune.iters must be an int >= 1"),
        ("iters = 20", "seeds = 3", "tune.seeds = 3 but series algorithm=proxgt-sa has 2 seed"),
        ("iters = 20", "budget = 30", "unknown key tune.budget"),
        ("step = [0.003, 100.0]", '"extra." = [1]', "a method setting is extra.<key>"),
    ],
)
def test_bad_tune_tables_give_one_line_errors(tmp_path, old, new, match):
    assert old in SUITE
    with pytest.raises(ProxGTValueError, match=match) as info:
        load_suite(_write(tmp_path, SUITE.replace(old, new)))
    assert "\n" not in str(info.value)


def test_a_suite_varying_only_seeds_is_one_tuned_series(tmp_path):
    text = SUITE.replace('algorithm = ["proxgt-sa", "prox-dsgd"]', 'algorithm = ["proxgt-sa"]')
    s = load_suite(_write(tmp_path, text.replace('"*" = { step = [0.003, 100.0] }\n', "")))
    assert [x.series for x in s.tune.series] == ["all cells"] and s.tune.series[0].cells == ["seed0", "seed1"]
    assert [p.name for p in s.tune.all_pilots()] == ["step0.001__seed0", "step0.01__seed0", "step100.0__seed0"]


def test_pilots_as_long_as_their_cells_are_reused_as_the_cells_of_their_seed(tmp_path, capsys):
    # fraction = 1: each pilot runs its own cell's length (prox-dsgd's cells are longer); the pilot at the chosen
    # step on seed 0 is the seed-0 cell's run, which is copied instead of run a second time
    text = SUITE.replace("iters = 20\n", "fraction = 1.0\n").replace(
        "[tune]", '[[cell]]\nmatch = { algorithm = "prox-dsgd" }\nset = { iters = 40, log_every = 8 }\n[tune]')
    path = _write(tmp_path, text)
    s = load_suite(path)
    lengths = {p.name: (p.config["iters"], p.config["log_every"]) for p in s.tune.all_pilots()}
    assert lengths["proxgt-sa__step0.01__seed0"] == (30, 5) and lengths["prox-dsgd__step0.003__seed0"] == (40, 8)
    res = run_suite(s)
    assert sorted(res.reused) == ["prox-dsgd__seed0", "proxgt-sa__seed0"]
    assert sorted(res.ran) == ["prox-dsgd__seed1", "proxgt-sa__seed1"] and not res.failed
    cell = next(c for c in s.cells if c.name == "proxgt-sa__seed0")
    folder = s.folder(cell)
    assert json.loads((folder / "cell.json").read_text())["tuned"] == {"step": 0.01}
    pilot = s.out / "tune" / "proxgt-sa__step0.01__seed0"
    assert (folder / "metrics.csv").read_bytes() == (pilot / "metrics.csv").read_bytes()
    # what the copy stands for: running the cell itself gives the same rows (wall time aside)
    from proxgt.executors.simulation import run_simulation
    from proxgt.reporting.runs import load_run
    from proxgt.settings import RunConfig

    run_simulation(RunConfig.from_dict(cell.config), out=tmp_path / "rerun")
    strip = [{k: v for k, v in r.items() if k != "wall_s"} for r in load_run(tmp_path / "rerun").rows]
    assert strip == [{k: v for k, v in r.items() if k != "wall_s"} for r in load_run(folder).rows]
    md = (s.out / "tune" / "tuning.json").read_text()
    assert json.loads(md)["fraction"] == 1.0
    # resumed: nothing runs again; the compare line names the copies only when there are some
    assert main(["compare", "-c", str(path), "--no-progress", "--report"]) == 0
    out = capsys.readouterr().out
    assert "ran 0 cells (0 diverged), skipped 4" in out and "ran 0 pilots, skipped 5" in out
    assert "## Over seeds" in out  # two seeds per series: compare prints the spread too
    section = (s.out / "table.md").read_text().split("## Tuning")[1]
    assert "one pilot of 30 iterations (algorithm=prox-dsgd: 40) per grid setting" in section


def test_a_fraction_of_each_cells_length():
    from proxgt.suites.tuning import Tune, _pilot_budget

    tune = Tune(None, 1, "objective", {}, fraction=0.5)
    assert _pilot_budget({"iters": 30, "log_every": 5}, tune) == {"iters": 15, "log_every": 1}
    assert _pilot_budget({"epochs": 3.0}, tune) == {"epochs": 1.5}
    assert _pilot_budget({"epochs": 3.0}, Tune(None, 1, "objective", {})) == {"epochs": 0.6}  # a fifth
    assert _pilot_budget({"iters": 30, "log_every": 5}, Tune(None, 1, "objective", {})) == {"iters": 6,
                                                                                             "log_every": 1}


@pytest.mark.parametrize(
    ("new", "match"),
    [
        ("fraction = 0", "tune.fraction must be a number in \\(0, 1\\]"),
        ("fraction = 1.5", "tune.fraction must be a number in \\(0, 1\\]"),
        ("fraction = true", "tune.fraction must be a number in \\(0, 1\\]"),
        ("iters = 20\nfraction = 0.5", "give tune.iters .* or tune.fraction .*, not both"),
    ],
)
def test_bad_fractions_give_one_line_errors(tmp_path, new, match):
    with pytest.raises(ProxGTValueError, match=match) as info:
        load_suite(_write(tmp_path, SUITE.replace("iters = 20", new)))
    assert "\n" not in str(info.value)
