"""Stateless sparse operations."""

from .conv import DATAFLOWS, conv3d, select_dataflow
from .kmap import KernelMap, KernelMapKey, kernel_offsets

__all__ = ["DATAFLOWS", "KernelMap", "KernelMapKey", "conv3d", "kernel_offsets", "select_dataflow"]
