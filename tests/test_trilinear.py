"""Trilinear devoxelization (trilinear_table, trilinear_gather and its backward, voxel_to_point) against
brute-force float64 references (explicit 8-corner loops over a dict of sites), an exact linear field,
gradcheck, the point tensor's table cache, and bitwise determinism across thread counts."""

import itertools

import pytest
import torch

from pointengine import _C, PointTensor, SparseTensor, _ops
from pointengine.functional import voxel_to_point
from pointengine.testing import brute_force_corners, brute_force_devoxelize, brute_force_trilinear, random_points

STRIDES = [(1, 1, 1), (2, 2, 2), (4, 4, 4), (16, 16, 16), (2, 1, 4), (3, 3, 3)]
TOLERANCE = {torch.float64: dict(rtol=1e-12, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-6)}


def points(n=300, dtype=torch.float32, seed=0, extent=20.0) -> torch.Tensor:
    return random_points(n, 3, extent, torch.Generator().manual_seed(seed), low=-extent / 2, dtype=dtype)


def with_lost_points(coords: torch.Tensor) -> torch.Tensor:
    """coords followed by a copy moved to batch 7, where no site is: points with every corner missing."""
    lost = coords[:20].clone()
    lost[:, 0] = 7
    return torch.cat([coords, lost])


def corner_sites(coords: torch.Tensor, stride, seed=1, keep=0.7) -> torch.Tensor:
    """About `keep` of the sites at the 8 corners around the points, in random row order."""
    g = torch.Generator().manual_seed(seed)
    corners = set()
    for b, *xyz in coords.tolist():
        base = [int(torch.floor(torch.tensor(v / s, dtype=torch.float64))) for v, s in zip(xyz, stride)]
        corners |= {(int(b), *(f + d for f, d in zip(base, step))) for step in itertools.product((0, 1), repeat=3)}
    rows = sorted(corners)
    kept = [r for r, u in zip(rows, torch.rand(len(rows), generator=g).tolist()) if u < keep]
    coords_out = torch.tensor(kept, dtype=torch.int32)
    return coords_out[torch.randperm(len(coords_out), generator=g)]


def voxels(sites: torch.Tensor, stride, channels=4, dtype=torch.float32, seed=2) -> SparseTensor:
    g = torch.Generator().manual_seed(seed)
    return SparseTensor(torch.randn(len(sites), channels, generator=g, dtype=torch.float64).to(dtype), sites, stride)


def reference_case(stride, dtype) -> tuple[torch.Tensor, torch.Tensor, SparseTensor]:
    """(points, sites, voxels on the sites): about 70 % of the corners around the points, and 20
    points with every corner missing."""
    coords = points(dtype=dtype, extent=4.0 * max(stride) + 2)
    sites = corner_sites(coords, stride)
    return with_lost_points(coords), sites, voxels(sites, stride, dtype=dtype)


@pytest.mark.parametrize("nearest", [False, True])
@pytest.mark.parametrize("stride", STRIDES, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_table_matches_reference(stride, dtype, nearest):
    coords, sites, x = reference_case(stride, dtype)
    table = x.coordinate_map.table
    index, weights = _ops.trilinear_table(table.keys, table.vals, brute_force_corners(sites), coords, stride, nearest)
    ref_rows, ref_weights = brute_force_trilinear(coords, sites, stride, nearest)
    assert index.dtype == torch.int32 and weights.dtype == dtype
    assert index.tolist() == ref_rows
    torch.testing.assert_close(weights.double(), torch.tensor(ref_weights, dtype=torch.float64), **TOLERANCE[dtype])
    present = set((index >= 0).sum(1).tolist())
    # The case covers points with no corner, with all of them, and with some missing.
    assert present == {0, 1} if nearest else {0, 8} < present and len(present) >= 5


@pytest.mark.parametrize("nearest", [False, True])
@pytest.mark.parametrize("stride", STRIDES, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_voxel_to_point_matches_reference(stride, dtype, nearest):
    coords, sites, x = reference_case(stride, dtype)
    z = PointTensor(torch.zeros(len(coords), 2, dtype=dtype), coords)
    out = voxel_to_point(x, z, nearest=nearest)
    reference = brute_force_devoxelize(coords, sites, x.feats, stride, nearest)
    assert isinstance(out, PointTensor) and out.coords is z.coords and out.feats.dtype == dtype
    torch.testing.assert_close(out.feats.double(), reference, **TOLERANCE[dtype])


@pytest.mark.parametrize("stride", [(1, 1, 1), (2, 1, 4)], ids=str)
def test_points_on_grid_planes(stride):
    """Coordinates on grid planes give corners of zero weight: index -1, never looked up."""
    coords = points(n=200, dtype=torch.float64, extent=12.0)
    planes = torch.rand(200, 3, generator=torch.Generator().manual_seed(4)) < 0.5
    coords[:, 1:] = torch.where(planes, torch.round(coords[:, 1:]) * torch.tensor(stride), coords[:, 1:])
    sites = corner_sites(coords, stride, keep=0.8)
    table = voxels(sites, stride).coordinate_map.table
    index, weights = _ops.trilinear_table(table.keys, table.vals, brute_force_corners(sites), coords, stride, False)
    ref_rows, ref_weights = brute_force_trilinear(coords, sites, stride)
    assert index.tolist() == ref_rows
    torch.testing.assert_close(weights, torch.tensor(ref_weights, dtype=torch.float64), **TOLERANCE[torch.float64])
    on_all_planes = planes.all(1) & (index[:, 0] >= 0)
    assert on_all_planes.any() and (index[on_all_planes, 1:] == -1).all() and (weights[on_all_planes, 0] == 1).all()


def test_sites_as_points_start_with_the_tables_the_ops_compute():
    sites = corner_sites(points(n=100, extent=10.0), (1, 1, 1))
    x = voxels(sites, 1)
    seeded = PointTensor.at_sites(x)
    assert torch.equal(seeded.coords, sites.float()) and seeded.feats is x.feats
    table = x.coordinate_map.table
    for nearest in (False, True):
        cached = seeded.cache.peek(("trilinear", (1, 1, 1), nearest), x.coordinate_map)
        computed = _ops.trilinear_table(
            table.keys, table.vals, brute_force_corners(sites), sites.float(), (1, 1, 1), nearest
        )
        assert all(torch.equal(a, b) for a, b in zip(cached, computed))
    rows = seeded.cache.peek(("voxel_rows", (1, 1, 1)), x.coordinate_map)
    assert torch.equal(rows, _ops.hash_query(table.keys, table.vals, sites))
    with pytest.raises(ValueError, match=r"needs a stride-1 SparseTensor, got stride \(2, 2, 2\)"):
        PointTensor.at_sites(voxels(sites, 2))


GATHER_PATHS = {"default": torch.ops.pointengine.trilinear_gather, "portable": _C.trilinear_gather_portable}


@pytest.mark.parametrize("with_base", [False, True])
@pytest.mark.parametrize("channels", [1, 5, 8, 37, 128])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("path", GATHER_PATHS)
def test_gather_paths_match_reference(path, dtype, channels, with_base, restore_threads):
    """Both compiled paths (AVX2 + FMA where the CPU has it, and the portable loop) against the
    float64 loop, at channel counts with and without vector tails, with and without a base added;
    each bitwise the same at 1 and 2 threads."""
    coords, sites, _ = reference_case((2, 2, 2), dtype)
    x = voxels(sites, 2, channels=channels, dtype=dtype)
    table = x.coordinate_map.table
    index, weights = _ops.trilinear_table(table.keys, table.vals, brute_force_corners(sites), coords, (2, 2, 2), False)
    base = torch.randn(len(coords), channels, generator=torch.Generator().manual_seed(5), dtype=dtype)
    outs = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        outs.append(GATHER_PATHS[path](x.feats, index, weights, base if with_base else None))
    assert torch.equal(outs[0], outs[1])
    reference = brute_force_devoxelize(coords, sites, x.feats, (2, 2, 2)) + (base.double() if with_base else 0)
    torch.testing.assert_close(outs[0].double(), reference, **TOLERANCE[dtype])


def test_linear_field_is_reproduced_exactly():
    """With all 8 corners present, trilinear interpolation of a field linear in the site coordinate
    returns the field at q = p / s: the value sits at the site's integer corner."""
    stride = (2, 4, 1)
    coords = points(n=200, dtype=torch.float64, extent=16.0)
    sites = corner_sites(coords, stride, keep=1.0)
    slope, offset = torch.tensor([0.5, -1.25, 2.0], dtype=torch.float64), 3.0
    field = sites[:, 1:].double() @ slope + offset + 7 * sites[:, 0].double()
    x = SparseTensor(field[:, None], sites, stride)
    out = voxel_to_point(x, PointTensor(torch.zeros(len(coords), 1, dtype=torch.float64), coords))
    q = coords[:, 1:] / torch.tensor(stride, dtype=torch.float64)
    torch.testing.assert_close(out.feats[:, 0], q @ slope + offset + 7 * coords[:, 0], rtol=1e-12, atol=1e-12)


def test_missing_corners_are_renormalised_and_all_missing_gives_zero():
    sites = torch.tensor([[0, 0, 0, 0], [0, 1, 0, 0]], dtype=torch.int32)
    x = SparseTensor(torch.tensor([[2.0], [6.0]], dtype=torch.float64), sites)
    coords = torch.tensor(
        [[0, 0.25, 0.5, 0.5], [0, 0.0, 0.0, 0.0], [0, 5.5, 5.5, 5.5], [1, 0.5, 0.0, 0.0]], dtype=torch.float64
    )
    out = voxel_to_point(x, PointTensor(torch.zeros(4, 1, dtype=torch.float64), coords)).feats[:, 0]
    # Point 0 sees two corners weighing 0.75 * 0.25 and 0.25 * 0.25: renormalised to 0.75 and 0.25.
    assert out.tolist() == [0.75 * 2 + 0.25 * 6, 2.0, 0.0, 0.0]


def test_gradcheck():
    stride = (2, 1, 2)
    coords = points(n=40, dtype=torch.float64, extent=6.0)
    sites = corner_sites(coords, stride)
    x = voxels(sites, stride, channels=2, dtype=torch.float64)
    z = PointTensor(torch.zeros(len(coords), 1, dtype=torch.float64), coords)
    feats = x.feats.clone().requires_grad_()
    for nearest in (False, True):
        assert torch.autograd.gradcheck(lambda f, n=nearest: voxel_to_point(x.replace_feats(f), z, n).feats, (feats,))
    residual = torch.randn(len(coords), 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda f, r: voxel_to_point(x.replace_feats(f), z, residual=r).feats, (feats, residual)
    )


def test_residual_is_added_to_the_interpolation():
    coords, sites, x = reference_case((4, 4, 4), torch.float64)
    z = PointTensor(torch.zeros(len(coords), 1, dtype=torch.float64), coords)
    residual = torch.randn(
        len(coords), x.feats.shape[1], generator=torch.Generator().manual_seed(6), dtype=torch.float64
    )
    out = voxel_to_point(x, z, residual=residual)
    reference = brute_force_devoxelize(coords, sites, x.feats, (4, 4, 4)) + residual
    torch.testing.assert_close(out.feats, reference, **TOLERANCE[torch.float64])
    # In place: the same bits, written into the residual itself.
    target = residual.clone()
    in_place = voxel_to_point(x, z, residual=target, in_place=True)
    assert in_place.feats is target and torch.equal(target, out.feats)
    for bad, message in [
        (residual[:-1], r"residual must be torch.float64 \[\d+, 4\], got torch.float64 \[\d+, 4\]"),
        (residual.float(), r"residual must be torch.float64 \[\d+, 4\], got torch.float32"),
        (residual[:, :3], r"residual must be torch.float64 \[\d+, 4\], got torch.float64 \[\d+, 3\]"),
        (residual.to("meta"), r"tensors must be on one device, got x on cpu, residual on meta"),
    ]:
        with pytest.raises(ValueError, match=message):
            voxel_to_point(x, z, residual=bad)
    with pytest.raises(ValueError, match=r"in_place=True needs a residual to write into"):
        voxel_to_point(x, z, in_place=True)
    with pytest.raises(ValueError, match=r"in_place=True needs a contiguous residual"):
        voxel_to_point(x, z, residual=residual.t().contiguous().t(), in_place=True)
    with pytest.raises(ValueError, match=r"in_place=True has no autograd: use it under torch.no_grad"):
        voxel_to_point(x, z, residual=residual.clone().requires_grad_(), in_place=True)
    with torch.no_grad():
        voxel_to_point(x, z, residual=residual.clone().requires_grad_(), in_place=True)


def test_backward_is_the_adjoint_of_the_gather():
    """<gather(F), G> = <F, backward(G)>, every element of backward(G) against a Python loop."""
    coords = points(n=150, dtype=torch.float64, extent=10.0)
    sites = corner_sites(coords, (2, 2, 2))
    table = SparseTensor(torch.zeros(len(sites), 1), sites, 2).coordinate_map.table
    index, weights = _ops.trilinear_table(table.keys, table.vals, brute_force_corners(sites), coords, (2, 2, 2), False)
    grad_out = torch.randn(len(coords), 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    expected = torch.zeros(len(sites), 3, dtype=torch.float64)
    for i, (rows, ws) in enumerate(zip(index.tolist(), weights.tolist())):
        for row, w in zip(rows, ws):
            if row >= 0:
                expected[row] += w * grad_out[i]
    got = _ops.trilinear_gather_backward(grad_out, index, weights, len(sites))
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_tables_are_cached_per_level_and_coordinate_map():
    coords = points(n=100, extent=12.0)
    z = PointTensor(torch.zeros(len(coords), 1), coords)
    first = voxels(corner_sites(coords, (2, 2, 2), seed=1), 2)
    other = voxels(corner_sites(coords, (2, 2, 2), seed=5), 2)
    a = voxel_to_point(first, z)
    cached = z.cache.get(("trilinear", (2, 2, 2), False), first.coordinate_map, lambda: pytest.fail("recomputed"))
    # Another coordinate map at the same stride gets its own table, not the cached one.
    b = voxel_to_point(other, a)
    for x, out in ((first, a), (other, b)):
        reference = brute_force_devoxelize(coords, x.coords, x.feats, (2, 2, 2))
        torch.testing.assert_close(out.feats.double(), reference, **TOLERANCE[torch.float32])
    assert z.cache.get(("trilinear", (2, 2, 2), False), other.coordinate_map, lambda: None) is not cached


def test_bitwise_identical_for_one_and_two_threads(restore_threads):
    # More points than one parallel chunk of the table (2048) and the gather (1024).
    coords = points(n=12000, extent=40.0)
    sites = corner_sites(coords, (2, 2, 2), keep=0.8)
    results = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        x = voxels(sites, 2, channels=6)
        feats = x.feats.clone().requires_grad_()
        out = voxel_to_point(x.replace_feats(feats), PointTensor(torch.zeros(len(coords), 1), coords))
        grad = torch.autograd.grad(out.feats.sin().sum(), feats)[0]
        results.append([out.feats.detach(), grad])
    for a, b in zip(*results):
        assert torch.equal(a, b)
