"""pointengine: sparse point-cloud inference for lidar."""

import os

# The kernels read this to cap their vector ISA (csrc/cpu/conv_tile.h); a typo would silently mean
# no cap, so it is checked here, before the extension is loaded.
CPU_PATH_MAX = os.environ.get("POINTENGINE_CPU_PATH_MAX")
if CPU_PATH_MAX not in (None, "portable", "avx2", "avx512", "amx"):
    raise ValueError(f"POINTENGINE_CPU_PATH_MAX must be portable, avx2, avx512 or amx, got {CPU_PATH_MAX!r}")

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
