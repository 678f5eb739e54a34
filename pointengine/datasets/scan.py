"""One lidar scan as tensors, and the reader of the headerless float32 files lidar datasets use."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class LidarScan:
    """points float32 [N, 3 + C] (x, y, z, then channels such as remission); labels int64 [N] training
    ids (0 = ignored), or None for an unlabelled scan."""

    points: Tensor
    labels: Tensor | None = None


def read_float32_rows(path: str | Path, columns: int) -> Tensor:
    """float32 [N, columns] from a file of little-endian float32 rows with no header."""
    path = Path(path)
    size = path.stat().st_size
    if size % (4 * columns):
        raise ValueError(f"{path}: {size} bytes is not a whole number of {columns}-float32 rows ({4 * columns} bytes)")
    return torch.from_numpy(np.fromfile(path, dtype="<f4").reshape(-1, columns))
