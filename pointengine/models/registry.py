"""Model zoo: a variant is a YAML file of constructor arguments plus `model:` naming the class.

`build_model("minkunet_cr1.0")` reads models/minkunet_cr1.0.yaml at the repository top;
`build_model("some/path.yaml")` reads that file.
"""

from pathlib import Path

import torch
import yaml

from .minkunet import MinkUNet

MODELS: dict[str, type[torch.nn.Module]] = {"minkunet": MinkUNet}
ZOO = Path(__file__).resolve().parents[2] / "models"


def available() -> list[str]:
    """Names of the configs in the zoo folder."""
    return sorted(p.stem for p in ZOO.glob("*.yaml"))


def load_config(name_or_path: str | Path) -> dict:
    """The config of a zoo name, or of a YAML file path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = ZOO / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ValueError(f"unknown model {name_or_path!r}: expected one of {available()} or a .yaml path")
    if not path.is_file():
        raise ValueError(f"model config {str(path)!r} does not exist")
    config = yaml.safe_load(path.read_text())
    if not isinstance(config, dict) or config.get("model") not in MODELS:
        got = config.get("model") if isinstance(config, dict) else config
        raise ValueError(f"{path}: `model` must be one of {sorted(MODELS)}, got {got!r}")
    return config


def build_model(name_or_path: str | Path) -> torch.nn.Module:
    """A freshly initialised model from its config (load weights separately)."""
    config = dict(load_config(name_or_path))
    return MODELS[config.pop("model")](**config)
