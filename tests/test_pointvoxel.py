"""voxelize_points / devoxelize against a brute-force reference built with a Python dict."""

import math

import pytest
import torch

from pointengine import SparseTensor
from pointengine.functional import Voxels, devoxelize, voxelize_points


def reference_keys(points: torch.Tensor, size, batches: list[int], quantization: str) -> list[tuple]:
    """(batch, x, y, z) of each point: floor(xyz / size), or Python's round (halves to even) minus
    its minimum over the points of the same batch index."""
    if quantization == "floor":
        return [(b,) + tuple(math.floor(row[a] / size[a]) for a in range(3)) for b, row in zip(batches, points.tolist())]
    rounded = [tuple(round(row[a] / size[a]) for a in range(3)) for row in points.tolist()]
    lowest = {b: [min(q[a] for q, c in zip(rounded, batches) if c == b) for a in range(3)] for b in set(batches)}
    return [(b,) + tuple(q[a] - lowest[b][a] for a in range(3)) for b, q in zip(batches, rounded)]


def reference(points: torch.Tensor, voxel_size, reduce: str, batch=None, quantization: str = "floor"):
    """Sorted voxel coords, their feature rows and each point's voxel row, one point at a time."""
    size = (voxel_size,) * 3 if isinstance(voxel_size, float) else voxel_size
    batches = [0] * points.shape[0] if batch is None else batch.tolist()
    groups: dict[tuple, list[list[float]]] = {}
    keys = []
    for key, row in zip(reference_keys(points, size, batches, quantization), points.tolist()):
        groups.setdefault(key, []).append(row)
        keys.append(key)
    order = sorted(groups)
    rows = {key: r for r, key in enumerate(order)}
    feats = []
    for key in order:
        columns = list(zip(*groups[key]))
        if reduce == "mean":
            feats.append([math.fsum(col) / len(col) for col in columns])
        elif reduce == "first":
            feats.append(groups[key][0])
        else:
            feats.append([max(col) for col in columns])
    coords = torch.tensor(order, dtype=torch.int32)
    return coords, torch.tensor(feats, dtype=torch.float64), torch.tensor([rows[k] for k in keys])


def clustered_points(n: int, channels: int, dtype, seed: int = 0) -> torch.Tensor:
    """Points around the origin (negative coordinates too), many voxels holding several points."""
    gen = torch.Generator().manual_seed(seed)
    xyz = torch.randn(n, 3, generator=gen, dtype=torch.float64) * 1.5
    return torch.cat([xyz, torch.rand(n, channels, generator=gen, dtype=torch.float64)], 1).to(dtype)


@pytest.mark.parametrize("reduce", ["mean", "first", "max"])
@pytest.mark.parametrize("voxel_size", [0.5, (0.3, 0.7, 0.25)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batched", [False, True])
def test_matches_reference(reduce, voxel_size, dtype, batched):
    points = clustered_points(600, 2, dtype)
    batch = torch.randint(0, 3, (600,), generator=torch.Generator().manual_seed(1)) if batched else None
    voxels = voxelize_points(points, voxel_size, reduce, batch)
    coords, feats, inverse = reference(points, voxel_size, reduce, batch)
    assert voxels.coords.dtype == torch.int32 and voxels.inverse.dtype == torch.int64
    assert voxels.feats.dtype == dtype
    torch.testing.assert_close(voxels.coords, coords, rtol=0, atol=0)
    torch.testing.assert_close(voxels.inverse, inverse, rtol=0, atol=0)
    if reduce == "mean":  # the reference sums exactly; ours rounds once more, to the points' dtype
        torch.testing.assert_close(voxels.feats, feats.to(dtype))
    else:
        torch.testing.assert_close(voxels.feats, feats.to(dtype), rtol=0, atol=0)
    assert voxels.coords.shape[0] < points.shape[0]  # the case really merges points


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("quantization", ["floor", "round_shift"])
def test_quantization_and_dtypes_match_reference(dtype, quantization):
    # Multiples of a quarter voxel: round_shift meets exact halves, which go to the even neighbour.
    gen = torch.Generator().manual_seed(4)
    xyz = torch.randint(-40, 40, (500, 3), generator=gen).double() * 0.125
    points = torch.cat([xyz, torch.rand(500, 1, generator=gen, dtype=torch.float64)], 1).to(dtype)
    batch = torch.randint(0, 4, (500,), generator=gen)
    voxels = voxelize_points(points, 0.5, "mean", batch, quantization)
    coords, feats, inverse = reference(points.double(), 0.5, "mean", batch, quantization)
    assert torch.equal(voxels.coords, coords) and torch.equal(voxels.inverse, inverse)
    torch.testing.assert_close(voxels.feats, feats.to(dtype))


def test_strided_points_are_read_in_place():
    wide = clustered_points(300, 5, torch.float64, seed=5)
    points = wide[:, [2, 0, 4, 1]]
    view = points.t().contiguous().t()  # the same values, column-major
    assert not view.is_contiguous()
    one, two = voxelize_points(points, 0.4), voxelize_points(view, 0.4)
    assert torch.equal(one.coords, two.coords) and torch.equal(one.feats, two.feats)


def test_inverse_points_into_the_voxel_of_each_point():
    points = clustered_points(2000, 1, torch.float32)
    voxels = voxelize_points(points, 0.2)
    floored = torch.floor(points[:, :3].double() / 0.2).int()
    assert torch.equal(voxels.coords[voxels.inverse, 1:], floored)
    assert torch.equal(torch.bincount(voxels.inverse, minlength=voxels.coords.shape[0]) > 0,
                       torch.ones(voxels.coords.shape[0], dtype=torch.bool))


def test_devoxelize_gathers_the_voxel_row_of_every_point():
    points = clustered_points(500, 1, torch.float32)
    voxels = voxelize_points(points, 0.4)
    logits = torch.randn(voxels.coords.shape[0], 5)
    per_point = devoxelize(logits, voxels.inverse)
    assert per_point.shape == (500, 5)
    for i in range(0, 500, 37):
        assert torch.equal(per_point[i], logits[voxels.inverse[i]])


def test_to_sparse():
    points = clustered_points(300, 1, torch.float32)
    voxels = voxelize_points(points, 0.5)
    sparse = voxels.to_sparse()
    assert isinstance(sparse, SparseTensor) and sparse.stride == (1, 1, 1)
    assert torch.equal(sparse.coords, voxels.coords) and torch.equal(sparse.feats, voxels.feats)
    assert sparse.coordinate_map is voxels.coordinate_map  # the hash table is built once
    ones = torch.ones(voxels.coords.shape[0], 1)
    assert torch.equal(voxels.to_sparse(ones).feats, ones)
    with pytest.raises(ValueError, match="feats has 3 rows but coords has"):
        voxels.to_sparse(torch.ones(3, 1))


@pytest.mark.parametrize("reduce", ["mean", "first", "max"])
def test_bitwise_deterministic_across_thread_counts(reduce):
    points = clustered_points(200_000, 1, torch.float32, seed=3) * 10
    threads = torch.get_num_threads()
    try:
        results = []
        for count in (1, 2):
            torch.set_num_threads(count)
            results.append(voxelize_points(points, 0.05, reduce))
    finally:
        torch.set_num_threads(threads)
    one, two = results
    assert torch.equal(one.coords, two.coords) and torch.equal(one.inverse, two.inverse)
    assert torch.equal(one.feats.view(torch.int32), two.feats.view(torch.int32))


def test_range_edges_are_inside():
    points = torch.tensor([[32767.5, -32768.0, 0.0], [0.0, 0.0, -32767.25]], dtype=torch.float64)
    voxels = voxelize_points(points, 1.0)
    assert voxels.coords.tolist() == [[0, 0, 0, -32768], [0, 32767, -32768, 0]]


@pytest.mark.parametrize(
    "points, voxel_size, message",
    [
        (torch.tensor([[32768.0, 0.0, 0.0]]), 1.0, r"\[-32768, 32767\].*x \[32768, 32768\].*voxel_size 1.0"),
        (torch.tensor([[0.0, -32768.5, 0.0]]), 1.0, r"\[-32768, 32767\].*y \[-32769, -32769\]"),
        (torch.tensor([[0.0, 0.0, 2000.0]]), 0.05, r"\[-32768, 32767\].*z \[40000, 40000\].*voxel_size 0.05"),
    ],
)
def test_overflow_names_the_range_and_voxel_size(points, voxel_size, message):
    with pytest.raises(ValueError, match=message):
        voxelize_points(points, voxel_size)


def test_values_past_int32_are_refused_not_wrapped():
    points = torch.tensor([[1e30, 0.0, 0.0], [-1e30, 0.0, 0.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"x \[-1000000000000000019884624838656, 1000000000000000019884624838656\]"):
        voxelize_points(points, 1.0)


GOOD = torch.zeros(4, 4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(points=torch.zeros(4, 4, dtype=torch.int32)), "floating-point tensor, got torch.int32"),
        (dict(points=torch.zeros(4, 2)), r"shape \[N, 3 \+ C\].*got \[4, 2\]"),
        (dict(points=torch.zeros(12)), r"shape \[N, 3 \+ C\].*got \[12\]"),
        (dict(points=torch.zeros(0, 4)), "points is empty"),
        (dict(points=torch.tensor([[0.0, float("nan"), 0.0]])), "NaN or inf"),
        (dict(points=torch.tensor([[0.0, 0.0, float("inf")]])), "NaN or inf"),
        (dict(voxel_size=0.0), r"voxel_size must be finite and > 0, got 0.0"),
        (dict(voxel_size=(0.1, -0.1, 0.1)), r"voxel_size must be finite and > 0, got \(0.1, -0.1, 0.1\)"),
        (dict(voxel_size=float("nan")), "voxel_size must be finite and > 0"),
        (dict(voxel_size=(0.1, 0.1)), "voxel_size must be a number or three numbers"),
        (dict(voxel_size="0.1"), "voxel_size must be a number or three numbers"),
        (dict(voxel_size=None), "voxel_size must be a number or three numbers"),
        (dict(reduce="sum"), r"reduce must be one of \('mean', 'first', 'max'\), got 'sum'"),
        (dict(batch=torch.zeros(4)), "batch must be an integer tensor, got torch.float32"),
        (dict(batch=torch.zeros(3, dtype=torch.int64)), r"batch must have shape \[N\] = \[4\], got \[3\]"),
        (dict(batch=torch.tensor([0, 1, -1, 0])), r"batch must be in \[0, 65534\], got \[-1, 1\]"),
        (dict(batch=torch.tensor([0, 65535, 0, 0])), r"batch must be in \[0, 65534\], got \[0, 65535\]"),
    ],
)
def test_bad_inputs(kwargs, message):
    args = dict(points=GOOD, voxel_size=0.1) | kwargs
    with pytest.raises(ValueError, match=message):
        voxelize_points(**args)


def test_points_must_be_a_tensor():
    with pytest.raises(TypeError, match="points must be a torch.Tensor"):
        voxelize_points([[0.0, 0.0, 0.0]], 0.1)


@pytest.mark.parametrize(
    "inverse, message",
    [
        (torch.tensor([0, 1], dtype=torch.int32), r"inverse must be int64 \[N\], got torch.int32"),
        (torch.tensor([[0, 1]]), r"inverse must be int64 \[N\], got torch.int64 \[1, 2\]"),
        (torch.tensor([0, 3]), r"inverse must index rows of voxel_feats in \[0, 2\], got \[0, 3\]"),
        (torch.tensor([-1, 0]), r"inverse must index rows of voxel_feats in \[0, 2\], got \[-1, 0\]"),
    ],
)
def test_devoxelize_bad_inverse(inverse, message):
    with pytest.raises(ValueError, match=message):
        devoxelize(torch.zeros(3, 2), inverse)


def test_voxels_is_frozen():
    voxels = voxelize_points(GOOD, 0.1)
    assert isinstance(voxels, Voxels)
    with pytest.raises(AttributeError):
        voxels.coords = voxels.coords
