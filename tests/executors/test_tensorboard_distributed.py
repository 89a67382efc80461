"""--tensorboard in distributed runs: the writing process alone writes the events (rank 0, or the survivor that
takes its place when rank 0 is lost), and TensorBoard's reader sees every row of metrics.csv once."""

from __future__ import annotations

import os
import signal
import sys

import pytest

from proxgt._io import read_metrics_csv
from proxgt.executors.launch.launcher import launch

from .launching import captured as _captured
from .launching import deadline as _deadline
from .launching import tiny_classification

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forked workers: Linux")
pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install 'proxgt[tensorboard]')")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

FLAGS = ["--nodes", "4", "--topology", "ring", "--algorithm", "proxgt-sr-e", "--batch", "full", "--iters", "80",
         "--log-every", "10", "--seed", "5", "--timeout", "3", "--no-progress"]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    return tiny_classification(tmp_path_factory.mktemp("data"), 400, 12)


def _same_as_metrics_csv(run_dir, log_dir, own_clock: bool = True) -> None:
    cols, rows = read_metrics_csv(run_dir / "metrics.csv")
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    assert set(acc.Tags()["scalars"]) == set(cols) - {"iter"}
    for c in cols[1:]:
        events = acc.Scalars(c)
        assert [e.step for e in events] == [r["iter"] for r in rows], c
        if c != "wall_s" or own_clock:
            assert [e.value for e in events] == pytest.approx([r[c] for r in rows], rel=1e-6, abs=1e-30), c


def test_one_writer_in_a_launched_run(data_file, tmp_path):
    out, tb = tmp_path / "dist", tmp_path / "tb"
    with _captured() as got, _deadline(120):
        code = launch(2, [*FLAGS, "--data", data_file, "--out", str(out), "--tensorboard", str(tb)], timeout_s=3)
    assert code == 0, (got["out"] + got["err"])[-3000:]
    assert [p.name for p in tb.iterdir()] == ["dist"]
    assert len(list((tb / "dist").glob("events.out.tfevents.*"))) == 1  # rank 1 wrote none
    _same_as_metrics_csv(out, tb / "dist")


def test_the_survivor_that_takes_over_from_a_lost_rank_0_goes_on_writing(data_file, tmp_path):
    out, tb = tmp_path / "lost0", tmp_path / "tb"

    def kill_rank_0(r: int, it: int) -> None:
        if (r, it) == (0, 40):
            os.kill(os.getpid(), signal.SIGKILL)

    argv = [*FLAGS, "--on-failure", "continue", "--data", data_file, "--out", str(out), "--tensorboard", str(tb)]
    with _captured() as got, _deadline(120):
        code = launch(4, argv, timeout_s=3, fault_hook=kill_rank_0, on_failure="continue")
    err = got["out"] + got["err"]
    assert code == 0 and "proxgt: rank 1 writes" in err, err[-3000:]
    assert len(list((tb / "lost0").glob("events.out.tfevents.*"))) == 2  # rank 0's, then rank 1's
    # every row once, those after the loss over the survivors; wall_s is each process's own clock, so the rows
    # rank 0 logged before the loss have its clock in TensorBoard and rank 1's in the metrics.csv it rewrote
    _same_as_metrics_csv(out, tb / "lost0", own_clock=False)
