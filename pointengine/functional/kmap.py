"""Kernel maps: which input row each output site reads through each kernel offset.

Built once per (coordinate set, kernel, stride, dilation, kind) and cached on the input
CoordinateMap, so every layer with the same geometry shares one map.
"""

import functools
import weakref
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from .. import _ops
from .._checks import COORD_MAX, COORD_MIN, MAX_GEOMETRY, as_triple, tracing
from ..coordinate_map import CoordinateMap

Triple = tuple[int, int, int]
SITES = ("dense", "floor")


def kernel_offsets(kernel_size, dilation=1, device=None) -> Tensor:
    """The canonical offset order, int32 [K, 3]: x slowest, z fastest (the layout of a dense
    conv3d weight [C_out, C_in, kx, ky, kz]). Odd sizes are centred, even sizes start at 0;
    offsets are multiplied by the dilation, and span at most MAX_GEOMETRY grid units per axis."""
    size, dil = as_triple(kernel_size, "kernel_size"), as_triple(dilation, "dilation")
    # Not through the cache while tracing: a tensor made there is the tracer's, not a real one.
    offsets = _offsets.__wrapped__(size, dil) if tracing() else _offsets(size, dil)
    return offsets.to(device, copy=True)


@functools.lru_cache(maxsize=64)
def _offsets(size: Triple, dil: Triple) -> Tensor:
    """kernel_offsets on the CPU, computed once per geometry (callers get copies: a map build then
    spends 2 us here, not 50). With torch, not a Python loop, so that a kernel too large to hold
    fails at once instead of being enumerated."""
    for axis, s, d in zip("xyz", size, dil):
        if (s - 1) * d > MAX_GEOMETRY:
            raise ValueError(
                f"kernel_size {size} with dilation {dil} spans (kernel_size - 1) * dilation = {(s - 1) * d} grid "
                f"units on {axis}, more than the {MAX_GEOMETRY} of the coordinate range"
            )
    axes = [(torch.arange(s) - (s // 2 if s % 2 else 0)) * d for s, d in zip(size, dil)]
    return torch.cartesian_prod(*axes).int()


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
    `shared`: the map of every submanifold layer of a level (odd kernels), whose pairs the CPU's fused
    kernels read from `tile_lists`, made once, instead of compacting the table in each layer.
    """

    nbr: Tensor
    n_in: int
    output: CoordinateMap | weakref.ReferenceType
    shared: bool = False

    @property
    def out_map(self) -> CoordinateMap:
        if not isinstance(self.output, weakref.ReferenceType):
            return self.output
        out_map = self.output()
        if out_map is None:
            raise RuntimeError("the output sites of this kernel map were freed with the tensors that held them")
        return out_map

    @property
    def alive(self) -> bool:
        """False once the output sites held weakly were freed."""
        return not isinstance(self.output, weakref.ReferenceType) or self.output() is not None

    def __getstate__(self) -> dict:
        # A weak reference cannot be copied or pickled: the state holds the sites themselves (the
        # copy of the coordinate map being copied, through the memo) and __setstate__ weakens it again.
        state = dict(self.__dict__)
        if isinstance(self.output, weakref.ReferenceType):
            state["output"], state["weak_output"] = self.out_map, True
        return state

    def __setstate__(self, state: dict) -> None:
        if state.pop("weak_output", False):
            state["output"] = weakref.ref(state["output"])
        self.__dict__.update(state)

    @cached_property
    def pairs(self) -> KernelPairs:
        return KernelPairs(*_ops.kernel_pairs(self.nbr))

    @cached_property
    def tile_lists(self) -> tuple[Tensor, Tensor]:
        """The table's pairs compacted tile by tile (_ops.tile_pairs), on the CPU."""
        return _ops.tile_pairs(self.nbr, self.n_in)

    def cpu_tiles(self, feats: Tensor) -> tuple[Tensor, Tensor] | None:
        """What a fused kernel reading this map with `feats` takes besides the table: the tile lists of
        a shared map on the CPU, outside torch.compile and export (whose graphs hold the table alone)."""
        if self.shared and feats.device.type == "cpu" and not tracing():
            return self.tile_lists
        return None

    @cached_property
    def row_order(self) -> Tensor:
        """int32 [M]: the output rows sorted (stably) by which of the first 63 offsets they read, so
        that the tiles of the GPU's implicit GEMM hold rows reading the same offsets and skip the
        others (csrc/cuda/conv_implicit_gemm_cuda.cu). Built on the table's device, with no wait."""
        k = min(self.nbr.shape[1], 63)
        # int32 keys while they fit (up to 31 offsets: 3x3x3 kernels): a radix sort of half the passes.
        dtype = torch.int32 if k <= 31 else torch.int64
        bits = torch.ones(k, dtype=dtype, device=self.nbr.device) << torch.arange(k, dtype=dtype, device=self.nbr.device)
        pattern = ((self.nbr[:, :k] >= 0).to(dtype) * bits).sum(1, dtype=dtype)
        return torch.sort(pattern, stable=True).indices.int()

    @property
    def n_pairs(self) -> int:
        return int((self.nbr >= 0).sum())

    def transposed_table(self) -> Tensor:
        """int32 [N_in, K]: for each input row, the output row it feeds through offset k, or -1."""
        return _ops.transpose_table(self.nbr, self.n_in)


def _check_range(spatial: Tensor, what: str) -> None:
    """Exact (int64) x, y, z of new sites [N, 3] must fit the packed keys."""
    if tracing() or len(spatial) == 0:
        return
    lo, hi = int(spatial.min()), int(spatial.max())
    if lo < COORD_MIN or hi > COORD_MAX:
        raise ValueError(f"{what} leave the coordinate range [{COORD_MIN}, {COORD_MAX}]: got [{lo}, {hi}]")


def _lookup(cmap: CoordinateMap, out_coords: Tensor, offsets: Tensor, stride: Triple, transposed: bool, submanifold: bool) -> Tensor:
    keys, vals = cmap.table.keys, cmap.table.vals
    return _ops.neighbor_table(keys, vals, out_coords, offsets, stride, transposed, submanifold)


def submanifold_map(cmap: CoordinateMap, kernel_size, dilation=1) -> KernelMap:
    """Outputs are the input sites; offsets k and K-1-k mirror each other for odd kernels, so the
    table is its own transpose with the offsets reversed (marked for the backward)."""
    key = KernelMapKey(as_triple(kernel_size, "kernel_size"), (1, 1, 1), as_triple(dilation, "dilation"), "submanifold")

    def build() -> KernelMap:
        offsets = kernel_offsets(key.kernel_size, key.dilation, cmap.coords.device)
        odd = all(s % 2 for s in key.kernel_size)
        nbr = _lookup(cmap, cmap.coords, offsets, (1, 1, 1), transposed=False, submanifold=odd)
        if odd:
            _ops.mark_mirrored(nbr)
        return KernelMap(nbr, cmap.num_rows, weakref.ref(cmap), shared=odd)

    return cmap.kernel_map(key, build)


def strided_output_coords(coords: Tensor, offsets: Tensor, stride: Triple, sites: str, tiles: bool = False) -> Tensor:
    """Output sites of a strided conv: "dense" = dense-convolution support (o * s + off_k is an
    input for some k), "floor" = unique(floor(c / s)). tiles: the offsets tile the stride
    (`tiles_stride`), where both modes agree and the floor is the faster."""
    if sites == "floor" or tiles:
        # |floor(c / s)| <= |c|: the outputs stay in range, int32 suffices.
        s = torch.tensor(stride, dtype=torch.int32, device=coords.device)
        candidates = torch.cat([coords[:, :1], torch.div(coords[:, 1:], s, rounding_mode="floor")], 1)
    else:
        # In 64 bits: c - off can leave int32 for offsets of any int32 value, and the exact outputs
        # are checked against the range before they are narrowed back.
        s = torch.tensor(stride, dtype=torch.int64, device=coords.device)
        shifted = coords[:, None, 1:].long() - offsets.to(coords.device)[None].long()
        exact = (torch.remainder(shifted, s) == 0).all(-1)
        rows, ks = exact.nonzero(as_tuple=True)
        spatial = torch.div(shifted[rows, ks], s, rounding_mode="floor")
        # An axis of stride 1 keeps coordinates on the input grid, where an offset can step out of it.
        _check_range(spatial, "strided conv outputs")
        candidates = torch.cat([coords[rows, :1], spatial.int()], 1)
    return _ops.unique_coords(candidates.contiguous())


def tiles_stride(kernel_size: Triple, dilation: Triple, stride: Triple) -> bool:
    """Whether the offsets are exactly {0..s-1} on every axis (kernel = stride, starting at 0: even,
    or 1; dilation 1 where the kernel is wider than 1): then every input lies in the field of exactly
    one output, floor(c / s), and both site modes agree."""
    return all(k == s and (k % 2 == 0 or k == 1) and (d == 1 or k == 1) for k, d, s in zip(kernel_size, dilation, stride))


def check_sites(sites) -> None:
    if sites not in SITES:
        raise ValueError(f"sites must be one of {SITES}, got {sites!r}")


def strided_map(cmap: CoordinateMap, kernel_size, stride, dilation=1, sites: str = "dense") -> KernelMap:
    """Outputs o on the coarser grid read inputs o * s + off_k."""
    check_sites(sites)
    key = KernelMapKey(as_triple(kernel_size, "kernel_size"), as_triple(stride, "stride"), as_triple(dilation, "dilation"), sites)

    def build() -> KernelMap:
        offsets = kernel_offsets(key.kernel_size, key.dilation, cmap.coords.device)
        tiles = tiles_stride(key.kernel_size, key.dilation, key.stride)
        if tiles and cmap.coords.device.type == "cpu":
            out_coords, nbr = _tiled_table(cmap.coords, offsets, key.stride)
            return KernelMap(nbr, cmap.num_rows, CoordinateMap(out_coords, validate=False, distinct=True))
        out_map = CoordinateMap(strided_output_coords(cmap.coords, offsets, key.stride, sites, tiles), validate=False, distinct=True)
        nbr = _lookup(cmap, out_map.coords, offsets, key.stride, transposed=False, submanifold=False)
        return KernelMap(nbr, cmap.num_rows, out_map)

    return cmap.kernel_map(key, build)


def _tiled_table(coords: Tensor, offsets: Tensor, stride: Triple) -> tuple[Tensor, Tensor]:
    """(output coords, neighbour table) of a strided map whose offsets tile the stride, from distinct
    CPU input coords without a hash lookup: every input i lies in the field of exactly one output,
    o = floor(c_i / s), through the offset c_i - o * s; the outputs are unique_coords' and each
    (o, k) has at most one input. Equal to strided_output_coords + _lookup for these maps. Coordinates
    are in the packable range, so int32 holds every product (int64 division is 20-70x slower)."""
    s = torch.tensor(stride, dtype=torch.int32)
    floor = torch.div(coords[:, 1:], s, rounding_mode="floor")
    out_coords, inverse = _ops.unique_coords_inverse(torch.cat([coords[:, :1], floor], 1))
    remainder = coords[:, 1:] - floor * s
    offset_index = torch.empty(stride, dtype=torch.int32)  # [rx, ry, rz] -> k
    offset_index[tuple(offsets.long().t())] = torch.arange(offsets.shape[0], dtype=torch.int32)
    k = offset_index.view(-1)[(remainder[:, 0] * stride[1] + remainder[:, 1]) * stride[2] + remainder[:, 2]]
    nbr = torch.full((out_coords.shape[0] * offsets.shape[0],), -1, dtype=torch.int32)
    nbr.index_copy_(0, inverse.long() * offsets.shape[0] + k, torch.arange(coords.shape[0], dtype=torch.int32))
    return out_coords, nbr.view(out_coords.shape[0], offsets.shape[0])


def generative_map(cmap: CoordinateMap, kernel_size, stride, dilation=1) -> KernelMap:
    """Transposed conv that makes new sites: outputs are every o = i * s + off_k, and o reads
    input (o - off_k) / s where that divides exactly."""
    key = KernelMapKey(as_triple(kernel_size, "kernel_size"), as_triple(stride, "stride"), as_triple(dilation, "dilation"), "generative")

    def build() -> KernelMap:
        offsets = kernel_offsets(key.kernel_size, key.dilation, cmap.coords.device)
        s = torch.tensor(key.stride, dtype=torch.int64, device=cmap.coords.device)
        spatial = (cmap.coords[:, None, 1:].long() * s + offsets[None].long()).reshape(-1, 3)
        _check_range(spatial, "generative transposed conv outputs")
        batch = cmap.coords[:, :1].repeat_interleave(offsets.shape[0], 0)
        out_coords = _ops.unique_coords(torch.cat([batch, spatial.int()], 1))
        out_map = CoordinateMap(out_coords, validate=False, distinct=True)
        nbr = _lookup(cmap, out_coords, offsets, key.stride, transposed=True, submanifold=False)
        return KernelMap(nbr, cmap.num_rows, out_map)

    return cmap.kernel_map(key, build)


def transposed_map(coarse: CoordinateMap, fine: CoordinateMap, kernel_size, stride, dilation=1) -> KernelMap:
    """The adjoint of the strided map that took `fine` to `coarse`: outputs are the fine sites,
    and fine site i reads coarse row o through offset k where i = o * s + off_k. With stride 1,
    `coarse` is `fine` and the map inverted is the submanifold one."""
    key = KernelMapKey(as_triple(kernel_size, "kernel_size"), as_triple(stride, "stride"), as_triple(dilation, "dilation"), "transposed")

    def build() -> KernelMap:
        if key.stride == (1, 1, 1):
            forward = submanifold_map(fine, key.kernel_size, key.dilation)
        else:
            forward = _find_strided(coarse, fine, key)
        table = forward.transposed_table()
        # Each map is the other's transpose: the backward passes of both convs read them as built.
        _ops.remember_transpose(forward.nbr, forward.n_in, table)
        _ops.remember_transpose(table, coarse.num_rows, forward.nbr)
        return KernelMap(table, coarse.num_rows, weakref.ref(fine))

    # Locks go from the coarse map to the fine one, never back: no two threads can wait on each other.
    return coarse.kernel_map(key, build)


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
