"""Points -> voxels and back.

voxelize_points / devoxelize: quantize raw points to integer sites, reduce the points of each site
to one feature row, and keep the point -> voxel map that projects voxel predictions back to every
point. initial_voxelize / point_to_voxel / voxel_to_point: the point-voxel ops of SPVNAS (Tang et al.,
ECCV 2020) between a PointTensor and the SparseTensors of a network, scatter-mean one way and
trilinear interpolation the other, with the tables cached on the PointTensor per level."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
from torch import Tensor

from .. import _ops
from .._checks import (
    BATCH_MAX, COORD_MAX, COORD_MIN, all_finite, as_tensor, check_feats, check_same_device, check_tensor,
)
from ..coordinate_map import CoordinateMap
from ..tensor import PointTensor, SparseTensor
from .kmap import submanifold_map

REDUCTIONS = ("mean", "first", "max")
QUANTIZATIONS = ("floor", "round_shift")


@dataclass(frozen=True)
class Voxels:
    """coords int32 [M, 4] (batch, x, y, z), sorted and distinct; feats [M, 3 + C] reduced from the
    points of each voxel; inverse int64 [N]: the voxel row of every point; coordinate_map: the
    hashed coords."""

    coords: Tensor
    feats: Tensor
    inverse: Tensor
    coordinate_map: CoordinateMap

    def to_sparse(self, feats: Tensor | None = None) -> SparseTensor:
        """A stride-1 SparseTensor on these sites, with `feats` (default: the reduced point features).
        It reuses the hash table built while voxelizing."""
        if feats is None:
            feats = self.feats
        check_feats(feats, self.coords.shape[0])
        check_same_device(feats=feats, coords=self.coords)
        return SparseTensor.derived(feats, self.coordinate_map, (1, 1, 1), {})


def voxelize_points(
    points: Tensor, voxel_size, reduce: str = "mean", batch: Tensor | None = None, quantization: str = "floor"
) -> Voxels:
    """Quantize points [N, 3 + C] (x, y, z, extra channels) to voxels: `quantization` "floor" gives
    floor(xyz / voxel_size); "round_shift" (SPVNAS's rule) round(xyz / voxel_size), halves to even,
    minus its minimum over the points of each batch index.

    `reduce` picks how the points of a voxel become its feature row: "mean", "first" (the point
    that comes first in `points`) or "max" (per channel). `batch` (integer [N]) gives each point's
    batch index; without it every point is in batch 0. The result is bitwise deterministic.
    `points` may be any array with __dlpack__ (CuPy, NumPy): it is read in place, not copied.
    """
    points = as_tensor(points)
    _check_points(points)
    size = _check_voxel_size(voxel_size)
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
    batch = _check_batch(batch, points)

    point_coords, bounds = _voxel_coords(points, size, batch, quantization == "round_shift")
    lo, hi = bounds.tolist()
    if min(lo) < COORD_MIN or max(hi) > COORD_MAX:
        raise ValueError(
            f"points: voxel coordinates must be in [{COORD_MIN}, {COORD_MAX}] (16-bit packed keys), got "
            f"x [{lo[0]:.0f}, {hi[0]:.0f}], y [{lo[1]:.0f}, {hi[1]:.0f}], z [{lo[2]:.0f}, {hi[2]:.0f}] "
            f"at voxel_size {voxel_size}; use a larger voxel_size or crop the points"
        )

    coordinate_map, rows = _distinct_sites(point_coords)
    coords = coordinate_map.coords
    return Voxels(coords, _reduce(points, rows, coords.shape[0], reduce), rows.long(), coordinate_map)


def devoxelize(voxel_feats: Tensor, inverse: Tensor) -> Tensor:
    """Per-point rows [N, C]: each point takes the features of its voxel (`Voxels.inverse`)."""
    check_tensor(voxel_feats, "voxel_feats")
    check_tensor(inverse, "inverse")
    if voxel_feats.dim() < 1:
        raise ValueError(f"voxel_feats must have a row per voxel, got shape {list(voxel_feats.shape)}")
    if inverse.dtype != torch.int64 or inverse.dim() != 1:
        raise ValueError(f"inverse must be int64 [N], got {inverse.dtype} {list(inverse.shape)}")
    if inverse.numel() and (int(inverse.min()) < 0 or int(inverse.max()) >= voxel_feats.shape[0]):
        raise ValueError(
            f"inverse must index rows of voxel_feats in [0, {voxel_feats.shape[0] - 1}], "
            f"got [{int(inverse.min())}, {int(inverse.max())}]"
        )
    return voxel_feats.index_select(0, inverse.to(voxel_feats.device))


def initial_voxelize(z: PointTensor) -> SparseTensor:
    """A stride-1 SparseTensor on the voxels of the points: sites unique(floor(coords)), sorted by
    (batch, x, y, z); features the mean of the points in each site."""
    _check_point_tensor(z)
    sites = _floor_sites(z.coords, (1, 1, 1))
    coordinate_map, rows = _distinct_sites(sites)
    z.cache.put(("voxel_rows", (1, 1, 1)), coordinate_map, rows)
    feats = _ops.point_scatter_mean(z.feats, rows, len(coordinate_map))
    return SparseTensor.derived(feats, coordinate_map, (1, 1, 1), {})


def point_to_voxel(x: SparseTensor, z: PointTensor) -> SparseTensor:
    """z's features on x's sites: point p goes to the site floor(p / s) (s = x.stride per axis), each
    site takes the mean of its points (0 where none); points outside x's sites are dropped. The result
    shares x's sites and coordinate maps."""
    _check_pair(x, z)
    rows = z.cache.get(("voxel_rows", x.stride), x.coordinate_map, lambda: _voxel_rows(x, z))
    return x.replace_feats(_ops.point_scatter_mean(z.feats, rows, x.num_sites))


def voxel_to_point(
    x: SparseTensor, z: PointTensor, nearest: bool = False, residual: Tensor | None = None, in_place: bool = False
) -> PointTensor:
    """x's features at z's points by trilinear interpolation: point p, at q = p / s in x's grid, reads
    the 8 sites floor(q) + {0, 1}^3 with the trilinear weights of q's fractional part (a site's value
    sits at its integer coordinate); missing sites get weight 0 and the rest are renormalised to sum
    to 1 (all missing: 0). nearest=True reads the site floor(q) alone (0 if missing).

    `residual` ([N, C], x's dtype): added to the interpolated features in the same pass (SPVNAS adds
    its point MLP so), each point starting from its residual row. in_place=True writes the result
    into `residual` itself (the same bits, no new tensor; no autograd)."""
    _check_pair(x, z)
    if not isinstance(nearest, bool):
        raise ValueError(f"nearest must be a bool, got {nearest!r}")
    if residual is not None:
        _check_residual(residual, x, z, in_place)
    elif in_place:
        raise ValueError("in_place=True needs a residual to write into")
    index, weights = z.cache.get(("trilinear", x.stride, nearest), x.coordinate_map, lambda: _trilinear(x, z, nearest))
    args = (x.feats.contiguous(), index, weights.to(x.feats.dtype))
    if in_place:
        return z.replace_feats(_ops.trilinear_gather_add_(residual, *args))
    return z.replace_feats(_ops.trilinear_gather(*args, residual))


def _check_residual(residual, x: SparseTensor, z: PointTensor, in_place: bool) -> None:
    check_tensor(residual, "residual")
    expected = (z.num_points, x.feats.shape[1])
    if residual.shape != expected or residual.dtype != x.feats.dtype:
        raise ValueError(
            f"residual must be {x.feats.dtype} {list(expected)}, got {residual.dtype} {list(residual.shape)}"
        )
    check_same_device(x=x.feats, residual=residual)
    if in_place and not residual.is_contiguous():
        raise ValueError("in_place=True needs a contiguous residual")
    if in_place and torch.is_grad_enabled() and (residual.requires_grad or x.feats.requires_grad):
        raise ValueError("in_place=True has no autograd: use it under torch.no_grad or with in_place=False")


def _trilinear(x: SparseTensor, z: PointTensor, nearest: bool) -> tuple[Tensor, Tensor]:
    # The corner table is the stride-1 map of a 2x2x2 kernel on x's sites, cached with its kernel maps.
    corners = submanifold_map(x.coordinate_map, 2).nbr
    table = x.coordinate_map.table
    return _ops.trilinear_table(table.keys, table.vals, corners, z.coords, x.stride, nearest)


def _voxel_rows(x: SparseTensor, z: PointTensor) -> Tensor:
    """Row of x's site floor(p / s) for every point, or -1. Corner 0 of a trilinear table at this
    level is that same site (its weight is never 0), so a cached table answers without hashing."""
    for nearest in (False, True):
        table = z.cache.peek(("trilinear", x.stride, nearest), x.coordinate_map)
        if table is not None:
            return table[0][:, 0].contiguous()
    return _query(x.coordinate_map, _floor_sites(z.coords, x.stride))


def _floor_sites(coords: Tensor, stride) -> Tensor:
    """int32 [N, 4]: (batch, floor(x / s), ...) of float points, divided in float64 so float32 and
    float64 points of one value give one site."""
    s = torch.tensor(stride, dtype=torch.float64, device=coords.device)
    return torch.cat([coords[:, :1].int(), torch.floor(coords[:, 1:].double() / s).int()], 1)


def _query(coordinate_map: CoordinateMap, sites: Tensor) -> Tensor:
    return _ops.hash_query(coordinate_map.table.keys, coordinate_map.table.vals, sites)


def _check_point_tensor(z) -> None:
    if not isinstance(z, PointTensor):
        raise TypeError(f"z must be a PointTensor, got {type(z).__name__}")
    if z.feats.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"z.feats must be float32 or float64, got {z.feats.dtype}")


def _check_pair(x, z) -> None:
    if not isinstance(x, SparseTensor):
        raise TypeError(f"x must be a SparseTensor, got {type(x).__name__}")
    _check_point_tensor(z)
    if x.feats.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"x.feats must be float32 or float64, got {x.feats.dtype}")
    check_same_device(x=x.feats, z=z.feats)


def _voxel_coords(points: Tensor, size: tuple[float, float, float], batch: Tensor, round_shift: bool):
    """(int32 [N, 4] rows (batch, voxel x, y, z), float64 [2, 3] each axis's lowest and highest voxel
    coordinate): _ops.voxel_coords on the CPU, torch's ops elsewhere; both divide in float64, as a
    Python-float reference would, and bound the values before any cast to int can wrap."""
    n_batches = int(batch.max()) + 1
    if points.device.type == "cpu":
        return _ops.voxel_coords(points[:, :3], size, batch.to(torch.int32), n_batches, round_shift)
    scaled = points[:, :3].double() / torch.tensor(size, dtype=torch.float64, device=points.device)
    if round_shift:
        scaled = torch.round(scaled)
        index = batch.long()[:, None].expand_as(scaled)
        lowest = scaled.new_full((n_batches, 3), math.inf).scatter_reduce(0, index, scaled, "amin")
        scaled = scaled - lowest.index_select(0, batch.long())
    else:
        scaled = torch.floor(scaled)
    bounds = torch.stack(torch.aminmax(scaled, dim=0))
    return torch.cat([batch.to(torch.int32)[:, None], scaled.to(torch.int32)], dim=1), bounds


def _distinct_sites(point_coords: Tensor) -> tuple[CoordinateMap, Tensor]:
    """The map of the distinct rows of point_coords and the row of it each point falls in (int32 [N]):
    on the CPU both come from one sort; elsewhere the points query the map built from the sort."""
    if point_coords.device.type == "cpu":
        coords, rows = _ops.unique_coords_inverse(point_coords)
        return CoordinateMap(coords, validate=False, distinct=True), rows
    coordinate_map = CoordinateMap(_ops.unique_coords(point_coords), validate=False, distinct=True)
    return coordinate_map, coordinate_map.query(point_coords)


def _reduce(points: Tensor, rows: Tensor, n_voxels: int, reduce: str) -> Tensor:
    """The feature row of each voxel from its points (rows: int32 [N], each point's voxel)."""
    if reduce == "mean":
        # Sums in float64 in point order (point_scatter_mean), then the mean rounded once.
        if points.dtype in (torch.float32, torch.float64):
            return _ops.point_scatter_mean(points, rows, n_voxels)
        return _ops.point_scatter_mean(points.double(), rows, n_voxels).to(points.dtype)
    inverse = rows.long()
    if reduce == "first":
        # The smallest point index of each voxel: an integer minimum, so the order of the reduction
        # cannot change the result.
        index = torch.arange(points.shape[0], device=points.device)
        first = torch.full((n_voxels,), points.shape[0], dtype=torch.int64, device=points.device)
        first.scatter_reduce_(0, inverse, index, reduce="amin")
        return points.index_select(0, first)
    out = points.new_empty(n_voxels, points.shape[1])
    return out.scatter_reduce_(0, inverse[:, None].expand_as(points), points, reduce="amax", include_self=False)


def _check_points(points) -> None:
    check_tensor(points, "points")
    if not points.is_floating_point():
        raise ValueError(f"points must be a floating-point tensor, got {points.dtype}")
    if points.dim() != 2 or points.shape[1] < 3:
        raise ValueError(f"points must have shape [N, 3 + C] (x, y, z, ...), got {list(points.shape)}")
    if points.shape[0] == 0:
        raise ValueError("points is empty: voxelization needs at least one point")
    if not all_finite(points):
        raise ValueError("points contains NaN or inf values")


def _check_voxel_size(voxel_size) -> tuple[float, float, float]:
    def is_number(v) -> bool:
        return isinstance(v, numbers.Real) and not isinstance(v, bool)

    size = (voxel_size,) * 3 if is_number(voxel_size) else voxel_size
    if not isinstance(size, (tuple, list)) or len(size) != 3 or not all(is_number(v) for v in size):
        raise ValueError(f"voxel_size must be a number or three numbers, got {voxel_size!r}")
    if not all(math.isfinite(v) and v > 0 for v in size):
        raise ValueError(f"voxel_size must be finite and > 0, got {voxel_size!r}")
    return tuple(float(v) for v in size)


def _check_batch(batch, points: Tensor) -> Tensor:
    if batch is None:
        return torch.zeros(points.shape[0], dtype=torch.int32, device=points.device)
    check_tensor(batch, "batch")
    if batch.dtype.is_floating_point or batch.dtype.is_complex or batch.dtype == torch.bool:
        raise ValueError(f"batch must be an integer tensor, got {batch.dtype}")
    if batch.shape != (points.shape[0],):
        raise ValueError(f"batch must have shape [N] = [{points.shape[0]}], got {list(batch.shape)}")
    lo, hi = int(batch.min()), int(batch.max())
    if lo < 0 or hi > BATCH_MAX:
        raise ValueError(f"batch must be in [0, {BATCH_MAX}], got [{lo}, {hi}]")
    return batch.to(points.device)
