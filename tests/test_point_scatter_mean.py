"""point_scatter_mean and the voxelizations built on it (initial_voxelize, point_to_voxel) against a
brute-force float64 reference (a dict from site to row, Python sums), gradcheck, and bitwise
determinism across thread counts."""

from collections import Counter

import pytest
import torch

from pointengine import PointTensor, SparseTensor, _ops
from pointengine.functional import initial_voxelize, point_to_voxel, voxel_to_point
from pointengine.testing import brute_force_scatter_mean, point_site, random_points

STRIDES = [(1, 1, 1), (2, 2, 2), (4, 4, 4), (16, 16, 16), (2, 1, 4), (3, 3, 3)]
TOLERANCE = {torch.float64: dict(rtol=1e-12, atol=1e-12), torch.float32: dict(rtol=2e-7, atol=1e-7)}


def point_tensor(n=400, channels=3, dtype=torch.float32, seed=0, extent=40.0, low=-20.0) -> PointTensor:
    g = torch.Generator().manual_seed(seed)
    coords = random_points(n, 3, extent, g, low=low, dtype=dtype)
    return PointTensor(torch.randn(n, channels, generator=g, dtype=torch.float64).to(dtype), coords)


def sites_of(z: PointTensor, stride, seed=1, keep=0.7, extra=20) -> torch.Tensor:
    """Sites at `stride`: about `keep` of the points' sites plus `extra` sites no point falls in
    (possibly), in random row order."""
    g = torch.Generator().manual_seed(seed)
    hit = sorted({point_site(p, stride) for p in z.coords.tolist()})
    kept = [s for s, r in zip(hit, torch.rand(len(hit), generator=g).tolist()) if r < keep]
    lo = min(min(s[1:]) for s in hit)
    empty = torch.randint(lo, lo + 8, (extra, 3), generator=g).tolist()
    rows = set(kept) | {(b % 3, *xyz) for b, xyz in enumerate(empty)}
    coords = torch.tensor(sorted(rows), dtype=torch.int32)
    return coords[torch.randperm(len(coords), generator=g)]


@pytest.mark.parametrize("stride", STRIDES, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_point_to_voxel_matches_reference(stride, dtype):
    extent = 5.0 * max(stride) + 3  # dense enough that sites hold several points at every stride
    z = point_tensor(n=800, dtype=dtype, extent=extent, low=-extent / 2)
    sites = sites_of(z, stride)
    x = SparseTensor(torch.zeros(len(sites), 1, dtype=dtype), sites, stride)
    out = point_to_voxel(x, z)
    reference = brute_force_scatter_mean(z.coords, z.feats, sites, stride)
    assert out.coordinate_map is x.coordinate_map and out.stride == x.stride
    assert out.feats.dtype == dtype and out.feats.shape == reference.shape
    torch.testing.assert_close(out.feats.double(), reference, **TOLERANCE[dtype])
    # The case holds sites with several points, sites with none, and points outside every site.
    rows = {tuple(c): r for r, c in enumerate(sites.tolist())}
    hits = Counter(rows.get(point_site(p, stride), -1) for p in z.coords.tolist())
    assert hits[-1] > 0 and max(hits[r] for r in rows.values()) > 1 and min(hits[r] for r in rows.values()) == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_initial_voxelize_matches_reference(dtype):
    z = point_tensor(n=600, dtype=dtype, extent=12.0, low=-6.0)
    x = initial_voxelize(z)
    expected_sites = sorted({point_site(p, (1, 1, 1)) for p in z.coords.tolist()})
    assert x.stride == (1, 1, 1) and x.coords.tolist() == [list(s) for s in expected_sites]
    assert len(expected_sites) < z.num_points  # voxels really merge points
    reference = brute_force_scatter_mean(z.coords, z.feats, x.coords, (1, 1, 1))
    torch.testing.assert_close(x.feats.double(), reference, **TOLERANCE[dtype])


def test_voxel_rows_from_a_cached_trilinear_table():
    """After voxel_to_point at a level, point_to_voxel reads the points' sites from corner 0 of the
    cached table instead of hashing: the result is the same."""
    stride = (4, 4, 4)
    z = point_tensor(n=800, extent=23.0, low=-11.5)
    sites = sites_of(z, stride)
    x = SparseTensor(torch.randn(len(sites), 2), sites, stride)
    out = point_to_voxel(x, voxel_to_point(x, z).replace_feats(z.feats))
    assert z.cache.peek(("trilinear", stride, False), x.coordinate_map) is not None
    torch.testing.assert_close(
        out.feats.double(), brute_force_scatter_mean(z.coords, z.feats, sites, stride), **TOLERANCE[torch.float32]
    )


def test_op_with_unassigned_points_and_empty_voxels():
    feats = torch.tensor([[1.0, 2.0], [3.0, 4.0], [10.0, 20.0], [5.0, 7.0]], dtype=torch.float64)
    index = torch.tensor([2, 2, -1, 0], dtype=torch.int32)
    out = _ops.point_scatter_mean(feats, index, 4)
    expected = torch.tensor([[5.0, 7.0], [0.0, 0.0], [2.0, 3.0], [0.0, 0.0]], dtype=torch.float64)
    assert torch.equal(out, expected)


def test_gradcheck():
    z = point_tensor(n=60, channels=2, dtype=torch.float64, extent=8.0, low=-4.0)
    stride = (2, 1, 2)
    sites = sites_of(z, stride, extra=4)
    x = SparseTensor(torch.zeros(len(sites), 1, dtype=torch.float64), sites, stride)
    feats = z.feats.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda f: point_to_voxel(x, z.replace_feats(f)).feats, (feats,))
    assert torch.autograd.gradcheck(lambda f: initial_voxelize(PointTensor(f, z.coords)).feats, (feats,))


def run(z: PointTensor, x: SparseTensor) -> list[torch.Tensor]:
    feats = z.feats.clone().requires_grad_()
    fresh = PointTensor(feats, z.coords)
    first, out = initial_voxelize(fresh), point_to_voxel(x, fresh)
    grad = torch.autograd.grad((first.feats.sin().sum() + out.feats.cos().sum()), feats)[0]
    return [first.coords, first.feats.detach(), out.feats.detach(), grad]


def test_bitwise_identical_for_one_and_two_threads(restore_threads):
    # More points and voxels than one parallel chunk (256 voxels), so two threads split the work.
    z = point_tensor(n=20000, channels=5, extent=60.0, low=-30.0)
    sites = sites_of(z, (2, 2, 2), keep=0.9)
    x = SparseTensor(torch.zeros(len(sites), 1), sites, 2)
    results = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        results.append(run(z, x))
    for a, b in zip(*results):
        assert torch.equal(a, b)
