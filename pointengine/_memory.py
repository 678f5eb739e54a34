"""What malloc does with the memory of freed tensors.

glibc's malloc keeps the memory of freed tensors in its arenas: its trim threshold grows with the
largest block it has handed out (tens of MB), per arena, so a process that segments scan after scan
sees its resident memory swing by hundreds of MB (measured in benchmarks/bench_memory.py).
malloc_trim(0) hands the free memory back. A training run wants the opposite: every step allocates
the same tensors again, and memory handed back is faulted in again, a zeroed page at a time.
Elsewhere than glibc both do nothing.
"""

import ctypes
import functools

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters (malloc.h)
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # the largest glibc takes on 64-bit systems


@functools.cache
def _libc_function(name: str):
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None


def release_free_memory() -> None:
    trim = _libc_function("malloc_trim")
    if trim is not None:
        trim(0)


def keep_freed_memory() -> bool:
    """From now on malloc serves blocks of up to 32 MB from its arenas and never trims them, so the
    next training step reuses the pages of the last one (with glibc's sliding thresholds a MinkUNet
    step on a real scan faulted in 4,000-6,000 fresh pages in most steps). Returns whether malloc
    took the settings."""
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
