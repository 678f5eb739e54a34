"""Global pooling: one row per batch index, over all the sites of that batch."""

from torch import Tensor

from ..tensor import SparseTensor


def _per_batch(input: SparseTensor, reduce: str) -> Tensor:
    if not isinstance(input, SparseTensor):
        raise TypeError(f"input must be a SparseTensor, got {type(input).__name__}")
    feats = input.feats
    batch = input.coords[:, 0].long()
    index = batch[:, None].expand_as(feats)
    out = feats.new_zeros(input.batch_size, feats.shape[1])
    # include_self=False: a batch index with no sites stays 0 rather than mixing in the initial zeros.
    return out.scatter_reduce(0, index, feats, reduce, include_self=False)


def global_avg_pool(input: SparseTensor) -> Tensor:
    """[B, C]: the mean of the features of each batch index (0 for a batch index without sites)."""
    return _per_batch(input, "mean")


def global_max_pool(input: SparseTensor) -> Tensor:
    """[B, C]: the maximum of the features of each batch index (0 for a batch index without sites)."""
    return _per_batch(input, "amax")
