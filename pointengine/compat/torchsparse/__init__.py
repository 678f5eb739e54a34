"""TorchSparse 2.x's user API on pointengine's types: SparseTensor, PointTensor, cat, nn, utils.

Coordinates follow TorchSparse 2.1: int [N, 4] = (batch, x, y, z), each level in its own grid
(pointengine's own convention). TorchSparse 2.0 put the batch last; see
docs/porting_from_torchsparse.md for that and every other difference.
"""

from . import nn, utils
from ._unsupported import unsupported_getattr
from .operators import cat
from .tensor import PointTensor, SparseTensor

__version__ = "2.1.0"

__getattr__ = unsupported_getattr(
    "torchsparse",
    {
        "backends": "kernel choices are per layer in pointengine (Conv3d's dataflow), there are no global switches",
        "backend": "TorchSparse's compiled extension has no counterpart; pointengine's ops are in pointengine._ops",
        "tune": "pointengine picks each conv's dataflow per layer (Conv3d.dataflow); there is no global autotuner state",
    },
)

__all__ = ["PointTensor", "SparseTensor", "cat", "nn", "utils", "__version__"]
