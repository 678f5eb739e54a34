"""Stateless sparse operations."""

from .conv import DATAFLOWS, conv3d, select_dataflow
from .kmap import KernelMap, KernelMapKey, kernel_offsets
from .pool import global_avg_pool, global_max_pool

__all__ = ["DATAFLOWS", "KernelMap", "KernelMapKey", "conv3d", "global_avg_pool", "global_max_pool", "kernel_offsets", "select_dataflow"]
