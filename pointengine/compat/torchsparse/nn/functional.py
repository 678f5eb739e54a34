"""torchsparse.nn.functional where pointengine covers it: conv3d with a TorchSparse kernel, the
global pools, spcrop, the point-voxel kernels of SPVNAS-style code (spcount, spvoxelize,
spdevoxelize), and SPVNAS's helpers initial_voxelize / point_to_voxel / voxel_to_point on
pointengine's cached tables. Hashing and kernel-map internals are not exposed (see the guide)."""

import torch
from torch import Tensor

from .... import _ops
from ....functional import conv as pe_conv
from ....functional import pointvoxel
from ....functional.pool import global_avg_pool, global_max_pool
from .._unsupported import unsupported_getattr
from ..tensor import SparseTensor, as_compat
from .conv import as_padding, kernel_order, our_weight, output_sites


def conv3d(
    input,
    weight: Tensor,
    kernel_size=3,
    bias: Tensor | None = None,
    stride=1,
    padding=0,
    dilation=1,
    transposed: bool = False,
    generative: bool = False,
    config: dict | None = None,
    training: bool = False,
) -> SparseTensor:
    """TorchSparse's functional conv: `weight` in its shape and kernel-offset order (see nn.Conv3d)."""
    ks, st, dil = pe_conv.conv_geometry(kernel_size, stride, dilation, transposed, generative, "floor")
    sites = output_sites(ks, st, as_padding(padding), dil, transposed, config)
    weight = our_weight(weight, kernel_order(ks))
    out = pe_conv.conv3d(
        input, weight, bias, kernel_size=ks, stride=st, dilation=dil, transposed=transposed, generative=generative, sites=sites
    )
    return as_compat(out)


def relu(input, inplace: bool = False) -> SparseTensor:
    return input.replace_feats(torch.nn.functional.relu(input.feats, inplace=inplace))


def leaky_relu(input, negative_slope: float = 0.1, inplace: bool = False) -> SparseTensor:
    return input.replace_feats(torch.nn.functional.leaky_relu(input.feats, negative_slope, inplace=inplace))


def silu(input, inplace: bool = False) -> SparseTensor:
    return input.replace_feats(torch.nn.functional.silu(input.feats, inplace=inplace))


def spcrop(input, coords_min=None, coords_max=None) -> SparseTensor:
    """The sites with coords_min <= (x, y, z) < coords_max, as a new tensor (new coordinate set)."""
    xyz = input.coords[:, 1:]
    keep = torch.ones(xyz.shape[0], dtype=torch.bool, device=xyz.device)
    if coords_min is not None:
        keep &= (xyz >= torch.as_tensor(coords_min, dtype=xyz.dtype, device=xyz.device)).all(1)
    if coords_max is not None:
        keep &= (xyz < torch.as_tensor(coords_max, dtype=xyz.dtype, device=xyz.device)).all(1)
    return SparseTensor(input.feats[keep], input.coords[keep], input.stride)


def spcount(idx_query: Tensor, num: int) -> Tensor:
    """int32 [num]: how many points each voxel row holds (rows < 0 are points outside every voxel)."""
    rows = idx_query.reshape(-1)
    return torch.bincount(rows[rows >= 0].long(), minlength=num).int()


def spvoxelize(feats: Tensor, idx_query: Tensor, counts: Tensor) -> Tensor:
    """[len(counts), C]: the mean of the point features of each voxel row. `counts` must be
    spcount(idx_query, M): the mean is taken over the points that idx_query sends to each row."""
    return _ops.point_scatter_mean(feats, idx_query.reshape(-1).int(), counts.shape[0])


def spdevoxelize(feats: Tensor, idx_query: Tensor, weights: Tensor) -> Tensor:
    """[N, C]: per point, the sum over its 8 corners of weights * feats[idx_query] (rows < 0 skipped)."""
    return _ops.trilinear_gather(feats.contiguous(), idx_query.int().contiguous(), weights.to(feats.dtype).contiguous())


def initial_voxelize(z) -> SparseTensor:
    return as_compat(pointvoxel.initial_voxelize(z))


def point_to_voxel(x, z) -> SparseTensor:
    return as_compat(pointvoxel.point_to_voxel(x, z))


voxel_to_point = pointvoxel.voxel_to_point

_KERNEL_MAPS = "pointengine builds and caches kernel maps itself, per coordinate set (pointengine.functional.kmap)"
_GLOBAL = "pointengine has no global conv settings: pass config={'downsample_mode': ...} to each Conv3d"
_POINTS = "use point_to_voxel / voxel_to_point / initial_voxelize, which cache their tables per PointTensor"
__getattr__ = unsupported_getattr(
    "torchsparse.nn.functional",
    {
        "sphash": _POINTS,
        "sphashquery": _POINTS,
        "calc_ti_weights": _POINTS,
        "spdownsample": _KERNEL_MAPS,
        "spupsample_generative": _KERNEL_MAPS,
        "build_kernel_map": _KERNEL_MAPS,
        "transpose_kernel_map": _KERNEL_MAPS,
        "set_kmap_mode": _GLOBAL,
        "get_kmap_mode": _GLOBAL,
        "set_downsample_mode": _GLOBAL,
        "get_downsample_mode": _GLOBAL,
        "set_conv_mode": _GLOBAL,
        "get_conv_mode": _GLOBAL,
        "set_global_conv_config": _GLOBAL,
        "get_global_conv_config": _GLOBAL,
        "clear_global_conv_config": _GLOBAL,
        "get_default_conv_config": _GLOBAL,
    },
)

__all__ = [
    "conv3d", "global_avg_pool", "global_max_pool", "initial_voxelize", "leaky_relu", "point_to_voxel", "relu",
    "silu", "spcount", "spcrop", "spdevoxelize", "spvoxelize", "voxel_to_point",
]
