"""Pointwise activations on the features of a SparseTensor."""

import torch

from ..tensor import SparseTensor


class ReLU(torch.nn.ReLU):
    def forward(self, input: SparseTensor) -> SparseTensor:
        return input.replace_feats(super().forward(input.feats))


class LeakyReLU(torch.nn.LeakyReLU):
    def forward(self, input: SparseTensor) -> SparseTensor:
        return input.replace_feats(super().forward(input.feats))


class SiLU(torch.nn.SiLU):
    def forward(self, input: SparseTensor) -> SparseTensor:
        return input.replace_feats(super().forward(input.feats))
