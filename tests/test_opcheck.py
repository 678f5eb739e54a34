"""torch.library.opcheck for every op of torch.ops.pointengine: schema, fake kernel, autograd
registration and AOT tracing with dynamic shapes. A registry test fails when an op has no case."""

import pytest
import torch

from pointengine import _ops
from pointengine.functional import kernel_offsets


def sites() -> torch.Tensor:
    return torch.tensor(
        [[0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, -1], [1, -2, 3, 1], [1, -1, 3, 1], [2, 5, -5, 0]], dtype=torch.int32
    )


def coarse_sites() -> torch.Tensor:
    return torch.tensor([[0, 0, 0, 0], [1, -1, 1, 0]], dtype=torch.int32)


def table():
    keys, vals, _ = _ops.hash_build(sites())
    return keys, vals


def corners() -> torch.Tensor:
    return _ops.neighbor_table(*table(), sites(), kernel_offsets(2), (1, 1, 1), False, False)


def neighbours(kernel_size=3) -> torch.Tensor:
    return _ops.neighbor_table(*table(), sites(), kernel_offsets(kernel_size), (1, 1, 1), False, kernel_size % 2 == 1)


def conv_args(dtype, requires_grad: bool):
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(6, 3, generator=g, dtype=dtype, requires_grad=requires_grad)
    # A 2x2x2 kernel: tracing the backward unrolls one product per offset.
    weight = torch.randn(8, 3, 2, generator=g, dtype=dtype, requires_grad=requires_grad)
    return feats, weight, neighbours(2)


def tiled_conv_args(dtype, requires_grad: bool):
    """conv_args with a mirrored 3x3x3 table and its tile lists."""
    g = torch.Generator().manual_seed(2)
    nbr = neighbours()
    feats = torch.randn(6, 3, generator=g, dtype=dtype, requires_grad=requires_grad)
    weight = torch.randn(27, 3, 2, generator=g, dtype=dtype, requires_grad=requires_grad)
    return feats, weight, nbr, *_ops.tile_pairs(nbr, 6)


def epilogue_args(dtype, requires_grad: bool):
    """(bias, residual) for conv_args's output [6, 2]."""
    g = torch.Generator().manual_seed(1)
    make = lambda *size: torch.randn(*size, generator=g, dtype=dtype, requires_grad=requires_grad)  # noqa: E731
    return make(2), make(6, 2)


def weight_grad_args(dtype):
    g = torch.Generator().manual_seed(0)
    nbr = neighbours()
    return torch.randn(6, 3, generator=g, dtype=dtype), torch.randn(nbr.shape[0], 5, generator=g, dtype=dtype), nbr


def pair_list_args(feats, grad_out, nbr):
    return feats, grad_out, *torch.ops.pointengine.kernel_pairs(nbr)


def batch_norm_args(dtype, relu: bool, requires_grad: bool, residual: bool = False):
    g = torch.Generator().manual_seed(0)
    x, weight, bias, r = (torch.randn(*shape, generator=g, dtype=dtype) for shape in ((7, 3), (3,), (3,), (7, 3)))
    args = (x.requires_grad_(requires_grad), weight.requires_grad_(requires_grad), bias, 1e-5, relu)
    return (*args, r.requires_grad_(requires_grad)) if residual else args


def batch_norm_backward_args(dtype, relu: bool, masked_grad: bool = False, mask_from_x: bool = False):
    """mask_from_x: y left out, bias given (the ReLU's mask recomputed from x)."""
    x, weight, bias, eps, _ = batch_norm_args(dtype, relu, False)
    y, mean, var = torch.ops.pointengine.batch_norm_train(x, weight, bias, eps, relu)
    if mask_from_x:
        return torch.randn_like(x), x, None, mean, var, weight, eps, relu, masked_grad, bias
    return torch.randn_like(x), x, y, mean, var, weight, eps, relu, masked_grad


def points(dtype) -> torch.Tensor:
    """Float points around sites(): corners present, missing, and a point on a voxel corner."""
    return torch.tensor(
        [[0, 0.25, 0.5, -0.5], [0, 1.0, 0.0, 0.0], [1, -1.5, 3.25, 1.75], [2, 5.5, -4.5, 0.1], [2, 9.0, 9.0, 9.0]],
        dtype=dtype,
    )


def trilinear_args(dtype, requires_grad: bool):
    index, weights = _ops.trilinear_table(*table(), corners(), points(dtype), (1, 1, 1), False)
    feats = torch.randn(6, 3, generator=torch.Generator().manual_seed(0), dtype=dtype, requires_grad=requires_grad)
    return feats, index, weights


def scatter_mean_args(dtype, requires_grad: bool):
    feats = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=dtype, requires_grad=requires_grad)
    return feats, torch.tensor([2, -1, 0, 2, 2], dtype=torch.int32), 4


def linear_args(dtype, requires_grad: bool, bias: bool):
    g = torch.Generator().manual_seed(0)
    make = lambda *size: torch.randn(*size, generator=g, dtype=dtype, requires_grad=requires_grad)  # noqa: E731
    return make(6, 3), make(5, 3), make(5) if bias else None


def bf16_conv_args(epilogue: bool, bf16_out: bool):
    """conv_bf16's arguments on conv_args's map: bfloat16 feats and weight, float32 bias and residual."""
    feats, weight, nbr = conv_args(torch.float32, False)
    bias, residual = epilogue_args(torch.float32, False) if epilogue else (None, None)
    return feats.bfloat16(), weight.bfloat16(), nbr, bias, residual, epilogue, bf16_out


def int8_args():
    """conv_int8's arguments before out_scale: 7-bit feats, int8 weights on conv_args's table."""
    g = torch.Generator().manual_seed(0)
    q = torch.randint(0, 128, (6, 3), generator=g, dtype=torch.uint8)
    weight = torch.randint(-127, 128, (8, 3, 2), generator=g).to(torch.int8)
    return q, 0.1, 4, weight, torch.tensor([0.01, 0.02]), neighbours(2), torch.randn(2, generator=g), None, True


def opcheck_params(cases: dict) -> list:
    return [pytest.param(op, args, id=f"{op}-{i}") for op, makers in cases.items() for i, args in enumerate(makers)]


# Per op, functions making sample arguments (built lazily, at test time).
CASES = {
    "hash_build": [
        lambda: (sites(),),
        lambda: (torch.cat([sites(), sites()[:2]]),),
    ],
    "hash_query": [
        lambda: (*table(), sites().flip(0)),
        lambda: (*table(), torch.tensor([[0, 9, 9, 9], [-1, 0, 0, 0], [0, 40000, 0, 0]], dtype=torch.int32)),
    ],
    "unique_coords": [
        lambda: (torch.cat([sites(), sites()]),),
        lambda: (sites()[:1],),
    ],
    "unique_coords_inverse": [
        lambda: (torch.cat([sites(), sites()]),),
        lambda: (sites()[:1],),
    ],
    "row_argmax": [
        lambda: (torch.randn(9, 5),),
        lambda: (torch.randn(3, 1, dtype=torch.float64),),
    ],
    "voxel_coords": [
        lambda: (points(torch.float32)[:, 1:], [0.5, 0.25, 1.0], torch.tensor([0, 0, 1, 2, 2], dtype=torch.int32), 3, False),
        lambda: (points(torch.float64)[:, 1:], [0.5, 0.5, 0.5], torch.tensor([0, 0, 1, 2, 2], dtype=torch.int32), 3, True),
    ],
    "neighbor_table": [
        lambda: (*table(), sites(), kernel_offsets(3), [1, 1, 1], False, True),
        lambda: (*table(), sites(), kernel_offsets(2), [1, 1, 1], False, False),
        lambda: (*table(), coarse_sites(), kernel_offsets(3), [2, 2, 2], False, False),
        lambda: (*table(), coarse_sites() * 2, kernel_offsets(2), [2, 1, 2], True, False),
    ],
    "kernel_pairs": [
        lambda: (neighbours(),),
        lambda: (torch.full((4, 8), -1, dtype=torch.int32),),
    ],
    "tile_pairs": [
        lambda: (neighbours(), sites().shape[0]),
        lambda: (torch.full((4, 8), -1, dtype=torch.int32), 6),
    ],
    "transpose_table": [
        lambda: (neighbours(), sites().shape[0]),
        lambda: (torch.full((4, 8), -1, dtype=torch.int32), 6),
    ],
    "conv_fused": [
        lambda: conv_args(torch.float32, False),
        lambda: conv_args(torch.float64, True),
        lambda: tiled_conv_args(torch.float64, True),
    ],
    "conv_fused_epilogue": [
        lambda: (*tiled_conv_args(torch.float64, True)[:3], *epilogue_args(torch.float64, True), True,
                 *tiled_conv_args(torch.float64, True)[3:]),
        lambda: (*conv_args(torch.float32, False), None, None, True),
        lambda: (*conv_args(torch.float64, True), *epilogue_args(torch.float64, True), True),
        lambda: (*conv_args(torch.float64, True), None, epilogue_args(torch.float64, True)[1], False),
    ],
    "conv_implicit_gemm": [
        lambda: conv_args(torch.float32, False),
        lambda: (*conv_args(torch.float64, True), torch.arange(len(neighbours(2)) - 1, -1, -1, dtype=torch.int32)),
    ],
    "conv_weight_grad": [
        lambda: weight_grad_args(torch.float32),
        lambda: weight_grad_args(torch.float64),
    ],
    "batch_norm_train": [
        lambda: batch_norm_args(torch.float32, True, True),
        lambda: batch_norm_args(torch.float64, False, True),
        lambda: batch_norm_args(torch.float32, False, False),
        lambda: batch_norm_args(torch.float32, True, True, residual=True),
        lambda: batch_norm_args(torch.float64, False, True, residual=True),
    ],
    "batch_norm_train_backward": [
        lambda: batch_norm_backward_args(torch.float32, True),
        lambda: batch_norm_backward_args(torch.float64, False),
        lambda: batch_norm_backward_args(torch.float32, True, masked_grad=True),
        lambda: batch_norm_backward_args(torch.float64, True, mask_from_x=True),
    ],
    "conv_weight_grad_pairs": [
        lambda: pair_list_args(*weight_grad_args(torch.float32)),
        lambda: pair_list_args(*weight_grad_args(torch.float64)),
    ],
    "point_scatter_mean": [
        lambda: scatter_mean_args(torch.float32, False),
        lambda: scatter_mean_args(torch.float64, True),
    ],
    "trilinear_table": [
        lambda: (*table(), corners(), points(torch.float32), [1, 1, 1], False),
        lambda: (*table(), corners(), points(torch.float64), [2, 1, 2], True),
    ],
    "trilinear_gather": [
        lambda: trilinear_args(torch.float32, False),
        lambda: trilinear_args(torch.float64, True),
        lambda: (*trilinear_args(torch.float64, True), torch.randn(5, 3, dtype=torch.float64, requires_grad=True)),
    ],
    "trilinear_gather_add_": [
        lambda: (torch.randn(5, 3), *trilinear_args(torch.float32, False)),
        lambda: (torch.randn(5, 3, dtype=torch.float64), *trilinear_args(torch.float64, False)),
    ],
    "trilinear_gather_backward": [
        lambda: (torch.randn(5, 3, dtype=torch.float64), *trilinear_args(torch.float64, False)[1:], 6),
    ],
    "conv_int8": [
        lambda: int8_args(),
        lambda: (*int8_args()[:7], torch.randn(6, 2), False, 0.05, 3),
        lambda: (*int8_args(), None, 0, *_ops.tile_pairs(neighbours(2), 6)),
    ],
    "quantize_u7": [
        lambda: (torch.randn(5, 3), 0.1, 7),
        lambda: (torch.randn(3, 5).t(), 0.5, 0),
    ],
    "linear": [
        lambda: linear_args(torch.float32, False, bias=True),
        lambda: linear_args(torch.float64, True, bias=True),
        lambda: linear_args(torch.float64, True, bias=False),
    ],
    "conv_bf16": [
        lambda: bf16_conv_args(epilogue=False, bf16_out=False),
        lambda: bf16_conv_args(epilogue=True, bf16_out=True),
        lambda: (*bf16_conv_args(epilogue=True, bf16_out=False), *_ops.tile_pairs(neighbours(2), 6)),
    ],
}


def registered_ops() -> set[str]:
    # The dispatcher's list is the only complete enumeration of a namespace's ops.
    names = torch._C._dispatch_get_all_op_names()
    return {name.split("::")[1] for name in names if name.startswith("pointengine::")}


def test_every_op_has_a_case():
    assert registered_ops() == set(CASES)


@pytest.mark.parametrize("op,make_args", opcheck_params(CASES))
def test_opcheck(op, make_args):
    torch.library.opcheck(getattr(torch.ops.pointengine, op).default, make_args())
