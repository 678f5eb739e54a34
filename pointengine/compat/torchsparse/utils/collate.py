"""torchsparse.utils.collate: a batch from samples, as TorchSparse 2.1 builds it."""

import numpy as np
import torch

from ..tensor import SparseTensor, as_int32_coords, as_torch


def sparse_collate(inputs: list) -> SparseTensor:
    """One SparseTensor from samples with coords [N_k, 3]: sample k's rows get the batch index k in
    a new first column, (batch, x, y, z) (TorchSparse 2.0 appended it last)."""
    if not inputs:
        raise ValueError("sparse_collate needs at least one SparseTensor")
    stride = inputs[0].stride
    coords, feats = [], []
    for k, x in enumerate(inputs):
        if not isinstance(x, SparseTensor) or not x.is_sample():
            raise ValueError(
                f"sparse_collate: input {k} must be a torchsparse SparseTensor of one sample, coords [N, 3] (x, y, z); "
                f"got {type(x).__name__} with coords {list(x.coords.shape) if hasattr(x, 'coords') else '?'}"
            )
        if x.stride != stride:
            raise ValueError(f"sparse_collate: input {k} has stride {x.stride}, input 0 {stride}")
        xyz = as_int32_coords(x.coords)
        coords.append(torch.cat([torch.full_like(xyz[:, :1], k), xyz], 1))
        feats.append(as_torch(x.feats, "feats"))
    return SparseTensor(torch.cat(feats), torch.cat(coords), stride)


def sparse_collate_fn(inputs: list):
    """Collates a list of dicts key by key: SparseTensors by sparse_collate, tensors and numpy
    arrays stacked (a new first dimension), dicts recursively, anything else into a list. A list of
    anything but dicts comes back as it is."""
    if not inputs or not isinstance(inputs[0], dict):
        return inputs
    output = {}
    for name, first in inputs[0].items():
        values = [sample[name] for sample in inputs]
        if isinstance(first, dict):
            output[name] = sparse_collate_fn(values)
        elif isinstance(first, np.ndarray):
            output[name] = torch.stack([torch.from_numpy(np.ascontiguousarray(v)) for v in values])
        elif isinstance(first, torch.Tensor):
            output[name] = torch.stack(values)
        elif isinstance(first, SparseTensor):
            output[name] = sparse_collate(values)
        else:
            output[name] = values
    return output
