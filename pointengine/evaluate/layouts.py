"""What `pointengine bench` needs to know of each dataset: how its split is found on disk, the columns of
its scans, where predictions go in its submission layout, its official metrics and a default model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from ..datasets import nuscenes, semantickitti
from ..datasets.config import DatasetConfig
from ..datasets.frames import FoundFrames, Frame, ScanFormat
from ..datasets.metrics import Scores, nuscenes_scores, semantickitti_scores


@dataclass(frozen=True)
class Layout:
    """`find_frames(root, split, version, config, skip_bad)`; `write_prediction(out, frame, training
    ids, config, split)`; `finish_submission(out, split)` writes what a submission needs beside the
    predictions; `scores(confusion, ignore_index)` the official numbers. `point_columns`: what the
    scan files hold, which the model's dataset config must name. `default_config`: the zoo model used
    without --config."""

    name: str
    scan_format: ScanFormat
    point_columns: tuple[str, ...]
    default_config: str
    find_frames: Callable[[Path, list[str], str | None, DatasetConfig, bool], FoundFrames]
    write_prediction: Callable[[Path, Frame, Tensor, DatasetConfig, list[str]], None]
    finish_submission: Callable[[Path, list[str]], None]
    scores: Callable[[Tensor, int], Scores]


def _kitti_frames(root: Path, split: list[str], version: str | None, config: DatasetConfig, skip_bad: bool) -> FoundFrames:
    if version is not None:
        raise ValueError(f"--version names a nuScenes release; SemanticKITTI has none (got {version!r})")
    return semantickitti.find_frames(root, semantickitti.split_sequences(root, split, config), skip_bad)


def _kitti_prediction(out: Path, frame: Frame, labels: Tensor, config: DatasetConfig, split: list[str]) -> None:
    semantickitti.write_prediction(out, frame, labels, config)


def _kitti_finish(out: Path, split: list[str]) -> None:
    """semantic-kitti-api reads the .label files alone."""


def _nuscenes_frames(root: Path, split: list[str], version: str | None, config: DatasetConfig,
                     skip_bad: bool) -> FoundFrames:
    return nuscenes.find_frames(root, split, version, skip_bad)


def _nuscenes_prediction(out: Path, frame: Frame, labels: Tensor, config: DatasetConfig, split: list[str]) -> None:
    nuscenes.write_prediction(out, frame, labels, split)


LAYOUTS = {
    "semantickitti": Layout("semantickitti", semantickitti.FORMAT, ("x", "y", "z", "remission"), "demo",
                            _kitti_frames, _kitti_prediction, _kitti_finish, semantickitti_scores),
    # No trained nuScenes model ships: the default is the zoo's MinkUNet with seeded weights (said so).
    "nuscenes": Layout("nuscenes", nuscenes.FORMAT, ("x", "y", "z", "intensity", "ring"), "minkunet_cr0.5_nuscenes",
                       _nuscenes_frames, _nuscenes_prediction, nuscenes.write_submission_meta, nuscenes_scores),
}
