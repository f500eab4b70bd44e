"""The process-wide CPU settings: a bounded OpenMP spin and glibc keeping freed memory, each left to the user."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from fastlrwa.cpu_runtime import SPIN_COUNT, configure_thread_waiting, keep_freed_memory


def test_threads_spin_a_bounded_while_unless_the_user_chose():
    unset: dict[str, str] = {"PATH": "/bin"}
    configure_thread_waiting(unset)
    assert unset == {"PATH": "/bin", "GOMP_SPINCOUNT": SPIN_COUNT}
    for chosen in ({"OMP_WAIT_POLICY": "passive"}, {"GOMP_SPINCOUNT": "7"}, {"OMP_WAIT_POLICY": "active"}):
        kept = dict(chosen)
        configure_thread_waiting(kept)
        assert kept == chosen


def test_a_user_malloc_setting_is_left_alone():
    assert keep_freed_memory({"MALLOC_ARENA_MAX": "2"}) is False
    assert keep_freed_memory({"MALLOC_MMAP_THRESHOLD_": "65536"}) is False


def test_a_c_library_that_cannot_be_loaded_is_skipped(tmp_path):
    assert keep_freed_memory({}, libc_name=str(tmp_path / "libc-that-is-not-there.so")) is False


# Allocates, touches and frees a 40 MiB block (above glibc's 32 MiB ceiling for its adaptive mmap threshold) 30
# times and prints the minor page faults of the last 20: from fresh mmaps, every page faults each time; from
# a kept heap, almost none do.
_FAULTS = """
import ctypes, ctypes.util, resource, sys
from fastlrwa.cpu_runtime import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory({})
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = (ctypes.c_void_p,)
size = 40 << 20
def cycle():
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
for _ in range(10):
    cycle()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    cycle()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin"}
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


def test_freed_memory_is_reused_without_page_faults():
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc's mallopt only")
    pages = 20 * (40 << 20) // 4096
    default, kept = _faults("default"), _faults("keep")
    assert default > pages // 2, f"expected fresh mappings to fault about {pages} pages, saw {default}"
    assert kept < pages // 50, f"expected the kept heap to fault almost no pages, saw {kept}"
