"""Layers on SparseTensors. Every output shares the coordinate maps of its input."""

from .activation import LeakyReLU, ReLU, SiLU
from .cat import cat
from .conv import Conv3d, FusedConv3d
from .dense import ToDense
from .linear import Linear
from .norm import BatchNorm
from .pool import GlobalAvgPool, GlobalMaxPool

__all__ = ["BatchNorm", "Conv3d", "FusedConv3d", "GlobalAvgPool", "GlobalMaxPool", "LeakyReLU", "Linear", "ReLU", "SiLU", "ToDense", "cat"]
