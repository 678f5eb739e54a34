"""SparseTensor and CoordinateMap: construction, shared levels, conversions, dense export, collation."""

import pytest
import torch

from pointengine import CoordinateMap, SparseTensor, sparse_collate
from pointengine.functional import conv3d
from pointengine.testing import random_input


def make(seed: int = 0, dtype=torch.float64, stride=1, n: int = 50) -> SparseTensor:
    feats, coords = random_input(torch.Generator().manual_seed(seed), n, 3, dtype)
    return SparseTensor(feats, coords, stride)


def test_fields_and_aliases():
    x = make(stride=(1, 2, 4))
    assert x.stride == x.s == (1, 2, 4)
    assert x.F is x.feats and x.C is x.coords
    assert x.num_sites == len(x.coords) == len(x.coordinate_map)
    assert x.batch_size == int(x.coords[:, 0].max()) + 1
    assert x.levels == {(1, 2, 4): x.coordinate_map}
    expected = f"SparseTensor(sites={x.num_sites}, channels=3, stride=(1, 2, 4), dtype=torch.float64, device=cpu)"
    assert repr(x) == expected


def test_int_stride_becomes_a_triple():
    assert make(stride=2).stride == (2, 2, 2)


def test_layers_share_levels_and_maps():
    x = make()
    weight = torch.randn(27, 3, 3, dtype=torch.float64)
    y = conv3d(x, weight, kernel_size=3)
    down = conv3d(y, weight[:8], kernel_size=2, stride=2)
    assert y.coordinate_map is x.coordinate_map and y.levels is x.levels
    assert x.levels == {(1, 1, 1): x.coordinate_map, (2, 2, 2): down.coordinate_map}
    # The second conv with the same geometry reuses the cached map.
    conv3d(y, weight, kernel_size=3)
    assert len(x.coordinate_map.kernel_maps) == 2


def test_replace_feats_keeps_the_sites():
    x = make()
    y = x.replace_feats(x.feats * 2)
    assert y.coordinate_map is x.coordinate_map and y.levels is x.levels and y.stride == x.stride
    assert torch.equal(y.feats, x.feats * 2)


CONVERSIONS = [("double", torch.float64), ("float", torch.float32), ("half", torch.float16)]


@pytest.mark.parametrize("convert,dtype", CONVERSIONS)
def test_dtype_conversions_keep_the_maps(convert, dtype):
    x = make(dtype=torch.float32)
    y = getattr(x, convert)()
    assert y.feats.dtype == dtype and y.coordinate_map is x.coordinate_map
    assert torch.equal(y.feats, x.feats.to(dtype))
    assert x.to(dtype).coordinate_map is x.coordinate_map
    assert x.cpu().coordinate_map is x.coordinate_map


def test_same_coords_ignores_row_order():
    x = make()
    perm = torch.randperm(x.num_sites, generator=torch.Generator().manual_seed(1))
    shuffled = SparseTensor(x.feats[perm], x.coords[perm])
    assert x.same_coords(x) and x.same_coords(shuffled) and shuffled.same_coords(x)
    moved = x.coords.clone()
    moved[0, 1] += 100
    assert not x.same_coords(SparseTensor(x.feats, moved))
    assert not x.same_coords(SparseTensor(x.feats[1:], x.coords[1:]))


def test_dense_places_every_site():
    x = make()
    grid = x.dense()
    lo = x.coords[:, 1:].amin(0)
    assert list(grid.shape) == [x.batch_size, 3, *(x.coords[:, 1:].amax(0) - lo + 1).tolist()]
    b, local = x.coords[:, 0].long(), (x.coords[:, 1:] - lo).long()
    assert torch.equal(grid[b, :, local[:, 0], local[:, 1], local[:, 2]], x.feats)
    assert int((grid != 0).any(1).sum()) == x.num_sites


def test_dense_with_origin_and_shape():
    x = SparseTensor(torch.tensor([[1.0], [2.0]]), torch.tensor([[0, -1, 0, 2], [1, 1, 1, 1]], dtype=torch.int32))
    grid = x.dense(origin=(-2, 0, 0), spatial_shape=(4, 2, 3))
    expected = torch.zeros(2, 1, 4, 2, 3)
    expected[0, 0, 1, 0, 2], expected[1, 0, 3, 1, 1] = 1.0, 2.0
    assert torch.equal(grid, expected)
    with pytest.raises(ValueError, match="dense: sites fall outside"):
        x.dense(origin=(0, 0, 0), spatial_shape=(4, 2, 3))


def test_sparse_collate_offsets_batches():
    a, b = make(0), make(1)
    batch = sparse_collate([a, b])
    assert torch.equal(batch.feats, torch.cat([a.feats, b.feats]))
    assert torch.equal(batch.coords[: a.num_sites], a.coords)
    shifted = b.coords.clone()
    shifted[:, 0] += a.batch_size
    assert torch.equal(batch.coords[a.num_sites :], shifted)
    assert batch.batch_size == a.batch_size + b.batch_size and batch.stride == a.stride


def test_coordinate_map_query():
    coords = torch.tensor([[0, 1, 2, 3], [1, -1, -2, -3]], dtype=torch.int32)
    cmap = CoordinateMap(coords)
    assert len(cmap) == 2 and cmap.coords is coords
    assert cmap.query(torch.tensor([[1, -1, -2, -3], [0, 0, 0, 0]], dtype=torch.int32)).tolist() == [1, -1]
