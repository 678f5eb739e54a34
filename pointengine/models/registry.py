"""Model zoo: a variant is a YAML file of constructor arguments plus `model:` naming the class.

`build_model("minkunet_cr1.0")` reads models/minkunet_cr1.0.yaml at the repository top;
`build_model("some/path.yaml")` reads that file.
"""

from pathlib import Path

import torch

from ..config_files import available_configs, read_config
from .minkunet import MinkUNet
from .spvcnn import SPVCNN

MODELS: dict[str, type[torch.nn.Module]] = {"minkunet": MinkUNet, "spvcnn": SPVCNN}


def available() -> list[str]:
    """Names of the configs in the zoo folder."""
    return available_configs("models")


def load_config(name_or_path: str | Path) -> dict:
    """The config of a zoo name, or of a YAML file path."""
    path, config = read_config(name_or_path, "models", "model")
    if not isinstance(config, dict) or config.get("model") not in MODELS:
        got = config.get("model") if isinstance(config, dict) else config
        raise ValueError(f"{path}: `model` must be one of {sorted(MODELS)}, got {got!r}")
    return config


def build_model(name_or_path: str | Path) -> torch.nn.Module:
    """A freshly initialised model from its config (load weights separately)."""
    config = dict(load_config(name_or_path))
    return MODELS[config.pop("model")](**config)
