"""torchsparse.nn (import it as spnn): Conv3d with TorchSparse's `kernel`, the norms, activations,
pools and crop, and `functional`."""

from .. import _unsupported
from . import functional
from .conv import Conv3d
from .modules import BatchNorm, GlobalAvgPool, GlobalMaxPool, GroupNorm, InstanceNorm, LeakyReLU, ReLU, SiLU, SparseCrop

_BEV = "bird's-eye-view layers are not implemented; pointengine.nn.ToDense gives the dense grid to reduce"
__getattr__ = _unsupported.unsupported_getattr(
    "torchsparse.nn",
    {
        "ToBEVConvolution": _BEV,
        "ToBEVReduction": _BEV,
        "ToDenseBEVConvolution": _BEV,
        "ToBEVHeightCompression": _BEV,
        "LayerNorm": "not implemented; apply torch.nn.LayerNorm to x.F and x.replace_feats(...)",
    },
)

__all__ = [
    "BatchNorm", "Conv3d", "GlobalAvgPool", "GlobalMaxPool", "GroupNorm", "InstanceNorm", "LeakyReLU", "ReLU", "SiLU",
    "SparseCrop", "functional",
]
