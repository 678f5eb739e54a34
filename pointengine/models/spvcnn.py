"""SPVCNN in the layout of SPVNAS (Tang et al., ECCV 2020; mit-han-lab/spvnas,
core/models/semantic_kitti/spvcnn.py): MinkUNet's voxel branch plus a point branch at full point
resolution, joined by trilinear devoxelization and scatter-mean voxelization."""

import torch

from ..functional.pointvoxel import initial_voxelize, point_to_voxel, voxel_to_point
from ..tensor import PointTensor, SparseTensor
from .blocks import PointMLP
from .minkunet import MinkUNet


class SPVCNN(MinkUNet):
    """MinkUNet (same modules and state-dict keys) plus `point_transforms`, three Linear + BatchNorm1d
    + ReLU point MLPs (stem -> down4, down4 -> up2, up2 -> up4 widths), and `dropout` on the features
    voxelized again from the points.

    Points read the voxel branch after the stem, after the last down stage (stride 16), after up
    stage 2 (stride 4) and after up stage 4, each time adding their MLP of the previous point
    features; they are voxelized again before down stage 1, up stage 1 and up stage 3. The
    classifier runs on the points.

    Input: a SparseTensor at stride 1 (its sites are the points, as SPVNAS feeds it; the output is a
    SparseTensor of logits on the input's sites and row order), or a PointTensor (output: a
    PointTensor of logits per point).
    """

    def __init__(self, in_channels: int = 4, num_classes: int = 19, cr: float = 1.0):
        super().__init__(in_channels, num_classes, cr)
        w = self.widths
        self.point_transforms = torch.nn.ModuleList(PointMLP(w[a], w[b]) for a, b in ((0, 4), (4, 6), (6, 8)))
        self.dropout = torch.nn.Dropout(0.3)

    def forward(self, input: SparseTensor | PointTensor) -> SparseTensor | PointTensor:
        if isinstance(input, SparseTensor):
            if input.stride != (1, 1, 1):
                raise ValueError(f"SPVCNN: the input SparseTensor must have stride (1, 1, 1), got {input.stride}")
            # Each site is one point, so the initial voxelization gives back the input itself (as a
            # site set: SPVNAS's sorts the rows, which changes no value of a site).
            return input.replace_feats(self.forward_points(input, PointTensor.at_sites(input)).feats)
        if isinstance(input, PointTensor):
            return self.forward_points(initial_voxelize(input), input)
        raise TypeError(f"SPVCNN input must be a SparseTensor or a PointTensor, got {type(input).__name__}")

    def forward_points(self, voxels: SparseTensor, z: PointTensor) -> PointTensor:
        """Logits at the points z, from their stride-1 voxelization `voxels`."""
        x0 = self.stem(voxels)
        z0 = voxel_to_point(x0, z)
        x1 = self.down[0](point_to_voxel(x0, z0))
        x2 = self.down[1](x1)
        x3 = self.down[2](x2)
        x4 = self.down[3](x3)
        z1 = self._join(x4, z0, 0)
        y1 = self._revoxelize(x4, z1)
        y2 = self.up_stage(1, self.up_stage(0, y1, x3), x2)
        z2 = self._join(y2, z1, 1)
        y3 = self._revoxelize(y2, z2)
        y4 = self.up_stage(3, self.up_stage(2, y3, x1), x0)
        z3 = self._join(y4, z2, 2)
        return z3.replace_feats(self.classifier(z3.feats))

    def _join(self, x: SparseTensor, z: PointTensor, i: int) -> PointTensor:
        """The voxel features at the points plus the point MLP of the points' previous features;
        without autograd, added into the MLP's output rather than a new tensor."""
        residual = self.point_transforms[i](z.feats)
        in_place = not (torch.is_grad_enabled() and (residual.requires_grad or x.feats.requires_grad))
        return voxel_to_point(x, z, residual=residual, in_place=in_place)

    def _revoxelize(self, x: SparseTensor, z: PointTensor) -> SparseTensor:
        voxels = point_to_voxel(x, z)
        return voxels.replace_feats(self.dropout(voxels.feats))
