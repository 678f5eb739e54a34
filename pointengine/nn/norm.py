"""BatchNorm over the features of a SparseTensor (each site is one sample). Under data-parallel
training the statistics are those of the global batch (see `batch_norm_features`)."""

import torch
import torch.distributed as dist
from torch import Tensor

from .. import _ops
from .._checks import tracing
from ..tensor import SparseTensor


class BatchNorm(torch.nn.BatchNorm1d):
    """torch.nn.BatchNorm1d applied to feats [N, C]; the parameters and running statistics keep
    torch's names, so checkpoints and BN folding read them as usual."""

    def forward(self, input: SparseTensor) -> SparseTensor:
        return input.replace_feats(batch_norm_features(self, input.feats))

    def forward_relu(self, input: SparseTensor) -> SparseTensor:
        """relu(self(input)): in one pass over the feats, with its backward, where a training step on
        the CPU runs the fused kernel."""
        return input.replace_feats(batch_norm_features(self, input.feats, relu=True))

    def forward_add_relu(self, input: SparseTensor, residual: SparseTensor) -> SparseTensor:
        """relu(self(input) + residual), the end of a residual block: in one pass over the feats, with
        its backward, where a training step on the CPU runs the fused kernel."""
        return input.replace_feats(batch_norm_features(self, input.feats, relu=True, residual=residual.feats))


def batch_norm_features(
    module: torch.nn.BatchNorm1d, feats: Tensor, relu: bool = False, residual: Tensor | None = None
) -> Tensor:
    """`module` on feats [N, C], plus `residual` [N, C] when given, then a ReLU if `relu`. While
    training in a process group of several ranks, the mean and variance are taken over the rows of
    every rank (torch.nn.SyncBatchNorm refuses CPU tensors), with autograd-aware all-reduces so the
    gradient flows across ranks as it would in one process. Training in one process on the CPU runs
    pointengine's fused kernel."""
    if module.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        out = _global_batch_norm(module, feats)
    elif _fused_kernel_applies(module, feats, residual):
        out, mean, var = _ops.batch_norm_train(feats, module.weight, module.bias, module.eps, relu, residual)
        _update_running_stats(module, mean, var * (feats.shape[0] / (feats.shape[0] - 1)))
        return out
    else:
        out = torch.nn.BatchNorm1d.forward(module, feats)
    if residual is not None:
        out = out + residual
    return out.relu_() if relu else out


def _fused_kernel_applies(module: torch.nn.BatchNorm1d, feats: Tensor, residual: Tensor | None = None) -> bool:
    """Training statistics of CPU float rows [N > 1, C], weight and bias of the feats' dtype, a residual
    (if any) of the feats' shape and dtype (other cases, and tracing, keep torch's batch norm, with its
    errors)."""
    return (
        module.training
        and module.affine
        and feats.device.type == "cpu"
        and feats.dtype in (torch.float32, torch.float64)
        and feats.dim() == 2
        and feats.shape[0] > 1
        and feats.shape[1] == module.num_features
        and module.weight.dtype == feats.dtype
        and (residual is None or (residual.shape == feats.shape and residual.dtype == feats.dtype
                                  and residual.device == feats.device))
        and not tracing()
    )


def _update_running_stats(module: torch.nn.BatchNorm1d, mean: Tensor, unbiased_var: Tensor) -> None:
    """torch's update from one batch's mean and unbiased variance: running = (1 - factor) * running +
    factor * batch."""
    if not module.track_running_stats:
        return
    with torch.no_grad():
        module.num_batches_tracked.add_(1)
        factor = module.momentum if module.momentum is not None else 1.0 / float(module.num_batches_tracked)
        module.running_mean.mul_(1 - factor).add_(mean.detach().to(module.running_mean.dtype), alpha=factor)
        module.running_var.mul_(1 - factor).add_(unbiased_var.detach().to(module.running_var.dtype), alpha=factor)


def _global_batch_norm(module: torch.nn.BatchNorm1d, feats: Tensor) -> Tensor:
    count = torch.tensor([float(feats.shape[0])], dtype=feats.dtype, device=feats.device)
    dist.all_reduce(count)
    mean = _AllReduceSum.apply(feats.sum(0)) / count
    centred = feats - mean
    var = _AllReduceSum.apply((centred * centred).sum(0)) / count
    out = centred * torch.rsqrt(var + module.eps)
    if module.affine:
        out = out * module.weight + module.bias
    _update_running_stats(module, mean, var * (count / (count - 1).clamp(min=1)))
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
