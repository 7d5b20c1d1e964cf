"""Keep freed host memory in the heap for reuse, when training on the CPU (glibc only).

A CROWN-IBP step allocates and frees several tensors of (batch x margin rows x layer width),
megabytes each, per layer. glibc returns blocks above its mmap threshold to the kernel when
they are freed, so the next step faults every page in again: 42,500 page faults per DM-small
step at batch 100, about a sixth of its time (results/performance.md). Raising the mmap and
trim thresholds keeps such blocks in the heap, what PyTorch's CPU performance guide gets by
swapping in jemalloc or tcmalloc; the cost is that the process keeps its peak heap.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 2**20  # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit
TRIM_THRESHOLD = 2**30


def keep_freed_memory() -> bool:
    """Serve blocks up to 32 MiB from the heap and keep up to 1 GiB of freed heap; True when
    the C library took both settings (glibc on Linux), False elsewhere (nothing changes)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
