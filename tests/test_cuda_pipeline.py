"""The point-voxel pipeline and a whole network on CUDA against the CPU: voxelize_points and
devoxelize; initial_voxelize, point_to_voxel and voxel_to_point (values, and float64 gradients);
SparseTensor and PointTensor made from any __dlpack__ array (CuPy where installed) without a copy;
MinkUNet cr 0.5 on the first real SemanticKITTI scan (float32 within 1e-3 of the CPU, float16
labels agreeing on >= 99 % of the voxels, the same bits twice); `import pointengine` leaves CUDA
uninitialised."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pointengine import PointTensor, SparseTensor
from pointengine.functional import conv3d, devoxelize, initial_voxelize, point_to_voxel, voxel_to_point, voxelize_points
from pointengine.functional.pointvoxel import QUANTIZATIONS, REDUCTIONS
from pointengine.models import build_model, load_model_config
from pointengine.segment import voxelize_scans
from pointengine.testing import random_points, random_sites, randomize_batchnorm, relative_error

from cuda_helpers import CUDA, TOLERANCE, randn

pytestmark = pytest.mark.cuda

ROOT = Path(__file__).resolve().parents[1]


def check_close(got: torch.Tensor, expected: torch.Tensor, name: str) -> None:
    """A CUDA result against the CPU's: integers equal, floats within TOLERANCE of their dtype."""
    assert got.device.type == "cuda" and got.dtype == expected.dtype, name
    if expected.is_floating_point():
        assert relative_error(got.cpu(), expected) <= TOLERANCE[expected.dtype], name
    else:
        assert torch.equal(got.cpu(), expected), name


@pytest.fixture(params=["random", "kitti"])
def points(request) -> tuple[torch.Tensor, torch.Tensor | None, float]:
    """(points [N, 3 + C] float32, batch or None, voxel size): random points in three batches with
    many per voxel, or the real scan (x, y, z, remission) at 0.05 m."""
    if request.param == "kitti":
        return request.getfixturevalue("kitti_scan"), None, 0.05
    g = torch.Generator().manual_seed(0)
    xyz = torch.rand(4000, 3, generator=g) * 8 - 4
    return torch.cat([xyz, torch.randn(4000, 2, generator=g)], 1), torch.randint(0, 3, (4000,), generator=g), 0.25


@pytest.mark.parametrize("quantization", QUANTIZATIONS)
@pytest.mark.parametrize("reduce", REDUCTIONS)
def test_voxelize_points_and_devoxelize(points, reduce, quantization):
    points, batch, voxel_size = points
    expected = voxelize_points(points, voxel_size, reduce, batch, quantization)
    cuda_batch = None if batch is None else batch.to(CUDA)
    got = voxelize_points(points.to(CUDA), voxel_size, reduce, cuda_batch, quantization)
    assert got.coordinate_map.table.keys.device.type == "cuda"
    check_close(got.coords, expected.coords, "coords")
    check_close(got.inverse, expected.inverse, "inverse")
    if reduce == "mean":
        check_close(got.feats, expected.feats, "feats")
    else:  # a point's row or a per-channel maximum: exact
        assert torch.equal(got.feats.cpu(), expected.feats)
    assert torch.equal(devoxelize(got.feats, got.inverse).cpu(), devoxelize(got.feats.cpu(), expected.inverse))


def point_voxel_chain(points, point_feats, weight, device, grad: bool = False) -> dict:
    """Every point-voxel op on one PointTensor: stride-1 voxels, a strided conv to stride 2, points to
    those voxels, and voxels back to the points (trilinear, nearest, with a residual, in place)."""
    feats = point_feats.detach().to(device, copy=True).requires_grad_(grad)
    z = PointTensor(feats, points.to(device))
    x = initial_voxelize(z)
    down = conv3d(x, weight.to(device), kernel_size=2, stride=2)
    out = {
        "voxel coords": x.coords, "voxel feats": x.feats, "stride-2 coords": down.coords,
        "point_to_voxel": point_to_voxel(down, z).feats,
        "voxel_to_point": voxel_to_point(down, z).feats,
        "nearest": voxel_to_point(down, z, nearest=True).feats,
        "with residual": voxel_to_point(down, z, residual=z.feats).feats,
    }
    if grad:
        loss = sum((out[name] * randn(*out[name].shape, dtype=out[name].dtype, seed=i).to(device)).sum()
                   for i, name in enumerate(["point_to_voxel", "voxel_to_point", "nearest", "with residual"]))
        loss.backward()
        return {"feats gradient": feats.grad}
    with torch.no_grad():
        residual = z.feats.clone()
        voxel_to_point(down, z, residual=residual, in_place=True)
    return {**out, "in place": residual}


def point_case(dtype):
    """(points [N, 4] in 2 batches with negative coordinates, point features [N, 4], conv weight)."""
    points = random_points(3000, 2, 12.0, torch.Generator().manual_seed(1), low=-6.0, dtype=dtype)
    return points, randn(3000, 4, dtype=dtype, seed=2), randn(8, 4, 4, dtype=dtype, seed=3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_point_voxel_ops(dtype):
    case = point_case(dtype)
    expected, got = point_voxel_chain(*case, "cpu"), point_voxel_chain(*case, CUDA)
    for name in expected:
        check_close(got[name], expected[name], name)


def test_point_voxel_gradients():
    case = point_case(torch.float64)
    expected, got = point_voxel_chain(*case, "cpu", grad=True), point_voxel_chain(*case, CUDA, grad=True)
    check_close(got["feats gradient"], expected["feats gradient"], "feats gradient")


class DLPackArray:
    """An array that is no torch.Tensor and speaks only the DLPack protocol (as CuPy's, JAX's...)."""

    def __init__(self, tensor: torch.Tensor):
        self._tensor = tensor

    def __dlpack__(self, **kwargs):
        return self._tensor.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._tensor.__dlpack_device__()


def dlpack_case() -> tuple[torch.Tensor, ...]:
    """CUDA (feats, coords) of sites and (feats, coords) of points."""
    coords = random_sites(300, 2, 10, torch.Generator().manual_seed(4)).to(CUDA)
    points = random_points(500, 2, 8.0, torch.Generator().manual_seed(5)).to(CUDA)
    feats = randn(len(coords), 3, dtype=torch.float32, seed=6).to(CUDA)
    return feats, coords, randn(len(points), 2, dtype=torch.float32, seed=7).to(CUDA), points


def test_dlpack_arrays_are_taken_without_a_copy():
    feats, coords, point_feats, points = dlpack_case()
    x = SparseTensor(DLPackArray(feats), DLPackArray(coords))
    z = PointTensor(DLPackArray(point_feats), DLPackArray(points))
    for name, got, original in [("feats", x.feats, feats), ("coords", x.coords, coords),
                                ("point feats", z.feats, point_feats), ("points", z.coords, points)]:
        assert isinstance(got, torch.Tensor) and got.data_ptr() == original.data_ptr(), name
        assert got.dtype == original.dtype and torch.equal(got, original), name
    weight = randn(27, 3, 2, dtype=torch.float32, seed=8).to(CUDA)
    assert torch.equal(conv3d(x, weight).feats, conv3d(SparseTensor(feats, coords), weight).feats)


def test_cupy_arrays_are_taken_without_a_copy():
    cupy = pytest.importorskip("cupy")
    tensors = dlpack_case()
    feats, coords, point_feats, points = (cupy.asarray(t.cpu().numpy()) for t in tensors)
    x, z = SparseTensor(feats, coords), PointTensor(point_feats, points)
    for name, got, array, tensor in [("feats", x.feats, feats, tensors[0]), ("coords", x.coords, coords, tensors[1]),
                                     ("point feats", z.feats, point_feats, tensors[2]), ("points", z.coords, points, tensors[3])]:
        assert isinstance(got, torch.Tensor) and got.device.type == "cuda", name
        assert got.data_ptr() == array.data.ptr and torch.equal(got, tensor), name


# --- MinkUNet cr 0.5 on the real scan -------------------------------------------------------------


@pytest.fixture(scope="module")
def minkunet(kitti_scan):
    """(model with seeded weights and random BatchNorm statistics, its input voxels, CPU float32 logits)."""
    config = load_model_config("minkunet_cr0.5")
    x = voxelize_scans(config, [kitti_scan]).tensor
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = randomize_batchnorm(build_model(config).eval())
    with torch.no_grad():
        return model, x, model(x).feats


def cuda_logits(model, x: SparseTensor, dtype) -> torch.Tensor:
    """The logits of a CUDA copy of the model in dtype, on a CUDA copy of x (its kernel maps built anew)."""
    with torch.no_grad():
        out = copy.deepcopy(model).to(CUDA, dtype)(x.to(CUDA, dtype))
    assert out.feats.device.type == "cuda" and out.feats.dtype == dtype
    assert torch.equal(out.coords.cpu(), x.coords)
    return out.feats


def test_minkunet_float32_matches_cpu(minkunet):
    model, x, expected = minkunet
    assert relative_error(cuda_logits(model, x, torch.float32).cpu(), expected) <= 1e-3


def test_minkunet_float16_labels_agree_with_cpu(minkunet):
    model, x, expected = minkunet
    logits = cuda_logits(model, x, torch.float16)
    assert bool(torch.isfinite(logits).all())
    agreement = (logits.cpu().argmax(1) == expected.argmax(1)).double().mean().item()
    assert agreement >= 0.99, f"float16 labels agree with the CPU's on {agreement:.2%} of the voxels"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_minkunet_gives_the_same_bits_twice(minkunet, dtype):
    model, x, _ = minkunet
    assert torch.equal(cuda_logits(model, x, dtype), cuda_logits(model, x, dtype))


def test_import_leaves_cuda_uninitialised():
    code = (
        "import torch, pointengine, pointengine.models, pointengine.cli\n"
        "assert not torch.cuda.is_initialized(), 'importing pointengine initialised CUDA'"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
