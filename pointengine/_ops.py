"""Typed wrappers over torch.ops.pointengine.*, with their fake kernels and autograd formulas.

Inputs are validated by the callers (tensor.py, coordinate_map.py, functional/); the C++ kernels
only keep one TORCH_CHECK backstop each.
"""

import weakref

import torch
from torch import Tensor
from torch.utils.weak import WeakTensorKeyDictionary

from . import _C  # noqa: F401  (loads the library that registers torch.ops.pointengine)
from ._checks import tracing

_ops = torch.ops.pointengine


def hash_build(coords: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Table (keys int64[cap], vals int32[cap]) of int32 [N, 4] coords, and the number of repeats
    (int64 [], on the coords' device: reading it is a wait for the device)."""
    return _ops.hash_build(coords)


def hash_query(keys: Tensor, vals: Tensor, coords: Tensor) -> Tensor:
    """Row index of each coordinate in the table, or -1."""
    return _ops.hash_query(keys, vals, coords)


def unique_coords(coords: Tensor) -> Tensor:
    """Distinct rows of int32 [N, 4] coords, sorted by (batch, x, y, z)."""
    return _ops.unique_coords(coords)


def unique_coords_inverse(coords: Tensor) -> tuple[Tensor, Tensor]:
    """unique_coords of CPU coords, and int32 [N] the row of the result each row of coords equals."""
    return _ops.unique_coords_inverse(coords)


def row_argmax(values: Tensor) -> Tensor:
    """int64 [N]: the column of each CPU row's largest value, as max(1).indices gives it (the first
    of equal maxima, the first NaN)."""
    return _ops.row_argmax(values)


def voxel_coords(
    points: Tensor, voxel_size: tuple[float, float, float], batch: Tensor, n_batches: int, round_shift: bool
) -> tuple[Tensor, Tensor]:
    """(int32 [N, 4] rows (batch, voxel x, y, z) of CPU points, float64 [2, 3] the lowest and highest
    voxel coordinate of each axis before any clamping to int32): floor(xyz / voxel_size), or with
    round_shift round (halves to even) minus the minimum over each batch index."""
    return _ops.voxel_coords(points, list(voxel_size), batch, n_batches, round_shift)


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


def tile_pairs(nbr: Tensor, n_in: int) -> tuple[Tensor, Tensor]:
    """(pairs int32 [2, P], ptr int64 [T * K + 1]): the CPU table nbr [N_out, K]'s pairs (on n_in input
    rows) compacted tile by tile as conv_fused's CPU kernels read them, for the layers sharing a map."""
    return _ops.tile_pairs(nbr, n_in)


def conv_fused(feats: Tensor, weight: Tensor, nbr: Tensor, tiles: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """Output-stationary convolution: out[o] = sum_k feats[nbr[o, k]] @ weight[k]. `tiles`: the table's
    tile_pairs, which the CPU kernels then read instead of compacting the table (the same result)."""
    return _ops.conv_fused(feats, weight, nbr, *(tiles or (None, None)))


def conv_fused_epilogue(
    feats: Tensor, weight: Tensor, nbr: Tensor, bias: Tensor | None, residual: Tensor | None, relu: bool,
    tiles: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """relu?(conv_fused(feats, weight, nbr) + bias + residual) in one pass over the output tiles (bias
    [C_out] and residual [N_out, C_out] optional; `tiles` as for conv_fused)."""
    return _ops.conv_fused_epilogue(feats, weight, nbr, bias, residual, relu, *(tiles or (None, None)))


def conv_implicit_gemm(feats: Tensor, weight: Tensor, nbr: Tensor, order: Tensor | None = None) -> Tensor:
    """conv_fused's result by the GPU's implicit GEMM on the tensor cores (float16 and bfloat16; other
    dtypes, the CPU and channel counts not a multiple of 8 take conv_fused). order int32 [M]: the
    output rows in the order the GPU's tiles take them (KernelMap.row_order)."""
    return _ops.conv_implicit_gemm(feats, weight, nbr, order)


def point_scatter_mean(feats: Tensor, index: Tensor, n_voxels: int) -> Tensor:
    """[n_voxels, C]: row v is the mean of feats[i] over the points with index[i] = v (0 where none)."""
    return _ops.point_scatter_mean(feats, index, n_voxels)


def trilinear_table(
    keys: Tensor, vals: Tensor, corners: Tensor, coords: Tensor, stride: tuple[int, int, int], nearest: bool
) -> tuple[Tensor, Tensor]:
    """(index int32 [N, 8], weights [N, 8]): the voxel rows around each point at coords / stride and
    their normalised trilinear weights (csrc/cpu/trilinear_table_cpu.cpp). corners: the sites'
    2x2x2 neighbour table [M, 8]."""
    return _ops.trilinear_table(keys, vals, corners, coords, list(stride), nearest)


def trilinear_gather(feats: Tensor, index: Tensor, weights: Tensor, base: Tensor | None = None) -> Tensor:
    """[N, C]: out[i] = base[i] + sum_j weights[i, j] * feats[index[i, j]] over the corners with
    index >= 0 (base: 0 when None)."""
    return _ops.trilinear_gather(feats, index, weights, base)


def trilinear_gather_add_(base: Tensor, feats: Tensor, index: Tensor, weights: Tensor) -> Tensor:
    """trilinear_gather with `base` written in place (contiguous; no autograd). Returns base."""
    _ops.trilinear_gather_add_(base, feats, index, weights)
    return base


def trilinear_gather_backward(grad_out: Tensor, index: Tensor, weights: Tensor, n_voxels: int) -> Tensor:
    """[n_voxels, C]: the adjoint of trilinear_gather, each voxel summing its weighted point rows."""
    return _ops.trilinear_gather_backward(grad_out, index, weights, n_voxels)


def linear(input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """input [N, in] @ weight[out, in]^T + bias, each element summed in one order for any thread count."""
    return _ops.linear(input, weight, bias)


def conv_int8(
    q_feats: Tensor,
    in_scale: float,
    in_zero: int,
    weight: Tensor,
    weight_scale: Tensor,
    nbr: Tensor,
    bias: Tensor | None,
    residual: Tensor | None,
    relu: bool,
    out_scale: float | None = None,
    out_zero: int = 0,
    tiles: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """Inference convolution on 7-bit activations and 8-bit weights (csrc/cpu/conv_int8_cpu.cpp).
    q_feats uint8 [N_in, C_in] in [0, 127] stands for in_scale * (q_feats - in_zero); weight int8
    [K, C_in, C_out] in [-127, 127] for weight_scale[c] * weight (weight_scale float32 [C_out]). The
    exact int32 sums, times in_scale * weight_scale, plus bias [C_out] and residual [N_out, C_out]
    (float32, optional), through a ReLU when relu: float32 [N_out, C_out]; with out_scale, requantized to
    uint8 clamp(round(v / out_scale) + out_zero, 0, 127) (ties to even), what the next int8 layer reads.
    `tiles`: the table's tile_pairs, as for conv_fused. No autograd."""
    return _ops.conv_int8(
        q_feats, in_scale, in_zero, weight, weight_scale, nbr, bias, residual, relu, out_scale, out_zero,
        *(tiles or (None, None)),
    )


def quantize_u7(x: Tensor, scale: float, zero: int) -> Tensor:
    """uint8 [N, C] = clamp(round(x / scale) + zero, 0, 127), ties to even, of float32 [N, C] x (NaN refused):
    the 7-bit activations conv_int8 reads."""
    return _ops.quantize_u7(x, scale, zero)


def transpose_table(nbr: Tensor, n_rows: int) -> Tensor:
    """The table read the other way: result[i, k] = o where nbr[o, k] = i (each (i, k) hit at most once)."""
    if nbr.device.type == "cpu":
        return _ops.transpose_table(nbr, n_rows)  # 5x the scatter below on a scan's table
    # One scatter with no nonzero() (which would wait for the device): entries -1 write into one
    # spare slot past the end, dropped after; every other slot has one writer.
    m, k = nbr.shape
    spare = n_rows * k
    slot = torch.where(nbr >= 0, nbr.long() * k + torch.arange(k, device=nbr.device), spare)
    rows = torch.arange(m, dtype=nbr.dtype, device=nbr.device)[:, None].expand(m, k)
    out = torch.full((spare + 1,), -1, dtype=nbr.dtype, device=nbr.device)
    out.scatter_(0, slot.view(-1), rows.reshape(-1))
    return out[:spare].view(n_rows, k)


def conv_weight_grad(feats: Tensor, grad_out: Tensor, nbr: Tensor) -> Tensor:
    """[K, C_in, C_out]: d(loss)/d(weight)[k] = sum over o with i = nbr[o, k] >= 0 of feats[i]^T grad_out[o]."""
    return _ops.conv_weight_grad(feats, grad_out, nbr)


def conv_weight_grad_pairs(feats: Tensor, grad_out: Tensor, in_rows: Tensor, out_rows: Tensor, ptr: Tensor) -> Tensor:
    """conv_weight_grad from the table's pair lists (kernel_pairs), on the CPU: the same bits."""
    return _ops.conv_weight_grad_pairs(feats, grad_out, in_rows, out_rows, ptr)


def batch_norm_train(
    x: Tensor, weight: Tensor, bias: Tensor, eps: float, relu: bool, residual: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """(y, mean, var) of BatchNorm in training mode over the rows of CPU x [N > 1, C], plus `residual`
    [N, C] when given, then a ReLU if `relu`: y = relu?((x - mean) / sqrt(var + eps) * weight + bias +
    residual); mean and the biased variance per channel, in float64 (not differentiable)."""
    return _ops.batch_norm_train(x, weight, bias, eps, relu, residual)


# The tables a convolution's backward derives from its neighbour table (the transpose, the pair
# lists), kept while the table lives and is not modified: the backward passes of every layer sharing
# a kernel map read one build of them.
_backward_tables = WeakTensorKeyDictionary()
# Transposes known without a build (a strided map and the transposed map built from it), held
# weakly: each table is the other's key, and strong references would keep both alive for ever.
_remembered_transposes = WeakTensorKeyDictionary()
# The neighbour tables whose transpose is the table itself with its offsets reversed (odd-sized
# submanifold maps), with their version when marked.
_mirrored_tables = WeakTensorKeyDictionary()


def _keeps(nbr: Tensor) -> bool:
    # fake and functional tensors hold no data to keep; inference tensors (torch.inference_mode) have no
    # version counter, and no backward can read them
    return not tracing() and type(nbr) is torch.Tensor and not nbr.is_inference()


def _backward_table(nbr: Tensor, name: tuple, build) -> Tensor | tuple[Tensor, ...]:
    if not _keeps(nbr):
        return build()
    tables = _backward_tables.setdefault(nbr, {})
    version, table = tables.get(name, (None, None))
    if version != nbr._version:
        table = build()
        tables[name] = nbr._version, table
    return table


def remember_transpose(nbr: Tensor, n_rows: int, transposed: Tensor) -> None:
    """Records `transposed` as transpose_table(nbr, n_rows), for the backward to read instead of
    building it, while both tables live unmodified."""
    if _keeps(nbr) and _keeps(transposed):
        _remembered_transposes[nbr] = n_rows, weakref.ref(transposed), (nbr._version, transposed._version)


def _transposed(nbr: Tensor, n_rows: int) -> Tensor:
    """transpose_table(nbr, n_rows): the remembered one if it still holds, else one build per table."""
    remembered = _remembered_transposes.get(nbr) if _keeps(nbr) else None
    if remembered is not None:
        rows, ref, versions = remembered
        table = ref()
        if rows == n_rows and table is not None and versions == (nbr._version, table._version):
            return table
    return _backward_table(nbr, ("transpose", n_rows), lambda: transpose_table(nbr, n_rows))


def mark_mirrored(nbr: Tensor) -> None:
    """Records that nbr [N, K] (N rows in and out) is its own transpose with the offsets reversed,
    transpose_table(nbr, N)[:, k] = nbr[:, K - 1 - k], as an odd-sized submanifold map is: its input
    gradient then reads nbr with the weight's offsets reversed, and no transposed table is built."""
    if _keeps(nbr):
        _mirrored_tables[nbr] = nbr._version


def _is_mirrored(nbr: Tensor) -> bool:
    return _keeps(nbr) and _mirrored_tables.get(nbr) == nbr._version


@torch.library.register_fake("pointengine::hash_build")
def _(coords):
    cap = torch.library.get_ctx().new_dynamic_size()
    return coords.new_empty(cap, dtype=torch.int64), coords.new_empty(cap), coords.new_empty((), dtype=torch.int64)


@torch.library.register_fake("pointengine::transpose_table")
def _(nbr, n_rows):
    return nbr.new_empty(n_rows, nbr.shape[1])


@torch.library.register_fake("pointengine::hash_query")
def _(keys, vals, coords):
    return coords.new_empty(coords.shape[0])


@torch.library.register_fake("pointengine::unique_coords")
def _(coords):
    # Rows in, at least one row out: what lets a traced model use the count without branching on 0.
    rows = torch.library.get_ctx().new_dynamic_size(min=1) if coords.shape[0] > 0 else 0
    return coords.new_empty(rows, 4)


@torch.library.register_fake("pointengine::unique_coords_inverse")
def _(coords):
    rows = torch.library.get_ctx().new_dynamic_size(min=1) if coords.shape[0] > 0 else 0
    return coords.new_empty(rows, 4), coords.new_empty(coords.shape[0])


@torch.library.register_fake("pointengine::row_argmax")
def _(values):
    return values.new_empty(values.shape[0], dtype=torch.int64)


@torch.library.register_fake("pointengine::neighbor_table")
def _(keys, vals, out_coords, offsets, stride, transposed, submanifold):
    return out_coords.new_empty(out_coords.shape[0], offsets.shape[0])


@torch.library.register_fake("pointengine::kernel_pairs")
def _(nbr):
    pairs = torch.library.get_ctx().new_dynamic_size()
    return nbr.new_empty(pairs), nbr.new_empty(pairs), nbr.new_empty(nbr.shape[1] + 1, dtype=torch.int64)


# Output rows per tile of the CPU kernels (kTileRows, csrc/cpu/conv_tile.h): tile_pairs makes a list per
# tile and offset.
_TILE_ROWS = 128


@torch.library.register_fake("pointengine::tile_pairs")
def _(nbr, n_in):
    pairs = torch.library.get_ctx().new_dynamic_size()
    tiles = (nbr.shape[0] + _TILE_ROWS - 1) // _TILE_ROWS
    return nbr.new_empty(2, pairs), nbr.new_empty(tiles * nbr.shape[1] + 1, dtype=torch.int64)


@torch.library.register_fake("pointengine::conv_fused")
def _(feats, weight, nbr, tile_pairs=None, tile_ptr=None):
    return feats.new_empty(nbr.shape[0], weight.shape[2])


@torch.library.register_fake("pointengine::conv_fused_epilogue")
def _(feats, weight, nbr, bias, residual, relu, tile_pairs=None, tile_ptr=None):
    return feats.new_empty(nbr.shape[0], weight.shape[2])


@torch.library.register_fake("pointengine::conv_implicit_gemm")
def _(feats, weight, nbr, order=None):
    return feats.new_empty(nbr.shape[0], weight.shape[2])


@torch.library.register_fake("pointengine::conv_weight_grad")
def _(feats, grad_out, nbr):
    return feats.new_empty(nbr.shape[1], feats.shape[1], grad_out.shape[1])


@torch.library.register_fake("pointengine::conv_weight_grad_pairs")
def _(feats, grad_out, in_rows, out_rows, ptr):
    return feats.new_empty(ptr.shape[0] - 1, feats.shape[1], grad_out.shape[1])


@torch.library.register_fake("pointengine::conv_int8")
def _(q_feats, in_scale, in_zero, weight, weight_scale, nbr, bias, residual, relu, out_scale=None, out_zero=0,
      tile_pairs=None, tile_ptr=None):
    dtype = torch.float32 if out_scale is None else torch.uint8
    return q_feats.new_empty(nbr.shape[0], weight.shape[2], dtype=dtype)


@torch.library.register_fake("pointengine::quantize_u7")
def _(x, scale, zero):
    return x.new_empty(x.shape, dtype=torch.uint8)


def _conv_fused_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)  # feats, weight, nbr, tile_pairs, tile_ptr (defaults filled in)


def _conv_implicit_gemm_setup(ctx, inputs, output):
    feats, weight, nbr, _ = inputs  # the row order does not change the result
    ctx.save_for_backward(feats, weight, nbr, None, None)


def _conv_fused_backward(ctx, grad_out):
    feats, weight, nbr, *tiles = ctx.saved_tensors
    return *_conv_grads(ctx, feats, weight, nbr, tiles, grad_out.contiguous()), None, None


def _conv_grads(ctx, feats: Tensor, weight: Tensor, nbr: Tensor, tiles: list, grad_out: Tensor) -> tuple:
    """(grad feats, grad weight, None for nbr) of out = sum_k feats[nbr[:, k]] @ weight[k]; `tiles`: the
    table's tile_pairs given to the forward, or Nones."""
    grad_feats = grad_weight = None
    if ctx.needs_input_grad[0]:
        # The adjoint reads the same pairs from the input side, with each W[k] transposed: a mirrored
        # table is its own adjoint's, and so are its tile lists.
        if _is_mirrored(nbr):
            lists = tuple(tiles) if tiles[0] is not None else None
            grad_feats = conv_fused(grad_out, weight.flip(0).transpose(1, 2).contiguous(), nbr, lists)
        else:
            grad_feats = conv_fused(grad_out, weight.transpose(1, 2).contiguous(), _transposed(nbr, feats.shape[0]))
    if ctx.needs_input_grad[1]:
        if nbr.device.type == "cpu":
            pairs = _backward_table(nbr, ("pairs",), lambda: kernel_pairs(nbr))
            grad_weight = conv_weight_grad_pairs(feats, grad_out, *pairs)
        else:
            grad_weight = conv_weight_grad(feats, grad_out, nbr)
    return grad_feats, grad_weight, None


def _conv_fused_epilogue_setup(ctx, inputs, output):
    feats, weight, nbr, _, _, relu, tile_pairs, tile_ptr = inputs  # defaults filled in
    ctx.relu = relu
    ctx.save_for_backward(feats, weight, nbr, output if relu else None, tile_pairs, tile_ptr)


def _conv_fused_epilogue_backward(ctx, grad_out):
    feats, weight, nbr, output, *tiles = ctx.saved_tensors
    if ctx.relu:
        grad_out = grad_out * (output > 0)
    grad_out = grad_out.contiguous()
    grad_bias = grad_out.sum(0) if ctx.needs_input_grad[3] else None
    grad_residual = grad_out if ctx.needs_input_grad[4] else None
    return *_conv_grads(ctx, feats, weight, nbr, tiles, grad_out), grad_bias, grad_residual, None, None, None


def _conv_implicit_gemm_backward(ctx, grad_out):
    return *_conv_fused_backward(ctx, grad_out)[:3], None


torch.library.register_autograd("pointengine::conv_fused", _conv_fused_backward, setup_context=_conv_fused_setup)
torch.library.register_autograd(
    "pointengine::conv_fused_epilogue", _conv_fused_epilogue_backward, setup_context=_conv_fused_epilogue_setup
)
torch.library.register_autograd(
    "pointengine::conv_implicit_gemm", _conv_implicit_gemm_backward, setup_context=_conv_implicit_gemm_setup
)


@torch.library.register_fake("pointengine::batch_norm_train")
def _(x, weight, bias, eps, relu, residual=None):
    return torch.empty_like(x), x.new_empty(x.shape[1], dtype=torch.float64), x.new_empty(x.shape[1], dtype=torch.float64)


@torch.library.register_fake("pointengine::batch_norm_train_backward")
def _(grad_y, x, y, mean, var, weight, eps, relu, masked_grad=False, bias=None):
    masked = torch.empty_like(x) if masked_grad else x.new_empty(0)
    return torch.empty_like(x), weight.new_empty(weight.shape), weight.new_empty(weight.shape), masked


def _batch_norm_train_setup(ctx, inputs, output):
    x, weight, bias, ctx.eps, ctx.relu, residual = inputs
    ctx.residual = residual is not None
    y, mean, var = output
    ctx.mark_non_differentiable(mean, var)
    # A ReLU's mask is read from y after a residual; without one the kernel recomputes it from x and
    # bias, and reads a row less per element.
    masked_by_y = ctx.relu and ctx.residual
    ctx.save_for_backward(x, y if masked_by_y else None, mean, var, weight, bias if ctx.relu else None)


def _batch_norm_train_backward(ctx, grad_y, grad_mean, grad_var):
    x, y, mean, var, weight, bias = ctx.saved_tensors
    grad_y = grad_y.contiguous()
    # The residual's gradient is what reaches the sum before the ReLU: the kernel writes it in its
    # first pass.
    masked_grad = ctx.residual and ctx.relu
    grad_x, grad_weight, grad_bias, masked = _ops.batch_norm_train_backward(
        grad_y, x, y, mean, var, weight, ctx.eps, ctx.relu, masked_grad, bias
    )
    grad_residual = (masked if ctx.relu else grad_y) if ctx.residual else None
    return grad_x, grad_weight, grad_bias, None, None, grad_residual


torch.library.register_autograd(
    "pointengine::batch_norm_train", _batch_norm_train_backward, setup_context=_batch_norm_train_setup
)


@torch.library.register_fake("pointengine::voxel_coords")
def _(points, voxel_size, batch, n_batches, round_shift):
    return batch.new_empty(points.shape[0], 4), points.new_empty(2, 3, dtype=torch.float64)


@torch.library.register_fake("pointengine::point_scatter_mean")
def _(feats, index, n_voxels):
    return feats.new_empty(n_voxels, feats.shape[1])


@torch.library.register_fake("pointengine::trilinear_table")
def _(keys, vals, corners, coords, stride, nearest):
    return coords.new_empty(coords.shape[0], 8, dtype=torch.int32), coords.new_empty(coords.shape[0], 8)


@torch.library.register_fake("pointengine::trilinear_gather")
def _(feats, index, weights, base=None):
    return feats.new_empty(index.shape[0], feats.shape[1])


@torch.library.register_fake("pointengine::trilinear_gather_add_")
def _(base, feats, index, weights):
    return None


@torch.library.register_fake("pointengine::trilinear_gather_backward")
def _(grad_out, index, weights, n_voxels):
    return grad_out.new_empty(n_voxels, grad_out.shape[1])


def _point_scatter_mean_setup(ctx, inputs, output):
    _, index, n_voxels = inputs
    ctx.save_for_backward(index)
    ctx.n_voxels = n_voxels


def _point_scatter_mean_backward(ctx, grad_out):
    (index,) = ctx.saved_tensors
    # Point i receives grad_out[v] / count[v] of its voxel v; points in no voxel read an extra zero
    # row at n_voxels. Counts are sums of ones, exact whatever the order.
    rows = torch.where(index >= 0, index, ctx.n_voxels).long()
    counts = grad_out.new_zeros(ctx.n_voxels + 1).index_add_(0, rows, grad_out.new_ones(rows.shape[0]))
    per_voxel = torch.cat([grad_out / counts[:-1].clamp(min=1)[:, None], grad_out.new_zeros(1, grad_out.shape[1])])
    return per_voxel.index_select(0, rows), None, None


torch.library.register_autograd(
    "pointengine::point_scatter_mean", _point_scatter_mean_backward, setup_context=_point_scatter_mean_setup
)


def _trilinear_gather_setup(ctx, inputs, output):
    feats, index, weights = inputs[:3]
    if weights.requires_grad:
        # The weights come from the point coordinates, which are not learned: no formula for them.
        raise ValueError("trilinear_gather has no gradient with respect to weights; pass them detached")
    ctx.save_for_backward(index, weights)
    ctx.n_voxels = feats.shape[0]


def _trilinear_gather_backward(ctx, grad_out):
    index, weights = ctx.saved_tensors
    grad_out = grad_out.contiguous()
    grad_feats = trilinear_gather_backward(grad_out, index, weights, ctx.n_voxels) if ctx.needs_input_grad[0] else None
    # needs_input_grad has no entry for a base left out of the call.
    needs_base = len(ctx.needs_input_grad) > 3 and ctx.needs_input_grad[3]
    return grad_feats, None, None, grad_out if needs_base else None


torch.library.register_autograd(
    "pointengine::trilinear_gather", _trilinear_gather_backward, setup_context=_trilinear_gather_setup
)


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
        grad_weight = _dense_weight_grad(input, grad_out)
    if ctx.needs_input_grad[2]:
        # Column sums of grad_out in row order: ones [1, N] @ grad_out.
        grad_bias = linear(grad_out.new_ones(1, grad_out.shape[0]), grad_out.t(), None)[0]
    return grad_input, grad_weight, grad_bias


# Rows per task of a dense layer's weight gradient on the CPU: a split fixed by the row count alone.
_DENSE_GRAD_ROWS = 8192


def _dense_weight_grad(input: Tensor, grad_out: Tensor) -> Tensor:
    """grad_out^T @ input [C_out, C_in]. On the CPU (float32, float64): the weight-gradient kernel of the
    convolution with each block of _DENSE_GRAD_ROWS rows as one "offset" (a thread's task), the blocks'
    sums added in block order: 2-4x faster than the linear call below (the other devices and dtypes),
    whose [C_out, N] x [N, C_in] product splits only the few output rows between threads."""
    if input.device.type != "cpu" or input.dtype not in (torch.float32, torch.float64):
        return linear(grad_out.t(), input.t(), None)
    n = input.shape[0]
    rows = torch.arange(n, dtype=torch.int32)
    ptr = torch.tensor([*range(0, max(n, 1), _DENSE_GRAD_ROWS), n])
    blocks = conv_weight_grad_pairs(input, grad_out, rows, rows, ptr)
    total = blocks[0]
    for block in blocks[1:]:
        total = total + block
    return total.t()


torch.library.register_autograd("pointengine::linear", _linear_backward, setup_context=_linear_setup)


def conv_bf16(
    feats: Tensor,
    weight: Tensor,
    nbr: Tensor,
    bias: Tensor | None,
    residual: Tensor | None,
    relu: bool,
    bf16_out: bool = False,
    tiles: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """Inference convolution in bfloat16: relu?(sum_k feats[nbr[:, k]] @ weight[k] + bias + residual) with
    feats [N_in, C_in] and weight [K, C_in, C_out] bfloat16, summed in float32 as AVX512_BF16's vdpbf16ps
    sums (offset, then input-channel pair); bias [C_out] and residual [N_out, C_out] float32, optional.
    float32 [N_out, C_out], or bfloat16 (rounded to nearest even) when bf16_out. `tiles`: the table's
    tile_pairs, as for conv_fused. No autograd."""
    return _ops.conv_bf16(feats, weight, nbr, bias, residual, relu, bf16_out, *(tiles or (None, None)))


@torch.library.register_fake("pointengine::conv_bf16")
def _(feats, weight, nbr, bias, residual, relu, bf16_out=False, tile_pairs=None, tile_ptr=None):
    return feats.new_empty(nbr.shape[0], weight.shape[2], dtype=torch.bfloat16 if bf16_out else torch.float32)
