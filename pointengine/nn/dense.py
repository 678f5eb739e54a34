"""ToDense: a SparseTensor scattered into a dense [B, C, X, Y, Z] grid."""

import torch
from torch import Tensor

from ..tensor import SparseTensor


class ToDense(torch.nn.Module):
    """`origin` and `spatial_shape` fix the grid (in the tensor's own grid units); by default it
    spans the sites of each input, as `SparseTensor.dense`."""

    def __init__(self, origin=None, spatial_shape=None):
        super().__init__()
        self.origin = None if origin is None else tuple(origin)
        self.spatial_shape = None if spatial_shape is None else tuple(spatial_shape)

    def forward(self, input: SparseTensor) -> Tensor:
        return input.dense(self.origin, self.spatial_shape)

    def extra_repr(self) -> str:
        return f"origin={self.origin}, spatial_shape={self.spatial_shape}"
