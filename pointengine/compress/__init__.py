"""Compression and deployment: inference-form models (`optimize`), channel pruning (`prune`), int8 and
bfloat16 models (`quantize`) and exported programs (`export_model`)."""

from .export import PlainTensorModel, export_model
from .optimize import optimize
from .prune import prune
from .quantize import quantize

__all__ = ["PlainTensorModel", "export_model", "optimize", "prune", "quantize"]
