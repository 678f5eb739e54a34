"""Global pooling modules: SparseTensor -> [B, C]."""

import torch
from torch import Tensor

from ..functional.pool import global_avg_pool, global_max_pool
from ..tensor import SparseTensor


class GlobalAvgPool(torch.nn.Module):
    def forward(self, input: SparseTensor) -> Tensor:
        return global_avg_pool(input)


class GlobalMaxPool(torch.nn.Module):
    def forward(self, input: SparseTensor) -> Tensor:
        return global_max_pool(input)
