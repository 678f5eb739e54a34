"""nuScenes lidar sweeps (`*.pcd.bin`)."""

from pathlib import Path

from torch import Tensor

from .scan import read_float32_rows


def read_nuscenes_points(path: str | Path) -> Tensor:
    """float32 [N, 5]: x, y, z, intensity (0-255) and ring index (0-31 on the HDL-32E)."""
    return read_float32_rows(path, 5)
