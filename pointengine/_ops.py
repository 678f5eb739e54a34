"""Typed wrappers over torch.ops.pointengine.*, with their fake kernels and autograd formulas.

Inputs are validated by the callers (tensor.py, coordinate_map.py, functional/); the C++ kernels
only keep one TORCH_CHECK backstop each.
"""

import torch
from torch import Tensor

from . import _C  # noqa: F401  (loads the library that registers torch.ops.pointengine)

_ops = torch.ops.pointengine


def hash_build(coords: Tensor) -> tuple[Tensor, Tensor, int]:
    """Table (keys int64[cap], vals int32[cap]) of int32 [N, 4] coords, and the number of repeats."""
    keys, vals, duplicates = _ops.hash_build(coords)
    return keys, vals, int(duplicates)


def hash_query(keys: Tensor, vals: Tensor, coords: Tensor) -> Tensor:
    """Row index of each coordinate in the table, or -1."""
    return _ops.hash_query(keys, vals, coords)


def unique_coords(coords: Tensor) -> Tensor:
    """Distinct rows of int32 [N, 4] coords, sorted by (batch, x, y, z)."""
    return _ops.unique_coords(coords)


def neighbor_table(
    keys: Tensor,
    vals: Tensor,
    out_coords: Tensor,
    offsets: Tensor,
    stride: tuple[int, int, int],
    transposed: bool,
    submanifold: bool,
) -> Tensor:
    """int32 [M, K]: the table row each output site reads through each offset, or -1."""
    return _ops.neighbor_table(keys, vals, out_coords, offsets, list(stride), transposed, submanifold)


def kernel_pairs(nbr: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Pair lists (in_rows, out_rows, ptr int64[K+1]) grouped by offset, from a neighbour table."""
    return _ops.kernel_pairs(nbr)


def conv_fused(feats: Tensor, weight: Tensor, nbr: Tensor) -> Tensor:
    """Output-stationary convolution: out[o] = sum_k feats[nbr[o, k]] @ weight[k]."""
    return _ops.conv_fused(feats, weight, nbr)


def linear(input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """input [N, in] @ weight[out, in]^T + bias, each element summed in one order for any thread count."""
    return _ops.linear(input, weight, bias)


def transpose_table(nbr: Tensor, n_rows: int) -> Tensor:
    """The table read the other way: result[i, k] = o where nbr[o, k] = i (each (i, k) hit at most once)."""
    out = torch.full((n_rows, nbr.shape[1]), -1, dtype=nbr.dtype, device=nbr.device)
    rows, cols = (nbr >= 0).nonzero(as_tuple=True)
    out[nbr[rows, cols].long(), cols] = rows.to(nbr.dtype)
    return out


def weight_grad(feats: Tensor, grad_out: Tensor, nbr: Tensor) -> Tensor:
    """d(loss)/d(weight)[k] = sum over pairs (i, o) of offset k of feats[i]^T grad_out[o]."""
    in_rows, out_rows, ptr = kernel_pairs(nbr)
    bounds = ptr.tolist()
    grads = []
    for k in range(nbr.shape[1]):
        lo, hi = bounds[k], bounds[k + 1]
        # No branch on the pair count (an empty offset gives a zero product): the bounds are
        # data-dependent, and torch.compile / export can trace a check but not a branch.
        torch._check(hi >= lo)
        grads.append(feats.index_select(0, in_rows[lo:hi]).t() @ grad_out.index_select(0, out_rows[lo:hi]))
    return torch.stack(grads)


@torch.library.register_fake("pointengine::hash_build")
def _(coords):
    cap = torch.library.get_ctx().new_dynamic_size()
    return coords.new_empty(cap, dtype=torch.int64), coords.new_empty(cap), coords.new_empty((), dtype=torch.int64)


@torch.library.register_fake("pointengine::hash_query")
def _(keys, vals, coords):
    return coords.new_empty(coords.shape[0])


@torch.library.register_fake("pointengine::unique_coords")
def _(coords):
    return coords.new_empty(torch.library.get_ctx().new_dynamic_size(), 4)


@torch.library.register_fake("pointengine::neighbor_table")
def _(keys, vals, out_coords, offsets, stride, transposed, submanifold):
    return out_coords.new_empty(out_coords.shape[0], offsets.shape[0])


@torch.library.register_fake("pointengine::kernel_pairs")
def _(nbr):
    pairs = torch.library.get_ctx().new_dynamic_size()
    return nbr.new_empty(pairs), nbr.new_empty(pairs), nbr.new_empty(nbr.shape[1] + 1, dtype=torch.int64)


@torch.library.register_fake("pointengine::conv_fused")
def _(feats, weight, nbr):
    return feats.new_empty(nbr.shape[0], weight.shape[2])


def _conv_fused_setup(ctx, inputs, output):
    feats, weight, nbr = inputs
    ctx.save_for_backward(feats, weight, nbr)


def _conv_fused_backward(ctx, grad_out):
    feats, weight, nbr = ctx.saved_tensors
    grad_out = grad_out.contiguous()
    grad_feats = grad_weight = None
    if ctx.needs_input_grad[0]:
        # The adjoint reads the same pairs from the input side, with each W[k] transposed.
        grad_feats = conv_fused(grad_out, weight.transpose(1, 2).contiguous(), transpose_table(nbr, feats.shape[0]))
    if ctx.needs_input_grad[1]:
        grad_weight = weight_grad(feats, grad_out, nbr)
    return grad_feats, grad_weight, None


torch.library.register_autograd("pointengine::conv_fused", _conv_fused_backward, setup_context=_conv_fused_setup)


@torch.library.register_fake("pointengine::linear")
def _(input, weight, bias):
    return input.new_empty(input.shape[0], weight.shape[0])


def _linear_setup(ctx, inputs, output):
    input, weight, _ = inputs
    ctx.save_for_backward(input, weight)


def _linear_backward(ctx, grad_out):
    """Every gradient is a linear call too, so training is as thread-count independent as inference."""
    input, weight = ctx.saved_tensors
    grad_input = grad_weight = grad_bias = None
    if ctx.needs_input_grad[0]:
        grad_input = linear(grad_out, weight.t(), None)  # grad_out @ weight
    if ctx.needs_input_grad[1]:
        grad_weight = linear(grad_out.t(), input.t(), None)  # grad_out^T @ input
    if ctx.needs_input_grad[2]:
        # Column sums of grad_out in row order: ones [1, N] @ grad_out.
        grad_bias = linear(grad_out.new_ones(1, grad_out.shape[0]), grad_out.t(), None)[0]
    return grad_input, grad_weight, grad_bias


torch.library.register_autograd("pointengine::linear", _linear_backward, setup_context=_linear_setup)
