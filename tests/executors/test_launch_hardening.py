"""The launcher on untrusted networks: on one machine nothing of a ``proxgt launch`` listens beyond loopback, and
the machines of a launch refuse to train with different settings (naming them) before any training."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from proxgt.executors.launch.launcher import _forked_worker, _free_port, launch

from .launching import CRASH_MARKS, tiny_classification
from .launching import captured as _captured
from .launching import children as _children
from .launching import deadline as _deadline

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forked workers and /proc: Linux")

FLAGS = ["--nodes", "4", "--topology", "ring", "--algorithm", "proxgt-sr-o", "--batch", "8", "--iters", "10",
         "--log-every", "5", "--seed", "3", "--no-progress", "--timeout", "20"]
LOOPBACK = {"127.0.0.1", "::1"}


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    return tiny_classification(tmp_path_factory.mktemp("data"))


def _address(hex_addr: str) -> str:
    """The address of a /proc/net/tcp{,6} 'local_address' field (without the port)."""
    import ipaddress

    raw = bytes.fromhex(hex_addr.split(":")[0])
    # the kernel prints each 32-bit word in host (little-endian) order
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))


def listening_addresses(pids: list[int]) -> list[str]:
    """'address:port' of every listening TCP socket held by one of ``pids`` (from /proc; no tools needed)."""
    inodes = set()
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        for fd in fd_dir.iterdir() if fd_dir.exists() else ():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:  # state LISTEN
                found.append(f"{_address(cols[1])}:{int(cols[1].split(':')[1], 16)}")
    return found


def test_a_one_machine_launch_listens_on_loopback_only(data_file, tmp_path):
    snapshot = tmp_path / "listening.json"

    def hook(rank: int, t: int) -> None:
        if rank == 0 and t == 5:  # every worker has joined: the store and gloo's sockets are all open
            launcher = int(os.environ["PROXGT_LAUNCHER_PID"])
            snapshot.write_text(json.dumps(listening_addresses([launcher, *_children(launcher)])))

    with _captured() as got, _deadline(120):
        code = launch(2, [*FLAGS, "--data", data_file, "--out", str(tmp_path / "run")], timeout_s=20,
                      fault_hook=hook)
    assert code == 0, got["err"]
    found = json.loads(snapshot.read_text())
    assert found, "the store's listening socket was not seen"
    assert all(a.rsplit(":", 1)[0] in LOOPBACK for a in found), found


def test_workers_without_the_agent_store_listen_on_loopback_only(data_file, tmp_path):
    """Workers started as torchrun starts them without its agent store (or by hand): rank 0 hosts the store
    itself, on MASTER_ADDR's address only, and gloo listens on loopback when MASTER_ADDR is a loopback address."""
    snapshot = tmp_path / "listening.json"
    port, tester = _free_port(), os.getpid()

    def hook(rank: int, t: int) -> None:
        if rank == 0 and t == 5:  # both workers joined the group: every listening socket is open
            # gloo's interface too: here the host name may resolve to loopback anyway, elsewhere it need not
            snapshot.write_text(json.dumps({"listening": listening_addresses(_children(tester)),
                                            "gloo": os.environ.get("GLOO_SOCKET_IFNAME")}))

    env = {k: v for k, v in os.environ.items() if not k.startswith(("TORCHELASTIC", "GLOO_", "NCCL_", "PROXGT_"))}
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", OMP_NUM_THREADS="1")
    pids = []
    with _captured() as got:
        for rank in range(2):
            pid = os.fork()
            if pid == 0:  # the worker, as the launcher forks one: never returns
                try:
                    # one torch thread before any torch work: a forked child of a process whose OpenMP pool ran
                    # would otherwise block in its first parallel region (as it did in CI, without OMP_NUM_THREADS)
                    _forked_worker({**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
                                   [*FLAGS, "--data", data_file, "--out", str(tmp_path / "run")], fault_hook=hook)
                finally:
                    os._exit(1)
            pids.append(pid)
        codes = [_wait(pid, 120) for pid in pids]
    assert codes == [0, 0], got["err"]
    seen = json.loads(snapshot.read_text())
    found = seen["listening"]
    assert any(a.endswith(f":{port}") for a in found), f"the store's listening socket was not seen: {found}"
    assert all(a.rsplit(":", 1)[0] in LOOPBACK for a in found), found
    assert seen["gloo"] == "lo"


def _wait(pid: int, seconds: float) -> int | None:
    """The exit code of the child ``pid``, which is killed (None) when it has not ended within ``seconds``."""
    import signal
    import time

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def _env() -> dict[str, str]:
    import proxgt

    src = str(Path(proxgt.__file__).resolve().parents[1])
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                PYTHONPATH=os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])]))


def _machines(per_node: list[list[str]], cwd: Path, timeout_s: float = 20) -> list[tuple[int, str]]:
    """Launchers of node ranks 0 .. len(per_node) - 1 on 127.0.0.1 (one process each unless the flags say
    otherwise), each with its own extra flags: [(exit code, stderr)] in node rank order."""
    port = _free_port()
    procs = []
    for node_rank, extra in enumerate(per_node):
        cmd = [sys.executable, "-m", "proxgt.cli", "launch", "--nnodes", str(len(per_node)), "--node-rank",
               str(node_rank), "--master-addr", "127.0.0.1", "--master-port", str(port), *extra]
        procs.append(subprocess.Popen(cmd, env=_env(), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    results = []
    for p in procs:
        try:
            _, err = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
        results.append((p.returncode, err))
    return results


def _flags(data_file: str, out: Path) -> list[str]:
    return [*FLAGS, "--data", data_file, "--out", str(out)]


def test_machines_with_different_steps_are_refused_before_training_naming_step(data_file, tmp_path):
    out = tmp_path / "run"
    results = _machines([["--nprocs", "1", *_flags(data_file, out), "--step", "0.1"],
                         ["--nprocs", "1", *_flags(data_file, out), "--step", "0.2"]], tmp_path)
    for code, err in results:
        assert code == 2, err
        assert "different settings" in err and "step (0.1 here, 0.2 there)" in err.replace("(0.2 here, 0.1 there)",
                                                                                            "(0.1 here, 0.2 there)")
        assert not any(mark in err for mark in CRASH_MARKS), err
    assert not (out / "metrics.csv").exists()  # refused before training: nothing was logged


def test_machines_with_different_nprocs_are_refused_naming_nprocs(data_file, tmp_path):
    out = tmp_path / "run"
    results = _machines([["--nprocs", "2", *_flags(data_file, out)], ["--nprocs", "1", *_flags(data_file, out)]],
                        tmp_path)
    for code, err in results:
        assert code == 2, err
        assert "differs in nprocs" in err, err
        assert not any(mark in err for mark in CRASH_MARKS), err


def test_node_rank_0_alone_ends_within_the_timeout_with_one_line(data_file, tmp_path):
    port = _free_port()
    cmd = [sys.executable, "-m", "proxgt.cli", "launch", "--nprocs", "1", "--nnodes", "2", "--node-rank", "0",
           "--master-addr", "127.0.0.1", "--master-port", str(port),
           *_flags(data_file, tmp_path / "run")]
    cmd[cmd.index("--timeout") + 1] = "2"  # the other machine never comes
    done = subprocess.run(cmd, env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "node rank 1, local rank 0 did not join within --timeout 2 s" in done.stderr, done.stderr
    assert not any(mark in done.stderr for mark in CRASH_MARKS), done.stderr


def _cli_err(argv: list[str]) -> tuple[int, str]:
    """``proxgt <argv>`` in this process: (exit code, everything written to fds 1 and 2, C++ logs included)."""
    from proxgt.cli import main

    with _captured() as got, _deadline(60):
        code = main(argv)
    return code, got["out"] + got["err"]


@pytest.mark.parametrize("extra, message", [
    (["--backend", "nccl"], "--backend nccl needs CUDA GPUs"),
    (["--timeout", "1e-9"], "--timeout must be >= 1 s for launch"),
    (["--nnodes", "2", "--node-rank", "1", "--master-addr", "no-such-host.invalid"],
     "--master-addr 'no-such-host.invalid' does not resolve"),
    (["--nnodes", "2", "--node-rank", "0", "--master-addr", "192.0.2.1"],  # TEST-NET-1: never this machine's
     "--master-addr 192.0.2.1 is not an address of this machine"),
    (["--nnodes", "2", "--node-rank", "1", "--master-addr", "127.0.0.1", "--master-port", "CLOSED", "--timeout", "2"],
     "cannot reach the rendezvous store at 127.0.0.1:"),
])
def test_bad_launch_settings_are_one_line_errors_before_any_worker(extra, message, data_file, tmp_path):
    import torch

    if "nccl" in extra and torch.cuda.is_available():
        pytest.skip("this machine has CUDA: nccl may run")
    extra = [str(_free_port()) if e == "CLOSED" else e for e in extra]  # nothing listens there
    code, err = _cli_err(["launch", "--nprocs", "1", *_flags(data_file, tmp_path / "run"), *extra])
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0], err
    assert not (tmp_path / "run" / "metrics.csv").exists()


def test_settings_every_worker_refuses_are_one_line_from_the_launcher(data_file, tmp_path):
    """An unknown [extra] key is found by the workers (the algorithm knows its settings); they publish it and the
    launcher says it once, instead of one line per worker and one of its own."""
    code, err = _cli_err(["launch", "--nprocs", "2", *_flags(data_file, tmp_path / "run"),
                          "--extra", "proxgt-sr-o.foo=bar"])
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "unknown setting extra.proxgt-sr-o.foo" in lines[0], err
