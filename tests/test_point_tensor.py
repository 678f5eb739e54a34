"""PointTensor: validation with messages, TorchSparse aliases, shared caches; bad arguments of the
point-voxel functions; the C++ backstops of the point-voxel ops."""

import pytest
import torch

from pointengine import PointTensor, SparseTensor
from pointengine.functional import initial_voxelize, point_to_voxel, voxel_to_point

ops = torch.ops.pointengine

COORDS = torch.tensor([[0, 0.5, -1.25, 3.0], [1, -7.5, 2.0, 0.0], [1, 4.0, 4.0, 4.0]])


def feats(n=3, channels=2, dtype=torch.float32) -> torch.Tensor:
    return torch.arange(n * channels, dtype=dtype).reshape(n, channels)


def sparse(dtype=torch.float32) -> SparseTensor:
    coords = torch.tensor([[0, 0, -2, 3], [1, -8, 2, 0]], dtype=torch.int32)
    return SparseTensor(torch.ones(2, 3, dtype=dtype), coords)


def test_fields_and_aliases():
    z = PointTensor(feats(), COORDS)
    assert z.F is z.feats and z.C is z.coords and z.num_points == 3
    assert repr(z) == "PointTensor(points=3, channels=2, dtype=torch.float32, device=cpu)"
    y = z.replace_feats(feats(channels=5))
    assert y.coords is z.coords and y.cache is z.cache and y.feats.shape == (3, 5)


@pytest.mark.parametrize(
    "coords,message",
    [
        (COORDS.int(), r"coords must have dtype torch.float32 or torch.float64, got torch.int32"),
        (COORDS.half(), r"coords must have dtype torch.float32 or torch.float64, got torch.float16"),
        (COORDS[:, :3], r"coords must have shape \[N, 4\] \(batch, x, y, z\), got \[3, 3\]"),
        (COORDS[:0], r"coords is empty"),
        (torch.tensor([[0, 0.0, float("nan"), 0]] * 3), r"coords contains NaN or inf values"),
        (torch.tensor([[0, 0.0, float("inf"), 0]] * 3), r"coords contains NaN or inf values"),
        (torch.tensor([[0.5, 0.0, 0, 0]] * 3), r"batch index \(column 0\) must hold integers, got 0.5"),
        (torch.tensor([[-1.0, 0.0, 0, 0]] * 3), r"batch index must be in \[0, 65534\], got \[-1, -1\]"),
        (torch.tensor([[65535.0, 0, 0, 0]] * 3), r"batch index must be in \[0, 65534\], got \[65535, 65535\]"),
        (torch.tensor([[0, 32767.5, 0, 0]] * 3), None),
        (torch.tensor([[0, 32768.0, 0, 0]] * 3), r"floor\(x\) must be in \[-32768, 32767\] .*got \[32768, 32768\]"),
        (torch.tensor([[0, 0, -32768.5, 0]] * 3), r"floor\(y\) must be in \[-32768, 32767\]"),
        (torch.tensor([[0, 0, 0, 1e30]] * 3), r"floor\(z\) must be in \[-32768, 32767\]"),
    ],
)
def test_bad_coords(coords, message):
    if message is None:  # the largest packable floor is accepted
        assert PointTensor(feats(), coords).num_points == 3
        return
    with pytest.raises(ValueError, match=message):
        PointTensor(feats(), coords)


@pytest.mark.parametrize(
    "values,message",
    [
        (feats(2), r"feats has 2 rows but coords has 3"),
        (torch.zeros(3, 2, dtype=torch.int64), r"feats must be a floating-point tensor, got torch.int64"),
        (torch.tensor([[0.0], [float("nan")], [1.0]]), r"feats contains NaN or inf values"),
        (torch.zeros(3, 2, device="meta"), r"tensors must be on one device, got feats on meta, coords on cpu"),
    ],
)
def test_bad_feats(values, message):
    with pytest.raises(ValueError, match=message):
        PointTensor(values, COORDS)


def test_non_tensors_are_type_errors():
    with pytest.raises(TypeError, match="coords must be a torch.Tensor, got list"):
        PointTensor(feats(), COORDS.tolist())
    with pytest.raises(TypeError, match="x must be a SparseTensor, got PointTensor"):
        point_to_voxel(PointTensor(feats(), COORDS), PointTensor(feats(), COORDS))
    with pytest.raises(TypeError, match="z must be a PointTensor, got SparseTensor"):
        voxel_to_point(sparse(), sparse())
    with pytest.raises(TypeError, match="z must be a PointTensor, got Tensor"):
        initial_voxelize(COORDS)


def test_bad_function_arguments():
    z = PointTensor(feats(), COORDS)
    with pytest.raises(ValueError, match=r"feats must have shape \[3, C\], got \[2, 2\]"):
        z.replace_feats(feats(2))
    with pytest.raises(ValueError, match=r"z.feats must be float32 or float64, got torch.float16"):
        initial_voxelize(PointTensor(feats(dtype=torch.float16), COORDS))
    with pytest.raises(ValueError, match=r"x.feats must be float32 or float64, got torch.bfloat16"):
        voxel_to_point(sparse(torch.bfloat16), z)
    with pytest.raises(ValueError, match=r"nearest must be a bool, got 1"):
        voxel_to_point(sparse(), z, nearest=1)


# C++ backstops: the raw ops reject what the Python wrappers never pass them.
def table():
    """(keys, vals, corners) of sparse()'s two sites."""
    cmap = sparse().coordinate_map
    return cmap.table.keys, cmap.table.vals, torch.full((2, 8), -1, dtype=torch.int32)


def test_point_scatter_mean_backstop():
    with pytest.raises(RuntimeError, match=r"point_scatter_mean: 1 index entries lie outside \[-1, 2\)"):
        ops.point_scatter_mean(feats(), torch.tensor([0, 2, -1], dtype=torch.int32), 2)
    with pytest.raises(RuntimeError, match=r"point_scatter_mean: expected feats \[N, C\], index int32 \[N\]"):
        ops.point_scatter_mean(feats(), torch.tensor([0, 1, -1]), 2)
    with pytest.raises(RuntimeError, match=r"point_scatter_mean: expected"):
        ops.point_scatter_mean(feats(), torch.tensor([0, 1], dtype=torch.int32), 2)


def test_trilinear_table_backstop():
    with pytest.raises(
        RuntimeError, match=r"trilinear_table: 1 coords rows have a non-finite value, a batch that is not an integer"
    ):
        ops.trilinear_table(*table(), torch.tensor([[0, 0.0, 0, 0], [0.5, 0, 0, 0]]), [1, 1, 1], False)
    with pytest.raises(RuntimeError, match=r"trilinear_table: 1 coords rows have a non-finite value"):
        ops.trilinear_table(*table(), torch.tensor([[0, float("nan"), 0, 0]]), [1, 1, 1], False)
    with pytest.raises(RuntimeError, match=r"trilinear_table: expected floating coords \[N, 4\], 3 strides >= 1"):
        ops.trilinear_table(*table(), COORDS, [1, 0, 1], False)
    with pytest.raises(RuntimeError, match=r"trilinear_table: expected floating coords"):
        ops.trilinear_table(*table(), COORDS.int(), [1, 1, 1], False)
    keys, vals, corners = table()
    with pytest.raises(RuntimeError, match=r"one power-of-two length"):
        ops.trilinear_table(keys[:3], vals[:3], corners, COORDS, [1, 1, 1], False)
    with pytest.raises(RuntimeError, match=r"trilinear_table: expected corners int32 \[M, 8\], got Long \[2, 8\]"):
        ops.trilinear_table(keys, vals, corners.long(), COORDS, [1, 1, 1], False)
    with pytest.raises(RuntimeError, match=r"1 coords rows .* or a site whose table row is past the corners rows"):
        ops.trilinear_table(keys, vals, corners[:1], torch.tensor([[1, -7.5, 2.0, 0.0]]), [1, 1, 1], False)
    # Far outside the key range a corner is missing, not an error (and never a cast of a huge double).
    far = torch.tensor([[0, 1e300, 0, 0]], dtype=torch.float64)
    index, weights = ops.trilinear_table(keys, vals, corners, far, [1, 1, 1], False)
    assert (index == -1).all() and (weights == 0).all()


def test_trilinear_gather_backstops():
    index = torch.tensor([[0, -1, 1, 2, -1, -1, -1, -1]], dtype=torch.int32)
    weights = torch.full((1, 8), 0.125)
    with pytest.raises(RuntimeError, match=r"trilinear_gather: 1 index entries lie outside \[-1, 2\)"):
        ops.trilinear_gather(feats(2), index, weights)
    with pytest.raises(RuntimeError, match=r"trilinear_gather: expected feats \[M, C\], index int32 \[N, 8\]"):
        ops.trilinear_gather(feats(3), index, weights.double())
    with pytest.raises(RuntimeError, match=r"trilinear_gather: expected base \[N, C\] of feats' dtype"):
        ops.trilinear_gather(feats(3), index, weights, feats(2))
    with pytest.raises(RuntimeError, match=r"trilinear_gather_backward: 1 index entries lie outside \[-1, 2\)"):
        ops.trilinear_gather_backward(feats(1), index, weights, 2)
    with pytest.raises(RuntimeError, match=r"trilinear_gather_backward: expected grad_out \[N, C\]"):
        ops.trilinear_gather_backward(feats(2), index, weights, 3)
    with pytest.raises(ValueError, match=r"no gradient with respect to weights; pass them detached"):
        ops.trilinear_gather(feats(3, dtype=torch.float64), index, weights.double().requires_grad_())
    with pytest.raises(RuntimeError, match=r"trilinear_gather_add_: expected a contiguous base"):
        ops.trilinear_gather_add_(torch.zeros(1, 4)[:, ::2], feats(3), index, weights)
    with pytest.raises(RuntimeError, match=r"trilinear_gather: expected base \[N, C\] of feats' dtype"):
        ops.trilinear_gather_add_(torch.zeros(2, 2), feats(3), index, weights)
