"""The command line's glibc setting (proxgt._memory): applied where glibc is, left alone where the user set it."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from proxgt._memory import fix_mmap_threshold

_GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def test_user_setting_wins(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert fix_mmap_threshold() is False


@pytest.mark.skipif(not _GLIBC, reason="glibc only")
def test_threshold_is_set_in_a_fresh_process():
    # in a child, so that this test process keeps glibc's defaults
    code = "from proxgt._memory import fix_mmap_threshold; import sys; sys.exit(0 if fix_mmap_threshold() else 1)"
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    assert subprocess.run([sys.executable, "-c", code], env=env, check=False).returncode == 0
