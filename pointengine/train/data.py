"""Labelled scans for training in the SemanticKITTI layout, checked before any step, and the global
batches of each epoch.

`sequences/<seq>/velodyne/<frame>.bin` with `sequences/<seq>/labels/<frame>.label` under the data
root. Every frame's label file is read once up front: a missing file, a count that differs from the
scan's points, or a raw id the config's label map does not know raises a ValueError naming the file,
so that a bad frame never surfaces hours into a run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..datasets import semantickitti
from ..datasets.config import DatasetConfig
from ..datasets.frames import Frame, check_frame, load_frame, read_training_ids
from ..datasets.scan import LidarScan
from .augment import augment


class LabelledFrames:
    """The frames of `sequences` under `root`, in sequence then frame order, each checked;
    `class_points` (int64 [num_classes]) counts their points of each training id."""

    def __init__(self, root: str | Path, sequences, config: DatasetConfig):
        self.root = Path(root)
        self.config = config
        self.frames: list[Frame] = []
        self.class_points = torch.zeros(config.num_classes, dtype=torch.int64)
        if not sequences:
            raise ValueError("no sequences given")
        for sequence in sequences:
            folder = self.root / "sequences" / str(sequence)
            scans = sorted((folder / "velodyne").glob("*.bin"))
            if not scans:
                raise ValueError(f"{folder / 'velodyne'}: no scans (*.bin) in sequence {sequence!r}")
            for scan in scans:
                frame = Frame(f"{sequence}/{scan.stem}", scan, folder / "labels" / f"{scan.stem}.label")
                check_frame(frame, semantickitti.FORMAT)
                labels = read_training_ids(frame, semantickitti.FORMAT, config)
                self.frames.append(frame)
                self.class_points += torch.bincount(labels, minlength=config.num_classes)

    def __len__(self) -> int:
        return len(self.frames)

    def load(self, index: int) -> LidarScan:
        """Scan `index` with its training ids."""
        return load_frame(self.frames[index], semantickitti.FORMAT, self.config)

    def load_augmented(self, index: int, seed: int, epoch: int) -> LidarScan:
        scan = self.load(index)
        return LidarScan(augment(scan.points, seed, epoch, index), scan.labels)


def epoch_batches(count: int, batch_size: int, seed: int, epoch: int, world_size: int) -> list[list[int]]:
    """The global batches of an epoch: a permutation of the frames seeded by (seed, epoch), cut into
    batches of batch_size. A last batch too small to give every rank a scan is dropped."""
    order = np.random.default_rng([seed, epoch]).permutation(count).tolist()
    batches = [order[i : i + batch_size] for i in range(0, count, batch_size)]
    return [batch for batch in batches if len(batch) >= world_size]


def shard(batch: list[int], rank: int, world_size: int) -> list[int]:
    """Rank `rank`'s whole scans of a global batch: a contiguous slice, sizes differing by at most one."""
    bounds = np.linspace(0, len(batch), world_size + 1).round().astype(int)
    return batch[bounds[rank] : bounds[rank + 1]]


def logit_targets(labels: Tensor, config: DatasetConfig, ignore: int = -100) -> Tensor:
    """The logit column of each point's training id (`predicted_classes` order); `ignore` for the
    ignored class."""
    column = torch.full((config.num_classes,), ignore, dtype=torch.int64)
    predicted = torch.tensor(config.predicted_classes)
    column[predicted] = torch.arange(len(predicted))
    return column.index_select(0, labels)


def class_weights(class_points: Tensor, power: float, config: DatasetConfig) -> Tensor | None:
    """Loss weight of each logit column (`predicted_classes` order): a class's share of the labelled
    training points to the power -`power`, scaled so that the mean weight over those points is 1;
    classes without points weigh 0 (no target has them). None for power 0 (unweighted)."""
    if power == 0:
        return None
    points = class_points.index_select(0, torch.tensor(config.predicted_classes)).double()
    share = points / points.sum().clamp(min=1)
    weights = torch.where(share > 0, share.clamp(min=1e-12).pow(-power), 0.0)
    return (weights / (share * weights).sum().clamp(min=1e-12)).float()
