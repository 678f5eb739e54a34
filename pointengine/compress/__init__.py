"""Compression and deployment: inference-form models (`optimize`), structured channel pruning (`prune`)
and exported programs (`export_model`)."""

from .export import PlainTensorModel, export_model
from .optimize import optimize
from .prune import prune

__all__ = ["PlainTensorModel", "export_model", "optimize", "prune"]
