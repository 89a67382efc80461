"""Multi-process tests of the torch.distributed executor (gloo, at most 4 single-threaded processes).

One uninterrupted 4-process run (module fixture) is compared with the simulation of the same config and seed
(iterates, counters, measured bytes), then a run whose rank 2 dies is checked to fail everywhere, naming
rank 2, and to resume from its checkpoint to exactly the uninterrupted run's metrics.

Faults are injected with the ``fault_hook(rank, t)`` of :func:`proxgt.executors.launch.launcher.launch`, called
in-process: the forked workers inherit the hook. The launcher itself is killed in a subprocess.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
import pytest

import proxgt.executors.failures as failures
from proxgt._io import read_metrics_csv
from proxgt.cli import main
from proxgt.executors.checkpoint import latest_checkpoint
from proxgt.executors.distributed import partition_nodes
from proxgt.executors.launch.launcher import launch
from proxgt.executors.simulation import run_simulation
from proxgt.topology import make_topology

from .launching import CRASH_MARKS, tiny_classification
from .launching import captured as _captured
from .launching import children as _children
from .launching import deadline as _deadline
from .launching import running as _running
from .resuming import doctored_checkpoint

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forked workers and /proc: Linux")

NPROCS = 4
# 6 nodes on 4 processes: blocks [0, 1], [2, 3], [4], [5] (two ranks host a block, two host one node); the
# ranks form the ring 0 - 1 - 2 - 3 - 0, so rank 0 is no neighbour of rank 2
CFG = {
    "nodes": 6, "topology": "ring", "algorithm": "proxgt-sr-o", "batch": 8,
    "iters": 30, "log_every": 5, "seed": 3, "mixing": "chebyshev",
}
FLAGS = ["--nodes", "6", "--topology", "ring", "--algorithm", "proxgt-sr-o",
         "--batch", "8", "--iters", "30", "--log-every", "5", "--seed", "3", "--mixing", "chebyshev",
         "--no-progress"]
TIMEOUT_S = 10


def _launch(argv: list[str], hook: Callable[[int, int], None] | None = None, *, timeout_s: float = TIMEOUT_S,
            nprocs: int = NPROCS) -> tuple[int, str]:
    """``proxgt launch`` of the worker flags ``argv`` in this process (workers forked with ``hook``):
    (exit code, everything written to stdout and stderr, the workers' included)."""
    with _captured() as got, _deadline(120):
        code = launch(nprocs, argv, timeout_s=timeout_s, fault_hook=hook)
    return code, got["out"] + got["err"]


def _cli(argv: list[str]) -> tuple[int, str, str]:
    """``proxgt <argv>`` in this process (``launch`` forks its workers): (exit code, stdout, stderr)."""
    with _captured() as got, _deadline(120):
        code = main(argv)
    return code, got["out"], got["err"]


def _die(rank: int, t: int, code: int = 17) -> Callable[[int, int], None]:
    def hook(r: int, it: int) -> None:
        if (r, it) == (rank, t):
            os._exit(code)

    return hook


def _hang(rank: int, t: int) -> Callable[[int, int], None]:
    def hook(r: int, it: int) -> None:
        if (r, it) == (rank, t):
            time.sleep(600)  # far longer than the timeout: the other ranks' verdict ends this process

    return hook


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    """A small binary classification set (a file loads in milliseconds; named sets import scikit-learn)."""
    return tiny_classification(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, data_file):
    """The uninterrupted run, with a checkpoint every 7 iterations (at 7, 14, 21 and 28)."""
    out = tmp_path_factory.mktemp("dist") / "full"
    code, _, err = _cli(["launch", "--nprocs", str(NPROCS), *FLAGS, "--data", data_file, "--out", str(out),
                         "--timeout", str(TIMEOUT_S), "--checkpoint-every", "7"])
    assert code == 0, err[-3000:]
    return out


def _metrics(path):
    return read_metrics_csv(path / "metrics.csv")


def test_four_processes_match_the_simulation(full_run, data_file, tmp_path):
    sim = run_simulation(dict(CFG, data=data_file), out=tmp_path / "sim")
    cols_d, rows_d = _metrics(full_run)
    cols_s, rows_s = _metrics(tmp_path / "sim")
    assert cols_d == cols_s and len(rows_d) == len(rows_s) == 7
    for rd, rs in zip(rows_d, rows_s, strict=True):
        for c in ("iter", "ifo_per_node", "comm_rounds", "bytes_per_node"):  # counters: exactly equal
            assert rd[c] == rs[c], c
        for c in cols_s:
            if c not in ("wall_s",):
                assert rd[c] == pytest.approx(rs[c], rel=1e-4, abs=1e-6), (c, rd["iter"])
    x_d = np.load(full_run / "final.npz")["x"]
    x_s = sim.x.double().numpy()
    assert x_d.shape == x_s.shape == (6, 20)
    scale = max(1.0, float(np.abs(x_s).max()))
    np.testing.assert_allclose(x_d, x_s, rtol=0, atol=1e-5 * scale)
    assert not np.array_equal(x_s, 0 * x_s)


def test_measured_bytes_equal_the_accounting(full_run):
    summary = json.loads((full_run / "summary.json").read_text())
    info = summary["distributed"]
    assert info["world_size"] == NPROCS and info["backend"] == "gloo"
    blocks = partition_nodes(6, NPROCS)
    assert [tuple(b) for b in info["blocks"]] == blocks
    last = _metrics(full_run)[1][-1]
    rounds = int(last["comm_rounds"])
    d = np.load(full_run / "final.npz")["x"].shape[1]
    K = int(summary["rounds"])
    assert rounds == 2 * K * CFG["iters"]  # ProxGT: two K-round mixings per iteration
    topo = make_topology("ring", 6)
    owner = {i: r for r, blk in enumerate(blocks) for i in blk}
    for r, blk in enumerate(blocks):
        # rows actually needed by other ranks: one message row per (local node, neighbouring rank) pair
        rows_out = sum(len({owner[j] for j in topo.neighbors(i) if owner[j] != r}) for i in blk)
        assert info["bytes_sent_per_rank"][r] == rows_out * d * 4 * rounds
        accounted = sum(topo.degrees[i] for i in blk) * d * 4 * rounds
        assert info["bytes_accounted_per_rank"][r] == accounted
        if len(blk) == 1:  # one node per rank: measured == 2 K deg(i) d x 4 per iteration, as accounted
            (i,) = blk
            assert info["bytes_sent_per_rank"][r] == accounted == 2 * K * topo.degrees[i] * d * 4 * CFG["iters"]
        else:  # the intra-rank edge costs no message
            assert info["bytes_sent_per_rank"][r] < accounted
    assert last["bytes_per_node"] == pytest.approx(np.mean(topo.degrees) * d * 4 * rounds)


def test_a_finished_run_leaves_only_complete_checkpoints(full_run):
    folders = sorted((full_run / "checkpoint").glob("iter*"))
    assert [d.name for d in folders] == ["iter000000028", "iter000000030"]  # the last two: the final state too
    for d in folders:
        names = {p.name for p in d.iterdir()}
        assert names == {f"rank{r}.pt" for r in range(NPROCS)} | {f"world{NPROCS}"}, (d.name, sorted(names))
    assert latest_checkpoint(full_run)[0] == 30


def test_launch_resume_refuses_a_finished_run_and_extends_it_with_a_larger_iters(full_run, data_file, tmp_path):
    before = {p.name: p.stat().st_mtime_ns for p in full_run.iterdir()}
    code, out, err = _cli(["launch", "--nprocs", str(NPROCS), "--resume", str(full_run), "--no-progress"])
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert f"{full_run} holds a finished run (30 iterations)" in err and "--iters N > 30" in err
    assert {p.name: p.stat().st_mtime_ns for p in full_run.iterdir()} == before  # no worker started
    longer = tmp_path / "longer"
    shutil.copytree(full_run, longer)
    code, _, err = _cli(["launch", "--nprocs", str(NPROCS), "--resume", str(longer), "--iters", "40",
                         "--no-progress"])
    assert code == 0, err[-3000:]
    assert f"proxgt: resuming {longer} at iteration 30 of 40" in err
    rows_full, rows_long = _metrics(full_run)[1], _metrics(longer)[1]
    assert [r["iter"] for r in rows_long] == [0, 5, 10, 15, 20, 25, 30, 35, 40]
    assert [{c: v for c, v in r.items() if c != "wall_s"} for r in rows_long[:7]] == \
        [{c: v for c, v in r.items() if c != "wall_s"} for r in rows_full]
    sim = run_simulation(dict(CFG, data=data_file, iters=40))  # the uninterrupted longer run
    for rd, rs in zip(rows_long, sim.rows, strict=True):
        for c in ("iter", "ifo_per_node", "comm_rounds", "bytes_per_node"):
            assert rd[c] == rs[c], c
        assert rd["grad_mapping_sq"] == pytest.approx(rs["grad_mapping_sq"], rel=1e-4, abs=1e-6)


def test_launch_resume_overwrite_starts_the_run_over(full_run, tmp_path):
    again = tmp_path / "again"
    shutil.copytree(full_run, again)
    (again / "metrics.csv").write_text("iter\n0\n")
    code, _, err = _cli(["launch", "--nprocs", str(NPROCS), "--resume", str(again), "--overwrite", "--no-progress"])
    assert code == 0, err[-3000:]
    assert "resuming" not in err
    assert _metrics(again)[0] == _metrics(full_run)[0]
    for ra, rb in zip(_metrics(full_run)[1], _metrics(again)[1], strict=True):
        assert {c: v for c, v in ra.items() if c != "wall_s"} == {c: v for c, v in rb.items() if c != "wall_s"}
    np.testing.assert_array_equal(np.load(full_run / "final.npz")["x"], np.load(again / "final.npz")["x"])


def test_launch_refuses_a_folder_holding_a_finished_run_unless_overwrite(full_run, data_file, tmp_path):
    before = {p.name: p.stat().st_mtime_ns for p in full_run.iterdir()}
    argv = ["launch", "--nprocs", "2", *FLAGS, "--data", data_file, "--iters", "10", "--timeout", str(TIMEOUT_S)]
    code, out, err = _cli([*argv, "--out", str(full_run)])
    assert code == 2
    assert err.startswith(f"proxgt: error: output folder {full_run} already holds a finished run") and \
        err.count("\n") == 1, err
    assert "--overwrite" in err and out == ""
    assert {p.name: p.stat().st_mtime_ns for p in full_run.iterdir()} == before  # untouched, no worker started
    copy = tmp_path / "copy"
    shutil.copytree(full_run, copy)
    code, out, err = _cli([*argv, "--out", str(copy), "--overwrite"])
    assert code == 0, err[-3000:]
    assert json.loads((copy / "summary.json").read_text())["distributed"]["world_size"] == 2
    assert [r["iter"] for r in _metrics(copy)[1]] == [0, 5, 10]
    assert not (copy / "checkpoint").exists()  # the replaced run's checkpoints went with it


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory, data_file):
    """The same run with a checkpoint every 10 iterations, whose rank 2 dies (os._exit(17)) at iteration 25."""
    out = tmp_path_factory.mktemp("dist") / "faulty"
    args = [*FLAGS, "--data", data_file, "--out", str(out), "--timeout", str(TIMEOUT_S), "--checkpoint-every", "10"]
    code, err = _launch(args, _die(2, 25))
    return out, code, err


def _assert_all_name_the_dead_rank(code: int, err: str) -> None:
    assert code == 1, err[-3000:]
    assert "launch failed: rank 2 exited with code 17 first" in err, err[-3000:]
    for r in (0, 1, 3):  # rank 0 is no neighbour of rank 2: it learns the culprit through the store
        assert re.search(rf"^proxgt: error: rank {r}: rank 2 failed", err, re.M), err[-3000:]
        m = re.search(rf"rank {r} exited with code 1 ([0-9.]+) s later", err)
        assert m, err[-3000:]
        assert float(m.group(1)) < TIMEOUT_S  # every other rank stopped on its own, within the timeout
    assert "killed rank" not in err
    assert not any(mark in err for mark in CRASH_MARKS), err[-3000:]
    assert len(err.strip().splitlines()) == NPROCS  # one line per surviving rank, one from the launcher


def test_dead_rank_makes_every_rank_exit_naming_it(faulty_run):
    out, code, err = faulty_run
    _assert_all_name_the_dead_rank(code, err)
    assert not (out / "summary.json").exists()
    assert (out / "metrics.csv").exists()


@pytest.mark.parametrize("late", [1, 3])
def test_a_neighbour_that_posts_after_the_death_still_names_the_dead_rank(data_file, tmp_path, monkeypatch, late):
    """Rank ``late`` reaches its next gossip round only after rank 2 died, so posting its message to rank 2
    fails at once (gloo raises when posting on a connection known lost); and the ranks only wait for each
    other's suspicions, as under torchrun: the launcher's own verdict (what it saw exit) is left out."""
    publish = failures.publish_failure

    def workers_only(store, msg, prefix=None):
        return False if "its process" in msg else publish(store, msg, prefix)

    monkeypatch.setattr(failures, "publish_failure", workers_only)  # the forked workers inherit it too
    die = _die(2, 25)

    def hook(r: int, t: int) -> None:
        die(r, t)
        if (r, t) == (late, 25):
            time.sleep(0.5)

    code, err = _launch([*FLAGS, "--data", data_file, "--out", str(tmp_path / "late"), "--timeout", str(TIMEOUT_S)],
                        hook)
    assert code == 1, err[-3000:]
    assert "launch failed: rank 2 failed or stopped answering (connection lost during gossip" in err, err[-3000:]
    assert "rank 2 exited with code 17 first" in err
    for r in (0, 1, 3):
        assert re.search(rf"^proxgt: error: rank {r}: rank 2 failed or stopped answering", err, re.M), err[-3000:]
    assert not any(mark in err for mark in CRASH_MARKS), err[-3000:]


def test_a_doctored_checkpoint_is_refused_unread_and_launch_falls_back(full_run, faulty_run, tmp_path):
    """(Before the test below resumes faulty_run in place.) Rank 1's file of the newest checkpoint holds a pickle
    payload: every rank falls back to the checkpoint at 10, rank 0 says why in one line, and no payload runs."""
    out = tmp_path / "doctored"
    shutil.copytree(faulty_run[0], out)
    assert not (out / "summary.json").exists()
    bad = out / "checkpoint" / "iter000000020" / "rank1.pt"
    marker = tmp_path / "payload-ran"
    doctored_checkpoint(bad, marker, bad)
    code, _, err = _cli(["launch", "--nprocs", str(NPROCS), "--resume", str(out), "--no-progress"])
    assert code == 0, err[-3000:]
    warned = [line for line in err.splitlines() if "warning" in line]
    assert len(warned) == 1 and warned[0].startswith(f"proxgt: warning: rank 0: checkpoint file {bad} cannot be "
                                                     "used"), err[-3000:]
    assert "falling back to the checkpoint at iteration 10" in warned[0]
    assert f"proxgt: resuming {out} at iteration 10 of 30" in err
    assert not any(mark in err for mark in CRASH_MARKS), err[-3000:]
    assert not marker.exists()
    assert _metrics(out)[0] == _metrics(full_run)[0]
    for ra, rb in zip(_metrics(full_run)[1], _metrics(out)[1], strict=True):
        assert {c: v for c, v in ra.items() if c != "wall_s"} == {c: v for c, v in rb.items() if c != "wall_s"}
    (out / "summary.json").unlink()
    for d in (out / "checkpoint").iterdir():  # nothing usable left: the launcher refuses before any worker starts
        for f in d.glob("rank*.pt"):
            f.write_bytes(b"garbage")
    code, out_text, err = _cli(["launch", "--nprocs", str(NPROCS), "--resume", str(out), "--no-progress"])
    assert code == 2 and out_text == "" and err.count("\n") == 1 and "no usable checkpoint under" in err, err


def test_resumed_distributed_run_ends_with_the_uninterrupted_metrics(full_run, faulty_run):
    out, _, _ = faulty_run
    assert latest_checkpoint(out)[0] == 20
    # iterations 21..25 were lost; the checkpoint at 20 is used
    code, _, err = _cli(["launch", "--nprocs", str(NPROCS), "--resume", str(out), "--no-progress"])
    assert code == 0, err[-3000:]
    cols_a, rows_a = _metrics(full_run)
    cols_b, rows_b = _metrics(out)
    assert cols_a == cols_b and len(rows_a) == len(rows_b)
    for ra, rb in zip(rows_a, rows_b, strict=True):
        assert {c: v for c, v in ra.items() if c != "wall_s"} == {c: v for c, v in rb.items() if c != "wall_s"}
    np.testing.assert_array_equal(np.load(full_run / "final.npz")["x"], np.load(out / "final.npz")["x"])


def test_hung_rank_is_named_after_the_timeout(data_file, tmp_path):
    timeout = 3
    args = [*FLAGS, "--data", data_file, "--out", str(tmp_path / "hung"), "--timeout", str(timeout)]
    code, err = _launch(args, _hang(2, 5), timeout_s=timeout)
    assert code == 1, err[-3000:]
    # the launcher reports what the workers agreed on, whichever worker exited first
    assert "launch failed: rank 2 failed or stopped answering (no answer within 3 s" in err, err[-3000:]
    for r in (0, 1, 3):
        assert re.search(rf"^proxgt: error: rank {r}: rank 2 failed or stopped answering", err, re.M), err[-3000:]
    assert "proxgt: error: rank 2: the other ranks report this process" in err  # its watchdog ended it
    assert "killed rank" not in err
    assert not any(mark in err for mark in CRASH_MARKS), err[-3000:]


# ---------------------------------------------------------------------------------------------- launcher death
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_workers_end_quietly_when_the_launcher_is_killed(data_file, tmp_path, sig):
    nprocs = 2
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "proxgt.cli", "launch", "--nprocs", str(nprocs), "--data", data_file,
           "--nodes", "2", "--iters", "100000", "--log-every", "100000", "--out", str(out), "--timeout", "10",
           "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while not (out / "config.toml").exists() or len(workers) < nprocs:  # the workers are training
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the run did not start"
            time.sleep(0.05)
            workers = _children(proc.pid)
        proc.send_signal(sig)
        killed = time.monotonic()
        # the workers hold the pipes: end of file means that every process closed its files; it then ends
        _, err = proc.communicate(timeout=30)
        while [pid for pid in workers if _running(pid)] and time.monotonic() < killed + 30:
            time.sleep(0.05)
        left = [pid for pid in workers if _running(pid)]
        took = time.monotonic() - killed
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in workers:  # never leave one behind, whatever failed
            if _running(pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
    assert not left, f"workers {left} still running {took:.1f} s after the launcher got {sig.name}"
    assert took < 30
    assert proc.returncode == (-signal.SIGKILL if sig == signal.SIGKILL else 143)
    assert not any(mark in err for mark in CRASH_MARKS), err[-3000:]
    lines = err.strip().splitlines()
    assert all(line.startswith("proxgt: ") for line in lines), err[-3000:]
    if sig == signal.SIGKILL:  # at most one line per worker
        for r in range(nprocs):
            assert sum(line.startswith(f"proxgt: error: rank {r}: ") for line in lines) <= 1, err
        assert all("the launcher (pid" in line and "is gone" in line for line in lines), err
    else:  # the launcher stopped its workers (SIGTERM, quietly) and said so
        assert lines == ["proxgt: terminated (SIGTERM); the workers were stopped"], err


def test_a_sparse_libsvm_file_runs_sharded_and_matches_the_simulation(tmp_path):
    """A file whose features load as sparse CSR (50,000 columns: a dense copy would pass the 64 MiB limit) is read
    in shards by two processes; before, cutting the CSR rows ended every worker with a traceback."""
    rng = np.random.default_rng(0)
    path = tmp_path / "wide.svm"
    with path.open("w") as fh:
        for i in range(400):
            cols = np.sort(rng.choice(50_000, size=8, replace=False)) + 1
            if i == 0:
                cols[-1] = 50_000
            fh.write(f"{1 if rng.random() < 0.5 else -1} " + " ".join(f"{j}:{rng.random():.3f}" for j in cols) + "\n")
    flags = ["--data", str(path), "--nodes", "4", "--iters", "6", "--log-every", "3", "--dtype", "float64",
             "--no-progress"]
    code, out = _launch([*flags, "--out", str(tmp_path / "dist")], nprocs=2)
    assert code == 0, out[-3000:]
    sim = run_simulation({"data": str(path), "nodes": 4, "iters": 6, "log_every": 3, "dtype": "float64"})
    x_d = np.load(tmp_path / "dist" / "final.npz")["x"]
    assert x_d.shape == (4, 50_000) and not np.array_equal(x_d, 0 * x_d)
    np.testing.assert_allclose(x_d, sim.x.numpy(), rtol=0, atol=1e-10 * max(1.0, float(np.abs(x_d).max())))
