"""SemanticKITTI scans: `sequences/<seq>/velodyne/<frame>.bin` (float32 x, y, z, remission) and
`sequences/<seq>/labels/<frame>.label` (uint32: semantic raw id in the low 16 bits, instance id in
the high 16); predictions go to `sequences/<seq>/predictions/<frame>.label` (raw ids), the layout
semantic-kitti-api's evaluate_semantics.py reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..outputs import write_labels
from .config import DatasetConfig, load_dataset_config
from .frames import FoundFrames, Frame, ScanFormat
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


def read_semantic_labels(path: Path) -> Tensor:
    """The semantic raw ids (int64 [N]) of a .label file."""
    return read_labels(path)[0]


FORMAT = ScanFormat(columns=4, label_bytes=4, read_raw_labels=read_semantic_labels)


def split_sequences(root: str | Path, split: list[str], config: DatasetConfig) -> tuple[str, ...]:
    """The sequences of `split`: [NAME] of an official split in the config (e.g. ["val"]), ["all"]
    (every sequence under root/sequences), or sequence names (["00", "08"])."""
    if split == ["all"]:
        folder = Path(root) / "sequences"
        found = tuple(sorted(p.name for p in folder.iterdir() if p.is_dir())) if folder.is_dir() else ()
        if not found:
            raise ValueError(f"{folder}: no sequence folders")
        return found
    if len(split) == 1 and split[0] in config.splits:
        return config.splits[split[0]]
    unknown = [name for name in split if not name.isdigit()]
    if unknown:
        raise ValueError(
            f"split must be one of {sorted(config.splits)} (the official splits of {config.name}), all, or "
            f"sequence names such as 00 08; got {' '.join(split)}"
        )
    return tuple(split)


def find_frames(root: str | Path, sequences, skip_bad: bool = False) -> FoundFrames:
    """The frames of `sequences` under `root`, in sequence then frame order. A sequence with a labels/
    folder needs a label file for every scan; one without (the test sequences) is unlabelled. Sizes are
    checked here (frames.check_frame); a bad frame or a sequence without scans raises a ValueError
    naming it, or with skip_bad is left out and listed in `skipped`."""
    found = FoundFrames()
    for sequence in sequences:
        folder = Path(root) / "sequences" / sequence
        scans = sorted((folder / "velodyne").glob("*.bin"))
        if not scans:
            empty = ValueError(f"{folder / 'velodyne'}: no scans (*.bin) in sequence {sequence!r}")
            found.skip(str(folder / "velodyne"), empty, skip_bad)
        labelled = (folder / "labels").is_dir()
        for scan in scans:
            label = folder / "labels" / f"{scan.stem}.label" if labelled else None
            found.add(Frame(f"{sequence}/{scan.stem}", scan, label), FORMAT, skip_bad)
    return found


def prediction_path(out: str | Path, frame: Frame) -> Path:
    """Where the prediction of `frame` goes in the submission layout under `out`."""
    sequence, name = frame.name.split("/")
    return Path(out) / "sequences" / sequence / "predictions" / f"{name}.label"


def write_prediction(out: str | Path, frame: Frame, labels: Tensor, config: DatasetConfig) -> None:
    """Training ids of every point of `frame`, written as raw ids (learning_map_inv) in a .label file."""
    write_labels(prediction_path(out, frame), config.raw_labels(labels).numpy(), "label")


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
