"""Elastic restarts: ``proxgt launch --max-restarts N`` starts every worker again after a failure, as torchrun's
``--max-restarts`` does, and the restarted workers (``TORCHELASTIC_RESTART_COUNT`` > 0) resume from the newest
complete checkpoint, so the run ends with the metrics of an uninterrupted one (wall_s aside)."""

from __future__ import annotations

import contextlib
import functools
import io
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from proxgt._io import read_metrics_csv
from proxgt.cli import main
from proxgt.executors.launch.launcher import launch

from .launching import deadline, tiny_classification

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forked workers: Linux")

NPROCS = 4
FLAGS = ["--nodes", "6", "--topology", "ring", "--algorithm", "proxgt-sr-o", "--batch", "8", "--iters", "30",
         "--log-every", "5", "--seed", "3", "--checkpoint-every", "10", "--timeout", "10", "--no-progress"]


@contextlib.contextmanager
def _quiet() -> Iterator[dict[str, str]]:
    """Capture fds 1 and 2 (which forked workers inherit) into ``got['all']``."""
    got: dict[str, str] = {}
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    tmp = tempfile.TemporaryFile(mode="w+b")
    old = sys.stdout, sys.stderr
    try:
        for fd in (1, 2):
            os.dup2(tmp.fileno(), fd)
        sys.stdout = sys.stderr = io.TextIOWrapper(os.fdopen(os.dup(2), "wb", buffering=0), write_through=True)
        yield got
    finally:
        sys.stderr.close()
        sys.stdout, sys.stderr = old
        for fd in (1, 2):
            os.dup2(saved[fd], fd)
            os.close(saved[fd])
        tmp.seek(0)
        got["all"] = tmp.read().decode(errors="replace")
        tmp.close()


def _launch(argv: list[str], hook: Callable[[int, int], None] | None = None, max_restarts: int = 0) -> tuple[int, str]:
    with deadline(120), _quiet() as got:
        code = launch(NPROCS, argv, timeout_s=10, fault_hook=hook, max_restarts=max_restarts)
    return code, got["all"]


def _kill_once(rank: int, t: int) -> Callable[[int, int], None]:
    """SIGKILL ``rank`` at iteration ``t`` of the first attempt only (a restart has TORCHELASTIC_RESTART_COUNT 1)."""

    def hook(r: int, it: int) -> None:
        if (r, it) == (rank, t) and os.environ.get("TORCHELASTIC_RESTART_COUNT") == "0":
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    return tiny_classification(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_file):
    out = tmp_path_factory.mktemp("elastic") / "full"
    code, err = _launch([*FLAGS, "--data", data_file, "--out", str(out)])
    assert code == 0, err[-3000:]
    return out


def _assert_same_run(a, b) -> None:
    cols_a, rows_a = read_metrics_csv(a / "metrics.csv")
    cols_b, rows_b = read_metrics_csv(b / "metrics.csv")
    assert cols_a == cols_b and len(rows_a) == len(rows_b) == 7
    for ra, rb in zip(rows_a, rows_b, strict=True):
        assert {c: v for c, v in ra.items() if c != "wall_s"} == {c: v for c, v in rb.items() if c != "wall_s"}
    np.testing.assert_array_equal(np.load(a / "final.npz")["x"], np.load(b / "final.npz")["x"])


@pytest.mark.parametrize("kill_at, resumed_at", [(25, 20), (5, None)], ids=["from-checkpoint", "before-any"])
def test_a_restarted_run_ends_with_the_uninterrupted_metrics(uninterrupted, data_file, tmp_path, kill_at, resumed_at):
    out = tmp_path / "restarted"
    code, err = _launch([*FLAGS, "--data", data_file, "--out", str(out)], _kill_once(2, kill_at), max_restarts=1)
    assert code == 0, err[-3000:]
    assert "proxgt: restarting all 4 workers from the newest checkpoint (restart 1 of at most 1)" in err, err[-3000:]
    assert "rank 2 failed" in err
    if resumed_at is not None:
        assert f"proxgt: resuming {out} at iteration {resumed_at} of 30" in err, err[-3000:]
    else:  # killed before the first checkpoint: the restart runs from the start
        assert "resuming" not in err, err[-3000:]
    _assert_same_run(uninterrupted, out)


def test_a_restart_falls_back_from_a_corrupt_newest_checkpoint(uninterrupted, data_file, tmp_path):
    """Rank 2 corrupts rank 1's file of the checkpoint at 20, then dies at 25: the restart warns once, resumes
    from the checkpoint at 10 and ends with the uninterrupted metrics (it never retries the corrupt file)."""
    out = tmp_path / "restarted"
    bad = out / "checkpoint" / "iter000000020" / "rank1.pt"
    kill = _kill_once(2, 25)

    def hook(r: int, it: int) -> None:
        if (r, it) == (2, 25) and os.environ.get("TORCHELASTIC_RESTART_COUNT") == "0":
            bad.write_bytes(bad.read_bytes()[:100])  # truncated
        kill(r, it)

    code, err = _launch([*FLAGS, "--data", data_file, "--out", str(out)], hook, max_restarts=2)
    assert code == 0, err[-3000:]
    assert err.count("proxgt: restarting all 4 workers") == 1, err[-3000:]
    warned = [line for line in err.splitlines() if "warning" in line]
    assert len(warned) == 1 and f"checkpoint file {bad} cannot be used" in warned[0], err[-3000:]
    assert f"proxgt: resuming {out} at iteration 10 of 30" in err, err[-3000:]
    assert "Traceback" not in err
    _assert_same_run(uninterrupted, out)


def test_a_restarted_start_over_resumes_its_own_checkpoints(uninterrupted, tmp_path, monkeypatch):
    """``launch --resume DIR --overwrite`` on a finished run starts it over; killed at 25, the restart resumes the
    new run's checkpoint at 20 (the old run's are gone) and ends as the uninterrupted run."""
    import shutil

    import proxgt.executors.launch.launcher as launcher

    out = tmp_path / "again"
    shutil.copytree(uninterrupted, out)
    monkeypatch.setattr(launcher, "launch", functools.partial(launch, fault_hook=_kill_once(2, 25)))
    with deadline(120), _quiet() as got:
        code = main(["launch", "--nprocs", str(NPROCS), "--resume", str(out), "--overwrite", "--max-restarts", "1"])
    err = got["all"]
    assert code == 0, err[-3000:]
    assert err.count("proxgt: restarting all 4 workers") == 1, err[-3000:]
    assert f"proxgt: resuming {out} at iteration 20 of 30" in err, err[-3000:]
    _assert_same_run(uninterrupted, out)


def test_a_failure_after_the_last_restart_fails_the_launch(data_file, tmp_path):
    def always(r: int, it: int) -> None:
        if (r, it) == (1, 12):
            os.kill(os.getpid(), signal.SIGKILL)

    code, err = _launch([*FLAGS, "--data", data_file, "--out", str(tmp_path / "r")], always, max_restarts=1)
    assert code == 1
    assert err.count("proxgt: restarting all 4 workers") == 1
    assert err.rstrip().splitlines()[-1].startswith("proxgt: error: launch failed: rank 1 was killed by signal 9"), \
        err[-3000:]


def test_max_restarts_needs_checkpoints(data_file, tmp_path, capsys):
    argv = ["launch", "--nprocs", "2", "--data", data_file, "--out", str(tmp_path / "r"), "--max-restarts", "1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--max-restarts needs --checkpoint-every" in err, err
    assert main([*argv[:-1], "-1"]) == 2
    assert "--max-restarts must be an int >= 0" in capsys.readouterr().err
