"""The building blocks of the sparse U-Nets (MinkUNet, SPVCNN): conv-BN-ReLU, its transposed twin,
the residual block, and SPVCNN's point MLP."""

import torch
from torch import Tensor

from .. import functional, nn
from ..tensor import SparseTensor


class ConvBlock(torch.nn.Sequential):
    """Conv3d, BatchNorm, ReLU (a transposed conv with transposed=True); the BatchNorm and the ReLU
    run as one (BatchNorm.forward_relu). The ReLU module stays in the chain, which optimize() folds
    into one FusedConv3d."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1, transposed: bool = False):
        super().__init__(
            nn.Conv3d(in_channels, out_channels, kernel_size, stride, transposed=transposed),
            nn.BatchNorm(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, input: SparseTensor) -> SparseTensor:
        conv, norm, _ = self
        return norm.forward_relu(conv(input))


class ResidualBlock(torch.nn.Module):
    """relu(BN(conv(relu(BN(conv(x))))) + shortcut(x)); the shortcut is a 1x1x1 conv + BN when the
    channel count changes, else the identity. Each BatchNorm runs as one with what follows it (the
    ReLU; the shortcut's addition and the ReLU)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3):
        super().__init__()
        self.main = torch.nn.Sequential(
            nn.Conv3d(in_channels, out_channels, kernel_size),
            nn.BatchNorm(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv3d(out_channels, out_channels, kernel_size),
            nn.BatchNorm(out_channels),
        )
        if in_channels == out_channels:
            self.shortcut = torch.nn.Identity()
        else:
            self.shortcut = torch.nn.Sequential(nn.Conv3d(in_channels, out_channels, 1), nn.BatchNorm(out_channels))

    def forward(self, input: SparseTensor) -> SparseTensor:
        conv1, norm1, _, conv2, norm2 = self.main
        main = conv2(norm1.forward_relu(conv1(input)))
        return norm2.forward_add_relu(main, self.shortcut(input))


class FusedResidualBlock(torch.nn.Module):
    """A ResidualBlock in inference form (pointengine.optimize): each conv with its BatchNorm folded
    in, and the second conv's epilogue adding the shortcut before the ReLU."""

    def __init__(self, block: ResidualBlock):
        super().__init__()
        conv1, norm1, _, conv2, norm2 = block.main
        self.first = nn.FusedConv3d.from_conv_norm(conv1, norm1, relu=True)
        self.second = nn.FusedConv3d.from_conv_norm(conv2, norm2, relu=True)
        if isinstance(block.shortcut, torch.nn.Identity):
            self.shortcut = None
        else:
            self.shortcut = nn.FusedConv3d.from_conv_norm(*block.shortcut, relu=False)

    def forward(self, input: SparseTensor) -> SparseTensor:
        shortcut = input if self.shortcut is None else self.shortcut(input)
        return self.second(self.first(input), residual=shortcut)


class PointMLP(torch.nn.Sequential):
    """Linear, BatchNorm1d, ReLU on point features [N, C] (SPVNAS's point transform; the same
    state-dict keys as that Sequential). In eval mode the BatchNorm folds into the Linear: one product
    and an in-place ReLU instead of three passes over points x channels."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__(
            nn.Linear(in_features, out_features), torch.nn.BatchNorm1d(out_features), torch.nn.ReLU(inplace=True)
        )

    def forward(self, feats: Tensor) -> Tensor:
        if self.training:
            return super().forward(feats)
        linear, norm = self[0], self[1]
        scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
        bias = (linear.bias - norm.running_mean) * scale + norm.bias
        return functional.linear(feats, linear.weight * scale[:, None], bias).relu_()
