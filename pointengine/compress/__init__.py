"""Compression and deployment: inference-form models (`optimize`)."""

from .optimize import optimize

__all__ = ["optimize"]
