"""A coordinate set with its hash table and the kernel maps built on it."""

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from . import _ops
from ._checks import check_coords, tracing


@dataclass(frozen=True)
class HashTable:
    """Open-addressing table: keys int64[cap] (packed coordinates, -1 = empty), vals int32[cap] rows."""

    keys: Tensor
    vals: Tensor


def _refuse_duplicates(duplicates: Tensor) -> None:
    message = "duplicate rows; each (batch, x, y, z) must appear once"
    if tracing():  # an assertion inside the traced program, checked each time it runs
        torch._assert_async(duplicates == 0, f"coords has {message}")
    elif int(duplicates):
        raise ValueError(f"coords has {int(duplicates)} {message}")


class CoordinateMap:
    """One set of int32 [N, 4] coordinates (no repeats), hashed for lookups.

    `kernel_maps` caches every kernel map whose inputs are these sites, so layers with the same
    geometry share one map; `kernel_map` builds and caches one atomically, so threads that share a
    tensor share its maps too.
    """

    def __init__(self, coords: Tensor, *, validate: bool = True, distinct: bool = False):
        """validate: check the coordinates first; distinct: the rows are known to be distinct (the
        output of unique_coords), so the count of repeats is not read back (on a GPU, a wait)."""
        if validate:
            check_coords(coords)
        keys, vals, duplicates = _ops.hash_build(coords)
        if not distinct:
            _refuse_duplicates(duplicates)
        self.coords = coords
        self.table = HashTable(keys, vals)
        self.kernel_maps: dict = {}
        # Reentrant: the transposed map of stride 1 builds the submanifold map of the same set. A
        # traced map (torch.compile, torch.export) lives inside one compiled call: no lock.
        self._lock = contextlib.nullcontext() if tracing() else threading.RLock()

    def __len__(self) -> int:
        return self.coords.shape[0]

    @property
    def num_rows(self):
        """The number of sites, as len() gives it, or a symbolic size while torch.export traces."""
        return self.coords.shape[0]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        del state["_lock"]  # a lock is not copied or pickled: each copy gets its own
        state["kernel_maps"] = {key: kmap for key, kmap in self.kernel_maps.items() if kmap.alive}
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    def kernel_map(self, key, build: Callable):
        """The map cached under `key`; the first caller builds it with build() while later callers
        of this coordinate map wait, so each key is built once."""
        with self._lock:
            if key not in self.kernel_maps:
                self.kernel_maps[key] = build()
            return self.kernel_maps[key]

    def query(self, coords: Tensor) -> Tensor:
        """Row of each coordinate in this set, or -1 (int32 [M]); sites outside the range are -1 too."""
        check_coords(coords, "query coords", allow_empty=True, check_range=False)
        return _ops.hash_query(self.table.keys, self.table.vals, coords.to(self.coords.device))
