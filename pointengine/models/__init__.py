"""Networks, the model zoo and checkpoints."""

from .checkpoint import LoadReport, checkpoint_config, load_checkpoint, save_checkpoint
from .config import ModelConfig, load_model_config
from .minkunet import MinkUNet
from .registry import available, build_model
from .spvcnn import SPVCNN

__all__ = [
    "LoadReport",
    "MinkUNet",
    "ModelConfig",
    "SPVCNN",
    "available",
    "build_model",
    "checkpoint_config",
    "load_checkpoint",
    "load_model_config",
    "save_checkpoint",
]
