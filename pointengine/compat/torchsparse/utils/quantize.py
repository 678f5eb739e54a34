"""torchsparse.utils.quantize.sparse_quantize on pointengine.voxelize_points."""

import numpy as np
import torch

from ....functional.pointvoxel import voxelize_points


def sparse_quantize(coords, voxel_size=1, *, return_index: bool = False, return_inverse: bool = False):
    """The distinct voxels floor(coords / voxel_size) of points coords [N, 3] (numpy or torch),
    as TorchSparse returns them: numpy int32 [M, 3] sorted by (x, y, z); with return_index the row
    of the first point of each voxel (int64 [M]), with return_inverse the voxel of every point
    (int64 [N]); a list when more than the voxels are asked for."""
    points = torch.as_tensor(np.asarray(coords), dtype=torch.float64)
    if points.dim() != 2 or points.shape[1] != 3:
        raise ValueError(f"coords must have shape [N, 3] (x, y, z), got {list(points.shape)}")
    if isinstance(voxel_size, np.ndarray):
        voxel_size = voxel_size.tolist()
    voxels = voxelize_points(points, voxel_size, reduce="first")
    outputs = [voxels.coords[:, 1:].numpy()]
    if return_index:
        first = torch.full((voxels.coords.shape[0],), points.shape[0], dtype=torch.int64)
        first.scatter_reduce_(0, voxels.inverse, torch.arange(points.shape[0]), reduce="amin")
        outputs.append(first.numpy())
    if return_inverse:
        outputs.append(voxels.inverse.numpy())
    return outputs[0] if len(outputs) == 1 else outputs
