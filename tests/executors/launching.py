"""Helpers of the multi-process tests: capture what forked workers print, and a deadline no launch can outlive."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CRASH_MARKS", "captured", "children", "deadline", "running", "tiny_classification"]

#: what a worker's output must never hold: a Python or C++ crash report
CRASH_MARKS = ("Traceback", "terminate called", "frame #", "Exception raised from", "Segmentation fault")


def tiny_classification(folder: Any, rows: int = 600, cols: int = 20) -> str:
    """A small seeded binary classification set saved as ``folder/tiny.npz`` (a file loads in milliseconds;
    named sets import scikit-learn); returns its path."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, cols)).astype(np.float32)
    y = (X[:, 0] - X[:, 1] + 0.5 * rng.normal(size=rows) > 0).astype(np.int64)
    path = folder / "tiny.npz"
    np.savez(path, X=X, y=y)
    return str(path)


@contextlib.contextmanager
def captured() -> Iterator[dict[str, str]]:
    """Capture fds 1 and 2 and sys.stdout/stderr, which forked workers inherit, into ``out['out']``/``['err']``."""
    got: dict[str, str] = {}
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    files = {fd: tempfile.TemporaryFile(mode="w+b") for fd in (1, 2)}
    old = sys.stdout, sys.stderr
    try:
        for fd, f in files.items():
            os.dup2(f.fileno(), fd)
        sys.stdout = io.TextIOWrapper(os.fdopen(os.dup(1), "wb", buffering=0), write_through=True)
        sys.stderr = io.TextIOWrapper(os.fdopen(os.dup(2), "wb", buffering=0), write_through=True)
        yield got
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.close()
        sys.stdout, sys.stderr = old
        for fd in (1, 2):
            os.dup2(saved[fd], fd)
            os.close(saved[fd])
        for key, fd in (("out", 1), ("err", 2)):
            files[fd].seek(0)
            got[key] = files[fd].read().decode(errors="replace")
            files[fd].close()


@contextlib.contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Interrupt a launch that runs too long (the launcher then stops its workers): nothing can hang the suite."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def children(pid: int) -> list[int]:
    """The process ids whose parent is ``pid`` (read from /proc)."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(p.name))
    return out


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie may never be reaped in a container)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False
