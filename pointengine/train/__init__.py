"""Training: `pointengine train` and `pointengine.train.train` (loop.py), data-parallel under torchrun."""

from .loop import EpochRecord, train
from .settings import TrainSettings, new_settings, resumed_settings
from .state import TrainState, load_train_state

__all__ = ["EpochRecord", "TrainSettings", "TrainState", "load_train_state", "new_settings", "resumed_settings", "train"]
