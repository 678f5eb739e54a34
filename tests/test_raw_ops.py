"""The raw ops (torch.ops.pointengine.*, and the _C helpers that force the portable path) are public:
every bad call is a RuntimeError naming the op and the argument, and inputs that used to crash,
hang, overflow or read past a buffer give the right answer or that error. Under `make sanitize`
these run with AddressSanitizer and UndefinedBehaviorSanitizer, which turn any remaining overflow or
stray read into a failure."""

import subprocess
import sys

import pytest
import torch

from pointengine import _C
from pointengine.functional import kernel_offsets

ops = torch.ops.pointengine
INT_MIN, INT_MAX = -(2**31), 2**31 - 1


def rows(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int32).reshape(-1, 4)


def offsets(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int32).reshape(-1, 3)


SITES = rows([0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [1, -3, 2, 5])


def table(coords=SITES):
    keys, vals, _ = ops.hash_build(coords)
    return keys, vals


def packed_key(b: int, x: int, y: int, z: int) -> int:
    """The 64-bit key of a row, written out independently of csrc/common/keys.h."""
    key = (b << 48) | ((x + 32768) << 32) | ((y + 32768) << 16) | (z + 32768)
    return key - 2**64 if key >= 2**63 else key


def neighbor_table(keys, vals, out_coords, offs, stride=(1, 1, 1), transposed=False, submanifold=False):
    return ops.neighbor_table(keys, vals, out_coords, offs, list(stride), transposed, submanifold)


# --- every named check: (call, message) -------------------------------------------------------------

KEYS, VALS = table()
NBR = neighbor_table(KEYS, VALS, SITES, kernel_offsets(3), submanifold=True)
FEATS, WEIGHT = torch.ones(4, 2), torch.ones(27, 2, 3)
GRAD_OUT = torch.ones(4, 3)
PAIRS = ops.kernel_pairs(NBR)

# Point-voxel ops: points at SITES' positions (and one between them), their corners, a corner table.
PFEATS, PINDEX = torch.ones(3, 2), torch.tensor([0, 1, -1], dtype=torch.int32)
CORNERS = neighbor_table(KEYS, VALS, SITES, torch.cartesian_prod(*[torch.arange(2)] * 3).int())
POINTS = torch.tensor([[0, 0.0, 0.0, 0.0], [0, 0.5, 0.25, 0.0], [1, -3.0, 2.0, 5.0]])
CINDEX = torch.tensor([[0, -1, 2, -1, 1, -1, -1, -1]], dtype=torch.int32)
CWEIGHTS = torch.tensor([[0.5, 0, 0.25, 0, 0.25, 0, 0, 0]])

BATCH0 = torch.zeros(2, dtype=torch.int32)

BN_X, BN_VEC = torch.randn(4, 3), torch.ones(3)
BN_STATS = ops.batch_norm_train(BN_X, BN_VEC, BN_VEC, 1e-5, True)  # y, mean, var

BAD_CALLS = {
    "hash_build dtype": (
        lambda: ops.hash_build(SITES.long()),
        r"hash_build: coords must have dtype torch.int32, got torch.int64",
    ),
    "hash_build shape": (
        lambda: ops.hash_build(SITES[:, :3]),
        r"hash_build: coords must have shape \[N, 4\] \(batch, x, y, z\), got \[4, 3\]",
    ),
    "hash_build rank": (lambda: ops.hash_build(SITES.flatten()), r"hash_build: coords must have shape \[N, 4\]"),
    "hash_build range": (
        lambda: ops.hash_build(rows([0, 40000, 0, 0])),
        r"hash_build: 1 rows of coords lie outside the packable range",
    ),
    "hash_build batch": (lambda: ops.hash_build(rows([65535, 0, 0, 0])), r"hash_build: 1 rows of coords lie outside"),
    "hash_query keys dtype": (
        lambda: ops.hash_query(KEYS.int(), VALS, SITES),
        r"hash_query: keys must have dtype torch.int64, got torch.int32",
    ),
    "hash_query vals dtype": (
        lambda: ops.hash_query(KEYS, VALS.long(), SITES),
        r"hash_query: vals must have dtype torch.int32, got torch.int64",
    ),
    "hash_query lengths": (
        lambda: ops.hash_query(KEYS, VALS[:8], SITES),
        r"hash_query: keys and vals must be 1-D of one length, got \[16\] and \[8\]",
    ),
    "hash_query 2-D keys": (
        lambda: ops.hash_query(KEYS[None], VALS[None], SITES),
        r"hash_query: keys and vals must be 1-D",
    ),
    "hash_query empty table": (
        lambda: ops.hash_query(KEYS[:0], VALS[:0], SITES),
        r"hash_query: the table length \(keys, vals\) must be a power of two, as hash_build makes it, got 0",
    ),
    "hash_query length 12": (
        lambda: ops.hash_query(KEYS[:12], VALS[:12], SITES),
        r"hash_query: the table length .* must be a power of two, .* got 12",
    ),
    "hash_query coords": (
        lambda: ops.hash_query(KEYS, VALS, SITES.long()),
        r"hash_query: coords must have dtype torch.int32",
    ),
    "unique_coords dtype": (
        lambda: ops.unique_coords(SITES.float()),
        r"unique_coords: coords must have dtype torch.int32, got torch.float32",
    ),
    "unique_coords shape": (lambda: ops.unique_coords(SITES[:, :2]), r"unique_coords: coords must have shape \[N, 4\]"),
    "unique_coords range": (
        lambda: ops.unique_coords(rows([0, 0, 0, INT_MIN])),
        r"unique_coords: 1 rows of coords lie outside",
    ),
    "unique_coords_inverse dtype": (
        lambda: ops.unique_coords_inverse(SITES.float()),
        r"unique_coords_inverse: coords must have dtype torch.int32, got torch.float32",
    ),
    "unique_coords_inverse range": (
        lambda: ops.unique_coords_inverse(rows([0, 0, 0, INT_MIN])),
        r"unique_coords_inverse: 1 rows of coords lie outside",
    ),
    "neighbor_table empty table": (
        lambda: neighbor_table(KEYS[:0], VALS[:0], SITES, kernel_offsets(3)),
        r"neighbor_table: the table length \(keys, vals\) must be a power of two, as hash_build makes it, got 0",
    ),
    "neighbor_table length 24": (
        lambda: neighbor_table(torch.cat([KEYS, KEYS[:8]]), torch.cat([VALS, VALS[:8]]), SITES, kernel_offsets(3)),
        r"neighbor_table: the table length .* got 24",
    ),
    "neighbor_table keys dtype": (
        lambda: neighbor_table(KEYS.double(), VALS, SITES, kernel_offsets(3)),
        r"neighbor_table: keys must have dtype torch.int64, got torch.float64",
    ),
    "neighbor_table out_coords": (
        lambda: neighbor_table(KEYS, VALS, SITES[:, 1:], kernel_offsets(3)),
        r"neighbor_table: out_coords must have shape \[N, 4\] \(batch, x, y, z\), got \[4, 3\]",
    ),
    "neighbor_table offsets shape": (
        lambda: neighbor_table(KEYS, VALS, SITES, kernel_offsets(3)[:, :2]),
        r"neighbor_table: offsets must have shape \[K, 3\], got \[27, 2\]",
    ),
    "neighbor_table offsets dtype": (
        lambda: neighbor_table(KEYS, VALS, SITES, kernel_offsets(3).long()),
        r"neighbor_table: offsets must have dtype torch.int32, got torch.int64",
    ),
    "neighbor_table stride 0": (
        lambda: neighbor_table(KEYS, VALS, SITES, kernel_offsets(2), (0, 1, 1)),
        r"neighbor_table: stride must be in \[1, 65535\], got \[0, 1, 1\]",
    ),
    "neighbor_table stride -1": (
        lambda: neighbor_table(KEYS, VALS, SITES, kernel_offsets(2), (1, -1, 1), True),
        r"neighbor_table: stride must be in \[1, 65535\], got \[1, -1, 1\]",
    ),
    "neighbor_table stride 2**32": (
        lambda: neighbor_table(KEYS, VALS, SITES, kernel_offsets(2), (2**32,) * 3, True),
        r"neighbor_table: stride must be in \[1, 65535\]",
    ),
    "neighbor_table two strides": (
        lambda: neighbor_table(KEYS, VALS, SITES, kernel_offsets(2), (2, 2)),
        r"neighbor_table: stride must have 3 values, got 2",
    ),
    # INT_MIN with stride -1 once divided by zero after truncation, or overflowed INT_MIN / -1.
    "neighbor_table INT_MIN, stride -1": (
        lambda: neighbor_table(KEYS, VALS, rows([0, INT_MIN, 0, 0]), kernel_offsets(2), (-1, 1, 1), True),
        r"neighbor_table: stride must be in \[1, 65535\], got \[-1, 1, 1\]",
    ),
    "neighbor_table INT_MIN site": (
        lambda: neighbor_table(KEYS, VALS, rows([0, INT_MIN, 0, 0]), kernel_offsets(2), (1, 1, 1), True),
        r"neighbor_table: 1 rows of out_coords lie outside the packable range",
    ),
    "neighbor_table even submanifold": (
        lambda: neighbor_table(KEYS, VALS, SITES, kernel_offsets(2), submanifold=True),
        r"neighbor_table: a submanifold table needs an odd number of offsets, got 8",
    ),
    "neighbor_table submanifold of other sites": (
        lambda: neighbor_table(
            *table(torch.zeros(9, 4, dtype=torch.int32)), SITES, kernel_offsets(3), submanifold=True
        ),
        r"neighbor_table: a submanifold table needs the table of out_coords itself, of length 16 for 4 rows, got 32",
    ),
    "kernel_pairs dtype": (
        lambda: ops.kernel_pairs(NBR.long()),
        r"kernel_pairs: nbr must have dtype torch.int32, got torch.int64",
    ),
    "kernel_pairs rank": (
        lambda: ops.kernel_pairs(NBR.flatten()),
        r"kernel_pairs: nbr must have shape \[N_out, K\], got \[108\]",
    ),
    "transpose_table dtype": (
        lambda: ops.transpose_table(NBR.long(), 4),
        r"transpose_table: nbr must have dtype torch.int32, got torch.int64",
    ),
    "transpose_table row out of range": (
        lambda: ops.transpose_table(torch.tensor([[0, 4], [-1, 1]], dtype=torch.int32), 4),
        r"transpose_table: 1 entries of nbr lie outside \[-1, 4\)",
    ),
    "transpose_table slot named twice": (
        lambda: ops.transpose_table(torch.tensor([[0, 1], [2, 1], [0, -1]], dtype=torch.int32), 4),
        r"transpose_table: nbr names 2 \(input row, offset\) slots more than once",
    ),
    "conv_fused_epilogue bias shape": (
        lambda: ops.conv_fused_epilogue(FEATS, WEIGHT, NBR, torch.ones(4), None, False),
        r"conv_fused_epilogue: bias must have shape \[3\] \(C_out\), got \[4\]",
    ),
    "conv_fused_epilogue bias dtype": (
        lambda: ops.conv_fused_epilogue(FEATS, WEIGHT, NBR, torch.ones(3, dtype=torch.float64), None, False),
        r"conv_fused_epilogue: bias must have dtype torch.float32, got torch.float64",
    ),
    "conv_fused_epilogue residual shape": (
        lambda: ops.conv_fused_epilogue(FEATS, WEIGHT, NBR, None, torch.ones(3, 3), True),
        r"conv_fused_epilogue: residual must have shape \[4, 3\] \(nbr rows, C_out\), got \[3, 3\]",
    ),
    "conv_fused_epilogue weight shape": (
        lambda: ops.conv_fused_epilogue(FEATS, WEIGHT[:8], NBR, None, None, True),
        r"conv_fused_epilogue: weight must have shape \[K, C_in, C_out\] = \[27, 2, C_out\]",
    ),
    "conv_fused feats dtype": (
        lambda: ops.conv_fused(FEATS.half(), WEIGHT.half(), NBR),
        r"conv_fused: feats must be float32 or float64, got torch.float16",
    ),
    "conv_fused weight dtype": (
        lambda: ops.conv_fused(FEATS.double(), WEIGHT, NBR),
        r"conv_fused: weight must have dtype torch.float64, got torch.float32",
    ),
    "conv_fused nbr dtype": (
        lambda: ops.conv_fused(FEATS, WEIGHT, NBR.long()),
        r"conv_fused: nbr must have dtype torch.int32, got torch.int64",
    ),
    "conv_fused feats rank": (
        lambda: ops.conv_fused(FEATS[None], WEIGHT, NBR),
        r"conv_fused: feats must have shape \[N_in, C_in\], got \[1, 4, 2\]",
    ),
    "conv_fused channels": (
        lambda: ops.conv_fused(torch.ones(4, 5), WEIGHT, NBR),
        r"conv_fused: weight must have shape \[K, C_in, C_out\] = \[27, 5, C_out\] \(nbr columns, feats columns\), got \[27, 2, 3\]",
    ),
    "conv_fused kernel volume": (
        lambda: ops.conv_fused(FEATS, WEIGHT[:8], NBR),
        r"conv_fused: weight must have shape \[K, C_in, C_out\] = \[27, 2, C_out\]",
    ),
    "conv_fused row past feats": (
        lambda: ops.conv_fused(FEATS[:3], WEIGHT, NBR),
        r"conv_fused: nbr holds a row index >= the number of feats rows \(3\)",
    ),
    "conv_fused_portable row past feats": (
        lambda: _C.conv_fused_portable(FEATS[:3], WEIGHT, NBR),
        r"conv_fused: nbr holds a row index >= the number of feats rows \(3\)",
    ),
    "conv_weight_grad feats dtype": (
        lambda: ops.conv_weight_grad(FEATS.half(), GRAD_OUT.half(), NBR),
        r"conv_weight_grad: feats must be float32 or float64, got torch.float16",
    ),
    "conv_weight_grad grad_out dtype": (
        lambda: ops.conv_weight_grad(FEATS.double(), GRAD_OUT, NBR),
        r"conv_weight_grad: grad_out must have dtype torch.float64, got torch.float32",
    ),
    "conv_weight_grad nbr dtype": (
        lambda: ops.conv_weight_grad(FEATS, GRAD_OUT, NBR.long()),
        r"conv_weight_grad: nbr must have dtype torch.int32, got torch.int64",
    ),
    "conv_weight_grad grad_out rank": (
        lambda: ops.conv_weight_grad(FEATS, GRAD_OUT[None], NBR),
        r"conv_weight_grad: grad_out must have shape \[N_out, C_out\], got \[1, 4, 3\]",
    ),
    "conv_weight_grad grad_out rows": (
        lambda: ops.conv_weight_grad(FEATS, GRAD_OUT[:3], NBR),
        r"conv_weight_grad: grad_out must have one row per nbr row \(4\), got \[3, 3\]",
    ),
    "conv_weight_grad row past feats": (
        lambda: ops.conv_weight_grad(FEATS[:3], GRAD_OUT, NBR),
        r"conv_weight_grad: nbr holds a row index >= the number of feats rows \(3\)",
    ),
    "conv_weight_grad_portable row past feats": (
        lambda: _C.conv_weight_grad_portable(FEATS[:3], GRAD_OUT, NBR),
        r"conv_weight_grad: nbr holds a row index >= the number of feats rows \(3\)",
    ),
    "conv_weight_grad_pairs in_rows dtype": (
        lambda: ops.conv_weight_grad_pairs(FEATS, GRAD_OUT, PAIRS[0].long(), *PAIRS[1:]),
        r"conv_weight_grad: in_rows must have dtype torch.int32, got torch.int64",
    ),
    "conv_weight_grad_pairs lengths": (
        lambda: ops.conv_weight_grad_pairs(FEATS, GRAD_OUT, PAIRS[0][:-1], *PAIRS[1:]),
        r"conv_weight_grad: in_rows and out_rows must be vectors of one length, got \[\d+\] and \[\d+\]",
    ),
    "conv_weight_grad_pairs empty ptr": (
        lambda: ops.conv_weight_grad_pairs(FEATS, GRAD_OUT, *PAIRS[:2], PAIRS[2][:0]),
        r"conv_weight_grad: ptr must be a vector of K \+ 1 >= 1 entries, got \[0\]",
    ),
    "conv_weight_grad_pairs ptr falls": (
        lambda: ops.conv_weight_grad_pairs(FEATS, GRAD_OUT, *PAIRS[:2], PAIRS[2].flip(0)),
        r"conv_weight_grad: ptr must rise from 0 to the number of pairs \(\d+\)",
    ),
    "conv_weight_grad_pairs ptr past the pairs": (
        lambda: ops.conv_weight_grad_pairs(FEATS, GRAD_OUT, PAIRS[0][:-1], PAIRS[1][:-1], PAIRS[2]),
        r"conv_weight_grad: ptr must rise from 0 to the number of pairs \(\d+\)",
    ),
    "conv_weight_grad_pairs in_rows past feats": (
        lambda: ops.conv_weight_grad_pairs(FEATS[:3], GRAD_OUT, *PAIRS),
        r"conv_weight_grad: in_rows holds a row outside \[0, 3\) \(the feats rows\)",
    ),
    "conv_weight_grad_pairs negative in_rows": (
        lambda: ops.conv_weight_grad_pairs(FEATS, GRAD_OUT, PAIRS[0] - 1, *PAIRS[1:]),
        r"conv_weight_grad: in_rows holds a row outside \[0, 4\) \(the feats rows\)",
    ),
    "conv_weight_grad_pairs out_rows past grad_out": (
        lambda: ops.conv_weight_grad_pairs(FEATS, GRAD_OUT[:3], *PAIRS),
        r"conv_weight_grad: out_rows holds a row outside \[0, 3\) \(the grad_out rows\)",
    ),
    "conv_weight_grad_portable device": (
        lambda: _C.conv_weight_grad_portable(FEATS, GRAD_OUT.to("meta"), NBR),
        r"conv_weight_grad: grad_out must be a CPU tensor, got one on meta",
    ),
    "conv_fused_portable device": (
        lambda: _C.conv_fused_portable(FEATS.to("meta"), WEIGHT, NBR),
        r"conv_fused: feats must be a CPU tensor, got one on meta",
    ),
    "conv_fused_portable nbr device": (
        lambda: _C.conv_fused_portable(FEATS, WEIGHT, NBR.to("meta")),
        r"conv_fused: nbr must be a CPU tensor, got one on meta",
    ),
    "linear input dtype": (
        lambda: ops.linear(FEATS.int(), torch.ones(3, 2), None),
        r"linear: input must be float32 or float64, got torch.int32",
    ),
    "linear weight dtype": (
        lambda: ops.linear(FEATS, torch.ones(3, 2).double(), None),
        r"linear: weight must have dtype torch.float32, got torch.float64",
    ),
    "linear in_features": (
        lambda: ops.linear(FEATS, torch.ones(3, 5), None),
        r"linear: weight must have shape \[out_features, 2\] \(in_features of input \[4, 2\]\), got \[3, 5\]",
    ),
    "linear input rank": (
        lambda: ops.linear(FEATS[0], torch.ones(3, 2), None),
        r"linear: input must have shape \[N, in_features\], got \[2\]",
    ),
    "linear bias shape": (
        lambda: ops.linear(FEATS, torch.ones(3, 2), torch.ones(2)),
        r"linear: bias must have shape \[3\] \(out_features\), got \[2\]",
    ),
    "linear bias dtype": (
        lambda: ops.linear(FEATS, torch.ones(3, 2), torch.ones(3).double()),
        r"linear: bias must have dtype torch.float32, got torch.float64",
    ),
    "point_scatter_mean feats dtype": (
        lambda: ops.point_scatter_mean(PFEATS.int(), PINDEX, 2),
        r"point_scatter_mean: feats must be float32 or float64, got torch.int32",
    ),
    "point_scatter_mean index dtype": (
        lambda: ops.point_scatter_mean(PFEATS, PINDEX.long(), 2),
        r"point_scatter_mean: index must have dtype torch.int32, got torch.int64",
    ),
    "point_scatter_mean index length": (
        lambda: ops.point_scatter_mean(PFEATS, PINDEX[:2], 2),
        r"point_scatter_mean: index must have shape \[3\] \(one entry per feats row\), got \[2\]",
    ),
    "point_scatter_mean index range": (
        lambda: ops.point_scatter_mean(PFEATS, torch.tensor([0, 2, -1], dtype=torch.int32), 2),
        r"point_scatter_mean: 1 index entries lie outside \[-1, 2\)",
    ),
    "point_scatter_mean n_voxels": (
        lambda: ops.point_scatter_mean(PFEATS, PINDEX, -1),
        r"point_scatter_mean: n_voxels must be in \[0, 2147483647\], got -1",
    ),
    "trilinear_table empty table": (
        lambda: ops.trilinear_table(KEYS[:0], VALS[:0], CORNERS, POINTS, [1, 1, 1], False),
        r"trilinear_table: the table length \(keys, vals\) must be a power of two, as hash_build makes it, got 0",
    ),
    "trilinear_table keys dtype": (
        lambda: ops.trilinear_table(KEYS.int(), VALS, CORNERS, POINTS, [1, 1, 1], False),
        r"trilinear_table: keys must have dtype torch.int64, got torch.int32",
    ),
    "trilinear_table corners": (
        lambda: ops.trilinear_table(KEYS, VALS, CORNERS.long(), POINTS, [1, 1, 1], False),
        r"trilinear_table: corners must have dtype torch.int32, got torch.int64",
    ),
    "trilinear_table corners shape": (
        lambda: ops.trilinear_table(KEYS, VALS, CORNERS[:, :4], POINTS, [1, 1, 1], False),
        r"trilinear_table: corners must have shape \[M, 8\], got \[4, 4\]",
    ),
    "trilinear_table coords dtype": (
        lambda: ops.trilinear_table(KEYS, VALS, CORNERS, POINTS.int(), [1, 1, 1], False),
        r"trilinear_table: coords must be float32 or float64, got torch.int32",
    ),
    "trilinear_table coords shape": (
        lambda: ops.trilinear_table(KEYS, VALS, CORNERS, POINTS[:, :3], [1, 1, 1], False),
        r"trilinear_table: coords must have shape \[N, 4\] \(batch, x, y, z\), got \[3, 3\]",
    ),
    "trilinear_table stride 0": (
        lambda: ops.trilinear_table(KEYS, VALS, CORNERS, POINTS, [1, 0, 1], False),
        r"trilinear_table: stride must be in \[1, 65535\], got \[1, 0, 1\]",
    ),
    "trilinear_table stride 2**32": (
        lambda: ops.trilinear_table(KEYS, VALS, CORNERS, POINTS, [2**32] * 3, False),
        r"trilinear_table: stride must be in \[1, 65535\]",
    ),
    "trilinear_table batch": (
        lambda: ops.trilinear_table(KEYS, VALS, CORNERS, torch.tensor([[0, 0.0, 0, 0], [0.5, 0, 0, 0]]), [1] * 3, False),
        r"trilinear_table: 1 coords rows have a non-finite value, a batch that is not an integer",
    ),
    "trilinear_table NaN": (
        lambda: ops.trilinear_table(KEYS, VALS, CORNERS, torch.tensor([[0, float("nan"), 0, 0]]), [1] * 3, False),
        r"trilinear_table: 1 coords rows have a non-finite value",
    ),
    "trilinear_table row past corners": (
        lambda: ops.trilinear_table(KEYS, VALS, CORNERS[:1], torch.tensor([[1, -3.0, 2.0, 5.0]]), [1] * 3, False),
        r"trilinear_table: 1 coords rows .* or a site whose table row is past the corners rows",
    ),
    "trilinear_gather feats dtype": (
        lambda: ops.trilinear_gather(FEATS.half(), CINDEX, CWEIGHTS.half()),
        r"trilinear_gather: feats must be float32 or float64, got torch.float16",
    ),
    "trilinear_gather weights dtype": (
        lambda: ops.trilinear_gather(FEATS, CINDEX, CWEIGHTS.double()),
        r"trilinear_gather: weights must have dtype torch.float32, got torch.float64",
    ),
    "trilinear_gather index shape": (
        lambda: ops.trilinear_gather(FEATS, CINDEX[:, :4], CWEIGHTS),
        r"trilinear_gather: index must have shape \[N, 8\], got \[1, 4\]",
    ),
    "trilinear_gather rows": (
        lambda: ops.trilinear_gather(FEATS, CINDEX, CWEIGHTS.expand(2, 8)),
        r"trilinear_gather: index and weights must have one row per point \(1\), got \[1, 8\] and \[2, 8\]",
    ),
    "trilinear_gather index range": (
        lambda: ops.trilinear_gather(FEATS[:2], CINDEX, CWEIGHTS),
        r"trilinear_gather: 1 index entries lie outside \[-1, 2\)",
    ),
    "trilinear_gather base": (
        lambda: ops.trilinear_gather(FEATS, CINDEX, CWEIGHTS, FEATS[:2]),
        r"trilinear_gather: base must have one row per index row \(1\), got \[2, 2\]",
    ),
    "trilinear_gather base columns": (
        lambda: ops.trilinear_gather(FEATS, CINDEX, CWEIGHTS, torch.ones(1, 3)),
        r"trilinear_gather: base must have shape \[N, C\] \(C: feats columns\), got \[1, 3\]",
    ),
    "trilinear_gather_portable device": (
        lambda: _C.trilinear_gather_portable(FEATS, CINDEX.to("meta"), CWEIGHTS),
        r"trilinear_gather: index must be a CPU tensor, got one on meta",
    ),
    "trilinear_gather_add_ base layout": (
        lambda: ops.trilinear_gather_add_(torch.zeros(1, 4)[:, ::2], FEATS, CINDEX, CWEIGHTS),
        r"trilinear_gather_add_: base must be contiguous \(it is written in place\)",
    ),
    "trilinear_gather_add_ base rows": (
        lambda: ops.trilinear_gather_add_(torch.zeros(2, 2), FEATS, CINDEX, CWEIGHTS),
        r"trilinear_gather_add_: base must have one row per index row \(1\), got \[2, 2\]",
    ),
    "trilinear_gather_backward grad dtype": (
        lambda: ops.trilinear_gather_backward(torch.ones(1, 2, dtype=torch.int64), CINDEX, CWEIGHTS, 4),
        r"trilinear_gather_backward: grad_out must be float32 or float64, got torch.int64",
    ),
    "trilinear_gather_backward rows": (
        lambda: ops.trilinear_gather_backward(torch.ones(2, 2), CINDEX, CWEIGHTS, 4),
        r"trilinear_gather_backward: index and weights must have one row per point \(2\), got \[1, 8\] and \[1, 8\]",
    ),
    "trilinear_gather_backward index range": (
        lambda: ops.trilinear_gather_backward(torch.ones(1, 2), CINDEX, CWEIGHTS, 2),
        r"trilinear_gather_backward: 1 index entries lie outside \[-1, 2\)",
    ),
    "trilinear_gather_backward n_voxels": (
        lambda: ops.trilinear_gather_backward(torch.ones(1, 2), CINDEX, CWEIGHTS, 2**31),
        r"trilinear_gather_backward: n_voxels must be in \[0, 2147483647\], got 2147483648",
    ),
    "voxel_coords voxel_size length": (
        lambda: ops.voxel_coords(torch.zeros(2, 3), [0.1, 0.1], BATCH0, 1, False),
        r"voxel_coords: voxel_size must have 3 entries, got 2",
    ),
    "voxel_coords voxel_size value": (
        lambda: ops.voxel_coords(torch.zeros(2, 3), [0.1, 0.0, 0.1], BATCH0, 1, False),
        r"voxel_coords: voxel_size must be finite and > 0, got 0",
    ),
    "voxel_coords points dtype": (
        lambda: ops.voxel_coords(torch.zeros(2, 3, dtype=torch.int32), [0.1] * 3, BATCH0, 1, False),
        r"voxel_coords: points must be floating point, got torch.int32",
    ),
    "voxel_coords points shape": (
        lambda: ops.voxel_coords(torch.zeros(2, 2), [0.1] * 3, BATCH0, 1, False),
        r"voxel_coords: points must have shape \[N, >= 3\], got \[2, 2\]",
    ),
    "voxel_coords batch dtype": (
        lambda: ops.voxel_coords(torch.zeros(2, 3), [0.1] * 3, BATCH0.long(), 1, False),
        r"voxel_coords: batch must have dtype torch.int32, got torch.int64",
    ),
    "voxel_coords batch range": (
        lambda: ops.voxel_coords(torch.zeros(2, 3), [0.1] * 3, torch.tensor([0, 2], dtype=torch.int32), 2, True),
        r"voxel_coords: batch entries must be in \[0, 2\), got 2",
    ),
    "voxel_coords n_batches": (
        lambda: ops.voxel_coords(torch.zeros(2, 3), [0.1] * 3, BATCH0, 0, False),
        r"voxel_coords: n_batches must be in \[1, 65535\], got 0",
    ),
    "linear_portable device": (
        lambda: _C.linear_portable(FEATS, torch.ones(3, 2, device="meta"), None),
        r"linear: weight must be a CPU tensor, got one on meta",
    ),
    "batch_norm_train dtype": (
        lambda: ops.batch_norm_train(BN_X.half(), BN_VEC, BN_VEC, 1e-5, False),
        r"batch_norm_train: x must be float32 or float64, got torch.float16",
    ),
    "batch_norm_train one row": (
        lambda: ops.batch_norm_train(BN_X[:1], BN_VEC, BN_VEC, 1e-5, False),
        r"batch_norm_train: training statistics need more than one row, got \[1, 3\]",
    ),
    "batch_norm_train weight length": (
        lambda: ops.batch_norm_train(BN_X, BN_VEC[:2], BN_VEC, 1e-5, False),
        r"batch_norm_train: weight must be a vector of C = 3 entries, got \[2\]",
    ),
    "batch_norm_train bias dtype": (
        lambda: ops.batch_norm_train(BN_X, BN_VEC, BN_VEC.double(), 1e-5, False),
        r"batch_norm_train: bias must have dtype torch.float32, got torch.float64",
    ),
    "batch_norm_train eps": (
        lambda: ops.batch_norm_train(BN_X, BN_VEC, BN_VEC, 0.0, False),
        r"batch_norm_train: eps must be positive, got 0",
    ),
    "batch_norm_train residual rows": (
        lambda: ops.batch_norm_train(BN_X, BN_VEC, BN_VEC, 1e-5, True, BN_X[:3]),
        r"batch_norm_train: residual must have x's shape \[4, 3\], got \[3, 3\]",
    ),
    "batch_norm_train residual dtype": (
        lambda: ops.batch_norm_train(BN_X, BN_VEC, BN_VEC, 1e-5, True, BN_X.double()),
        r"batch_norm_train: residual must have dtype torch.float32, got torch.float64",
    ),
    "batch_norm_train_backward masked_grad without relu": (
        lambda: ops.batch_norm_train_backward(BN_X, BN_X, *BN_STATS, BN_VEC, 1e-5, False, True),
        r"batch_norm_train_backward: masked_grad needs relu",
    ),
    "batch_norm_train_backward grad shape": (
        lambda: ops.batch_norm_train_backward(BN_X[:2], BN_X, *BN_STATS, BN_VEC, 1e-5, True),
        r"batch_norm_train_backward: grad_y must have x's shape \[4, 3\], got \[2, 3\]",
    ),
    "batch_norm_train_backward y shape": (
        lambda: ops.batch_norm_train_backward(BN_X, BN_X, BN_X[:, :2], *BN_STATS[1:], BN_VEC, 1e-5, True),
        r"batch_norm_train_backward: y must have shape \[N, C\], got \[4, 2\]",
    ),
    "batch_norm_train_backward relu without y or bias": (
        lambda: ops.batch_norm_train_backward(BN_X, BN_X, None, *BN_STATS[1:], BN_VEC, 1e-5, True),
        r"batch_norm_train_backward: a ReLU's mask needs y \(the forward's output\) or bias",
    ),
    "batch_norm_train_backward masked_grad without y": (
        lambda: ops.batch_norm_train_backward(BN_X, BN_X, None, *BN_STATS[1:], BN_VEC, 1e-5, True, True, BN_VEC),
        r"batch_norm_train_backward: masked_grad needs y",
    ),
    "batch_norm_train_backward bias length": (
        lambda: ops.batch_norm_train_backward(BN_X, BN_X, None, *BN_STATS[1:], BN_VEC, 1e-5, True, False, BN_VEC[:2]),
        r"batch_norm_train_backward: bias must be a vector of C = 3 entries, got \[2\]",
    ),
    "batch_norm_train_backward mean dtype": (
        lambda: ops.batch_norm_train_backward(BN_X, BN_X, BN_STATS[0], BN_STATS[1].float(), BN_STATS[2], BN_VEC, 1e-5, True),
        r"batch_norm_train_backward: mean must have dtype torch.float64, got torch.float32",
    ),
}


@pytest.mark.parametrize("name", BAD_CALLS)
def test_bad_call_names_op_and_argument(name):
    call, message = BAD_CALLS[name]
    with pytest.raises(RuntimeError, match=message):
        call()


# --- inputs that used to go wrong, now answered right -------------------------------------------------


def test_strided_views_of_the_table_are_read_as_views():
    """keys/vals (and coords) that are views with a stride once were read as if contiguous."""
    keys_view = torch.stack([KEYS, torch.full_like(KEYS, 12345)], 1)[:, 0]
    vals_view = torch.stack([VALS, torch.full_like(VALS, 99)], 1)[:, 0]
    queries = torch.cat([SITES, rows([0, 7, 7, 7])]).t().contiguous().t()
    assert not (keys_view.is_contiguous() or vals_view.is_contiguous() or queries.is_contiguous())
    assert ops.hash_query(keys_view, vals_view, queries).tolist() == [0, 1, 2, 3, -1]
    offs = torch.cat([kernel_offsets(3), kernel_offsets(3)], 1)[:, :3]
    assert not offs.is_contiguous()
    assert torch.equal(neighbor_table(keys_view, vals_view, queries[:4], offs, submanifold=True), NBR)
    expected = ops.trilinear_table(KEYS, VALS, CORNERS, POINTS, [1, 1, 1], False)
    viewed = ops.trilinear_table(keys_view, vals_view, CORNERS.t().contiguous().t(), POINTS.t().contiguous().t(), [1, 1, 1], False)
    assert all(torch.equal(a, b) for a, b in zip(viewed, expected))


def test_points_far_outside_the_key_range_find_no_corner():
    """A floor far outside the key range is a missing corner, never a cast of a huge double."""
    far = torch.tensor([[0, 1e300, 0, 0], [0, -1e300, 0, 0], [0, 0, 40000.5, 0]], dtype=torch.float64)
    index, weights = ops.trilinear_table(KEYS, VALS, CORNERS, far, [1, 1, 1], False)
    assert (index == -1).all() and (weights == 0).all()


def sites_and_a_crowded_table(empty_left: int):
    """7 sites, their table (16 slots) and all but `empty_left` of its 9 empty slots filled with keys of
    other sites. The 7 keys stay where their probe sequences reach them."""
    sites = rows(*[(0, i, -i, 2 * i) for i in range(7)])
    keys, vals = table(sites)
    empty = (keys == -1).nonzero().flatten()
    assert len(keys) == 16 and len(empty) == 9
    fill = empty[: 9 - empty_left]
    keys[fill] = torch.tensor([packed_key(2, i, i, i) for i in range(len(fill))], dtype=torch.int64)
    vals[fill] = torch.arange(100, 100 + len(fill), dtype=torch.int32)
    return sites, keys, vals


def test_a_table_without_an_empty_slot_is_refused():
    """With no -1 slot, a lookup of a missing key once probed forever."""
    sites, keys, vals = sites_and_a_crowded_table(empty_left=0)
    with pytest.raises(RuntimeError, match=r"hash_query: the table \(keys, vals\) has no empty slot \(key -1\)"):
        ops.hash_query(keys, vals, sites)
    with pytest.raises(RuntimeError, match=r"neighbor_table: the table \(keys, vals\) has no empty slot"):
        neighbor_table(keys, vals, sites, kernel_offsets(3))
    corners = torch.full((7, 8), -1, dtype=torch.int32)
    with pytest.raises(RuntimeError, match=r"trilinear_table: the table \(keys, vals\) has no empty slot"):
        ops.trilinear_table(keys, vals, corners, torch.tensor([[0, 9.5, 9.5, 9.5]]), [1, 1, 1], False)


def test_one_empty_slot_ends_every_lookup():
    """Misses probe around the whole table to the one empty slot; hits are still found."""
    sites, keys, vals = sites_and_a_crowded_table(empty_left=1)
    assert ops.hash_query(keys, vals, sites.flip(0)).tolist() == list(range(6, -1, -1))
    absent = rows([0, 7, -7, 14], [1, 0, 0, 0], [0, -32768, 32767, 0])
    assert ops.hash_query(keys, vals, absent).tolist() == [-1, -1, -1]
    index = {tuple(r): i for i, r in enumerate(sites.tolist())}
    offs = kernel_offsets(3)
    expected = [
        [index.get((b, x + dx, y + dy, z + dz), -1) for dx, dy, dz in offs.tolist()] for b, x, y, z in sites.tolist()
    ]
    assert neighbor_table(keys, vals, sites, offs).tolist() == expected


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("extreme", [INT_MIN, INT_MAX])
def test_extreme_offsets_find_nothing(extreme, transposed):
    """o * s + off and (o - off) / s with int32 offsets at their limits: computed in 64 bits (they
    once overflowed int32), far outside the range, so no input site."""
    offs = offsets([extreme, 0, 0], [0, extreme, 0], [0, 0, extreme], [0, 0, 0])
    out = neighbor_table(KEYS, VALS, SITES, offs, (3, 3, 3) if not transposed else (1, 1, 1), transposed)
    expected = [[-1, -1, -1, i] for i in range(4)] if transposed else [[-1, -1, -1, 0], [-1] * 4, [-1] * 4, [-1] * 4]
    assert out.tolist() == expected


def test_mirrored_offsets_past_the_range_use_the_table():
    """Submanifold offsets wider than the coordinate range: no merge plan (its key differences once
    shifted negative values), the hash path gives the centre alone."""
    offs = offsets([-40000, 0, 0], [0, 0, 0], [40000, 0, 0])
    assert neighbor_table(KEYS, VALS, SITES, offs, submanifold=True).tolist() == [[-1, i, -1] for i in range(4)]


@pytest.mark.parametrize("sorted_rows", [True, False])
def test_a_submanifold_call_with_a_foreign_table_fails(sorted_rows):
    """The table of other sites, of the right length: every mirrored write would trust it."""
    coords = SITES if sorted_rows else SITES.flip(0)
    shifted = coords.clone()
    shifted[:, 3] += 1
    message = r"neighbor_table: keys and vals are not the table of out_coords, or out_coords repeats a row"
    with pytest.raises(RuntimeError, match=message):
        # An edge site (x = -32768) sends even sorted rows through the table.
        edge = torch.cat([rows([0, -32768, 0, 0]), coords]) if sorted_rows else coords
        edge_shifted = torch.cat([rows([0, -32768, 0, 1]), shifted]) if sorted_rows else shifted
        neighbor_table(*table(edge_shifted), edge, kernel_offsets(3), submanifold=True)


def test_repeated_rows_in_a_submanifold_call_fail():
    coords = torch.cat([SITES, SITES[:1]]).flip(0)
    keys, vals = table(torch.cat([SITES, rows([2, 0, 0, 0])]))
    with pytest.raises(RuntimeError, match=r"out_coords repeats a row"):
        neighbor_table(keys, vals, coords, kernel_offsets(3), submanifold=True)


def test_unique_coords_of_a_key_of_exactly_32_bits():
    """x spans 12 bits, y 11, z 9 and batch 0 (a SemanticKITTI scan at 0.05 m): the batch field's
    shift was the whole key width, undefined behaviour that UBSan reports under `make sanitize`."""
    corners = [(0, x, y, z) for x in (-2048, 2047) for y in (-1000, 1047) for z in (0, 511)]
    coords = rows(*corners, *corners[:3])
    assert ops.unique_coords(coords).tolist() == sorted(map(list, corners))
    batches = rows(*[(b, x, y, z) for b in (0, 1) for (_, x, y, z) in corners])
    assert ops.unique_coords(batches.flip(0)).tolist() == sorted(batches.tolist())


def test_conv_fused_with_a_huge_kernel_on_few_rows():
    """K = 101^3 offsets on 3 rows: the per-thread workspace once held K x 128 pairs per thread
    (1 GB, zero-filled); now 3 rows' worth. The value is checked against a direct sum."""
    k = 101**3
    nbr = torch.full((3, k), -1, dtype=torch.int32)
    nbr[0, 5], nbr[1, k - 1], nbr[2, 5], nbr[2, 7] = 2, 0, 1, 2
    feats = torch.tensor([[1.0], [2.0], [3.0]])
    weight = torch.zeros(k, 1, 2)
    weight[5], weight[7], weight[k - 1] = torch.tensor([[1.0, -1.0]]), torch.tensor([[0.5, 2.0]]), 4.0
    expected = torch.tensor([[3.0, -3.0], [4.0, 4.0], [2.0 + 1.5, -2.0 + 6.0]])
    assert torch.equal(ops.conv_fused(feats, weight, nbr), expected)
    assert torch.equal(_C.conv_fused_portable(feats, weight, nbr), expected)


# Peak memory of one conv with kernel_size 101 on 3 sites, in a fresh process (ru_maxrss is a
# process-wide peak): it was 1.06 GB above the process's earlier peak with the K x 128 workspace.
HUGE_KERNEL_ON_FEW_SITES = """
import resource, torch, pointengine as pe
from pointengine.functional import conv3d
torch.set_num_threads(2)
x = pe.SparseTensor(torch.ones(3, 1), torch.tensor([[0, 0, 0, 0], [0, 1, 0, 0], [0, 5, 5, 5]], dtype=torch.int32))
conv3d(x, torch.ones(27, 1, 1), kernel_size=3)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
y = conv3d(x, torch.ones(101**3, 1, 1), kernel_size=101)
assert y.feats.flatten().tolist() == [3.0, 3.0, 3.0]
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_a_huge_kernel_on_few_sites_stays_small():
    """Its own data (offsets, the [3, K] table, weight and packed weight) is about 60 MB; 400 MB
    leaves room for the sanitizers' allocator and fails the 1 GB workspace."""
    result = subprocess.run(
        [sys.executable, "-c", HUGE_KERNEL_ON_FEW_SITES], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) < 400
