"""Point-cloud files of any format `pointengine segment` reads, as float32 [N, 3 + C] with column names.

- `.bin`: KITTI / SemanticKITTI scans (float32 x, y, z, remission); `.pcd.bin`: nuScenes sweeps
  (float32 x, y, z, intensity, ring).
- `.npy`: a float array [N, >= 3] (x, y, z, then the model's dataset columns in order); never unpickled.
- `.pcd`, `.ply` through open3d, `.las`, `.laz` through laspy: x, y, z and, when the file has it,
  intensity (optional extra `pointengine[io]`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .scan import read_float32_rows

SUFFIXES = (".bin", ".npy", ".pcd", ".ply", ".las", ".laz")
KITTI_COLUMNS = ("x", "y", "z", "remission")
NUSCENES_COLUMNS = ("x", "y", "z", "intensity", "ring")


@dataclass(frozen=True)
class PointFile:
    """points float32 [N, len(columns)]; columns name them (None for an .npy file: as the model's dataset)."""

    points: Tensor
    columns: tuple[str, ...] | None


def is_point_file(path: Path) -> bool:
    return path.suffix.lower() in SUFFIXES


def read_point_file(path: str | Path) -> PointFile:
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"{path}: unknown point-cloud format {path.suffix!r}; expected one of {list(SUFFIXES)}")
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    if suffix == ".bin":
        columns = NUSCENES_COLUMNS if path.name.lower().endswith(".pcd.bin") else KITTI_COLUMNS
        return PointFile(read_float32_rows(path, len(columns)), columns)
    if suffix == ".npy":
        return PointFile(_read_npy(path), None)
    if suffix in (".pcd", ".ply"):
        return _read_open3d(path)
    return _read_las(path)


def _read_npy(path: Path) -> Tensor:
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as error:
        raise ValueError(f"{path}: not a plain numpy array file ({error})") from None
    if array.ndim != 2 or array.shape[1] < 3 or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{path}: expected a numeric array [N, >= 3] (x, y, z, ...), got {array.dtype} {list(array.shape)}")
    return torch.from_numpy(array.astype(np.float32))


def _need(module: str, path: Path):
    try:
        return __import__(module)
    except ImportError:
        raise ValueError(
            f"{path}: reading {path.suffix} files needs the optional package {module!r}: pip install 'pointengine[io]'"
        ) from None


def _read_open3d(path: Path) -> PointFile:
    o3d = _need("open3d", path)
    cloud = o3d.t.io.read_point_cloud(str(path))
    if "positions" not in cloud.point:
        raise ValueError(f"{path}: no points could be read (empty or malformed file)")
    xyz = cloud.point["positions"].numpy().astype(np.float32).reshape(-1, 3)
    if "intensity" in cloud.point:
        intensity = cloud.point["intensity"].numpy().astype(np.float32).reshape(-1, 1)
        return PointFile(torch.from_numpy(np.concatenate([xyz, intensity], 1)), ("x", "y", "z", "intensity"))
    return PointFile(torch.from_numpy(xyz), ("x", "y", "z"))


def _read_las(path: Path) -> PointFile:
    laspy = _need("laspy", path)
    try:
        las = laspy.read(str(path))
    except Exception as error:  # laspy raises its own LaspyException and LazBackend errors
        raise ValueError(f"{path}: not a readable LAS/LAZ file ({error})") from None
    columns = [np.asarray(las.x), np.asarray(las.y), np.asarray(las.z), np.asarray(las.intensity)]
    return PointFile(torch.from_numpy(np.stack(columns, 1).astype(np.float32)), ("x", "y", "z", "intensity"))
