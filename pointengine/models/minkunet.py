"""MinkUNet in the layout of SPVNAS (Tang et al., ECCV 2020; mit-han-lab/spvnas,
core/models/semantic_kitti/minkunet.py): a stem, four down stages, four up stages with skips."""

import torch

from .. import nn
from ..tensor import SparseTensor
from .blocks import ConvBlock, ResidualBlock

# Channels of stem, down1..4, up1..4 at channel ratio 1.
WIDTHS = (32, 32, 64, 128, 256, 256, 128, 96, 96)


class MinkUNet(torch.nn.Module):
    """Per-site logits [N, num_classes] on the input's sites, in the input's row order.

    cr scales every width (the SPVNAS "channel ratio"): cr=1.0 is the published 21.7 M model.
    Down stages: 2x2x2 stride-2 conv then two residual blocks; up stages: 2x2x2 stride-2
    transposed conv (back onto the sites of the matching down level), concatenation with that
    level's skip, two residual blocks.
    """

    def __init__(self, in_channels: int = 4, num_classes: int = 19, cr: float = 1.0):
        super().__init__()
        if not cr > 0:
            raise ValueError(f"cr must be > 0, got {cr!r}")
        w = [int(cr * c) for c in WIDTHS]
        if min(w) < 1:
            raise ValueError(f"cr={cr} leaves a stage with no channels: widths {w}")
        self.widths = tuple(w)
        self.stem = torch.nn.Sequential(ConvBlock(in_channels, w[0]), ConvBlock(w[0], w[0]))
        self.down = torch.nn.ModuleList(
            torch.nn.Sequential(
                ConvBlock(w[i], w[i], 2, 2), ResidualBlock(w[i], w[i + 1]), ResidualBlock(w[i + 1], w[i + 1])
            )
            for i in range(4)
        )
        self.up = torch.nn.ModuleList()
        self.up_blocks = torch.nn.ModuleList()
        for i in range(4):
            c_in, c_out, c_skip = w[4 + i], w[5 + i], w[3 - i]
            self.up.append(ConvBlock(c_in, c_out, 2, 2, transposed=True))
            self.up_blocks.append(
                torch.nn.Sequential(ResidualBlock(c_out + c_skip, c_out), ResidualBlock(c_out, c_out))
            )
        self.classifier = nn.Linear(w[8], num_classes)

    def up_stage(self, i: int, x: SparseTensor, skip: SparseTensor) -> SparseTensor:
        """Up stage i (0..3): transposed conv back onto the sites of `skip`, concatenation, blocks."""
        return self.up_blocks[i](nn.cat(self.up[i](x), skip))

    def forward(self, input: SparseTensor) -> SparseTensor:
        x = self.stem(input)
        skips = [x]
        for stage in self.down:
            x = stage(x)
            skips.append(x)
        skips.pop()
        for i in range(4):
            x = self.up_stage(i, x, skips.pop())
        return x.replace_feats(self.classifier(x.feats))
