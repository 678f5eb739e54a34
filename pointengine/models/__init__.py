"""Networks, the model zoo, and checkpoints (ours and the peers')."""

from .checkpoint import LoadReport, load_checkpoint, save_checkpoint
from .minkunet import MinkUNet
from .registry import available, build_model, load_config

__all__ = ["LoadReport", "MinkUNet", "available", "build_model", "load_checkpoint", "load_config", "save_checkpoint"]
