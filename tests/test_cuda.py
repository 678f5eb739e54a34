"""The CUDA kernels against the CPU ones: every torch.ops.pointengine op run on both devices with the
same inputs. Integer results (hash answers, unique sites, neighbour tables, pair lists, trilinear
corner rows) are equal exactly; float results are within a relative error per dtype, float16 and
bfloat16 against the float64 CPU result of the same rounded inputs; the forward float ops give the
same bits twice. The hash tables' slot layouts may differ between devices: only their answers are
compared. Inputs: random rows with repeats and negative coordinates in three batches, and the first
real SemanticKITTI scan at 0.05 m (skipped without ../shared/data)."""

import pytest
import torch
from torch import Tensor

from pointengine import CoordinateMap, _ops
from pointengine.functional import kernel_offsets
from pointengine.functional import kmap as km
from pointengine.testing import brute_force_corners, random_points, random_sites, relative_error, triple

from cuda_helpers import CUDA, DTYPES, HALF, TOLERANCE, randn, shuffled

pytestmark = pytest.mark.cuda


def random_rows(n: int, seed: int, batches: int = 3, extent: int = 24, low: int = -12) -> Tensor:
    """int32 [n, 4] (batch, x, y, z) drawn with replacement: about 5 % repeats, negative coordinates."""
    g = torch.Generator().manual_seed(seed)
    axes = [torch.randint(low, low + extent, (n,), generator=g) for _ in range(3)]
    return torch.stack([torch.randint(0, batches, (n,), generator=g), *axes], 1).int()


@pytest.fixture(params=["random", "kitti"])
def rows_with_repeats(request) -> Tensor:
    return random_rows(4000, seed=0) if request.param == "random" else request.getfixturevalue("kitti_rows")


@pytest.fixture(params=["random", "kitti"])
def sites(request) -> Tensor:
    """Distinct sites in a random row order."""
    if request.param == "random":
        return random_sites(1500, 3, 16, torch.Generator().manual_seed(1), low=-8)
    return request.getfixturevalue("kitti_sites")


def cpu_args(args) -> list:
    """The CPU op's arguments: float16 and bfloat16 tensors as float64, the same values exactly (the
    CPU kernels compute in float32 and float64 only)."""
    return [a.double() if isinstance(a, Tensor) and a.dtype in HALF else a for a in args]


def cuda_args(args) -> list:
    return [a.to(CUDA) if isinstance(a, Tensor) else a for a in args]


def check_float_op(op, args, dtype) -> Tensor:
    """op on CUDA within TOLERANCE[dtype] of op on the CPU; returns the CUDA result."""
    got = op(*cuda_args(args))
    expected = op(*cpu_args(args))
    assert got.device.type == "cuda" and got.dtype == dtype, op.__name__
    err = relative_error(got.cpu(), expected)
    assert err <= TOLERANCE[dtype], f"{op.__name__} in {dtype}: relative error {err:.2e} against the CPU"
    return got


def table(coords: Tensor):
    keys, vals, _ = _ops.hash_build(coords)
    return keys, vals


# --- coordinates: hash table, unique sites, neighbour tables, pair lists --------------------------


def test_hash_build_and_query(rows_with_repeats, restore_threads):
    rows = rows_with_repeats
    keys, vals, duplicates = _ops.hash_build(rows.to(CUDA))
    assert keys.device.type == vals.device.type == "cuda"
    first = {}
    for i, row in enumerate(map(tuple, rows.tolist())):
        first.setdefault(row, i)
    assert duplicates == len(rows) - len(first) > 0
    # Asked: every row, the first 300 moved to batch 7 (in no table), and rows outside the packable range.
    absent = rows[:300].clone()
    absent[:, 0] = 7
    outside = torch.tensor([[0, 40000, 0, 0], [0, 0, -40000, 0], [70000, 0, 0, 0]], dtype=torch.int32)
    queries = torch.cat([rows, absent, outside])
    got = _ops.hash_query(keys, vals, queries.to(CUDA)).cpu()
    # A repeated coordinate answers its first row (with one thread, the CPU's table keeps it too).
    expected = torch.tensor([first[r] for r in map(tuple, rows.tolist())] + [-1] * (len(absent) + 3), dtype=torch.int32)
    assert torch.equal(got, expected)
    torch.set_num_threads(1)
    assert torch.equal(got, _ops.hash_query(*table(rows), queries))


def test_unique_coords(rows_with_repeats):
    rows = rows_with_repeats
    got = _ops.unique_coords(rows.to(CUDA))
    assert got.device.type == "cuda"
    assert torch.equal(got.cpu(), _ops.unique_coords(rows))


# (kernel_size, dilation, stride, kind): kind is the output sites: "submanifold" (the input sites),
# "dense" or "floor" (of a strided conv), "generative" (of a transposed conv making new sites).
MAPS = {
    "submanifold 3": (3, 1, 1, "submanifold"),
    "submanifold 5": (5, 1, 1, "submanifold"),
    "submanifold 2x3x1": ((2, 3, 1), 1, 1, "submanifold"),
    "submanifold 3 dilation 2": (3, 2, 1, "submanifold"),
    "strided 2/2": (2, 1, 2, "dense"),
    "strided 3/2 dense": (3, 1, 2, "dense"),
    "strided 3/2 floor": (3, 1, 2, "floor"),
    "strided 3x1x2/2x1x3": ((3, 1, 2), 1, (2, 1, 3), "dense"),
    "generative 2/2": (2, 1, 2, "generative"),
    "generative 3/2": (3, 1, 2, "generative"),
}


def map_inputs(sites: Tensor, case) -> tuple[Tensor, Tensor, tuple, bool, bool]:
    """(out_coords, offsets, stride, transposed, submanifold) of a neighbour table, made on the CPU."""
    kernel_size, dilation, stride, kind = case
    offsets, st = kernel_offsets(kernel_size, dilation), triple(stride)
    if kind == "submanifold":
        return sites, offsets, st, False, all(k % 2 for k in triple(kernel_size))
    if kind == "generative":
        out = km.generative_map(CoordinateMap(sites), kernel_size, stride, dilation).out_map.coords
        return out, offsets, st, True, False
    tiles = km.tiles_stride(triple(kernel_size), triple(dilation), st)
    return km.strided_output_coords(sites, offsets, st, kind, tiles), offsets, st, False, False


@pytest.mark.parametrize("case", MAPS.values(), ids=MAPS.keys())
def test_neighbor_table_and_kernel_pairs(sites, case):
    out_coords, offsets, stride, transposed, submanifold = map_inputs(sites, case)
    expected = _ops.neighbor_table(*table(sites), out_coords, offsets, stride, transposed, submanifold)
    keys, vals = table(sites.to(CUDA))
    nbr = _ops.neighbor_table(keys, vals, out_coords.to(CUDA), offsets.to(CUDA), stride, transposed, submanifold)
    assert nbr.device.type == "cuda" and torch.equal(nbr.cpu(), expected)
    assert bool((expected >= 0).any() & (expected < 0).any())  # a case with pairs and holes
    for got, want, name in zip(_ops.kernel_pairs(nbr), _ops.kernel_pairs(expected), ("in_rows", "out_rows", "ptr")):
        assert got.device.type == "cuda" and torch.equal(got.cpu(), want), name


# --- float ops -----------------------------------------------------------------------------------

CHANNELS = [(1, 1), (3, 5), (16, 32), (67, 35)]
CONV_MAPS = ["submanifold 3", "strided 3/2 dense", "generative 2/2"]


def conv_table(name: str, seed: int = 3) -> tuple[Tensor, int]:
    """(nbr of MAPS[name] on random sites, number of input rows), made on the CPU."""
    sites = random_sites(600, 3, 12, torch.Generator().manual_seed(seed), low=-6)
    return _ops.neighbor_table(*table(sites), *map_inputs(sites, MAPS[name])), len(sites)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("channels", CHANNELS, ids=str)
@pytest.mark.parametrize("name", CONV_MAPS)
def test_conv_fused_and_weight_grad(name, channels, dtype):
    nbr, n_in = conv_table(name)
    c_in, c_out = channels
    feats = randn(n_in, c_in, dtype=dtype, seed=4)
    check_float_op(_ops.conv_fused, (feats, randn(nbr.shape[1], c_in, c_out, dtype=dtype, seed=5), nbr), dtype)
    check_float_op(_ops.conv_weight_grad, (feats, randn(len(nbr), c_out, dtype=dtype, seed=6), nbr), dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_conv_on_the_real_scan(kitti_sites, dtype):
    nbr = _ops.neighbor_table(*table(kitti_sites), *map_inputs(kitti_sites, MAPS["submanifold 3"]))
    feats, weight = randn(len(kitti_sites), 16, dtype=dtype, seed=9), randn(27, 16, 32, dtype=dtype, seed=10)
    check_float_op(_ops.conv_fused, (feats, weight, nbr), dtype)
    grad_out = randn(len(kitti_sites), 32, dtype=dtype, seed=11)
    check_float_op(_ops.conv_weight_grad, (feats, grad_out, nbr), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(1000, 35, 19), (257, 1, 64), (3, 64, 1)], ids=str)
@pytest.mark.parametrize("bias", [False, True])
def test_linear(shape, dtype, bias):
    n, c_in, c_out = shape
    args = (randn(n, c_in, dtype=dtype, seed=12), randn(c_out, c_in, dtype=dtype, seed=13))
    check_float_op(_ops.linear, (*args, randn(c_out, dtype=dtype, seed=14) if bias else None), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_point_scatter_mean(dtype):
    g = torch.Generator().manual_seed(15)
    # 400 voxels, the last 80 without points; about a tenth of the points in no voxel (-1).
    index = torch.randint(-32, 320, (3000,), generator=g).clamp(min=-1).int()
    check_float_op(_ops.point_scatter_mean, (randn(3000, 5, dtype=dtype, seed=16), index, 400), dtype)


def trilinear_case(stride, coords_dtype=torch.float64, seed: int = 17):
    """(sites, their corner table, points [N, 4]): random points over 3 batches, some on integer
    coordinates (zero-weight corners), and some in batch 7 where no site is."""
    g = torch.Generator().manual_seed(seed)
    extent = 6.0 * max(stride)
    points = random_points(800, 3, extent, g, low=-extent / 2, dtype=torch.float64)
    points[:100, 1:] = torch.floor(points[:100, 1:])
    sites = _ops.unique_coords(torch.floor(points / torch.tensor([1.0, *stride], dtype=torch.float64)).int())
    # Every other site dropped: missing corners, renormalised weights.
    sites = shuffled(sites[::2], seed)
    points[100:120, 0] = 7
    return sites, brute_force_corners(sites), points.to(coords_dtype)


@pytest.mark.parametrize("coords_dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("stride", [(1, 1, 1), (2, 2, 2), (2, 1, 4)], ids=str)
@pytest.mark.parametrize("nearest", [False, True])
def test_trilinear_table(stride, nearest, coords_dtype):
    sites, corners, points = trilinear_case(stride, coords_dtype)
    index, weights = _ops.trilinear_table(*table(sites), corners, points, stride, nearest)
    keys, vals = table(sites.to(CUDA))
    got_index, got_weights = _ops.trilinear_table(keys, vals, corners.to(CUDA), points.to(CUDA), stride, nearest)
    assert got_index.device.type == "cuda" and torch.equal(got_index.cpu(), index)
    assert bool((index >= 0).any(1).logical_not().any())  # points with every corner missing are here
    assert got_weights.dtype == coords_dtype and relative_error(got_weights.cpu(), weights) <= TOLERANCE[coords_dtype]


def gather_case(dtype, channels: int = 6):
    """(feats [M, C], index, weights of dtype) from the CPU's trilinear table of random points."""
    sites, corners, points = trilinear_case((2, 2, 2))
    index, weights = _ops.trilinear_table(*table(sites), corners, points, (2, 2, 2), False)
    return randn(len(sites), channels, dtype=dtype, seed=18), index, weights.to(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("with_base", [False, True])
def test_trilinear_gather(dtype, with_base):
    feats, index, weights = gather_case(dtype)
    base = randn(len(index), feats.shape[1], dtype=dtype, seed=19) if with_base else None
    expected = check_float_op(_ops.trilinear_gather, (feats, index, weights, base), dtype)
    if with_base:
        target = base.to(CUDA)
        returned = _ops.trilinear_gather_add_(target, *cuda_args((feats, index, weights)))
        assert returned is target and torch.equal(target, expected)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_trilinear_gather_backward(dtype):
    feats, index, weights = gather_case(dtype)
    grad_out = randn(len(index), feats.shape[1], dtype=dtype, seed=20)
    check_float_op(_ops.trilinear_gather_backward, (grad_out, index, weights, len(feats)), dtype)


def test_float_ops_read_strided_views():
    """Non-contiguous inputs (column slices, transposes) mean what they mean on the CPU."""
    nbr, n_in = conv_table("submanifold 3")
    wide = randn(n_in, 10, dtype=torch.float32, seed=21)
    weight_t = randn(27, 5, 5, dtype=torch.float32, seed=22).transpose(1, 2)
    check_float_op(_ops.conv_fused, (wide[:, ::2], weight_t, nbr), torch.float32)
    check_float_op(_ops.conv_weight_grad, (wide[:, 1::2], randn(len(nbr), 10, dtype=torch.float32, seed=23)[:, ::2], nbr), torch.float32)
    check_float_op(_ops.linear, (wide[:, :7], randn(7, 4, dtype=torch.float32, seed=24).t(), None), torch.float32)
    index = torch.randint(-1, 50, (n_in,), generator=torch.Generator().manual_seed(25)).int()
    check_float_op(_ops.point_scatter_mean, (wide[:, 3:6], index, 50), torch.float32)
    feats, index, weights = gather_case(torch.float32, channels=8)
    check_float_op(_ops.trilinear_gather, (feats[:, ::3], index, weights), torch.float32)


def test_empty_inputs():
    """Nothing to do: the CPU's shapes and values (zeros where every output row is empty)."""
    empty, sites = torch.empty(0, 4, dtype=torch.int32), random_sites(50, 2, 6, torch.Generator().manual_seed(26))
    no_rows = torch.empty(0, 27, dtype=torch.int32)
    holes = torch.full((6, 27), -1, dtype=torch.int32)
    feats, weight = randn(len(sites), 3, dtype=torch.float32, seed=27), randn(27, 3, 4, dtype=torch.float32, seed=28)
    no_corners, no_weights = torch.empty(0, 8, dtype=torch.int32), torch.empty(0, 8)
    cases = {
        "unique_coords": lambda d: _ops.unique_coords(empty.to(d)),
        "hash_query of no rows": lambda d: _ops.hash_query(*table(sites.to(d)), empty.to(d)),
        "hash_query of an empty table": lambda d: _ops.hash_query(*table(empty.to(d)), sites.to(d)),
        "neighbor_table": lambda d: _ops.neighbor_table(*table(sites.to(d)), empty.to(d), kernel_offsets(3, device=d), [1, 1, 1], False, False),
        "kernel_pairs": lambda d: torch.cat([t.long() for t in _ops.kernel_pairs(no_rows.to(d))]),
        "kernel_pairs of holes": lambda d: torch.cat([t.long() for t in _ops.kernel_pairs(holes.to(d))]),
        "conv_fused": lambda d: _ops.conv_fused(feats.to(d), weight.to(d), no_rows.to(d)),
        "conv_fused of holes": lambda d: _ops.conv_fused(feats.to(d), weight.to(d), holes.to(d)),
        "conv_weight_grad": lambda d: _ops.conv_weight_grad(feats.to(d), torch.empty(0, 4, device=d), no_rows.to(d)),
        "point_scatter_mean": lambda d: _ops.point_scatter_mean(torch.empty(0, 3, device=d), torch.empty(0, dtype=torch.int32, device=d), 4),
        "trilinear_gather": lambda d: _ops.trilinear_gather(feats.to(d), no_corners.to(d), no_weights.to(d)),
        "trilinear_gather_backward": lambda d: _ops.trilinear_gather_backward(torch.empty(0, 3, device=d), no_corners.to(d), no_weights.to(d), 5),
        "linear": lambda d: _ops.linear(torch.empty(0, 3, device=d), weight[0].t().to(d), None),
    }
    for name, case in cases.items():
        got, expected = case(CUDA), case(torch.device("cpu"))
        assert got.device.type == "cuda" and got.dtype == expected.dtype and torch.equal(got.cpu(), expected), name


# The tensor-core kernel runs for float16 and bfloat16 with channels a multiple of 8; the others
# (3 -> 5, and every float32 / float64 case) check its fall-back to conv_fused.
IMPLICIT_CHANNELS = [(8, 8), (16, 32), (40, 72), (96, 136), (3, 5)]


@pytest.mark.parametrize("ordered", [False, True], ids=["rows in order", "rows permuted"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("channels", IMPLICIT_CHANNELS, ids=str)
@pytest.mark.parametrize("name", [*CONV_MAPS, "submanifold 5"])
def test_conv_implicit_gemm(name, channels, dtype, ordered):
    nbr, n_in = conv_table(name)
    c_in, c_out = channels
    feats, weight = randn(n_in, c_in, dtype=dtype, seed=4), randn(nbr.shape[1], c_in, c_out, dtype=dtype, seed=5)
    order = torch.randperm(len(nbr), generator=torch.Generator().manual_seed(6)).int() if ordered else None
    got = check_float_op(_ops.conv_implicit_gemm, (feats, weight, nbr, order), dtype)
    assert torch.equal(got, _ops.conv_implicit_gemm(*cuda_args((feats, weight, nbr, order))))


def test_conv_implicit_gemm_on_the_real_scan(kitti_sites):
    """Tiles of real rows, in the KernelMap's order (sorted by the offsets each row reads)."""
    kmap = km.submanifold_map(CoordinateMap(kitti_sites), 3)
    feats = randn(len(kitti_sites), 32, dtype=torch.float16, seed=9)
    weight = randn(27, 32, 64, dtype=torch.float16, seed=10)
    check_float_op(_ops.conv_implicit_gemm, (feats, weight, kmap.nbr, kmap.row_order), torch.float16)


FORWARD_OPS = ["conv_fused", "linear", "point_scatter_mean", "trilinear_gather"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("name", FORWARD_OPS)
def test_forward_ops_give_the_same_bits_twice(name, dtype):
    """Large enough that any split of a sum across threads or blocks would show."""
    if name == "conv_fused":
        sites = random_sites(20000, 2, 40, torch.Generator().manual_seed(29), low=-20)
        nbr = _ops.neighbor_table(*table(sites), *map_inputs(sites, MAPS["submanifold 3"]))
        args = (randn(len(sites), 64, dtype=dtype, seed=30), randn(27, 64, 64, dtype=dtype, seed=31), nbr)
    elif name == "linear":
        args = (randn(20000, 256, dtype=dtype, seed=32), randn(64, 256, dtype=dtype, seed=33), None)
    elif name == "point_scatter_mean":
        index = torch.randint(0, 500, (50000,), generator=torch.Generator().manual_seed(34)).int()
        args = (randn(50000, 16, dtype=dtype, seed=35), index, 500)
    else:
        args = gather_case(dtype, channels=64)
    op = getattr(_ops, name)
    args = cuda_args(args)
    assert torch.equal(op(*args), op(*args))
