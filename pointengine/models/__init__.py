"""Networks and the model zoo."""

from .minkunet import MinkUNet
from .registry import available, build_model, load_config

__all__ = ["MinkUNet", "available", "build_model", "load_config"]
