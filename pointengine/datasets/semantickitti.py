"""SemanticKITTI scans: `sequences/<seq>/velodyne/<frame>.bin` (float32 x, y, z, remission) and
`sequences/<seq>/labels/<frame>.label` (uint32: semantic raw id in the low 16 bits, instance id in
the high 16)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .config import DatasetConfig, load_dataset_config
from .scan import LidarScan, read_float32_rows


def read_points(path: str | Path) -> Tensor:
    """float32 [N, 4]: x, y, z (m, sensor frame) and remission in [0, 1)."""
    return read_float32_rows(path, 4)


def read_labels(path: str | Path) -> tuple[Tensor, Tensor]:
    """(semantic raw ids, instance ids), each int64 [N]."""
    path = Path(path)
    if path.stat().st_size % 4:
        raise ValueError(f"{path}: {path.stat().st_size} bytes is not a whole number of uint32 labels")
    packed = np.fromfile(path, dtype="<u4").astype(np.int64)
    return torch.from_numpy(packed & 0xFFFF), torch.from_numpy(packed >> 16)


def load_scan(
    scan_path: str | Path, label_path: str | Path | None = None, config: DatasetConfig | None = None
) -> LidarScan:
    """A scan with its labels mapped to training ids (no labels when label_path is None)."""
    points = read_points(scan_path)
    if label_path is None:
        return LidarScan(points)
    semantic, _ = read_labels(label_path)
    if semantic.shape[0] != points.shape[0]:
        raise ValueError(f"{label_path} has {semantic.shape[0]} labels but {scan_path} has {points.shape[0]} points")
    config = config or load_dataset_config("semantickitti")
    return LidarScan(points, config.map_labels(semantic))


class SemanticKITTI:
    """The frames of some sequences under `root` (the folder holding `sequences/`), in order.
    Frames without a label file load unlabelled."""

    def __init__(self, root: str | Path, sequences=("00",), config: DatasetConfig | None = None):
        self.root = Path(root)
        self.config = config or load_dataset_config("semantickitti")
        self.frames: list[tuple[Path, Path | None]] = []
        for sequence in sequences:
            folder = self.root / "sequences" / sequence
            scans = sorted((folder / "velodyne").glob("*.bin"))
            if not scans:
                raise ValueError(f"sequence {sequence!r}: no scans in {folder / 'velodyne'}")
            for scan in scans:
                label = folder / "labels" / f"{scan.stem}.label"
                self.frames.append((scan, label if label.is_file() else None))

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> LidarScan:
        scan, label = self.frames[index]
        return load_scan(scan, label, self.config)
