"""Process-level memory setting of the command line: freed large temporaries go back to the system.

glibc serves an allocation above its mmap threshold with its own mapping, returned to the system on free. The
threshold starts at 128 KiB and, by default, rises to the size of each such block freed (up to 32 MiB); blocks
under the new threshold then come from the heap, which keeps freed memory. A run over wide node states
(16 nodes x 10^6 parameters: 64 MiB per state, with 16 MiB per-block temporaries) kept about 100-170 MiB more at
its peak that way, varying from run to run (`python bench/bench_scale.py --sparse-only`). Fixing the threshold at
8 MiB stops the rise: anything of 8 MiB or more is always returned, while smaller temporaries (the usual sizes,
e.g. 10,000 nodes x 123 float32 is 4.7 MiB) still reuse heap memory without a system call.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["fix_mmap_threshold", "MMAP_THRESHOLD_BYTES"]

MMAP_THRESHOLD_BYTES = 8 * 2**20
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)


def fix_mmap_threshold(nbytes: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold at ``nbytes`` (which also turns off its dynamic rise); True if set.

    Does nothing (False) off Linux/glibc, or when the user set ``MALLOC_MMAP_THRESHOLD_`` themselves."""
    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another C library: leave its defaults
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, int(nbytes)))
