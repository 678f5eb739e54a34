"""pointengine: sparse point-cloud inference for lidar."""

from . import compress, datasets, functional, nn
from .compress import optimize
from .coordinate_map import CoordinateMap
from .functional.pointvoxel import Voxels, devoxelize, voxelize_points
from .profiler import profile
from .segment import Segmenter
from .tensor import PointTensor, SparseTensor, sparse_collate
from .tune import tune

__version__ = "0.1.0"

__all__ = [
    "CoordinateMap",
    "PointTensor",
    "Segmenter",
    "SparseTensor",
    "Voxels",
    "__version__",
    "compress",
    "datasets",
    "devoxelize",
    "functional",
    "nn",
    "optimize",
    "profile",
    "sparse_collate",
    "tune",
    "voxelize_points",
]
