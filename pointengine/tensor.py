"""SparseTensor: features on a set of integer sites, with the coordinate maps it shares with the
tensors computed from it. PointTensor: features on float points, with the point-voxel tables it
shares with the tensors computed from it."""

from __future__ import annotations

import torch
from torch import Tensor

from collections.abc import Callable
from typing import Any

from ._checks import as_tensor, as_triple, check_coords, check_feats, check_point_coords, check_same_device, check_tensor
from .coordinate_map import CoordinateMap

Triple = tuple[int, int, int]


class SparseTensor:
    """feats [N, C] on coords int32 [N, 4] = (batch, x, y, z) in the grid of `stride`.

    `levels` maps each tensor stride to the coordinate map of that level; tensors computed from
    one another share it, so a transposed conv finds the finer sites and kernel map it inverts.
    feats and coords may be any arrays with __dlpack__ (CuPy, NumPy): they are used in place, not copied.
    """

    def __init__(self, feats: Tensor, coords: Tensor, stride=1):
        feats, coords = as_tensor(feats), as_tensor(coords)
        check_coords(coords)
        check_tensor(feats, "feats")
        check_same_device(feats=feats, coords=coords)
        check_feats(feats, coords.shape[0])
        self.feats = feats
        self.stride: Triple = as_triple(stride, "stride")
        self.coordinate_map = CoordinateMap(coords, validate=False)
        self.levels: dict[Triple, CoordinateMap] = {self.stride: self.coordinate_map}

    @classmethod
    def derived(cls, feats: Tensor, coordinate_map: CoordinateMap, stride: Triple, levels: dict) -> SparseTensor:
        """A tensor computed by a layer: no validation, the coordinate maps are shared."""
        out = cls.__new__(cls)
        out.feats, out.coordinate_map, out.stride, out.levels = feats, coordinate_map, stride, levels
        levels.setdefault(stride, coordinate_map)
        return out

    def replace_feats(self, feats: Tensor) -> SparseTensor:
        """The same sites with new features (one row per site)."""
        return SparseTensor.derived(feats, self.coordinate_map, self.stride, self.levels)

    @property
    def coords(self) -> Tensor:
        return self.coordinate_map.coords

    # Aliases for people coming from TorchSparse.
    F = property(lambda self: self.feats)
    C = property(lambda self: self.coords)
    s = property(lambda self: self.stride)

    @property
    def num_sites(self) -> int:
        return self.coords.shape[0]

    @property
    def batch_size(self) -> int:
        return int(self.coords[:, 0].max()) + 1

    def __repr__(self) -> str:
        return f"SparseTensor(sites={self.num_sites}, channels={self.feats.shape[1]}, stride={self.stride}, dtype={self.feats.dtype}, device={self.feats.device})"

    def to(self, *args, **kwargs) -> SparseTensor:
        """Features follow torch's .to(); coordinates follow the device only. Cached kernel maps
        stay behind and are rebuilt on the new device when needed."""
        feats = self.feats.to(*args, **kwargs)
        coords = self.coords.to(feats.device)
        if feats.device == self.feats.device:
            return self.replace_feats(feats)
        return SparseTensor.derived(feats, CoordinateMap(coords, validate=False), self.stride, {})

    def cpu(self) -> SparseTensor:
        return self.to("cpu")

    def half(self) -> SparseTensor:
        return self.to(torch.float16)

    def float(self) -> SparseTensor:
        return self.to(torch.float32)

    def double(self) -> SparseTensor:
        return self.to(torch.float64)

    def same_coords(self, other: SparseTensor) -> bool:
        """Whether both tensors hold the same set of sites (in any row order)."""
        if self.coordinate_map is other.coordinate_map:
            return True
        if self.num_sites != other.num_sites:
            return False
        return bool((self.coordinate_map.query(other.coords.to(self.coords.device)) >= 0).all())

    def dense(self, origin=None, spatial_shape=None) -> Tensor:
        """Dense [B, C, X, Y, Z] grid. By default it spans the sites: origin = per-axis minimum."""
        spatial = self.coords[:, 1:].long()
        lo = spatial.amin(0) if origin is None else torch.tensor(origin, device=spatial.device)
        shape = (spatial.amax(0) - lo + 1).tolist() if spatial_shape is None else list(spatial_shape)
        local = spatial - lo
        if bool(((local < 0) | (local >= torch.tensor(shape, device=local.device))).any()):
            raise ValueError(f"dense: sites fall outside origin={lo.tolist()} spatial_shape={shape}")
        grid = self.feats.new_zeros(self.batch_size, *shape, self.feats.shape[1])
        grid[self.coords[:, 0].long(), local[:, 0], local[:, 1], local[:, 2]] = self.feats
        return grid.permute(0, 4, 1, 2, 3).contiguous()


def sparse_collate(tensors: list[SparseTensor]) -> SparseTensor:
    """One batch from several tensors of one stride: tensor j's batch b becomes offset_j + b."""
    if not tensors:
        raise ValueError("sparse_collate needs at least one SparseTensor")
    strides = {t.stride for t in tensors}
    if len(strides) > 1:
        raise ValueError(f"sparse_collate: all tensors must have one stride, got {sorted(strides)}")
    coords, offset = [], 0
    for t in tensors:
        shifted = t.coords.clone()
        shifted[:, 0] += offset
        coords.append(shifted)
        offset += t.batch_size
    return SparseTensor(torch.cat([t.feats for t in tensors]), torch.cat(coords), tensors[0].stride)


class PointCache:
    """Tables computed from a PointTensor's coordinates against one coordinate map (the voxel row of
    every point, trilinear tables), per key such as ("voxel_rows", stride). An entry serves only the
    coordinate map it was computed against: asked with another map, it is computed again."""

    def __init__(self):
        self._entries: dict[tuple, tuple[CoordinateMap, Any]] = {}

    def peek(self, key: tuple, coordinate_map: CoordinateMap) -> Any:
        """The entry of `key` for this coordinate map, or None."""
        entry = self._entries.get(key)
        return entry[1] if entry is not None and entry[0] is coordinate_map else None

    def get(self, key: tuple, coordinate_map: CoordinateMap, compute: Callable[[], Any]) -> Any:
        """The entry of `key` for this coordinate map, computed (and kept) when there is none."""
        entry = self._entries.get(key)
        if entry is None or entry[0] is not coordinate_map:
            entry = (coordinate_map, compute())
            self._entries[key] = entry
        return entry[1]

    def put(self, key: tuple, coordinate_map: CoordinateMap, value: Any) -> None:
        self._entries[key] = (coordinate_map, value)


class PointTensor:
    """feats [N, C] on float points coords [N, 4] = (batch, x, y, z), with x, y, z in voxel units of
    the stride-1 grid (point p lies in voxel floor(p / s) of the stride-s grid) and batch integral.

    Tensors made from one another with `replace_feats` (or by `voxel_to_point`) share `cache`, so
    each point -> voxel table is computed once per level.
    """

    def __init__(self, feats: Tensor, coords: Tensor):
        feats, coords = as_tensor(feats), as_tensor(coords)
        check_point_coords(coords)
        check_tensor(feats, "feats")
        check_same_device(feats=feats, coords=coords)
        check_feats(feats, coords.shape[0])
        self.feats, self.coords, self.cache = feats, coords, PointCache()

    @classmethod
    def at_sites(cls, x: SparseTensor) -> PointTensor:
        """x's features as points at its stride-1 sites (SPVNAS's input). Each point is its own site:
        the cache starts with the tables that say so, so nothing is hashed for them."""
        if x.stride != (1, 1, 1):
            raise ValueError(f"PointTensor.at_sites needs a stride-1 SparseTensor, got stride {x.stride}")
        out = cls.__new__(cls)
        out.feats, out.coords, out.cache = x.feats, x.coords.to(torch.float32), PointCache()
        rows = torch.arange(x.num_sites, dtype=torch.int32, device=x.coords.device)
        index = torch.full((x.num_sites, 8), -1, dtype=torch.int32, device=rows.device)
        index[:, 0] = rows
        weights = torch.zeros(x.num_sites, 8, dtype=torch.float32, device=rows.device)
        weights[:, 0] = 1
        out.cache.put(("voxel_rows", (1, 1, 1)), x.coordinate_map, rows)
        for nearest in (False, True):
            out.cache.put(("trilinear", (1, 1, 1), nearest), x.coordinate_map, (index, weights))
        return out

    def replace_feats(self, feats: Tensor) -> PointTensor:
        """The same points with new features (one row per point), sharing the cached tables."""
        if feats.dim() != 2 or feats.shape[0] != self.num_points:
            raise ValueError(f"feats must have shape [{self.num_points}, C], got {list(feats.shape)}")
        out = type(self).__new__(type(self))
        out.feats, out.coords, out.cache = feats, self.coords, self.cache
        return out

    # Aliases for people coming from TorchSparse.
    F = property(lambda self: self.feats)
    C = property(lambda self: self.coords)

    @property
    def num_points(self) -> int:
        return self.coords.shape[0]

    def __repr__(self) -> str:
        shape = f"points={self.num_points}, channels={self.feats.shape[1]}"
        return f"PointTensor({shape}, dtype={self.feats.dtype}, device={self.feats.device})"
