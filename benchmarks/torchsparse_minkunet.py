"""SPVNAS's MinkUNet (mit-han-lab/spvnas, core/models/semantic_kitti/minkunet.py) written against
TorchSparse 2.x's API, as its users write it: run here through pointengine.compat.alias_torchsparse().
Same module order and parameter names as SPVNAS, so pointengine.models.load_checkpoint converts its
state dict into pointengine's MinkUNet."""

import torch
from torch import nn

from pointengine.compat import alias_torchsparse

alias_torchsparse()

import torchsparse  # noqa: E402
import torchsparse.nn as spnn  # noqa: E402

WIDTHS = (32, 32, 64, 128, 256, 256, 128, 96, 96)


class BasicConvolutionBlock(nn.Module):
    def __init__(self, inc, outc, ks=3, stride=1, transposed=False):
        super().__init__()
        self.net = nn.Sequential(spnn.Conv3d(inc, outc, ks, stride=stride, transposed=transposed), spnn.BatchNorm(outc), spnn.ReLU(True))

    def forward(self, x):
        return self.net(x)


class ResidualBlock(nn.Module):
    def __init__(self, inc, outc):
        super().__init__()
        self.net = nn.Sequential(
            spnn.Conv3d(inc, outc, 3), spnn.BatchNorm(outc), spnn.ReLU(True), spnn.Conv3d(outc, outc, 3), spnn.BatchNorm(outc)
        )
        self.downsample = nn.Identity() if inc == outc else nn.Sequential(spnn.Conv3d(inc, outc, 1), spnn.BatchNorm(outc))
        self.relu = spnn.ReLU(True)

    def forward(self, x):
        return self.relu(self.net(x) + self.downsample(x))


class TorchSparseMinkUNet(nn.Module):
    def __init__(self, in_channels: int = 4, num_classes: int = 19, cr: float = 1.0):
        super().__init__()
        cs = [int(cr * c) for c in WIDTHS]
        self.stem = nn.Sequential(
            spnn.Conv3d(in_channels, cs[0], 3), spnn.BatchNorm(cs[0]), spnn.ReLU(True),
            spnn.Conv3d(cs[0], cs[0], 3), spnn.BatchNorm(cs[0]), spnn.ReLU(True),
        )
        for i in range(4):
            stage = nn.Sequential(BasicConvolutionBlock(cs[i], cs[i], 2, 2), ResidualBlock(cs[i], cs[i + 1]), ResidualBlock(cs[i + 1], cs[i + 1]))
            setattr(self, f"stage{i + 1}", stage)
        for i in range(4):
            c_in, c_out, c_skip = cs[4 + i], cs[5 + i], cs[3 - i]
            up = nn.ModuleList([
                BasicConvolutionBlock(c_in, c_out, 2, 2, transposed=True),
                nn.Sequential(ResidualBlock(c_out + c_skip, c_out), ResidualBlock(c_out, c_out)),
            ])
            setattr(self, f"up{i + 1}", up)
        self.classifier = nn.Sequential(nn.Linear(cs[8], num_classes))

    def forward(self, x):
        x0 = self.stem(x)
        skips = [x0]
        for i in range(1, 5):
            skips.append(getattr(self, f"stage{i}")(skips[-1]))
        y = skips.pop()
        for i in range(1, 5):
            up = getattr(self, f"up{i}")
            y = up[1](torchsparse.cat([up[0](y), skips.pop()]))
        return self.classifier(y.F)
