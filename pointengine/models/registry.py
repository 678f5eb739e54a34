"""Model zoo: a variant is a YAML config (models/NAME.yaml, see config.py) naming an architecture here.

`build_model("minkunet_cr1.0")` builds the zoo entry, `build_model("some/path.yaml")` the config at that
path, and `build_model(config)` a ModelConfig already loaded.
"""

from pathlib import Path

import torch

from ..config_files import available_configs
from .config import ModelConfig, load_model_config
from .minkunet import MinkUNet
from .spvcnn import SPVCNN

MODELS: dict[str, type[torch.nn.Module]] = {"minkunet": MinkUNet, "spvcnn": SPVCNN}


def available() -> list[str]:
    """Names of the configs in the zoo."""
    return available_configs("models")


def build_model(config: str | Path | ModelConfig) -> torch.nn.Module:
    """A freshly initialised model of a config (load weights separately)."""
    if not isinstance(config, ModelConfig):
        config = load_model_config(config)
    return MODELS[config.architecture](in_channels=config.in_channels, num_classes=config.num_classes, cr=config.cr)
