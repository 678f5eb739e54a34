"""Giving freed memory back to the operating system between scans.

glibc's malloc keeps the memory of freed tensors in its arenas: its trim threshold grows with the
largest block it has handed out (tens of MB), per arena, so a process that segments scan after scan
sees its resident memory swing by hundreds of MB (measured in benchmarks/bench_memory.py).
malloc_trim(0) hands the free memory back; elsewhere than glibc this does nothing.
"""

import ctypes
import functools


@functools.cache
def _malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


def release_free_memory() -> None:
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
