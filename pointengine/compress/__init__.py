"""Compression and deployment: inference-form models (`optimize`) and exported programs (`export_model`)."""

from .export import PlainTensorModel, export_model
from .optimize import optimize

__all__ = ["PlainTensorModel", "export_model", "optimize"]
