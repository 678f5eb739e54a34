"""torchsparse.nn's normalisation, activation, pooling and crop modules. BatchNorm, ReLU,
LeakyReLU, SiLU and the global pools are pointengine's own (same parameters and state-dict keys as
TorchSparse's, which subclass the same torch modules); InstanceNorm and GroupNorm normalise each
sample of the batch on its own, as TorchSparse's do."""

import torch

from ....nn import BatchNorm, GlobalAvgPool, GlobalMaxPool, LeakyReLU, ReLU, SiLU
from .functional import spcrop


def per_sample(norm: torch.nn.Module, input):
    """`norm` (a torch module taking [1, C, L]) applied to the sites of each batch index apart."""
    feats, batch = input.feats, input.coords[:, 0]
    out = torch.empty_like(feats)
    for b in torch.unique(batch).tolist():
        rows = (batch == b).nonzero().squeeze(1)
        sample = feats.index_select(0, rows).t().unsqueeze(0)
        out[rows] = norm(sample).squeeze(0).t()
    return input.replace_feats(out)


class InstanceNorm(torch.nn.InstanceNorm1d):
    def forward(self, input):
        return per_sample(lambda x: super(InstanceNorm, self).forward(x), input)


class GroupNorm(torch.nn.GroupNorm):
    def forward(self, input):
        return per_sample(lambda x: super(GroupNorm, self).forward(x), input)


class SparseCrop(torch.nn.Module):
    """The sites with coords_min <= (x, y, z) < coords_max (either bound may be None)."""

    def __init__(self, coords_min=None, coords_max=None):
        super().__init__()
        self.coords_min, self.coords_max = coords_min, coords_max

    def forward(self, input):
        return spcrop(input, self.coords_min, self.coords_max)


__all__ = ["BatchNorm", "GlobalAvgPool", "GlobalMaxPool", "GroupNorm", "InstanceNorm", "LeakyReLU", "ReLU", "SiLU", "SparseCrop"]
