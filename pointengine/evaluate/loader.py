"""A split as a torch Dataset of scans and a collate function that voxelizes a batch of them into one
SparseTensor, the way Segmenter does (segment.voxelize_scans), so that a DataLoader's worker processes
can read and voxelize the next scans while the model runs.

Each item carries the seconds it took to read and each batch the seconds its voxelization took, measured
where they ran (in a worker, or in the main process without workers), for the benchmark's latency split.
A scan that cannot be read or voxelized comes back as skipped with the error naming its file, rather than
raised in a worker (where the DataLoader would wrap it in a traceback): the caller raises it, or reports
it and goes on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from torch.utils.data import Dataset

from ..datasets.config import DatasetConfig
from ..datasets.frames import Frame, ScanFormat, load_frame
from ..datasets.scan import LidarScan
from ..models.config import ModelConfig
from ..segment import VoxelizedBatch, voxelize_scans


@dataclass(frozen=True)
class LoadedScan:
    """A frame read from disk in `seconds`: its `scan`, or None and the `error` that skipped it."""

    frame: Frame
    scan: LidarScan | None
    seconds: float
    error: str | None = None


@dataclass(frozen=True)
class ScanBatch:
    """`scans` voxelized together into `voxels` (scan j at batch index j; None when no scan of the batch
    could be read) in `voxelize_seconds`; `skipped` the scans of the batch left out."""

    scans: list[LoadedScan]
    voxels: VoxelizedBatch | None
    voxelize_seconds: float
    skipped: list[LoadedScan]


class SplitDataset(Dataset):
    """The frames of a split (datasets.*.find_frames) as LoadedScans: points in the dataset's columns,
    labels as training ids of `config`."""

    def __init__(self, frames: list[Frame], scan_format: ScanFormat, config: DatasetConfig):
        self.frames = frames
        self.scan_format = scan_format
        self.config = config

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> LoadedScan:
        frame = self.frames[index]
        start = time.perf_counter()
        try:
            scan = load_frame(frame, self.scan_format, self.config)
        except ValueError as error:
            return LoadedScan(frame, None, time.perf_counter() - start, str(error))
        return LoadedScan(frame, scan, time.perf_counter() - start)


class ScanCollate:
    """collate_fn of a DataLoader over a SplitDataset: the batch's scans voxelized for `config` on the
    CPU (the caller moves the tensor to its device). A class, not a closure, so that worker processes
    can receive it."""

    def __init__(self, config: ModelConfig):
        self.config = config

    def __call__(self, loaded: list[LoadedScan]) -> ScanBatch:
        start = time.perf_counter()
        good = [item for item in loaded if item.scan is not None]
        skipped = [item for item in loaded if item.scan is None]
        try:
            voxels = voxelize_scans(self.config, [item.scan.points for item in good]) if good else None
        except ValueError:
            # Rare: find the scans at fault one by one, then voxelize the others together.
            errors = [self._error(item) for item in good]
            skipped += [LoadedScan(item.frame, None, item.seconds, error) for item, error in zip(good, errors) if error]
            good = [item for item, error in zip(good, errors) if error is None]
            voxels = voxelize_scans(self.config, [item.scan.points for item in good]) if good else None
        return ScanBatch(good, voxels, time.perf_counter() - start, skipped)

    def _error(self, item: LoadedScan) -> str | None:
        try:
            voxelize_scans(self.config, [item.scan.points])
        except ValueError as error:
            return f"{item.frame.scan}: {error}"
        return None
