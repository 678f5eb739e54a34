"""Networks and the model zoo."""

from .minkunet import MinkUNet
from .registry import available, build_model, load_config
from .spvcnn import SPVCNN

__all__ = ["MinkUNet", "SPVCNN", "available", "build_model", "load_config"]
