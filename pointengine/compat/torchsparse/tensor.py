"""TorchSparse's SparseTensor and PointTensor as subclasses of pointengine's: every pointengine
layer and functional op takes them, and the layers of this package return them.

What TorchSparse code expects beyond pointengine's types: settable .F (and .C), numpy or integer
inputs of any width, a tensor of one sample with [N, 3] coordinates that only sparse_collate batches,
`+`, and .cpu()/.to()/.half() that change the tensor itself and return it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ... import tensor as pe
from ..._checks import as_triple, check_feats
from ...coordinate_map import CoordinateMap
from ...nn.cat import feats_on_sites_of


def as_torch(value, name: str) -> Tensor:
    """A tensor from a tensor or a numpy array (TorchSparse datasets hand numpy to the collate)."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or a numpy array, got {type(value).__name__}")
    return value


def as_int32_coords(coords) -> Tensor:
    coords = as_torch(coords, "coords")
    if coords.is_floating_point() or coords.dtype == torch.bool:
        raise ValueError(f"coords must be an integer tensor, got {coords.dtype}")
    return coords.to(torch.int32)


class SparseTensor(pe.SparseTensor):
    """SparseTensor(feats, coords, stride=1, spatial_range=None) as in TorchSparse 2.1.

    coords [N, 4] = (batch, x, y, z): a batch, hashed at once. coords [N, 3] = (x, y, z): one sample
    as a dataset returns it, which only sparse_collate accepts (it adds the batch column).
    spatial_range (B, X, Y, Z) is used by .dense() only.
    """

    spatial_range = None
    _sample_coords = None

    def __init__(self, feats, coords, stride=1, spatial_range=None):
        feats, coords = as_torch(feats, "feats"), as_int32_coords(coords)
        if coords.dim() == 2 and coords.shape[1] == 3:
            check_feats(feats, coords.shape[0])
            self.feats, self.stride, self._sample_coords = feats, as_triple(stride, "stride"), coords
            self.coordinate_map, self.levels = None, {}
        else:
            super().__init__(feats, coords, stride)
        self.spatial_range = None if spatial_range is None else tuple(int(v) for v in spatial_range)

    @property
    def coords(self) -> Tensor:
        return self._sample_coords if self.coordinate_map is None else self.coordinate_map.coords

    def _set_feats(self, feats: Tensor) -> None:
        check_feats(feats, self.coords.shape[0])
        self.feats = feats

    def _set_coords(self, coords) -> None:
        coords = as_int32_coords(coords)
        self.coordinate_map = CoordinateMap(coords)
        self.levels, self._sample_coords = {self.stride: self.coordinate_map}, None

    F = property(lambda self: self.feats, _set_feats)
    C = property(lambda self: self.coords, _set_coords)
    s = property(lambda self: self.stride)

    def is_sample(self) -> bool:
        """Whether this is one sample with [N, 3] coordinates, not yet batched by sparse_collate."""
        return self.coordinate_map is None

    def replace_feats(self, feats: Tensor) -> SparseTensor:
        out = SparseTensor.derived(feats, self.coordinate_map, self.stride, self.levels)
        out.spatial_range = self.spatial_range
        return out

    def __add__(self, other: pe.SparseTensor) -> SparseTensor:
        """Sum of the features of two tensors on the same sites (in any row order)."""
        if not isinstance(other, pe.SparseTensor):
            return NotImplemented
        aligned = feats_on_sites_of(self, other) if other.stride == self.stride else None
        if aligned is None:
            raise ValueError(
                f"SparseTensor +: the operands hold other sites ({self.num_sites} at stride {self.stride} vs "
                f"{other.num_sites} at stride {other.stride}); + needs the same sites"
            )
        return self.replace_feats(self.feats + aligned)

    def to(self, *args, **kwargs) -> SparseTensor:
        """Moves or casts this tensor itself and returns it, as TorchSparse does."""
        if self.is_sample():
            self.feats = self.feats.to(*args, **kwargs)
            self._sample_coords = self._sample_coords.to(self.feats.device)
            return self
        moved = pe.SparseTensor.to(self, *args, **kwargs)
        self.feats, self.coordinate_map, self.levels = moved.feats, moved.coordinate_map, moved.levels
        return self

    def cuda(self) -> SparseTensor:
        return self.to("cuda")

    def detach(self) -> SparseTensor:
        self.feats = self.feats.detach()
        return self

    def dense(self) -> Tensor:
        """[B, X, Y, Z, C] over spatial_range = (B, X, Y, Z), sites at their coordinates (from 0)."""
        if self.spatial_range is None or len(self.spatial_range) != 4:
            raise ValueError(f"dense() needs spatial_range = (B, X, Y, Z), got {self.spatial_range}")
        batches, *shape = self.spatial_range
        if self.batch_size > batches:
            raise ValueError(f"dense(): batch index {self.batch_size - 1} is outside spatial_range {self.spatial_range}")
        grid = pe.SparseTensor.dense(self, origin=(0, 0, 0), spatial_shape=shape).permute(0, 2, 3, 4, 1)
        return torch.cat([grid, grid.new_zeros(batches - grid.shape[0], *grid.shape[1:])])


def as_compat(tensor: pe.SparseTensor) -> SparseTensor:
    """A pointengine SparseTensor as this package's type, sharing its features and coordinate maps."""
    if isinstance(tensor, SparseTensor):
        return tensor
    return SparseTensor.derived(tensor.feats, tensor.coordinate_map, tensor.stride, tensor.levels)


class PointTensor(pe.PointTensor):
    """PointTensor(feats, coords) as in TorchSparse: float coords [N, 4] = (batch, x, y, z) (2.0-era
    SPVNAS code puts the batch last: see the porting guide). idx_query and weights, TorchSparse's
    caches, must be left empty: pointengine keeps its own (PointTensor.cache)."""

    def __init__(self, feats, coords, idx_query=None, weights=None):
        for name, value in (("idx_query", idx_query), ("weights", weights)):
            if value is not None and not (isinstance(value, dict) and not value):
                raise ValueError(f"PointTensor: {name} is one of TorchSparse's caches; pass None, got {type(value).__name__}")
        super().__init__(as_torch(feats, "feats"), as_torch(coords, "coords"))

    def _set_feats(self, feats: Tensor) -> None:
        check_feats(feats, self.num_points)
        self.feats = feats

    F = property(lambda self: self.feats, _set_feats)
    C = property(lambda self: self.coords)

    def __add__(self, other: pe.PointTensor) -> PointTensor:
        if not isinstance(other, pe.PointTensor):
            return NotImplemented
        if other.coords is not self.coords and not torch.equal(other.coords, self.coords):
            raise ValueError("PointTensor +: the operands hold other points; + needs the same points")
        return self.replace_feats(self.feats + other.feats)

    def to(self, *args, **kwargs) -> PointTensor:
        """Moves or casts the features (coordinates follow the device) and returns this tensor."""
        self.feats = self.feats.to(*args, **kwargs)
        if self.coords.device != self.feats.device:
            self.coords, self.cache = self.coords.to(self.feats.device), pe.PointCache()
        return self

    def cuda(self) -> PointTensor:
        return self.to("cuda")

    def detach(self) -> PointTensor:
        self.feats = self.feats.detach()
        return self
