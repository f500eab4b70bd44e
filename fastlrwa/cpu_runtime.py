"""Process-wide CPU settings that must be made before torch loads or allocates: how OpenMP threads wait, how
freed memory is kept. The command line applies both first thing; each leaves a setting the user made alone."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import MutableMapping

# libgomp's spin before a waiting thread sleeps, in iterations (its default: 300000, ~0.1-1 ms). Bounded, so that a
# thread that waits at a barrier gives its core back within tens of microseconds on a busy machine, yet long
# enough that on an idle one the next parallel region finds its threads awake (RESULTS.md, "Threads on a busy
# machine": sleeping at once cost an idle digits iteration 1.5x, spinning unbounded cost a busy run 3x).
SPIN_COUNT = "100000"
WAIT_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")

# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Served from the heap up to this size instead of a fresh mmap: glibc's adaptive threshold stops at 32 MiB on
# 64-bit, and the generator's activations at batch 64 are 2-8 MiB each, so by default every forward maps new pages
# and the kernel zero-fills them on first touch (the page faults were a tenth of an eager digits iteration).
MMAP_THRESHOLD_BYTES = 1 << 30
# Freed heap memory is kept for the next step rather than returned to the kernel and faulted in again.
TRIM_THRESHOLD_BYTES = 2**31 - 1
# A user who set glibc's own variables has chosen; these names are read by glibc at process start.
MALLOC_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_ARENA_MAX")


def configure_thread_waiting(environ: MutableMapping[str, str] = os.environ) -> None:
    """OpenMP threads that wait for work spin briefly (``GOMP_SPINCOUNT``), then sleep, unless the user chose.

    libgomp reads these when torch loads, so this must run before any command imports torch. With
    ``OMP_WAIT_POLICY`` set, libgomp ignores the spin count; a user's policy or spin count is kept as it is.
    """
    if not any(name in environ for name in WAIT_SETTINGS):
        environ["GOMP_SPINCOUNT"] = SPIN_COUNT


def keep_freed_memory(environ: MutableMapping[str, str] = os.environ, libc_name: str | None = None) -> bool:
    """Large tensors from glibc's heap, and freed memory kept there, so a step reuses the pages of the last one.

    Returns whether the setting was made: not where the user set glibc's ``MALLOC_*`` variables, not where the C
    library is not glibc (musl, macOS: no ``mallopt``, or one that refuses these parameters).
    """
    if any(name in environ for name in MALLOC_SETTINGS):
        return False
    name = libc_name if libc_name is not None else ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; a fixed mmap threshold also switches glibc's adaptive threshold off.
    mapped = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    return bool(mapped) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
