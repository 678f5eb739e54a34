"""conv_fused on both CPU paths (AVX2 + FMA where the CPU has it, and the portable loop) with channel
counts that leave tails past the 8-wide vectors and 32-wide panels, several tiles of output rows:
every element against the float64 dense reference."""

import pytest
import torch

from pointengine import _C
from pointengine.coordinate_map import CoordinateMap
from pointengine.functional import kmap as km
from pointengine.testing import (
    RELATIVE_TOLERANCE,
    dense_conv_reference,
    random_sites,
    read_sites,
    relative_error,
)

PATHS = {"default": torch.ops.pointengine.conv_fused, "portable": _C.conv_fused_portable}
CHANNELS = [(1, 1), (3, 7), (5, 9), (8, 33), (33, 40), (17, 64)]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("c_in, c_out", CHANNELS)
@pytest.mark.parametrize("kernel_size, stride", [(3, 1), (2, 2)])
def test_tails_match_dense_reference(path, dtype, c_in, c_out, kernel_size, stride):
    g = torch.Generator().manual_seed(c_in * 100 + c_out)
    coords = random_sites(400, 3, 9, g)  # ~350 sites: three 128-row tiles, the last one partial
    cmap = CoordinateMap(coords)
    kmap = km.submanifold_map(cmap, kernel_size) if stride == 1 else km.strided_map(cmap, kernel_size, stride)
    feats = torch.randn(len(coords), c_in, generator=g, dtype=torch.float64)
    weight = torch.randn(kmap.nbr.shape[1], c_in, c_out, generator=g, dtype=torch.float64)
    ref_coords, ref_feats = dense_conv_reference(feats, coords, weight, (kernel_size,) * 3, (stride,) * 3)
    out = PATHS[path](feats.to(dtype), weight.to(dtype), kmap.nbr)
    assert out.dtype == dtype
    assert relative_error(out, read_sites(ref_coords, ref_feats, kmap.out_map.coords)) <= RELATIVE_TOLERANCE[dtype]


@pytest.mark.parametrize("path", PATHS)
def test_bitwise_equal_across_thread_counts(path, restore_threads):
    g = torch.Generator().manual_seed(0)
    cmap = CoordinateMap(random_sites(2000, 2, 16, g))
    nbr = km.submanifold_map(cmap, 3).nbr
    feats, weight = torch.randn(len(cmap), 19, generator=g), torch.randn(27, 19, 35, generator=g)
    torch.set_num_threads(1)
    one = PATHS[path](feats, weight, nbr)
    torch.set_num_threads(2)
    assert torch.equal(one, PATHS[path](feats, weight, nbr))


def test_rejects_rows_past_the_inputs():
    nbr = torch.full((3, 27), -1, dtype=torch.int32)
    nbr[1, 4] = 3
    with pytest.raises(RuntimeError, match="nbr holds a row index >= the number of feats rows"):
        torch.ops.pointengine.conv_fused(torch.zeros(3, 2), torch.zeros(27, 2, 3), nbr)
