"""The scans of a dataset split as files on disk, checked before any is read and read with their labels.

A bad frame is named in the error: a missing label file, a scan whose size is not a whole number of
points (a truncated file), a label file whose length differs from its scan, a raw id the label map
does not know. Where a run may go on without it (`pointengine bench --skip-bad`), the frame is left
out and the reason kept, so that every skip is reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor

from .config import DatasetConfig
from .scan import LidarScan, read_float32_rows


@dataclass(frozen=True)
class ScanFormat:
    """How a dataset stores a scan and its labels: `columns` float32 values per point, `label_bytes`
    bytes per point in a label file, read by `read_raw_labels` (raw ids, int64 [N])."""

    columns: int
    label_bytes: int
    read_raw_labels: Callable[[Path], Tensor]

    @property
    def point_bytes(self) -> int:
        return 4 * self.columns


@dataclass(frozen=True)
class Frame:
    """One scan: `name` places its prediction in the dataset's submission layout (SemanticKITTI
    "08/000123", nuScenes the lidar sample_data token); `label` is None for an unlabelled scan."""

    name: str
    scan: Path
    label: Path | None


@dataclass(frozen=True)
class Skipped:
    """A scan (or a folder) left out of a run, and why: the error it would have raised, which names the
    file at fault."""

    path: str
    reason: str


@dataclass
class FoundFrames:
    """The frames of a split in order, and those left out with skip_bad."""

    frames: list[Frame] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def add(self, frame: Frame, scan_format: ScanFormat, skip_bad: bool) -> None:
        """Appends the frame if its files agree in size; otherwise raises the ValueError naming the
        file, or with skip_bad keeps it in `skipped`."""
        try:
            check_frame(frame, scan_format)
        except ValueError as error:
            self.skip(str(frame.scan), error, skip_bad)
            return
        self.frames.append(frame)

    def skip(self, path: str, error: ValueError, skip_bad: bool) -> None:
        if not skip_bad:
            raise error
        self.skipped.append(Skipped(path, str(error)))


def check_frame(frame: Frame, scan_format: ScanFormat) -> None:
    """The checks that need no reading (file sizes): a ValueError naming the file when they fail."""
    if not frame.scan.is_file():
        raise ValueError(f"{frame.scan}: no such scan file")
    size = frame.scan.stat().st_size
    if size == 0:
        raise ValueError(f"{frame.scan}: empty scan file (0 bytes)")
    if size % scan_format.point_bytes:
        raise ValueError(
            f"{frame.scan}: {size} bytes is not a whole number of {scan_format.point_bytes}-byte points (truncated?)"
        )
    if frame.label is None:
        return
    if not frame.label.is_file():
        raise ValueError(f"{frame.label}: missing label file for scan {frame.scan}")
    label_size = frame.label.stat().st_size
    if label_size % scan_format.label_bytes:
        raise ValueError(f"{frame.label}: {label_size} bytes is not a whole number of {scan_format.label_bytes}-byte labels")
    labels, points = label_size // scan_format.label_bytes, size // scan_format.point_bytes
    if labels != points:
        raise ValueError(f"{frame.label}: {labels} labels but {frame.scan} has {points} points")


def load_frame(frame: Frame, scan_format: ScanFormat, config: DatasetConfig) -> LidarScan:
    """The frame's points and training ids (none for an unlabelled frame); a ValueError names the file
    at fault (a file may also have changed since check_frame)."""
    points = read_float32_rows(frame.scan, scan_format.columns)
    if points.shape[0] == 0:
        raise ValueError(f"{frame.scan}: empty scan file (0 bytes)")
    if frame.label is None:
        return LidarScan(points)
    labels = read_training_ids(frame, scan_format, config)
    if labels.shape[0] != points.shape[0]:
        raise ValueError(f"{frame.label}: {labels.shape[0]} labels but {frame.scan} has {points.shape[0]} points")
    return LidarScan(points, labels)


def read_training_ids(frame: Frame, scan_format: ScanFormat, config: DatasetConfig) -> Tensor:
    """The training ids (int64 [N]) of a labelled frame; a raw id the label map does not know raises a
    ValueError naming the label file."""
    raw = scan_format.read_raw_labels(frame.label)
    try:
        return config.map_labels(raw)
    except ValueError as error:
        raise ValueError(f"{frame.label}: {error}") from None
