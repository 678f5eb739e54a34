"""Segmenter: the one pipeline from points to labels, as a model config says (voxel size, quantization,
input channels and their scaling, label map). `pointengine segment`, the benchmarks and training reuse it
instead of voxelizing their own way."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from . import _ops
from ._checks import all_finite
from ._memory import release_free_memory
from .functional.pointvoxel import voxelize_points
from .models.config import ModelConfig, load_model_config, model_config_from_dict
from .models.registry import build_model
from .tensor import SparseTensor


@dataclass(frozen=True)
class VoxelizedBatch:
    """The model input of one or more scans: `tensor` holds scan j's voxels at batch index j;
    `inverse` (int64, all points of all scans in order) is each point's row in `tensor`;
    `point_counts` the number of points of each scan."""

    tensor: SparseTensor
    inverse: Tensor
    point_counts: tuple[int, ...]


class Segmenter:
    """Labels every point of a lidar scan.

    `config`: a zoo name (`pointengine.models.available()`), a YAML path or a ModelConfig; by default
    the checkpoint's own config, or the zoo's "demo" entry. `checkpoint`: a path or a state dict in
    any layout `pointengine.models.load_checkpoint` reads (our safetensors files, TorchSparse/SPVNAS,
    MinkowskiEngine, spconv); by default the weights that ship with the config. Without either the
    weights are untrained (seeded), `trained` is False and a warning says so. `views` > 1: test-time
    augmentation, each point's class the highest of its class probabilities averaged over the scan
    turned about z by 2 pi k / views, k = 0 .. views - 1 (views passes of the model).
    """

    def __init__(self, config: str | Path | ModelConfig | None = None, checkpoint=None, device="cpu",
                 views: int = 1):
        from .models.checkpoint import checkpoint_config, load_checkpoint

        if isinstance(views, bool) or not isinstance(views, int) or views < 1:
            raise ValueError(f"views must be a positive integer, got {views!r}")
        self.views = views

        saved_config = checkpoint_config(checkpoint) if isinstance(checkpoint, (str, Path)) else None
        if config is None and saved_config is not None:
            config = model_config_from_dict(saved_config, Path(checkpoint).stem, f"{checkpoint} (metadata)")
        elif config is None:
            config = "demo"
        self.config = config if isinstance(config, ModelConfig) else load_model_config(config)
        self.device = torch.device(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # untrained weights are the same in every process
            self.model = build_model(self.config)
        if checkpoint is None:
            checkpoint = self.config.weights
        self.trained = checkpoint is not None
        if self.trained:
            load_checkpoint(self.model, checkpoint)
        else:
            warnings.warn(
                f"model {self.config.name!r} has no trained weights: its labels are meaningless until you give a checkpoint",
                UserWarning,
                stacklevel=2,
            )
        self.model.to(self.device).eval()

    @property
    def class_names(self) -> tuple[str, ...]:
        """Name of each training id (the labels this segmenter returns index it)."""
        return self.config.dataset.classes

    def voxelize(self, scans: list) -> VoxelizedBatch:
        """Scans (each [N, >= 3], numpy or torch, columns as the dataset's point_columns) -> model input."""
        return voxelize_scans(self.config, scans, self.device)

    def preprocess(self, points) -> SparseTensor:
        """The model's input SparseTensor for one scan (or a list of scans, one batch index each)."""
        return self.voxelize(points if isinstance(points, (list, tuple)) else [points]).tensor

    @torch.no_grad()
    def __call__(self, points, return_logits: bool = False):
        """Training ids (int64 [N], index `class_names`) of every point of a scan; for a list of scans, a
        list. With return_logits, (labels, logits [N, num_classes]) per scan, logits in the order of
        `config.dataset.predicted_classes` (with views > 1, the log of the averaged probabilities)."""
        single = not isinstance(points, (list, tuple))
        scans = [points] if single else list(points)
        if self.views > 1:
            labels, logits = self.averaged_views(scans)
            results = list(zip(labels, logits)) if return_logits else labels
        else:
            batch = self.voxelize(scans)
            voxel_logits = self.model(batch.tensor).feats
            results = list(point_labels(self.config, batch, voxel_logits).split(batch.point_counts))
            if return_logits:
                logits = voxel_logits.float().cpu().index_select(0, batch.inverse)
                results = list(zip(results, logits.split(batch.point_counts)))
        release_free_memory()  # a long run of scans holds its memory flat
        return results[0] if single else results

    @torch.no_grad()
    def averaged_views(self, scans: list, unturned: VoxelizedBatch | None = None) -> tuple[list[Tensor], list[Tensor]]:
        """Labels and log mean probabilities of each scan's points over the `views` turned views (the
        first is the scans as they are: `unturned`, their voxelize() on this segmenter's device, when
        the caller has it already)."""
        columns = [_as_tensor(scan, "points" if len(scans) == 1 else f"scan {i}") for i, scan in enumerate(scans)]
        total = None
        for k in range(self.views):
            if k == 0:
                batch = unturned if unturned is not None else self.voxelize(columns)
            else:
                batch = self.voxelize([turned_about_z(c, 2 * math.pi * k / self.views) for c in columns])
            probabilities = self.model(batch.tensor).feats.float().softmax(1).cpu().index_select(0, batch.inverse)
            total = probabilities if total is None else total + probabilities
        mean = total / self.views
        counts = [c.shape[0] for c in columns]
        return list(best_classes(self.config, mean).split(counts)), list(mean.log().split(counts))


def turned_about_z(points: Tensor, angle: float) -> Tensor:
    """A copy of points [N, >= 3] with x and y turned by `angle` (radians) about the z axis."""
    out = points.clone()
    cos, sin = math.cos(angle), math.sin(angle)
    x, y = points[:, 0].double(), points[:, 1].double()
    out[:, 0] = (cos * x - sin * y).to(points.dtype)
    out[:, 1] = (sin * x + cos * y).to(points.dtype)
    return out


def point_labels(config: ModelConfig, batch: VoxelizedBatch, voxel_logits: Tensor) -> Tensor:
    """Training ids (int64, on the CPU) of every point of the batch's scans, in order: each voxel's
    highest logit, carried to its points (the same as each point's highest logit, for a fraction of
    the work: voxels are fewer than points and the logits leave the device once per voxel)."""
    return best_classes(config, voxel_logits).cpu().index_select(0, batch.inverse)


def best_classes(config: ModelConfig, scores: Tensor) -> Tensor:
    """The training id of each row's highest score (rows of `config.dataset.predicted_classes`)."""
    predicted = torch.tensor(config.dataset.predicted_classes, device=scores.device)
    # row_argmax and max(1).indices give argmax(1) (the first of equal maxima) at 0.2x and 0.6x its time
    # on a CPU for rows of 17-20 classes
    best = _ops.row_argmax(scores) if scores.device.type == "cpu" else scores.max(1).indices
    return predicted.index_select(0, best)


def voxelize_scans(config: ModelConfig, scans: list, device="cpu") -> VoxelizedBatch:
    """The model input of `config` for scans (each [N, >= 3], numpy or torch, columns as the
    dataset's point_columns), scan j at batch index j: Segmenter's and training's one voxelization."""
    if not scans:
        raise ValueError("no scans to segment")
    names = ["points"] if len(scans) == 1 else [f"scan {i}" for i in range(len(scans))]
    columns = [_columns(config, scan, name) for scan, name in zip(scans, names)]
    counts = tuple(c.shape[0] for c in columns)
    if len(columns) == 1:  # one scan: no copy into a batch, batch index 0 throughout
        points, batch = columns[0], None
    else:
        points, batch = torch.cat(columns), torch.repeat_interleave(torch.arange(len(columns)), torch.tensor(counts))
    voxels = voxelize_points(points, config.voxel_size, config.reduce, batch, config.quantization)
    first = _first_feature_column(config)
    tensor = voxels.to_sparse(voxels.feats[:, first : first + config.in_channels].contiguous()).to(device)
    return VoxelizedBatch(tensor, voxels.inverse, counts)


def _first_feature_column(config: ModelConfig) -> int:
    """Where the input channels start in the rows _columns makes: 0 when they begin with x, y, z unscaled
    (those columns then serve as both: reduced alike, they give the same values), else 3."""
    unscaled_xyz = config.features[:3] == ("x", "y", "z") and config.feature_scale[:3] == (1.0, 1.0, 1.0)
    return 0 if unscaled_xyz else 3


def _columns(config: ModelConfig, scan, name: str) -> Tensor:
    """[N, 3 + F]: x, y, z, then the config's input channels, scaled (float32); the channels that
    _first_feature_column shares with x, y, z are not repeated, and a scan whose columns are already
    these is used as it is, without a copy."""
    points = _as_tensor(scan, name)
    columns = config.feature_columns
    needed = max(columns) + 1
    if points.shape[1] < needed:
        names = list(config.dataset.point_columns[:needed])
        raise ValueError(f"{name}: model {config.name!r} reads columns {names}, got {points.shape[1]} columns")
    first = _first_feature_column(config)
    scale = config.feature_scale[3 - first :]
    rest = list(columns[3 - first :])
    if rest == list(range(3, 3 + len(rest))) and all(factor == 1.0 for factor in scale):
        return points[:, : 3 + len(rest)]
    return torch.cat([points[:, :3], points[:, rest] * torch.tensor(scale, dtype=points.dtype)], 1)


def _as_tensor(scan, name: str) -> Tensor:
    if isinstance(scan, np.ndarray):
        if not np.issubdtype(scan.dtype, np.floating):
            raise ValueError(f"{name} must be floating point, got numpy {scan.dtype}")
        scan = torch.from_numpy(np.ascontiguousarray(scan))
    if not isinstance(scan, Tensor):
        raise TypeError(f"{name} must be a numpy array or a torch.Tensor, got {type(scan).__name__}")
    if not scan.is_floating_point():
        raise ValueError(f"{name} must be floating point, got {scan.dtype}")
    if scan.dim() != 2 or scan.shape[1] < 3:
        raise ValueError(f"{name} must have shape [N, >= 3] (x, y, z, ...), got {list(scan.shape)}")
    if scan.shape[0] == 0:
        raise ValueError(f"{name} is empty: no points to segment")
    if not all_finite(scan):
        raise ValueError(f"{name} contains NaN or inf values")
    return scan.float().cpu()
