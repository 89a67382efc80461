"""The launcher on untrusted networks: on one machine nothing of a ``proxgt launch`` listens beyond loopback, and
the machines of a launch refuse to train with different settings (naming them) before any training."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from proxgt.executors.launch.launcher import _free_port, launch

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
