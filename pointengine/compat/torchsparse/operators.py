"""torchsparse.cat: channel concatenation of tensors on the same sites."""

from ... import nn as pe_nn
from .tensor import SparseTensor, as_compat


def cat(inputs, *more) -> SparseTensor:
    """cat([a, b, ...]) as TorchSparse takes it (a list); cat(a, b, ...) works too."""
    tensors = list(inputs) if not more and isinstance(inputs, (list, tuple)) else [inputs, *more]
    return as_compat(pe_nn.cat(*tensors))
