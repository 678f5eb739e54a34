"""Model configs: everything a checkpoint needs to reproduce its training pipeline.

A zoo entry is a YAML file in models/ (see models/README.md for the fields): the architecture and its
width, the dataset config (label map, class names, colours, scan columns), the voxel size, the
quantization rule, how the points of a voxel become its feature row, the input channels and their
scaling, and optionally the weights that ship with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ..config_files import read_config
from ..datasets.config import DatasetConfig, dataset_config_from_dict, load_dataset_config
from ..functional.pointvoxel import QUANTIZATIONS, REDUCTIONS

FIELDS = ("architecture", "cr", "dataset", "voxel_size", "quantization", "reduce", "features", "feature_scale")


@dataclass(frozen=True)
class ModelConfig:
    """The model is `architecture` at channel ratio `cr`, with one input channel per entry of `features`
    (names of the dataset's point columns, each multiplied by its `feature_scale`) and one logit per
    class of `dataset.predicted_classes`. Points become voxels of `voxel_size` metres by `quantization`
    ("floor": floor(xyz / size); "round_shift": round(xyz / size) minus its per-scan minimum, as SPVNAS),
    each voxel's features by `reduce` ("first", "mean" or "max"). `weights`: a checkpoint shipped with
    the config, or None (untrained)."""

    name: str
    architecture: str
    cr: float
    dataset: DatasetConfig
    voxel_size: float
    quantization: str
    reduce: str
    features: tuple[str, ...]
    feature_scale: tuple[float, ...]
    weights: Path | None = None

    @property
    def in_channels(self) -> int:
        return len(self.features)

    @property
    def num_classes(self) -> int:
        return len(self.dataset.predicted_classes)

    @property
    def feature_columns(self) -> tuple[int, ...]:
        """The column of a scan (in the dataset's point_columns) that each input channel reads."""
        return tuple(self.dataset.point_columns.index(f) for f in self.features)

    def to_dict(self) -> dict:
        """Plain YAML/JSON types, the dataset config included in full (a checkpoint carries this)."""
        return {
            "name": self.name,
            "architecture": self.architecture,
            "cr": self.cr,
            "dataset": self.dataset.to_dict(),
            "voxel_size": self.voxel_size,
            "quantization": self.quantization,
            "reduce": self.reduce,
            "features": list(self.features),
            "feature_scale": list(self.feature_scale),
        }


def load_model_config(name_or_path: str | Path) -> ModelConfig:
    """The zoo config NAME (models/NAME.yaml), or the config at a .yaml path."""
    path, raw = read_config(name_or_path, "models", "model")
    return model_config_from_dict(raw, path.stem, str(path), path.parent)


def model_config_from_dict(raw, name: str, where: str, folder: Path | None = None) -> ModelConfig:
    """A ModelConfig from parsed YAML/JSON; `where` names the source in errors, `folder` is where a
    relative `weights` path starts."""
    from .registry import MODELS

    if not isinstance(raw, dict):
        raise ValueError(f"{where}: a model config must be a mapping, got {type(raw).__name__}")
    missing = [field for field in FIELDS if field not in raw]
    if missing:
        raise ValueError(f"{where}: model config is missing {missing}")
    if raw["architecture"] not in MODELS:
        raise ValueError(f"{where}: `architecture` must be one of {sorted(MODELS)}, got {raw['architecture']!r}")
    dataset = raw["dataset"]
    if isinstance(dataset, dict):
        dataset = dataset_config_from_dict(dataset, str(dataset.get("name", name)), f"{where} (dataset)")
    else:
        dataset = load_dataset_config(dataset)
    weights = raw.get("weights")
    config = ModelConfig(
        name=str(raw.get("name", name)),
        architecture=raw["architecture"],
        cr=_positive(raw["cr"], "cr", where),
        dataset=dataset,
        voxel_size=_positive(raw["voxel_size"], "voxel_size", where),
        quantization=_one_of(raw["quantization"], QUANTIZATIONS, "quantization", where),
        reduce=_one_of(raw["reduce"], REDUCTIONS, "reduce", where),
        features=tuple(str(f) for f in raw["features"]),
        feature_scale=tuple(_finite(v, "feature_scale", where) for v in raw["feature_scale"]),
        weights=None if weights is None else (folder or Path.cwd()) / weights,
    )
    unknown = [f for f in config.features if f not in dataset.point_columns]
    if unknown:
        raise ValueError(f"{where}: features {unknown} are not columns of {dataset.name} {list(dataset.point_columns)}")
    if len(config.feature_scale) != len(config.features):
        raise ValueError(
            f"{where}: feature_scale needs one factor per feature ({len(config.features)}), got {len(config.feature_scale)}"
        )
    return config


def _finite(value, field: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: {field} must hold finite numbers, got {value!r}")
    return float(value)


def _positive(value, field: str, where: str) -> float:
    if _finite(value, field, where) <= 0:
        raise ValueError(f"{where}: {field} must be > 0, got {value!r}")
    return float(value)


def _one_of(value, choices: tuple[str, ...], field: str, where: str) -> str:
    if value not in choices:
        raise ValueError(f"{where}: {field} must be one of {choices}, got {value!r}")
    return value
