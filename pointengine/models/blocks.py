"""The building blocks of the sparse U-Nets (MinkUNet, SPVCNN): conv-BN-ReLU, its transposed twin,
and the residual block."""

import torch

from .. import nn
from ..tensor import SparseTensor


class ConvBlock(torch.nn.Sequential):
    """Conv3d, BatchNorm, ReLU (a transposed conv with transposed=True). The ReLU works in place on
    the BatchNorm output, which nothing else reads (BatchNorm's backward keeps its input, not its
    output)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1, transposed: bool = False):
        super().__init__(
            nn.Conv3d(in_channels, out_channels, kernel_size, stride, transposed=transposed),
            nn.BatchNorm(out_channels),
            nn.ReLU(inplace=True),
        )


class ResidualBlock(torch.nn.Module):
    """relu(BN(conv(relu(BN(conv(x))))) + shortcut(x)); the shortcut is a 1x1x1 conv + BN when the
    channel count changes, else the identity."""

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
        main = self.main(input)
        return main.replace_feats((main.feats + self.shortcut(input).feats).relu_())
