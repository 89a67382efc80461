"""Safe checkpoints (issue 17, item 7): a file is read with weights_only=True and refused with one line naming it
unless it is a plain checkpoint dictionary (no code in it runs); a corrupt newest checkpoint falls back to the
previous one; ``--resume`` on a finished run is refused unless ``--overwrite`` (start over) or a larger
``--iters`` (extend it: the result equals the uninterrupted longer run)."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from proxgt._io import read_metrics_csv
from proxgt.cli import main
from proxgt.errors import DivergenceError, ProxGTValueError
from proxgt.executors.checkpoint import (
    COMPONENTS,
    complete_checkpoints,
    find_checkpoint,
    read_checkpoint_file,
)
from proxgt.executors.driver import plan_resume
from proxgt.executors.simulation import run_simulation

from .resuming import doctored_checkpoint

CFG = {"data": "breast_cancer", "nodes": 4, "topology": "ring", "algorithm": "proxgt-sr-e", "batch": 8,
       "iters": 30, "log_every": 5, "seed": 2, "test_fraction": 0.0, "checkpoint_every": 10}


def _same_rows(a: Path, b: Path) -> None:
    cols_a, rows_a = read_metrics_csv(a / "metrics.csv")
    cols_b, rows_b = read_metrics_csv(b / "metrics.csv")
    assert cols_a == cols_b and len(rows_a) == len(rows_b)
    for ra, rb in zip(rows_a, rows_b, strict=True):
        assert {c: v for c, v in ra.items() if c != "wall_s"} == {c: v for c, v in rb.items() if c != "wall_s"}
    np.testing.assert_array_equal(np.load(a / "final.npz")["x"], np.load(b / "final.npz")["x"])


class _Stop(Exception):
    pass


def _unfinished(folder: Path, stop_at: int = 25, **changes) -> Path:
    """The run of CFG stopped at iteration ``stop_at`` (after its checkpoints at 10 and 20)."""

    def hook(rank: int, t: int) -> None:
        if t == stop_at:
            raise _Stop

    with pytest.raises(_Stop):
        run_simulation(dict(CFG, **changes), out=folder, fault_hook=hook)
    return folder


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("safe") / "finished"
    run_simulation(dict(CFG), out=out)
    return out


@pytest.fixture(scope="module")
def longer(tmp_path_factory) -> Path:
    """The uninterrupted run of CFG with 50 iterations."""
    out = tmp_path_factory.mktemp("safe") / "longer"
    run_simulation(dict(CFG, iters=50), out=out)
    return out


def test_a_checkpoint_file_is_a_plain_dictionary_of_components(finished):
    assert [c[0] for c in complete_checkpoints(finished)] == [30, 20]  # the last two, the final state included
    path = find_checkpoint(finished).path / "rank0.pt"
    with open(path, "rb") as fh:
        record = torch.load(fh, weights_only=True)  # no allow-list needed
    assert set(record) == {"format", "version", "t", "world", "rank", *COMPONENTS}
    assert record["t"] == 30 and record["world"] == 1 and record["rank"] == 0
    assert set(record["algorithm"]) == {"x", "v", "y", "t", "est"} and record["algorithm"]["t"] == 30
    assert isinstance(record["oracle"]["ifo"], torch.Tensor)
    assert record["mixer"] == {} and record["config"]["iters"] == 30
    assert [r["iter"] for r in record["metrics"]["rows"]] == [0, 5, 10, 15, 20, 25, 30]


@pytest.mark.parametrize("how", ["payload", "truncated", "garbage", "empty", "plain-pickle", "wrong-keys",
                                 "not-a-dict", "text"])
def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous_one(how, finished, tmp_path, capsys):
    out = _unfinished(tmp_path / "r")
    newest = out / "checkpoint" / "iter000000020" / "rank0.pt"
    marker = tmp_path / "payload-ran"
    good = newest.read_bytes()
    if how == "payload":
        doctored_checkpoint(newest, marker, out / "checkpoint" / "iter000000010" / "rank0.pt")
    elif how == "truncated":
        newest.write_bytes(good[: len(good) // 2])
    elif how == "garbage":
        newest.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)))
    elif how == "empty":
        newest.write_bytes(b"")
    elif how == "plain-pickle":
        newest.write_bytes(pickle.dumps({"t": 20}))
    elif how == "wrong-keys":
        torch.save({"x": torch.ones(3)}, newest)
    elif how == "not-a-dict":
        torch.save([torch.ones(3)], newest)
    else:
        newest.write_bytes("t = 20 \u00e9\u00e8\n".encode("latin-1"))
    assert main(["run", "--resume", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err.splitlines()
    warned = [line for line in err if line.startswith("proxgt: warning:")]
    assert len(warned) == 1 and str(newest) in warned[0], err
    assert "falling back to the checkpoint at iteration 10" in warned[0]
    assert any(line.startswith(f"proxgt: resuming {out} at iteration 10 of 30") for line in err), err
    assert not any("Traceback" in line for line in err)
    assert not marker.exists()
    _same_rows(finished, out)


def test_the_crafted_payload_would_run_code_if_unpickled(tmp_path, finished):
    """The control of the test above: its doctored file does run code under a plain torch.load."""
    marker = tmp_path / "ran"
    doctored_checkpoint(tmp_path / "bad.pt", marker, find_checkpoint(finished).path / "rank0.pt")
    torch.load(tmp_path / "bad.pt", weights_only=False)
    assert marker.exists()


def test_a_doctored_checkpoint_with_nothing_to_fall_back_to_is_refused(tmp_path, capsys):
    out = _unfinished(tmp_path / "r", stop_at=15)  # one checkpoint, at 10
    ck = out / "checkpoint" / "iter000000010" / "rank0.pt"
    marker = tmp_path / "payload-ran"
    doctored_checkpoint(ck, marker, ck)
    assert main(["run", "--resume", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"proxgt: error: no usable checkpoint under {out / 'checkpoint'}")
    assert f"checkpoint file {ck} cannot be used" in err and "could run code" in err, err
    assert not marker.exists()
    with pytest.raises(ProxGTValueError, match="could run code"):
        read_checkpoint_file(ck)
    assert not marker.exists()


def test_no_usable_checkpoint_is_a_one_line_error(tmp_path, capsys):
    out = _unfinished(tmp_path / "r")
    for d in (out / "checkpoint").iterdir():
        (d / "rank0.pt").write_bytes(b"\x80\x04garbage")
    assert main(["run", "--resume", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("proxgt: error: no usable checkpoint under") and "1 older one(s)" in err[-1]
    assert len([line for line in err if line.startswith("proxgt: error")]) == 1


def test_resume_refuses_a_finished_run(finished, tmp_path, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in finished.iterdir()}
    assert main(["run", "--resume", str(finished), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds a finished run (30 iterations)" in err and "--overwrite" in err, err
    assert main(["run", "--resume", str(finished), "--iters", "30", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--iters 30 does not extend the finished run" in err, err
    assert {p.name: p.stat().st_mtime_ns for p in finished.iterdir()} == before  # untouched


def test_resume_with_overwrite_starts_the_run_over(finished, tmp_path):
    out = tmp_path / "again"
    shutil.copytree(finished, out)
    (out / "metrics.csv").write_text("iter\n0\n")  # whatever was there is replaced
    assert main(["run", "--resume", str(out), "--overwrite", "--no-progress"]) == 0
    _same_rows(finished, out)


@pytest.mark.parametrize("algorithm", ["proxgt-sr-e", "deepstorm", "sppdm", "cdproxsgt"])
def test_a_larger_iters_extends_a_finished_run_to_the_uninterrupted_longer_run(algorithm, tmp_path, capsys):
    cfg = dict(CFG, algorithm=algorithm, iters=23)  # 23 is off the log grid: its row is not in the longer run
    short, ref = tmp_path / "short", tmp_path / "ref"
    run_simulation(cfg, out=short)
    run_simulation(dict(cfg, iters=40), out=ref)
    assert main(["run", "--resume", str(short), "--iters", "40", "--no-progress"]) == 0
    assert f"proxgt: resuming {short} at iteration 23 of 40" in capsys.readouterr().err
    _same_rows(ref, short)
    assert [c[0] for c in complete_checkpoints(short)] == [40, 30]


def test_an_extension_that_is_stopped_is_an_unfinished_run(finished, longer, tmp_path):
    out = tmp_path / "ext"
    shutil.copytree(finished, out)

    def hook(rank: int, t: int) -> None:
        if t == 42:
            raise _Stop

    with pytest.raises(_Stop):
        run_simulation(None, resume=out, overrides={"iters": 50}, fault_hook=hook)
    assert not (out / "summary.json").exists() and not (out / "final.npz").exists()
    assert plan_resume(out).cfg.iters == 50  # the checkpoint at 40 was written by the extension
    run_simulation(None, resume=out)
    _same_rows(longer, out)


def test_resume_refuses_a_diverged_run(tmp_path, capsys):
    out = tmp_path / "div"
    with pytest.raises(DivergenceError):
        run_simulation(dict(CFG, problem="least_squares", reg="none", step=1e6, iters=200), out=out)
    assert main(["run", "--resume", str(out), "--iters", "300", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "status 'diverged'" in err and "--overwrite" in err, err


def test_iters_below_the_checkpoint_and_dp_epsilon_extensions_are_refused(tmp_path):
    out = _unfinished(tmp_path / "r")
    with pytest.raises(ProxGTValueError, match="must exceed the iteration of the checkpoint"):
        plan_resume(out, {"iters": 15})
    dp = _unfinished(tmp_path / "dp", algorithm="proxgt-sa", dp_epsilon=8.0, dp_clip=1.0)
    with pytest.raises(ProxGTValueError, match="dp_epsilon"):
        plan_resume(dp, {"iters": 60})
    assert plan_resume(dp).cfg.iters == 30  # the recorded length resumes as before
