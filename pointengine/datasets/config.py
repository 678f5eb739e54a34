"""Dataset configs: class names, colours, the raw -> training label map and its inverse, and what the
columns of a scan hold.

Three YAML layouts are read: pointengine's own (datasets/*.yaml), the one semantic-kitti-api publishes
(`labels`, `color_map` in BGR, `learning_map`, `learning_map_inv`, `learning_ignore`), and the
nuScenes-lidarseg mapping files (`labels`, `labels_16`, `learning_map`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

import torch
from torch import Tensor

from ..config_files import read_config
from .published import from_nuscenes_lidarseg, from_semantic_kitti_api

OWN_FIELDS = ("name", "classes", "colors", "ignore_index", "raw_names", "learning_map", "learning_map_inv",
              "point_columns")


@dataclass(frozen=True)
class DatasetConfig:
    """classes[i] and colors[i] (RGB) describe training id i; learning_map sends each raw id to a
    training id and learning_map_inv each training id back to the raw id written in label files;
    raw_names names the raw ids. Labels equal to ignore_index count for nothing. point_columns names
    the columns of this dataset's scan files (x, y, z first). splits (optional) names the sequences of
    each official split, e.g. {"train": ("00", ...), "val": ("08",), "test": ("11", ...)}."""

    name: str
    classes: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    ignore_index: int
    raw_names: dict[int, str]
    learning_map: dict[int, int]
    learning_map_inv: dict[int, int]
    point_columns: tuple[str, ...]
    splits: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def predicted_classes(self) -> tuple[int, ...]:
        """The training ids a model predicts, in logit order: every class but the ignored one."""
        return tuple(i for i in range(self.num_classes) if i != self.ignore_index)

    @cached_property
    def lookup(self) -> Tensor:
        """int64 [max raw id + 1]: the training id of each raw id, -1 for ids the map does not know."""
        table = torch.full((max(self.learning_map) + 1,), -1, dtype=torch.int64)
        table[list(self.learning_map)] = torch.tensor(list(self.learning_map.values()))
        return table

    def map_labels(self, raw: Tensor) -> Tensor:
        """Training ids (int64) of raw label ids; an id the map does not know raises a ValueError."""
        raw = raw.long()
        inside = raw.clamp(0, self.lookup.numel() - 1)
        mapped = self.lookup.index_select(0, inside)
        unknown = (mapped < 0) | (inside != raw)
        if bool(unknown.any()):
            ids = raw[unknown].unique().tolist()
            raise ValueError(f"raw labels {ids[:10]} are not in the learning_map of {self.name}")
        return mapped

    def raw_labels(self, train: Tensor) -> Tensor:
        """Raw label ids (int64) of training ids, through learning_map_inv."""
        table = torch.tensor([self.learning_map_inv[i] for i in range(self.num_classes)], dtype=torch.int64)
        return table.index_select(0, train.long().cpu())

    def to_dict(self) -> dict:
        """The fields as plain YAML/JSON types (the own layout), e.g. for a checkpoint's metadata."""
        fields = asdict(self)
        fields["classes"], fields["point_columns"] = list(self.classes), list(self.point_columns)
        fields["colors"] = [list(c) for c in self.colors]
        fields["splits"] = {name: list(members) for name, members in self.splits.items()}
        return fields


def load_dataset_config(name_or_path: str | Path) -> DatasetConfig:
    """The config named `name_or_path` in datasets/ (e.g. "semantickitti"), or the YAML file at that
    path in any of the three layouts."""
    path, raw = read_config(name_or_path, "datasets", "dataset")
    return dataset_config_from_dict(raw, path.stem, str(path))


def dataset_config_from_dict(raw, default_name: str, where: str) -> DatasetConfig:
    """A DatasetConfig from parsed YAML/JSON in any of the three layouts; `where` names the source in errors."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: a dataset config must be a mapping, got {type(raw).__name__}")
    if "color_map" in raw and "learning_map_inv" in raw:
        raw = from_semantic_kitti_api(raw, default_name, where)
    elif "labels_16" in raw:
        raw = from_nuscenes_lidarseg(raw, default_name, where)
    missing = [field for field in OWN_FIELDS if field not in raw]
    if missing:
        raise ValueError(
            f"{where}: not a dataset config: missing {missing} (expected pointengine's layout, semantic-kitti-api's "
            "(labels, color_map, learning_map, learning_map_inv) or nuScenes-lidarseg's (labels, labels_16, learning_map))"
        )
    try:
        config = DatasetConfig(
            name=str(raw["name"]),
            classes=tuple(str(c) for c in raw["classes"]),
            colors=tuple(tuple(int(v) for v in c) for c in raw["colors"]),
            ignore_index=int(raw["ignore_index"]),
            raw_names={int(k): str(v) for k, v in raw["raw_names"].items()},
            learning_map={int(k): int(v) for k, v in raw["learning_map"].items()},
            learning_map_inv={int(k): int(v) for k, v in raw["learning_map_inv"].items()},
            point_columns=tuple(str(c) for c in raw["point_columns"]),
            splits={str(name): tuple(str(m) for m in members) for name, members in (raw.get("splits") or {}).items()},
        )
    except (TypeError, ValueError, AttributeError) as error:
        raise ValueError(f"{where}: malformed dataset config ({error})") from None
    _check(config, where)
    return config


def _check(config: DatasetConfig, where: str) -> None:
    if len(config.colors) != config.num_classes or any(len(c) != 3 for c in config.colors):
        raise ValueError(
            f"{where}: colors must hold one RGB triple per class ({config.num_classes}), got {len(config.colors)}"
        )
    if not 0 <= config.ignore_index < config.num_classes:
        raise ValueError(
            f"{where}: ignore_index must be a class id in [0, {config.num_classes - 1}], got {config.ignore_index}"
        )
    if set(config.learning_map) != set(config.raw_names):
        raise ValueError(
            f"{where}: learning_map and raw_names must cover the same raw ids, differing in "
            f"{sorted(set(config.learning_map) ^ set(config.raw_names))}"
        )
    bad = {raw: train for raw, train in config.learning_map.items() if not 0 <= train < config.num_classes}
    if bad:
        raise ValueError(
            f"{where}: learning_map sends raw ids to training ids outside [0, {config.num_classes - 1}]: {bad}"
        )
    if set(config.learning_map_inv) != set(range(config.num_classes)):
        raise ValueError(f"{where}: learning_map_inv must give a raw id for every training id 0..{config.num_classes - 1}")
    wrong = {t: r for t, r in config.learning_map_inv.items() if config.learning_map.get(r) != t}
    if wrong:
        raise ValueError(f"{where}: learning_map_inv sends training ids to raw ids that do not map back: {wrong}")
    if config.point_columns[:3] != ("x", "y", "z"):
        raise ValueError(f"{where}: point_columns must start with x, y, z, got {list(config.point_columns)}")
