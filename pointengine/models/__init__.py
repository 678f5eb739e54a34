"""Networks and the model zoo."""

from .config import ModelConfig, load_model_config
from .minkunet import MinkUNet
from .registry import available, build_model

__all__ = ["MinkUNet", "ModelConfig", "available", "build_model", "load_model_config"]
