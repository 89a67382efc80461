"""``proxgt launch`` on several machines, played by two launchers on 127.0.0.1 (node ranks 0 and 1, 2 processes
each, one thread each): the run equals the simulation; a dead launcher ends the other machine's workers; bad
--nnodes/--node-rank/--master-addr/--master-port flags are one-line errors."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import proxgt
from proxgt.cli import main
from proxgt.executors.launch.launcher import _free_port
from proxgt.executors.simulation import run_simulation

from .launching import CRASH_MARKS, tiny_classification
from .launching import children as _children
from .launching import running as _running

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forked workers and /proc: Linux")

CFG = {"nodes": 6, "topology": "ring", "algorithm": "proxgt-sr-o", "batch": 8, "iters": 30, "log_every": 5,
       "seed": 3, "mixing": "chebyshev"}
FLAGS = ["--nodes", "6", "--topology", "ring", "--algorithm", "proxgt-sr-o", "--batch", "8", "--log-every", "5",
         "--seed", "3", "--mixing", "chebyshev", "--no-progress", "--timeout", "10"]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    return tiny_classification(tmp_path_factory.mktemp("data"))


def _env() -> dict[str, str]:
    src = str(Path(proxgt.__file__).resolve().parents[1])
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                PYTHONPATH=os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])]))


def _start_hosts(argv: list[str], port: int, cwd: Path) -> list[subprocess.Popen]:
    """Launchers of node ranks 1 then 0 (the order a slow machine 0 gives): two 'machines' of 2 processes."""
    procs = []
    for node_rank in (1, 0):
        cmd = [sys.executable, "-m", "proxgt.cli", "launch", "--nprocs", "2", "--nnodes", "2", "--node-rank",
               str(node_rank), "--master-addr", "127.0.0.1", "--master-port", str(port), *argv]
        procs.append(subprocess.Popen(cmd, env=_env(), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    return procs[::-1]  # node rank order


def _finish(procs: list[subprocess.Popen], workers: list[int] = ()) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.communicate()
    for pid in workers:
        if _running(pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def test_two_hosts_of_two_processes_match_the_simulation(data_file, tmp_path):
    out = tmp_path / "run"
    procs = _start_hosts([*FLAGS, "--iters", "30", "--data", data_file, "--out", str(out)], _free_port(), tmp_path)
    try:
        results = [p.communicate(timeout=240) for p in procs]
    finally:
        _finish(procs)
    for node_rank, (p, (_, stderr)) in enumerate(zip(procs, results, strict=True)):
        assert p.returncode == 0, (node_rank, stderr[-3000:])
    assert "30 iterations on 4 processes" in results[0][0]  # rank 0 (node rank 0) reports the run
    assert results[1][0] == ""  # node rank 1 hosts ranks 2 and 3: they print nothing
    sim = run_simulation(dict(CFG, data=data_file), out=tmp_path / "sim")
    x_d = np.load(out / "final.npz")["x"]
    x_s = sim.x.double().numpy()
    assert x_d.shape == x_s.shape == (6, 20)
    assert not np.array_equal(x_s, 0 * x_s)
    np.testing.assert_allclose(x_d, x_s, rtol=0, atol=1e-5 * max(1.0, float(np.abs(x_s).max())))
    summary = (out / "summary.json").read_text()
    assert '"world_size": 4' in summary


def test_a_dead_launcher_ends_the_other_machines_workers(data_file, tmp_path):
    out = tmp_path / "run"
    procs = _start_hosts([*FLAGS, "--iters", "1000000", "--log-every", "1000000", "--data", data_file,
                          "--out", str(out)], _free_port(), tmp_path)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not (out / "config.toml").exists() or len(workers) < 2:  # machine 1's workers are training
            assert all(p.poll() is None for p in procs), [p.communicate()[1][-2000:] for p in procs]
            assert time.monotonic() < deadline, "the run did not start"
            time.sleep(0.05)
            workers = _children(procs[1].pid)
        time.sleep(0.5)
        procs[0].kill()  # machine 0's launcher (it hosts the store); its own workers follow it
        killed = time.monotonic()
        _, err = procs[1].communicate(timeout=60)
        took = time.monotonic() - killed
        while [pid for pid in workers if _running(pid)] and time.monotonic() < killed + 30:
            time.sleep(0.05)
        left = [pid for pid in workers if _running(pid)]
    finally:
        _finish(procs, workers)
    assert not left, f"machine 1's workers {left} still run after machine 0's launcher was killed"
    assert took < 40
    assert procs[1].returncode == 1
    assert not any(mark in err for mark in CRASH_MARKS), err[-3000:]
    lines = err.strip().splitlines()
    assert lines and all(line.startswith("proxgt: error: ") for line in lines), err[-3000:]
    assert lines[-1].startswith("proxgt: error: launch"), err
    # the launcher's line says what happened: the store is gone, or which rank failed first (ranks 0, 1 died)
    assert "node rank 0's launcher" in err or "rank 0" in err or "rank 1" in err, err


@pytest.mark.parametrize("flags, message", [
    (["--nnodes", "2", "--node-rank", "0"], "--nnodes > 1 needs --master-addr"),
    (["--nnodes", "2", "--node-rank", "2", "--master-addr", "h"], "--node-rank must be an int in [0, 2)"),
    (["--nnodes", "2", "--node-rank", "-1", "--master-addr", "h"], "--node-rank must be an int in [0, 2)"),
    (["--nnodes", "0"], "--nnodes must be an int >= 1"),
    (["--nnodes", "2", "--master-addr", "h", "--master-port", "70000"], "--master-port must be an int in"),
    (["--nnodes", "4", "--master-addr", "h", "--nodes", "6"], "--nprocs 2 x --nnodes 4 = 8 exceeds --nodes 6"),
])
def test_bad_machine_flags_are_one_line_errors(flags, message, capsys, tmp_path, data_file):
    argv = ["launch", "--nprocs", "2", "--data", data_file, "--out", str(tmp_path / "r"), *flags]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "r").exists()
