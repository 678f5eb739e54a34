"""torchsparse.utils: sparse_quantize (utils.quantize) and sparse_collate / sparse_collate_fn
(utils.collate)."""

from .. import _unsupported
from . import collate, quantize
from .collate import sparse_collate, sparse_collate_fn
from .quantize import sparse_quantize

__getattr__ = _unsupported.unsupported_getattr(
    "torchsparse.utils",
    {
        "make_ntuple": "pass an int or a tuple of three; pointengine's layers take either",
        "to_dense": "use SparseTensor.dense() (with spatial_range) or pointengine.nn.ToDense",
        "tune": "pointengine picks each conv's dataflow per layer (Conv3d.dataflow); there is no global autotuner state",
    },
)

__all__ = ["collate", "quantize", "sparse_collate", "sparse_collate_fn", "sparse_quantize"]
