"""Sparse convolution on CUDA through the public API (SparseTensor, functional.conv3d): the kernel
maps of every kind equal the CPU's exactly (random sites and the real scan), the outputs match the
float64 dense reference of pointengine.testing in every dtype and dataflow, and the float64
gradients equal the CPU's (and pass gradcheck). tests/test_conv.py runs its float32 and float64
dense-reference cases on CUDA too (its device axis)."""

import math

import pytest
import torch

from pointengine import SparseTensor
from pointengine.functional import DATAFLOWS, conv3d
from pointengine.functional.conv import conv_kernel_map
from pointengine.testing import (
    brute_force_strided_sites,
    compare_to_reference,
    dense_conv_reference,
    dense_conv_transpose_reference,
    random_sites,
    read_sites,
    relative_error,
    site_set,
    triple,
)

from cuda_helpers import CUDA, DTYPES, HALF, TOLERANCE, randn

pytestmark = pytest.mark.cuda

# conv3d's geometry arguments per kind. A transposed conv goes back to the finer level from the
# output of the strided conv with the same arguments; a generative one makes new sites.
KINDS = {
    "submanifold 3": dict(kernel_size=3),
    "submanifold 5": dict(kernel_size=5),
    "submanifold 2x3x1": dict(kernel_size=(2, 3, 1)),
    "strided 2/2": dict(kernel_size=2, stride=2),
    "strided 3/2 dense": dict(kernel_size=3, stride=2, sites="dense"),
    "strided 3/2 floor": dict(kernel_size=3, stride=2, sites="floor"),
    "transposed 2/2": dict(kernel_size=2, stride=2, transposed=True),
    "transposed 3/2 floor": dict(kernel_size=3, stride=2, sites="floor", transposed=True),
    "generative 2/2": dict(kernel_size=2, stride=2, transposed=True, generative=True),
    "generative 3/2": dict(kernel_size=3, stride=2, transposed=True, generative=True),
}
# A 1x1x1 conv reads no kernel map (a dense product): it has values but no map to compare.
WITH_POINTWISE = {**KINDS, "pointwise": dict(kernel_size=1)}


def volume(args: dict) -> int:
    return math.prod(triple(args["kernel_size"]))


def is_transposed_back(args: dict) -> bool:
    return args.get("transposed", False) and not args.get("generative", False)


def conv_input(args: dict, coords: torch.Tensor, channels: int, dtype, device, seed: int) -> SparseTensor:
    """The input of a conv with `args` on `device`, with seeded features of dtype (the same values on
    every device): a generative conv's input is at tensor stride `stride` (it returns to stride 1);
    a transposed conv's is the output of the strided conv it inverts, whose sites alone matter."""
    blank = torch.zeros(len(coords), 1, dtype=torch.float64, device=device)
    x = SparseTensor(blank, coords.to(device), args.get("stride", 1) if args.get("generative") else 1)
    if is_transposed_back(args):
        forward = {key: value for key, value in args.items() if key != "transposed"}
        x = conv3d(x, blank.new_zeros(volume(args), 1, 1), **forward)
    return x.replace_feats(randn(x.num_sites, channels, dtype=dtype, seed=seed).to(device))


def geometry(args: dict) -> tuple:
    """conv_kernel_map's arguments after the input: kernel_size, stride, dilation, transposed,
    generative, sites."""
    return (
        args["kernel_size"], args.get("stride", 1), 1, args.get("transposed", False),
        args.get("generative", False), args.get("sites", "dense"),
    )


@pytest.fixture(params=["random", "kitti"])
def sites(request) -> torch.Tensor:
    if request.param == "random":
        return random_sites(1500, 3, 16, torch.Generator().manual_seed(0), low=-8)
    return request.getfixturevalue("kitti_sites")


@pytest.mark.parametrize("kind", KINDS)
def test_kernel_maps_match_cpu(sites, kind):
    args = KINDS[kind]
    found = {}
    for device in ("cpu", "cuda"):
        x = conv_input(args, sites, 1, torch.float32, device, seed=1)
        # x stays referenced: a map holds the sites that existed before it (x's levels) weakly.
        found[device] = (x, *conv_kernel_map(x, *geometry(args)))
    (cpu_x, cpu_map, cpu_stride), (x, kmap, stride) = found["cpu"], found["cuda"]
    assert kmap.nbr.device.type == "cuda" and stride == cpu_stride and kmap.n_in == cpu_map.n_in
    assert torch.equal(x.coords.cpu(), cpu_x.coords)  # a transposed conv's input: the strided conv's output sites
    assert torch.equal(kmap.out_map.coords.cpu(), cpu_map.out_map.coords)
    assert torch.equal(kmap.nbr.cpu(), cpu_map.nbr)


def dense_reference_case(args: dict, n_sites: int, c_in: int, c_out: int, dtype, seed: int):
    """(sites, x on CUDA, weight on CUDA, kernel size, stride, reference coords, reference feats): the
    reference in float64 from the same (rounded) values the CUDA conv reads."""
    coords = random_sites(n_sites, 3, 9, torch.Generator().manual_seed(seed))
    x = conv_input(args, coords, c_in, dtype, CUDA, seed=seed + 1)
    weight = randn(volume(args), c_in, c_out, dtype=dtype, seed=seed + 2).to(CUDA)
    ks, st = triple(args["kernel_size"]), triple(args.get("stride", 1))
    dense = dense_conv_transpose_reference if args.get("transposed") else dense_conv_reference
    return coords, x, weight, ks, st, *dense(x.feats.cpu(), x.coords.cpu(), weight.cpu(), ks, st, (1, 1, 1))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kind", WITH_POINTWISE)
def test_conv3d_matches_the_dense_reference(kind, dtype):
    args = WITH_POINTWISE[kind]
    coords, x, weight, ks, st, ref_coords, ref_feats = dense_reference_case(args, 120, 3, 4, dtype, seed=2)
    for dataflow in (None, *DATAFLOWS):
        y = conv3d(x, weight, dataflow=dataflow, **args)
        assert y.feats.device.type == "cuda" and y.feats.dtype == dtype, dataflow
        out_coords = y.coords.cpu()
        if st == (1, 1, 1) or is_transposed_back(args):
            # Submanifold outputs are the input sites; a transposed conv's are the finer level's,
            # zero where no coarse site reaches.
            assert torch.equal(out_coords, coords)
            expected = read_sites(ref_coords, ref_feats, out_coords, missing_zero=is_transposed_back(args))
            err = relative_error(y.feats.cpu(), expected)
        elif args.get("sites") == "floor":
            assert site_set(out_coords) == brute_force_strided_sites(coords, ks, st, (1, 1, 1), "floor")
            err = relative_error(y.feats.cpu(), read_sites(ref_coords, ref_feats, out_coords, missing_zero=True))
        else:
            err = compare_to_reference(out_coords, y.feats.cpu(), ref_coords, ref_feats)
        assert err <= TOLERANCE[dtype], f"{dataflow}: relative error {err:.2e}"


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("kind", WITH_POINTWISE)
def test_implicit_gemm_on_the_tensor_cores_matches_the_dense_reference(kind, dtype):
    """Channels a multiple of 8, so that conv_implicit_gemm runs its tensor-core kernel."""
    args = WITH_POINTWISE[kind]
    _, x, weight, _, _, ref_coords, ref_feats = dense_reference_case(args, 300, 16, 24, dtype, seed=12)
    y = conv3d(x, weight, dataflow="implicit_gemm", **args)
    fused = conv3d(x, weight, dataflow="fused", **args)
    assert torch.equal(y.coords, fused.coords)
    expected = read_sites(ref_coords, ref_feats, y.coords.cpu(), missing_zero=True)
    err = relative_error(y.feats.cpu(), expected)
    assert err <= TOLERANCE[dtype], f"relative error {err:.2e}"


GRAD_KINDS = ["submanifold 3", "submanifold 2x3x1", "strided 3/2 dense", "strided 3/2 floor", "transposed 2/2",
              "generative 3/2", "pointwise"]


@pytest.mark.parametrize("kind", GRAD_KINDS)
def test_conv3d_gradients_match_cpu(kind):
    args = WITH_POINTWISE[kind]
    coords = random_sites(300, 3, 10, torch.Generator().manual_seed(5), low=-5)
    found = {}
    for device in ("cpu", "cuda"):
        x = conv_input(args, coords, 4, torch.float64, device, seed=6)
        feats = x.feats.clone().requires_grad_()
        weight = randn(volume(args), 4, 5, dtype=torch.float64, seed=7).to(device).requires_grad_()
        y = conv3d(x.replace_feats(feats), weight, **args)
        (y.feats * randn(y.num_sites, 5, dtype=torch.float64, seed=8).to(device)).sum().backward()
        found[device] = y.coords.cpu(), y.feats.detach().cpu(), feats.grad.cpu(), weight.grad.cpu()
    (cpu_coords, *cpu_values), (cuda_coords, *cuda_values) = found["cpu"], found["cuda"]
    assert torch.equal(cuda_coords, cpu_coords)
    for name, got, expected in zip(("output", "feats gradient", "weight gradient"), cuda_values, cpu_values):
        assert relative_error(got, expected) <= TOLERANCE[torch.float64], name


@pytest.mark.parametrize("kind", ["submanifold 3", "strided 2/2", "transposed 2/2", "generative 2/2"])
def test_gradcheck(kind):
    args = KINDS[kind]
    x = conv_input(args, random_sites(16, 2, 4, torch.Generator().manual_seed(9)), 2, torch.float64, CUDA, seed=10)
    feats = x.feats.clone().requires_grad_()
    weight = randn(volume(args), 2, 3, dtype=torch.float64, seed=11).to(CUDA).requires_grad_()

    def conv(f, w):
        return conv3d(x.replace_feats(f), w, **args).feats

    # fast_mode: random projections of the Jacobian, so a generative output of ~400 values stays quick.
    assert torch.autograd.gradcheck(conv, (feats, weight), fast_mode=True)
