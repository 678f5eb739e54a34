"""BatchNorm over the features of a SparseTensor (each site is one sample)."""

import torch

from ..tensor import SparseTensor


class BatchNorm(torch.nn.BatchNorm1d):
    """torch.nn.BatchNorm1d applied to feats [N, C]; the parameters and running statistics keep
    torch's names, so checkpoints and BN folding read them as usual."""

    def forward(self, input: SparseTensor) -> SparseTensor:
        return input.replace_feats(super().forward(input.feats))
