"""tile_pairs: a neighbour table's pairs compacted tile by tile once per kernel map, against lists built
here by brute force from the table; conv_fused, conv_fused_epilogue, conv_int8 and conv_bf16 reading
them give the bits of the kernels compacting the table themselves, on every CPU path (forward, and the
float layer's backward); bad lists are refused with a message, never read."""

import pytest
import torch

from pointengine import SparseTensor, _C, _ops
from pointengine.coordinate_map import CoordinateMap
from pointengine.functional import conv3d
from pointengine.functional import kmap as km
from pointengine.testing import random_sites

TILE_ROWS = 128  # kTileRows of csrc/cpu/conv_tile.h


def brute_force_lists(nbr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(pairs [2, P], ptr): for each tile of TILE_ROWS rows, then each offset, the tile rows (ascending)
    that read an input through that offset, with the input rows."""
    rows, inputs, ptr = [], [], [0]
    for begin in range(0, nbr.shape[0], TILE_ROWS):
        tile = nbr[begin : begin + TILE_ROWS]
        for k in range(nbr.shape[1]):
            present = [r for r in range(tile.shape[0]) if tile[r, k] >= 0]
            rows += present
            inputs += [int(tile[r, k]) for r in present]
            ptr.append(len(rows))
    return torch.tensor([rows, inputs], dtype=torch.int32).view(2, -1), torch.tensor(ptr, dtype=torch.int64)


@pytest.mark.parametrize("n_rows", [0, 1, 127, 128, 129, 300])
@pytest.mark.parametrize("kvol", [1, 8, 27])
def test_lists_match_brute_force(n_rows, kvol):
    g = torch.Generator().manual_seed(n_rows * 31 + kvol)
    n_in = 50
    nbr = torch.randint(0, n_in, (n_rows, kvol), generator=g, dtype=torch.int32)
    nbr[torch.rand(n_rows, kvol, generator=g) < 0.7] = -1
    pairs, ptr = _ops.tile_pairs(nbr, n_in)
    expected_pairs, expected_ptr = brute_force_lists(nbr)
    assert torch.equal(ptr, expected_ptr)
    assert torch.equal(pairs, expected_pairs)


def test_rejects_rows_past_the_inputs():
    nbr = torch.full((3, 27), -1, dtype=torch.int32)
    nbr[1, 4] = 3
    with pytest.raises(RuntimeError, match=r"tile_pairs: nbr holds a row index >= n_in \(3\)"):
        _ops.tile_pairs(nbr, 3)
    with pytest.raises(RuntimeError, match="n_in must be >= 0"):
        _ops.tile_pairs(nbr, -1)
    with pytest.raises(RuntimeError, match="nbr must have dtype torch.int32"):
        _ops.tile_pairs(nbr.long(), 4)


def shared_map(n: int, g: torch.Generator) -> km.KernelMap:
    return km.submanifold_map(CoordinateMap(random_sites(n, 2, 9, g)), 3)


@pytest.mark.parametrize("path", _C.cpu_paths())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("c_in, c_out", [(1, 1), (3, 7), (16, 16), (19, 40), (48, 48), (24, 100)])
def test_conv_reading_lists_equals_conv_compacting(path, dtype, c_in, c_out):
    g = torch.Generator().manual_seed(c_in * 100 + c_out)
    kmap = shared_map(400, g)  # ~350 sites: three tiles, the last one partial
    lists = kmap.tile_lists
    feats = torch.randn(kmap.n_in, c_in, generator=g, dtype=dtype)
    weight = torch.randn(27, c_in, c_out, generator=g, dtype=dtype)
    assert torch.equal(_C.conv_fused_on(feats, weight, kmap.nbr, path, *lists),
                       _C.conv_fused_on(feats, weight, kmap.nbr, path))
    bias, residual = torch.randn(c_out, generator=g, dtype=dtype), torch.randn(kmap.n_in, c_out, generator=g, dtype=dtype)
    assert torch.equal(_C.conv_fused_epilogue_on(feats, weight, kmap.nbr, bias, residual, True, path, *lists),
                       _C.conv_fused_epilogue_on(feats, weight, kmap.nbr, bias, residual, True, path))


@pytest.mark.parametrize("path", _C.int8_paths())
@pytest.mark.parametrize("c_in, c_out", [(3, 7), (16, 16), (64, 64), (24, 100)])
def test_int8_conv_reading_lists_equals_int8_conv_compacting(path, c_in, c_out):
    g = torch.Generator().manual_seed(c_in * 100 + c_out)
    kmap = shared_map(400, g)
    q = torch.randint(0, 128, (kmap.n_in, c_in), generator=g, dtype=torch.uint8)
    weight = torch.randint(-127, 128, (27, c_in, c_out), generator=g).to(torch.int8)
    scale, bias = torch.rand(c_out, generator=g) + 0.01, torch.randn(c_out, generator=g)
    for out_scale in (None, 0.05):
        args = (q, 0.1, 5, weight, scale, kmap.nbr, bias, None, True, out_scale, 3, path)
        assert torch.equal(_C.conv_int8_on(*args, *kmap.tile_lists), _C.conv_int8_on(*args))


@pytest.mark.parametrize("path", _C.bf16_paths())
@pytest.mark.parametrize("c_in, c_out", [(3, 7), (32, 48)])
def test_bf16_conv_reading_lists_equals_bf16_conv_compacting(path, c_in, c_out):
    g = torch.Generator().manual_seed(c_in * 100 + c_out)
    kmap = shared_map(400, g)
    feats = torch.randn(kmap.n_in, c_in, generator=g).bfloat16()
    weight = torch.randn(27, c_in, c_out, generator=g).bfloat16()
    args = (feats, weight, kmap.nbr, torch.randn(c_out, generator=g), None, True, False, path)
    assert torch.equal(_C.conv_bf16_on(*args, *kmap.tile_lists), _C.conv_bf16_on(*args))


@pytest.mark.parametrize("relu", [False, True])
def test_layer_reads_the_lists_and_its_gradients_agree(relu):
    """conv3d on a submanifold map passes the map's lists (forward, and the input gradient through the
    mirrored table); the outputs and gradients equal the raw op's on the table alone."""
    g = torch.Generator().manual_seed(5)
    coords = random_sites(600, 2, 10, g)
    x = SparseTensor(torch.randn(len(coords), 12, generator=g, dtype=torch.float64, requires_grad=True), coords)
    weight = torch.randn(27, 12, 20, generator=g, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(20, generator=g, dtype=torch.float64, requires_grad=True)
    out = conv3d(x, weight, bias, relu=relu)
    kmap = km.submanifold_map(x.coordinate_map, 3)
    assert kmap.shared and kmap.cpu_tiles(x.feats) is not None
    grad = torch.randn(out.feats.shape, generator=g, dtype=torch.float64)
    grads = torch.autograd.grad(out.feats, (x.feats, weight, bias), grad)

    feats = x.feats.detach().requires_grad_()
    w, b = weight.detach().requires_grad_(), bias.detach().requires_grad_()
    expected = torch.ops.pointengine.conv_fused_epilogue(feats, w, kmap.nbr.clone(), b, None, relu)
    assert torch.equal(out.feats, expected)
    for actual, reference in zip(grads, torch.autograd.grad(expected, (feats, w, b), grad)):
        assert torch.allclose(actual, reference, rtol=1e-12, atol=1e-12)


def test_strided_maps_have_no_lists():
    g = torch.Generator().manual_seed(0)
    cmap = CoordinateMap(random_sites(200, 1, 9, g))
    strided = km.strided_map(cmap, 2, 2)
    assert not strided.shared and strided.cpu_tiles(torch.zeros(1)) is None


def bad_lists(nbr: torch.Tensor, n_in: int) -> dict:
    pairs, ptr = _ops.tile_pairs(nbr, n_in)
    row_outside, input_outside, falling = pairs.clone(), pairs.clone(), ptr.clone()
    row_outside[0, -1] = nbr.shape[0] % TILE_ROWS  # past the rows of the last, partial tile
    input_outside[1, 0] = n_in
    falling[1] = int(ptr[2]) + 1  # past the start of the next list
    return {
        "tile_pairs and tile_ptr come together": (pairs, None),
        "tile_pairs must be a contiguous": (pairs.t().contiguous().t(), ptr),
        "tile_ptr must be a contiguous vector of": (pairs, ptr[:-1]),
        "tile_ptr must have dtype torch.int64": (pairs, ptr.int()),
        "tile_ptr must rise from 0": (pairs, falling),
        "tile_pairs holds a tile row outside its tile": (row_outside, ptr),
        r"tile_pairs holds .* an input row outside \[0, \d+\)": (input_outside, ptr),
    }


@pytest.mark.parametrize("case", range(7))
def test_refuses_lists_that_do_not_fit(case):
    g = torch.Generator().manual_seed(1)
    kmap = shared_map(300, g)
    assert kmap.nbr.shape[0] % TILE_ROWS != 0
    message, (pairs, ptr) = list(bad_lists(kmap.nbr, kmap.n_in).items())[case]
    feats, weight = torch.randn(kmap.n_in, 4, generator=g), torch.randn(27, 4, 5, generator=g)
    with pytest.raises(RuntimeError, match=f"conv_fused: {message}"):
        torch.ops.pointengine.conv_fused(feats, weight, kmap.nbr, pairs, ptr)
    with pytest.raises(RuntimeError, match=f"conv_fused_epilogue: {message}"):
        torch.ops.pointengine.conv_fused_epilogue(feats, weight, kmap.nbr, None, None, True, pairs, ptr)
    q, weight_int8 = torch.zeros(kmap.n_in, 4, dtype=torch.uint8), torch.ones(27, 4, 5, dtype=torch.int8)
    with pytest.raises(RuntimeError, match=f"conv_int8: {message}"):
        torch.ops.pointengine.conv_int8(q, 0.1, 0, weight_int8, torch.ones(5), kmap.nbr, None, None, True, None, 0,
                                        pairs, ptr)
    with pytest.raises(RuntimeError, match=f"conv_bf16: {message}"):
        torch.ops.pointengine.conv_bf16(feats.bfloat16(), weight.bfloat16(), kmap.nbr, None, None, True, False, pairs, ptr)
