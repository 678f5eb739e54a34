"""How each engine stores a sparse-convolution weight, and its conversion to ours.

Ours: [K, C_in, C_out] with K in `kernel_offsets` order (x slowest; odd sizes centred, even sizes
from 0), applied as out[p] = sum_k x[p*s + off_k] @ W[k]; a transposed conv is its adjoint,
out[p*s + off_k] += x[p] @ W[k]. Every peer below computes the same cross-correlation, and its
transposed conv swaps the in/out rows of the strided conv's map under the same kernel index, so a
conversion only reorders K and reshapes; nothing is flipped or transposed per offset.

- TorchSparse 1.x/2.0 (torchsparse/nn/utils/kernel.py, get_kernel_offsets) and 2.1 (the hash
  map's lookup_coords kernel): `kernel` [K, C_in, C_out]. A kernel of odd volume lists its offsets
  x fastest, one of even volume x slowest; an axis of size k spans -k//2+1 .. k//2, so even sizes
  start at 1 - k/2 (0 for the 2x2x2 down/up kernels). Volume 1: [C_in, C_out] (2.1 keeps
  [1, C_in, C_out] for a strided 1x1x1).
- MinkowskiEngine 0.5 (src/kernel_region.hpp, MinkowskiConvolution.py): `kernel` [K, C_in, C_out],
  offsets x fastest for every size, even sizes from 0; [C_in, C_out] for volume 1 at stride 1;
  bias [1, C_out].
- spconv 2.x (spconv/pytorch/conv.py; KRSC for every algorithm since 2.2): `weight`
  [C_out, kx, ky, kz, C_in] over the spatial axes of its indices, taken here as our x, y, z (a
  network trained on (z, y, x) indices needs its kernels' axes reversed first); odd sizes centred
  (padding (k-1)/2), even ones from 0. A 1x1x1 conv at stride 1 multiplies by
  weight.view(C_in, C_out) (spconv 2.3.8, checked against its forward), so its memory is read as
  [C_in, C_out], not transposed.
"""

import math

import torch
from torch import Tensor

from ..functional.kmap import kernel_offsets
from ..nn import Conv3d

LAYOUTS = ("pointengine", "torchsparse", "minkowski", "spconv")

# The name of the conv weight in each layout's state dicts.
WEIGHT_KEY = {"pointengine": "weight", "torchsparse": "kernel", "minkowski": "kernel", "spconv": "weight"}

Offset = tuple[int, int, int]


def _offsets(kernel_size, x_fastest: bool, even_start) -> list[Offset]:
    """Offsets of a peer's kernel in its K order; an even axis of size k starts at even_start(k)."""
    axes = [range(-(k // 2), k // 2 + 1) if k % 2 else range(even_start(k), even_start(k) + k) for k in kernel_size]
    if x_fastest:
        return [(x, y, z) for z in axes[2] for y in axes[1] for x in axes[0]]
    return [(x, y, z) for x in axes[0] for y in axes[1] for z in axes[2]]


def _torchsparse_offsets(kernel_size) -> list[Offset]:
    return _offsets(kernel_size, math.prod(kernel_size) % 2 == 1, lambda k: 1 - k // 2)


def _minkowski_offsets(kernel_size) -> list[Offset]:
    return _offsets(kernel_size, True, lambda k: 0)


PEER_OFFSETS = {"torchsparse": _torchsparse_offsets, "minkowski": _minkowski_offsets}


def peer_kernel_order(layout: str, kernel_size) -> list[int]:
    """The permutation `order` with ours[k] = theirs[order[k]] for a `layout` kernel of `kernel_size`
    (a triple); ValueError when the peer's offsets are not ours in another order."""
    peer = PEER_OFFSETS[layout](kernel_size)
    ours = [tuple(o) for o in kernel_offsets(kernel_size).tolist()]
    index = {offset: k for k, offset in enumerate(peer)}
    if set(index) != set(ours):
        raise ValueError(
            f"a {layout} kernel of size {kernel_size} covers offsets {sorted(index)}, ours {sorted(ours)}: "
            "not convertible (only odd sizes and even size 2 line up)"
        )
    return [index[offset] for offset in ours]


def _reorder(weight: Tensor, layout: str, kernel_size) -> tuple[Tensor, str]:
    """[K, C_in, C_out] in the peer's offset order -> ours, and a note of what moved."""
    order = peer_kernel_order(layout, kernel_size)
    if order == list(range(len(order))):
        return weight, ""
    return weight[order], "kernel offsets reordered x fastest -> x slowest"


def expected_weight_shape(layout: str, conv: Conv3d) -> tuple[int, ...]:
    """The shape `layout` stores `conv`'s weight in."""
    volume, c_in, c_out = conv.weight.shape
    if layout == "spconv":
        return (c_out, *conv.kernel_size, c_in)
    if volume == 1 and (layout == "torchsparse" or layout == "minkowski" and conv.stride == (1, 1, 1)):
        return (c_in, c_out)
    return (volume, c_in, c_out)


def convert_weight(layout: str, weight: Tensor, conv: Conv3d) -> tuple[Tensor, str] | None:
    """`weight` stored by `layout` for a layer of `conv`'s geometry, as ours [K, C_in, C_out], with a
    note of the change ("" when none); None when its shape is not the one that layer needs."""
    volume, c_in, c_out = conv.weight.shape
    shape = tuple(weight.shape)
    if layout == "spconv":
        if shape != expected_weight_shape(layout, conv):
            return None
        if volume == 1 and conv.stride == (1, 1, 1):
            return weight.reshape(1, c_in, c_out), "spconv 1x1x1: its memory read as [C_in, C_out], as spconv does"
        change = "[C_out, kx, ky, kz, C_in] -> [K, C_in, C_out]"
        return weight.permute(1, 2, 3, 4, 0).reshape(volume, c_in, c_out), change
    if shape == (volume, c_in, c_out):
        return (weight, "") if layout == "pointengine" else _reorder(weight, layout, conv.kernel_size)
    if layout != "pointengine" and volume == 1 and shape == (c_in, c_out):
        return weight.unsqueeze(0), "[C_in, C_out] -> [1, C_in, C_out]"
    return None


def convert_bias(bias: Tensor, channels: int) -> tuple[Tensor, str] | None:
    """A conv bias as [C_out] (MinkowskiEngine keeps [1, C_out]); None when it has another size."""
    if tuple(bias.shape) == (channels,):
        return bias, ""
    if tuple(bias.shape) == (1, channels):
        return bias.reshape(channels), "[1, C_out] -> [C_out]"
    return None


def detect_layout(state: dict) -> str:
    """The layout a state dict's names and shapes point to: `kernel` tensors are TorchSparse's, or
    MinkowskiEngine's when its BatchNorm wrapper (`.bn.`) shows; 5-dim weights are spconv's;
    anything else is ours. The two `kernel` layouts differ only for even kernels: pass the layout
    to load_checkpoint when the guess is wrong."""
    names = [f".{name}" for name in state]
    if any(name.endswith(".kernel") for name in names):
        return "minkowski" if any(name.endswith(".bn.running_mean") for name in names) else "torchsparse"
    if any(isinstance(value, torch.Tensor) and value.dim() == 5 for value in state.values()):
        return "spconv"
    return "pointengine"
