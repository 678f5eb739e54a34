"""Dataset configs: class names, colours and the raw -> training label map, read from the YAML files
in the repository's datasets/ folder (or any path with the same fields)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from torch import Tensor

from ..config_files import read_config


@dataclass(frozen=True)
class DatasetConfig:
    """classes[i] and colors[i] (RGB) describe training id i; learning_map sends each raw id to a
    training id; raw_names names the raw ids. Labels equal to ignore_index count for nothing."""

    name: str
    classes: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    ignore_index: int
    raw_names: dict[int, str]
    learning_map: dict[int, int]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

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


def load_dataset_config(name_or_path: str | Path) -> DatasetConfig:
    """The config named `name_or_path` in datasets/ (e.g. "semantickitti"), or the YAML file at that path."""
    path, raw = read_config(name_or_path, "datasets", "dataset")
    config = DatasetConfig(
        name=raw["name"],
        classes=tuple(raw["classes"]),
        colors=tuple(tuple(c) for c in raw["colors"]),
        ignore_index=int(raw["ignore_index"]),
        raw_names={int(k): str(v) for k, v in raw["raw_names"].items()},
        learning_map={int(k): int(v) for k, v in raw["learning_map"].items()},
    )
    _check(config, path)
    return config


def _check(config: DatasetConfig, path: Path) -> None:
    if len(config.colors) != config.num_classes or any(len(c) != 3 for c in config.colors):
        raise ValueError(
            f"{path}: colors must hold one RGB triple per class ({config.num_classes}), got {len(config.colors)}"
        )
    if not 0 <= config.ignore_index < config.num_classes:
        raise ValueError(
            f"{path}: ignore_index must be a class id in [0, {config.num_classes - 1}], got {config.ignore_index}"
        )
    if set(config.learning_map) != set(config.raw_names):
        raise ValueError(
            f"{path}: learning_map and raw_names must cover the same raw ids, differing in "
            f"{sorted(set(config.learning_map) ^ set(config.raw_names))}"
        )
    bad = {raw: train for raw, train in config.learning_map.items() if not 0 <= train < config.num_classes}
    if bad:
        raise ValueError(
            f"{path}: learning_map sends raw ids to training ids outside [0, {config.num_classes - 1}]: {bad}"
        )
