"""Dense product whose bits do not depend on the thread count (torch's BLAS splits its sums by the
thread count). The 1x1x1 convolutions and the classifiers of the networks use it, so a network's
output is the same at any thread count."""

import math

import torch
from torch import Tensor

from .. import _ops
from .._checks import check_bias, check_same_device, check_tensor, compute_dtypes, dtype_names


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """input [..., in_features] @ weight[out_features, in_features]^T + bias, as
    torch.nn.functional.linear, for float32 and float64 on the CPU (each output element starts from
    its bias and adds the input channels in ascending order, whatever the number of threads), and
    also float16 and bfloat16 on CUDA (cuBLAS)."""
    check_tensor(input, "input")
    check_tensor(weight, "weight")
    dtypes = compute_dtypes(input.device)
    if input.dtype not in dtypes:
        raise ValueError(f"linear supports {dtype_names(dtypes)} input on {input.device.type}, got {input.dtype}")
    if weight.dtype != input.dtype:
        raise ValueError(f"weight dtype {weight.dtype} differs from input dtype {input.dtype}")
    if input.dim() < 1 or weight.dim() != 2 or weight.shape[1] != input.shape[-1]:
        raise ValueError(
            f"weight must have shape [out_features, {input.shape[-1] if input.dim() else '?'}] for input "
            f"{list(input.shape)} (in_features last), got weight {list(weight.shape)}"
        )
    check_same_device(input=input, weight=weight)
    if bias is not None:
        check_bias(bias, weight.shape[0], input.dtype, "input", input=input)
    # The row count spelled out: -1 cannot be inferred when in_features is 0.
    out = _ops.linear(input.reshape(math.prod(input.shape[:-1]), input.shape[-1]), weight, bias)
    return out.reshape(*input.shape[:-1], weight.shape[0])
