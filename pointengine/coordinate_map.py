"""A coordinate set with its hash table and the kernel maps built on it."""

from dataclasses import dataclass

from torch import Tensor

from . import _ops
from ._checks import check_coords


@dataclass(frozen=True)
class HashTable:
    """Open-addressing table: keys int64[cap] (packed coordinates, -1 = empty), vals int32[cap] rows."""

    keys: Tensor
    vals: Tensor


class CoordinateMap:
    """One set of int32 [N, 4] coordinates (no repeats), hashed for lookups.

    `kernel_maps` caches every kernel map whose inputs are these sites, so layers with the same
    geometry share one map.
    """

    def __init__(self, coords: Tensor, *, validate: bool = True):
        if validate:
            check_coords(coords)
        keys, vals, duplicates = _ops.hash_build(coords)
        if duplicates:
            raise ValueError(f"coords has {duplicates} duplicate rows; each (batch, x, y, z) must appear once")
        self.coords = coords
        self.table = HashTable(keys, vals)
        self.kernel_maps: dict = {}

    def __len__(self) -> int:
        return self.coords.shape[0]

    def query(self, coords: Tensor) -> Tensor:
        """Row of each coordinate in this set, or -1 (int32 [M]); sites outside the range are -1 too."""
        check_coords(coords, "query coords", allow_empty=True, check_range=False)
        return _ops.hash_query(self.table.keys, self.table.vals, coords.to(self.coords.device))
