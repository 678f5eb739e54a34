"""PointTensor: validation with messages, TorchSparse aliases, shared caches; bad arguments of the
point-voxel functions (the raw ops' own checks are in test_raw_ops.py)."""

import pytest
import torch

from pointengine import PointTensor, SparseTensor
from pointengine.functional import initial_voxelize, point_to_voxel, voxel_to_point


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
