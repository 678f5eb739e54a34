"""Sparse 3D convolution: kernel-map choice by kind of convolution, and the dataflows that apply it.

What every dataflow computes (DESIGN.md): out[o] = sum_k feats[nbr[o, k]] @ weight[k], with the
neighbour table of the kernel map (-1 = no input through that offset).
"""

import math

import torch
from torch import Tensor

from .. import _ops
from .._checks import as_triple, check_bias, check_same_device, check_tensor, compute_dtypes, dtype_names
from ..tensor import SparseTensor
from . import kmap as km

DATAFLOWS = ("fused", "gather_scatter", "implicit_gemm")


def select_dataflow(device: torch.device, kernel_volume: int, c_in: int, c_out: int) -> str:
    """The default dataflow for a layer. On the CPU the output-stationary fused kernel wins at every
    shape measured in benchmarks/bench_conv.py; gather-GEMM-scatter stays as the per-layer option.
    On CUDA "fused" is csrc/cuda/conv_cuda.cu's gathered GEMM on the tensor cores."""
    return "fused"


def resolve_dataflow(dataflow: str | None, feats: Tensor, weight: Tensor) -> str:
    """The dataflow a layer runs: its own choice, or select_dataflow's when it has none."""
    return dataflow if dataflow is not None else select_dataflow(feats.device, *weight.shape)


def distinct_dataflows(device: torch.device) -> tuple[str, ...]:
    """The dataflows that run different code on `device`: on the CPU "implicit_gemm" is conv_fused's
    code (the tensor-core kernel exists on CUDA only), so timing it there would time "fused" twice."""
    return DATAFLOWS if device.type == "cuda" else ("fused", "gather_scatter")


def is_pointwise(kernel_volume: int, stride, generative: bool) -> bool:
    """A 1x1x1 conv of stride 1 (or its transpose, not generative) reads each site alone: one dense
    product on the input's sites, no kernel map and no dataflow."""
    return kernel_volume == 1 and tuple(stride) == (1, 1, 1) and not generative


def conv_geometry(kernel_size, stride, dilation, transposed: bool, generative: bool, sites: str):
    """Validated (kernel_size, stride, dilation) triples of a convolution."""
    ks, st, dil = as_triple(kernel_size, "kernel_size"), as_triple(stride, "stride"), as_triple(dilation, "dilation")
    km.check_sites(sites)
    if generative and not transposed:
        raise ValueError("generative=True needs transposed=True")
    return ks, st, dil


def conv_kernel_map(input: SparseTensor, kernel_size, stride, dilation, transposed: bool, generative: bool, sites: str):
    """(kernel map, output stride) of a convolution on `input`."""
    ks, st, dil = conv_geometry(kernel_size, stride, dilation, transposed, generative, sites)
    cmap = input.coordinate_map
    if not transposed:
        if st == (1, 1, 1):
            return km.submanifold_map(cmap, ks, dil), input.stride
        return km.strided_map(cmap, ks, st, dil, sites), tuple(a * b for a, b in zip(input.stride, st))
    if any(a % b for a, b in zip(input.stride, st)):
        raise ValueError(f"transposed conv: tensor stride {input.stride} is not divisible by stride {st}")
    out_stride = tuple(a // b for a, b in zip(input.stride, st))
    if generative:
        return km.generative_map(cmap, ks, st, dil), out_stride
    if st == (1, 1, 1):
        return km.transposed_map(cmap, cmap, ks, st, dil), out_stride
    fine = input.levels.get(out_stride)
    if fine is None:
        raise ValueError(
            f"transposed conv: no sites at stride {out_stride} to return to; the input must come from a "
            "strided conv of the same network, or use generative=True"
        )
    return km.transposed_map(cmap, fine, ks, st, dil), out_stride


def apply_kernel_map(feats: Tensor, weight: Tensor, kmap: km.KernelMap, dataflow: str) -> Tensor:
    if dataflow == "fused":
        return _ops.conv_fused(feats, weight, kmap.nbr, kmap.cpu_tiles(feats))
    if dataflow == "gather_scatter":
        return gather_gemm_scatter(feats, weight, kmap)
    if dataflow == "implicit_gemm":
        return _ops.conv_implicit_gemm(feats, weight, kmap.nbr, kmap.row_order if feats.is_cuda else None)
    raise ValueError(f"dataflow must be one of {DATAFLOWS}, got {dataflow!r}")


def prepare_kernel_map(kmap: km.KernelMap, dataflow: str, device: torch.device) -> None:
    """Builds the form of `kmap` that `dataflow` reads besides the neighbour table (cached on the map
    and shared by its layers), so that a profile can count it as map work: the tile lists of a shared
    map for "fused" on the CPU, the per-offset pair lists of "gather_scatter", the row order of
    "implicit_gemm" on CUDA."""
    if dataflow == "fused" and device.type == "cpu" and kmap.shared:
        kmap.tile_lists  # noqa: B018  (a cached property: built here, read by conv_fused)
    elif dataflow == "gather_scatter":
        kmap.pairs  # noqa: B018  (a cached property: built here, read by gather_gemm_scatter)
    elif dataflow == "implicit_gemm" and device.type == "cuda":
        kmap.row_order  # noqa: B018  (a cached property: built here, read by conv_implicit_gemm)


def gather_gemm_scatter(feats: Tensor, weight: Tensor, kmap: km.KernelMap) -> Tensor:
    """Per offset: gather the input rows of its pairs, one GEMM, add into the output rows. Within an
    offset every output row appears once, and offsets are added in order: deterministic."""
    pairs = kmap.pairs
    bounds = pairs.ptr.tolist()
    out = feats.new_zeros(kmap.nbr.shape[0], weight.shape[2])
    for k in range(weight.shape[0]):
        lo, hi = bounds[k], bounds[k + 1]
        if hi > lo:
            gathered = feats.index_select(0, pairs.in_rows[lo:hi])
            out = out.index_add(0, pairs.out_rows[lo:hi], gathered @ weight[k])
    return out


def check_conv_args(input: SparseTensor, weight: Tensor, bias, kernel_size) -> None:
    if not isinstance(input, SparseTensor):
        raise TypeError(f"input must be a SparseTensor, got {type(input).__name__}")
    check_tensor(weight, "weight")
    volume = math.prod(as_triple(kernel_size, "kernel_size"))
    c_in = input.feats.shape[1]
    if weight.dim() != 3 or weight.shape[0] != volume or weight.shape[1] != c_in:
        raise ValueError(f"weight must have shape [{volume}, {c_in}, C_out] (kernel volume, C_in, C_out), got {list(weight.shape)}")
    if weight.dtype != input.feats.dtype:
        raise ValueError(f"weight dtype {weight.dtype} differs from feats dtype {input.feats.dtype}")
    dtypes = compute_dtypes(input.feats.device)
    if input.feats.dtype not in dtypes:
        raise ValueError(
            f"sparse convolution supports {dtype_names(dtypes)} feats on {input.feats.device.type}, got {input.feats.dtype}"
        )
    check_same_device(feats=input.feats, weight=weight)
    if bias is not None:
        check_bias(bias, weight.shape[2], weight.dtype, "weight", feats=input.feats)


def conv3d(
    input: SparseTensor,
    weight: Tensor,
    bias: Tensor | None = None,
    *,
    kernel_size=3,
    stride=1,
    dilation=1,
    transposed: bool = False,
    generative: bool = False,
    sites: str = "dense",
    dataflow: str | None = None,
    residual: Tensor | None = None,
    relu: bool = False,
) -> SparseTensor:
    """Sparse convolution of `input` with weight [K, C_in, C_out] (offsets in kernel_offsets order).

    stride 1: submanifold (outputs = input sites). stride > 1: output sites by `sites` ("dense":
    dense-convolution support, "floor": unique(floor(c / s))). transposed: the adjoint of the
    strided conv that made the input, returning its input sites; generative: new sites o * s + off.
    The epilogue: feats [N_out, C_out] of `residual` are added after the bias, then `relu` applies;
    the fused dataflow does both in its pass over the output.
    """
    check_conv_args(input, weight, bias, kernel_size)
    if not isinstance(relu, bool):
        raise TypeError(f"relu must be a bool, got {type(relu).__name__}")
    if dataflow is not None and dataflow not in DATAFLOWS:
        raise ValueError(f"dataflow must be one of {DATAFLOWS}, got {dataflow!r}")
    _, st, _ = conv_geometry(kernel_size, stride, dilation, transposed, generative, sites)
    if is_pointwise(weight.shape[0], st, generative):
        # A 1x1x1 submanifold conv (or its transpose) reads each site alone: one dense product, no
        # map; the thread-count independent one (_ops.linear), not torch's BLAS.
        check_residual(residual, input.coordinate_map.num_rows, weight)
        feats = epilogue(_ops.linear(input.feats, weight[0].t(), bias), None, residual, relu)
        coordinate_map, out_stride = input.coordinate_map, input.stride
    else:
        kmap, out_stride = conv_kernel_map(input, kernel_size, stride, dilation, transposed, generative, sites)
        check_residual(residual, kmap.nbr.shape[0], weight)
        dataflow = resolve_dataflow(dataflow, input.feats, weight)
        if dataflow == "fused" and (bias is not None or residual is not None or relu):
            feats = _ops.conv_fused_epilogue(input.feats.contiguous(), weight, kmap.nbr, bias, residual, relu,
                                             kmap.cpu_tiles(input.feats))
        else:
            feats = epilogue(apply_kernel_map(input.feats.contiguous(), weight, kmap, dataflow), bias, residual, relu)
        coordinate_map = kmap.out_map
    return SparseTensor.derived(feats, coordinate_map, out_stride, input.levels)


def check_residual(residual: Tensor | None, n_out: int, weight: Tensor) -> None:
    if residual is None:
        return
    check_tensor(residual, "residual")
    if residual.shape != (n_out, weight.shape[2]):
        raise ValueError(f"residual must have shape [{n_out}, {weight.shape[2]}] (output sites, C_out), got {list(residual.shape)}")
    if residual.dtype != weight.dtype:
        raise ValueError(f"residual dtype {residual.dtype} differs from weight dtype {weight.dtype}")
    check_same_device(weight=weight, residual=residual)


def epilogue(feats: Tensor, bias: Tensor | None, residual: Tensor | None, relu: bool) -> Tensor:
    """relu?(feats + bias + residual), as separate passes (the dataflows without a fused epilogue)."""
    if bias is not None:
        feats = feats + bias
    if residual is not None:
        feats = feats + residual
    # In place: no op before it keeps its output for the backward pass.
    return feats.relu_() if relu else feats
