"""conv_fused on every CPU path the machine runs (AVX-512, AVX2 + FMA, the portable loop) with channel
counts that leave tails past the 8- and 16-wide vectors and the 32- and 64-wide panels, several tiles
of output rows: every element against the float64 dense reference. The AVX2 and AVX-512 paths make
the same fused multiply-adds in the same order: they agree bit for bit."""

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

# The registered op (the best path) and every path this CPU runs, by name.
PATHS = {
    "default": torch.ops.pointengine.conv_fused,
    **{path: lambda *args, path=path: _C.conv_fused_on(*args, path) for path in _C.cpu_paths()},
}
CHANNELS = [(1, 1), (3, 7), (5, 9), (8, 33), (33, 40), (17, 64), (16, 80), (24, 100)]


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


@pytest.mark.skipif(_C.cpu_paths()[-1] != "avx512", reason="this CPU has no AVX-512")
@pytest.mark.parametrize("c_in, c_out", CHANNELS)
def test_avx512_equals_avx2_bit_for_bit(c_in, c_out):
    g = torch.Generator().manual_seed(c_in + 7 * c_out)
    cmap = CoordinateMap(random_sites(600, 2, 12, g))
    nbr = km.submanifold_map(cmap, 3).nbr
    feats, weight = torch.randn(len(cmap), c_in, generator=g), torch.randn(27, c_in, c_out, generator=g)
    assert torch.equal(_C.conv_fused_on(feats, weight, nbr, "avx512"), _C.conv_fused_on(feats, weight, nbr, "avx2"))


def test_unknown_or_missing_paths_are_refused():
    with pytest.raises(RuntimeError, match="unknown CPU path 'sse'; expected portable, avx2 or avx512"):
        _C.conv_fused_on(torch.zeros(3, 2), torch.zeros(27, 2, 3), torch.full((3, 27), -1, dtype=torch.int32), "sse")
