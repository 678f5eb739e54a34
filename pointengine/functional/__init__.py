"""Stateless sparse operations."""

from .conv import DATAFLOWS, conv3d, select_dataflow
from .kmap import KernelMap, KernelMapKey, kernel_offsets
from .linear import linear
from .pointvoxel import Voxels, devoxelize, initial_voxelize, point_to_voxel, voxel_to_point, voxelize_points
from .pool import global_avg_pool, global_max_pool

__all__ = ["DATAFLOWS", "KernelMap", "KernelMapKey", "Voxels", "conv3d", "devoxelize", "global_avg_pool", "global_max_pool", "initial_voxelize", "kernel_offsets", "linear", "point_to_voxel", "select_dataflow", "voxel_to_point", "voxelize_points"]
