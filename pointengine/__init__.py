"""pointengine: sparse point-cloud inference for lidar."""

from . import functional, nn
from .coordinate_map import CoordinateMap
from .tensor import SparseTensor, sparse_collate

__version__ = "0.1.0"

__all__ = ["CoordinateMap", "SparseTensor", "__version__", "functional", "nn", "sparse_collate"]
