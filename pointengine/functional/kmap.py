"""Kernel maps: which input row each output site reads through each kernel offset.

Built once per (coordinate set, kernel, stride, dilation, kind) and cached on the input
CoordinateMap, so every layer with the same geometry shares one map.
"""

import itertools
import math
import weakref
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from .. import _ops
from .._checks import COORD_MAX, COORD_MIN, as_triple
from ..coordinate_map import CoordinateMap

Triple = tuple[int, int, int]
SITES = ("dense", "floor")


def kernel_offsets(kernel_size, dilation=1, device=None) -> Tensor:
    """The canonical offset order, int32 [K, 3]: x slowest, z fastest (the layout of a dense
    conv3d weight [C_out, C_in, kx, ky, kz]). Odd sizes are centred, even sizes start at 0;
    offsets are multiplied by the dilation."""
    size = as_triple(kernel_size, "kernel_size")
    dil = as_triple(dilation, "dilation")
    axes = [[(i - (s // 2 if s % 2 else 0)) * d for i in range(s)] for s, d in zip(size, dil)]
    return torch.tensor(list(itertools.product(*axes)), dtype=torch.int32, device=device).reshape(-1, 3)


@dataclass(frozen=True)
class KernelMapKey:
    kernel_size: Triple
    stride: Triple
    dilation: Triple
    kind: str  # "submanifold", "dense" or "floor" (strided output sites), "generative", "transposed"


@dataclass(frozen=True)
class KernelPairs:
    """Pairs grouped by offset: pairs of offset k are in_rows[ptr[k]:ptr[k+1]], out_rows[...]."""

    in_rows: Tensor
    out_rows: Tensor
    ptr: Tensor


@dataclass(frozen=True, eq=False)
class KernelMap:
    """nbr int32 [N_out, K]: the input row output o reads through offset k, or -1.

    `out_map` holds the output sites (the input map itself for submanifold convolutions). A map holds
    sites it made (strided, generative) strongly, and sites that existed before it (submanifold,
    transposed) through a weak reference: those maps are cached on a map that their output leads back
    to, and strong references both ways would make cycles that only the garbage collector frees, so
    memory would climb between its runs. The tensors of a network keep every level alive (`levels`).
    """

    nbr: Tensor
    n_in: int
    output: CoordinateMap | weakref.ReferenceType

    @property
    def out_map(self) -> CoordinateMap:
        if not isinstance(self.output, weakref.ReferenceType):
            return self.output
        out_map = self.output()
        if out_map is None:
            raise RuntimeError("the output sites of this kernel map were freed with the tensors that held them")
        return out_map

    @cached_property
    def pairs(self) -> KernelPairs:
        return KernelPairs(*_ops.kernel_pairs(self.nbr))

    @property
    def n_pairs(self) -> int:
        return int((self.nbr >= 0).sum())

    def transposed_table(self) -> Tensor:
        """int32 [N_in, K]: for each input row, the output row it feeds through offset k, or -1."""
        return _ops.transpose_table(self.nbr, self.n_in)


def _check_range(coords: Tensor, what: str) -> None:
    lo, hi = int(coords[:, 1:].min()), int(coords[:, 1:].max())
    if lo < COORD_MIN or hi > COORD_MAX:
        raise ValueError(f"{what} leave the coordinate range [{COORD_MIN}, {COORD_MAX}]: got [{lo}, {hi}]")


def _lookup(cmap: CoordinateMap, out_coords: Tensor, offsets: Tensor, stride: Triple, transposed: bool, submanifold: bool) -> Tensor:
    keys, vals = cmap.table.keys, cmap.table.vals
    return _ops.neighbor_table(keys, vals, out_coords, offsets, stride, transposed, submanifold)


def submanifold_map(cmap: CoordinateMap, kernel_size, dilation=1) -> KernelMap:
    """Outputs are the input sites; offsets k and K-1-k mirror each other for odd kernels."""
    key = KernelMapKey(as_triple(kernel_size, "kernel_size"), (1, 1, 1), as_triple(dilation, "dilation"), "submanifold")
    if key not in cmap.kernel_maps:
        offsets = kernel_offsets(key.kernel_size, key.dilation, cmap.coords.device)
        odd = all(s % 2 for s in key.kernel_size)
        nbr = _lookup(cmap, cmap.coords, offsets, (1, 1, 1), transposed=False, submanifold=odd)
        cmap.kernel_maps[key] = KernelMap(nbr, len(cmap), weakref.ref(cmap))
    return cmap.kernel_maps[key]


def strided_output_coords(coords: Tensor, offsets: Tensor, stride: Triple, sites: str) -> Tensor:
    """Output sites of a strided conv: "dense" = dense-convolution support (o * s + off_k is an
    input for some k), "floor" = unique(floor(c / s))."""
    s = torch.tensor(stride, dtype=torch.int32, device=coords.device)
    if sites == "floor" or _tiles_stride(offsets, stride):
        candidates = torch.cat([coords[:, :1], torch.div(coords[:, 1:], s, rounding_mode="floor")], 1)
    else:
        shifted = coords[:, None, 1:] - offsets[None]
        exact = (torch.remainder(shifted, s) == 0).all(-1)
        rows, ks = exact.nonzero(as_tuple=True)
        spatial = torch.div(shifted[rows, ks], s, rounding_mode="floor")
        candidates = torch.cat([coords[rows, :1], spatial], 1)
        # An axis of stride 1 keeps coordinates on the input grid, where an offset can step out of it.
        if len(candidates):
            _check_range(candidates, "strided conv outputs")
    return _ops.unique_coords(candidates.contiguous())


def _tiles_stride(offsets: Tensor, stride: Triple) -> bool:
    """Whether the offsets are exactly {0..s-1} on every axis (kernel = stride, starting at 0): then
    every input lies in the field of exactly one output, floor(c / s), and both site modes agree."""
    axes = [sorted(set(offsets[:, d].tolist())) for d in range(3)]
    return offsets.shape[0] == math.prod(stride) and all(a == list(range(s)) for a, s in zip(axes, stride))


def check_sites(sites) -> None:
    if sites not in SITES:
        raise ValueError(f"sites must be one of {SITES}, got {sites!r}")


def strided_map(cmap: CoordinateMap, kernel_size, stride, dilation=1, sites: str = "dense") -> KernelMap:
    """Outputs o on the coarser grid read inputs o * s + off_k."""
    check_sites(sites)
    key = KernelMapKey(as_triple(kernel_size, "kernel_size"), as_triple(stride, "stride"), as_triple(dilation, "dilation"), sites)
    if key not in cmap.kernel_maps:
        offsets = kernel_offsets(key.kernel_size, key.dilation, cmap.coords.device)
        out_map = CoordinateMap(strided_output_coords(cmap.coords, offsets, key.stride, sites), validate=False)
        nbr = _lookup(cmap, out_map.coords, offsets, key.stride, transposed=False, submanifold=False)
        cmap.kernel_maps[key] = KernelMap(nbr, len(cmap), out_map)
    return cmap.kernel_maps[key]


def generative_map(cmap: CoordinateMap, kernel_size, stride, dilation=1) -> KernelMap:
    """Transposed conv that makes new sites: outputs are every o = i * s + off_k, and o reads
    input (o - off_k) / s where that divides exactly."""
    key = KernelMapKey(as_triple(kernel_size, "kernel_size"), as_triple(stride, "stride"), as_triple(dilation, "dilation"), "generative")
    if key not in cmap.kernel_maps:
        offsets = kernel_offsets(key.kernel_size, key.dilation, cmap.coords.device)
        s = torch.tensor(key.stride, dtype=torch.int64, device=cmap.coords.device)
        spatial = (cmap.coords[:, None, 1:].long() * s + offsets[None].long()).reshape(-1, 3)
        _check_range(torch.cat([spatial.new_zeros(len(spatial), 1), spatial], 1), "generative transposed conv outputs")
        batch = cmap.coords[:, :1].repeat_interleave(offsets.shape[0], 0)
        out_coords = _ops.unique_coords(torch.cat([batch, spatial.int()], 1))
        out_map = CoordinateMap(out_coords, validate=False)
        nbr = _lookup(cmap, out_coords, offsets, key.stride, transposed=True, submanifold=False)
        cmap.kernel_maps[key] = KernelMap(nbr, len(cmap), out_map)
    return cmap.kernel_maps[key]


def transposed_map(coarse: CoordinateMap, fine: CoordinateMap, kernel_size, stride, dilation=1) -> KernelMap:
    """The adjoint of the strided map that took `fine` to `coarse`: outputs are the fine sites,
    and fine site i reads coarse row o through offset k where i = o * s + off_k. With stride 1,
    `coarse` is `fine` and the map inverted is the submanifold one."""
    key = KernelMapKey(as_triple(kernel_size, "kernel_size"), as_triple(stride, "stride"), as_triple(dilation, "dilation"), "transposed")
    if key not in coarse.kernel_maps:
        if key.stride == (1, 1, 1):
            forward = submanifold_map(fine, key.kernel_size, key.dilation)
        else:
            forward = _find_strided(coarse, fine, key)
        coarse.kernel_maps[key] = KernelMap(forward.transposed_table(), len(coarse), weakref.ref(fine))
    return coarse.kernel_maps[key]


def _find_strided(coarse: CoordinateMap, fine: CoordinateMap, key: KernelMapKey) -> KernelMap:
    for sites in SITES:
        kmap = fine.kernel_maps.get(KernelMapKey(key.kernel_size, key.stride, key.dilation, sites))
        if kmap is not None and kmap.out_map is coarse:
            return kmap
    # The map may have been dropped (the tensor was moved): rebuild it, and accept it only if it
    # reproduces exactly these coarse sites, in this row order.
    kmap = strided_map(fine, key.kernel_size, key.stride, key.dilation)
    if not torch.equal(kmap.out_map.coords, coarse.coords):
        raise ValueError(
            "transposed conv: the input sites were not made by a strided conv with "
            f"kernel_size={key.kernel_size}, stride={key.stride}, dilation={key.dilation} from the "
            "finer level; use generative=True to create new sites instead"
        )
    return kmap
