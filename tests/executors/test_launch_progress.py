"""``proxgt launch`` on a terminal shows one progress bar for the whole run, from the writing rank only."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time

import pytest

from .launching import tiny_classification

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forked workers and a pty: Linux")


def test_one_bar_from_the_writing_rank(tmp_path):
    data = tiny_classification(tmp_path, 200, 8)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 150, 0, 0))  # a terminal 150 columns wide
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxgt.cli", "launch", "--nprocs", "3", "--nodes", "3", "--iters", "400",
         "--log-every", "100", "--data", data, "--out", str(tmp_path / "r"), "--timeout", "20"],
        stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            data_read = os.read(master, 65536)
        except OSError:  # the pty closed: every writer has exited
            break
        if not data_read:
            break
        chunks.append(data_read)
    os.close(master)
    assert proc.wait(timeout=60) == 0, b"".join(chunks).decode(errors="replace")[-2000:]
    text = b"".join(chunks).decode(errors="replace")
    frames = [f for f in re.split(r"[\r\n]", text) if re.search(r"\d+/400 \[", f)]
    assert frames, text[-2000:]
    assert sum(bool(re.search(r"\b0/400 \[", f)) for f in frames) == 1  # one bar started (not one per rank)
    counts = [int(re.search(r"(\d+)/400 \[", f).group(1)) for f in frames]
    assert counts == sorted(counts) and counts[-1] > 0
    assert all(f.lstrip().startswith("proxgt-sa") for f in frames)
