"""BatchNorm over the features of a SparseTensor (each site is one sample). Under data-parallel
training the statistics are those of the global batch (see `batch_norm_features`)."""

import torch
import torch.distributed as dist
from torch import Tensor

from ..tensor import SparseTensor


class BatchNorm(torch.nn.BatchNorm1d):
    """torch.nn.BatchNorm1d applied to feats [N, C]; the parameters and running statistics keep
    torch's names, so checkpoints and BN folding read them as usual."""

    def forward(self, input: SparseTensor) -> SparseTensor:
        return input.replace_feats(batch_norm_features(self, input.feats))


def batch_norm_features(module: torch.nn.BatchNorm1d, feats: Tensor) -> Tensor:
    """`module` on feats [N, C]. While training in a process group of several ranks, the mean and
    variance are taken over the rows of every rank (torch.nn.SyncBatchNorm refuses CPU tensors), with
    autograd-aware all-reduces so the gradient flows across ranks as it would in one process."""
    if not (module.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return torch.nn.BatchNorm1d.forward(module, feats)
    count = torch.tensor([float(feats.shape[0])], dtype=feats.dtype, device=feats.device)
    dist.all_reduce(count)
    mean = _AllReduceSum.apply(feats.sum(0)) / count
    centred = feats - mean
    var = _AllReduceSum.apply((centred * centred).sum(0)) / count
    out = centred * torch.rsqrt(var + module.eps)
    if module.affine:
        out = out * module.weight + module.bias
    if module.track_running_stats:
        with torch.no_grad():
            module.num_batches_tracked.add_(1)
            factor = module.momentum if module.momentum is not None else 1.0 / float(module.num_batches_tracked)
            unbiased = var * (count / (count - 1).clamp(min=1))
            module.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
            module.running_var.mul_(1 - factor).add_(unbiased.detach(), alpha=factor)
    return out


class _AllReduceSum(torch.autograd.Function):
    """The sum over ranks, every rank getting it; the gradient of each rank's input is the sum of the
    ranks' output gradients. (torch.distributed.nn.functional.all_reduce does the same but is deprecated
    for torch.distributed._functional_collectives, a private module.)"""

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return _AllReduceSum.apply(grad)


class GlobalBatchNorm1d(torch.nn.BatchNorm1d):
    """torch.nn.BatchNorm1d with the global-batch statistics of `batch_norm_features` (same state)."""

    def forward(self, input: Tensor) -> Tensor:
        return batch_norm_features(self, input)
