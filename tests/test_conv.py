"""Every convolution variant against the float64 dense reference (pointengine.testing): every output
element compared, the output site set checked exactly, for both dataflows and both float dtypes, on
random sites in several batches with negative coordinates. Each test computes one reference and
checks every dataflow against it."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from pointengine import SparseTensor
from pointengine.functional import DATAFLOWS, conv3d
from pointengine.testing import (
    RELATIVE_TOLERANCE,
    brute_force_generative_sites,
    brute_force_strided_sites,
    compare_to_reference,
    dense_conv_reference,
    dense_conv_transpose_reference,
    random_input,
    read_sites,
    relative_error,
    site_set,
    triple,
)

DTYPES = [torch.float64, torch.float32]
# (kernel_size, stride): the downsampling pairs of real networks, kernels smaller and larger than
# the stride, and non-cubic ones with a stride of 1 on some axis.
STRIDED = [(2, 2), (3, 2), (1, 2), (2, 3), (5, 2), ((3, 1, 2), (2, 1, 3)), ((2, 3, 3), (2, 2, 1))]
DILATIONS = [1, (1, 3, 2)]


def make_input(seed: int, device, dtype, channels: int = 3, stride=1, n: int = 120) -> SparseTensor:
    g = torch.Generator().manual_seed(seed)
    feats, coords = random_input(g, n, channels, dtype)
    return SparseTensor(feats.to(device), coords.to(device), stride)


def make_weight(seed: int, kernel_size, c_in: int, c_out: int, device, dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    volume = math.prod(triple(kernel_size))
    return torch.randn(volume, c_in, c_out, generator=g, dtype=torch.float64).to(device, dtype)


def random_feats(seed: int, like: SparseTensor) -> SparseTensor:
    """The same sites with new standard-normal features."""
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(like.feats.shape, generator=g, dtype=torch.float64)
    return like.replace_feats(feats.to(like.feats.device, like.feats.dtype))


def reference(x: SparseTensor, weight, kernel_size, stride, dilation, transposed: bool = False):
    dense = dense_conv_transpose_reference if transposed else dense_conv_reference
    return dense(x.feats.cpu(), x.coords.cpu(), weight.cpu(), triple(kernel_size), triple(stride), triple(dilation))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel_size", [1, 3, 5, (3, 1, 5), 2, (2, 3, 1)])
@pytest.mark.parametrize("dilation", [1, 2, 3, (1, 2, 3)])
def test_submanifold(device, dtype, kernel_size, dilation):
    x = make_input(0, device, dtype)
    weight = make_weight(1, kernel_size, 3, 4, device, dtype)
    ref_coords, ref_feats = reference(x, weight, kernel_size, 1, dilation)
    expected = read_sites(ref_coords, ref_feats, x.coords.cpu())
    for dataflow in DATAFLOWS:
        y = conv3d(x, weight, kernel_size=kernel_size, dilation=dilation, dataflow=dataflow)
        assert y.coordinate_map is x.coordinate_map and y.stride == x.stride and y.feats.dtype == dtype
        assert relative_error(y.feats.cpu(), expected) <= RELATIVE_TOLERANCE[dtype], dataflow


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel_size,stride", STRIDED)
@pytest.mark.parametrize("dilation", DILATIONS)
@pytest.mark.parametrize("sites", ["dense", "floor"])
def test_strided(device, dtype, kernel_size, stride, dilation, sites):
    x = make_input(2, device, dtype, stride=2)
    weight = make_weight(3, kernel_size, 3, 4, device, dtype)
    ks, st_, dil = triple(kernel_size), triple(stride), triple(dilation)
    expected_sites = brute_force_strided_sites(x.coords.cpu(), ks, st_, dil, sites)
    ref_coords, ref_feats = reference(x, weight, ks, st_, dil)
    for dataflow in DATAFLOWS:
        y = conv3d(x, weight, kernel_size=kernel_size, stride=stride, dilation=dilation, sites=sites, dataflow=dataflow)
        assert y.stride == tuple(2 * s for s in st_) and y.levels is x.levels
        assert site_set(y.coords.cpu()) == expected_sites
        if sites == "dense":
            err = compare_to_reference(y.coords.cpu(), y.feats.cpu(), ref_coords, ref_feats)
        else:
            # A floor site may have no input in its receptive field: its output is exactly zero.
            err = relative_error(y.feats.cpu(), read_sites(ref_coords, ref_feats, y.coords.cpu(), missing_zero=True))
        assert err <= RELATIVE_TOLERANCE[dtype], dataflow


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel_size,stride", STRIDED)
@pytest.mark.parametrize("dilation", DILATIONS)
@pytest.mark.parametrize("sites", ["dense", "floor"])
def test_transposed(device, dtype, kernel_size, stride, dilation, sites):
    x = make_input(4, device, dtype)
    down = make_weight(5, kernel_size, 3, 4, device, dtype)
    coarse = conv3d(x, down, kernel_size=kernel_size, stride=stride, dilation=dilation, sites=sites)
    y = random_feats(6, coarse)
    up = make_weight(7, kernel_size, 4, 2, device, dtype)
    ref_coords, ref_feats = reference(y, up, kernel_size, stride, dilation, transposed=True)
    # Fine sites that no coarse site reaches read zero (kernel smaller than the stride).
    expected = read_sites(ref_coords, ref_feats, x.coords.cpu(), missing_zero=True)
    for dataflow in DATAFLOWS:
        z = conv3d(y, up, kernel_size=kernel_size, stride=stride, dilation=dilation, transposed=True, dataflow=dataflow)
        assert z.coordinate_map is x.coordinate_map and z.stride == x.stride
        assert relative_error(z.feats.cpu(), expected) <= RELATIVE_TOLERANCE[dtype], dataflow


@pytest.mark.parametrize("kernel_size", [1, 3, (3, 1, 5), 2])
@pytest.mark.parametrize("dilation", [1, 2])
def test_transposed_stride_one(device, kernel_size, dilation):
    x = make_input(8, device, torch.float64)
    weight = make_weight(9, kernel_size, 3, 4, device, torch.float64)
    ref_coords, ref_feats = reference(x, weight, kernel_size, 1, dilation, transposed=True)
    expected = read_sites(ref_coords, ref_feats, x.coords.cpu())
    for dataflow in DATAFLOWS:
        z = conv3d(x, weight, kernel_size=kernel_size, dilation=dilation, transposed=True, dataflow=dataflow)
        assert z.coordinate_map is x.coordinate_map
        assert relative_error(z.feats.cpu(), expected) <= RELATIVE_TOLERANCE[torch.float64], dataflow


@pytest.mark.parametrize("dataflow", DATAFLOWS)
@pytest.mark.parametrize("kernel_size,stride", STRIDED)
@pytest.mark.parametrize("sites", ["dense", "floor"])
def test_transposed_is_the_adjoint(device, dataflow, kernel_size, stride, sites):
    """<conv_W(x), u> = <x, convT_{W^T}(u)> for every x and u: checks the transposed map and the
    transposed dataflow against the forward one without any dense reference."""
    x = make_input(10, device, torch.float64)
    weight = make_weight(11, kernel_size, 3, 4, device, torch.float64)
    y = conv3d(x, weight, kernel_size=kernel_size, stride=stride, sites=sites, dataflow=dataflow)
    u = random_feats(12, y)
    z = conv3d(u, weight.transpose(1, 2), kernel_size=kernel_size, stride=stride, transposed=True, dataflow=dataflow)
    lhs, rhs = (y.feats * u.feats).sum(), (x.feats * z.feats).sum()
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel_size,stride", [(3, 1), *STRIDED])
@pytest.mark.parametrize("dilation", DILATIONS)
def test_generative(device, dtype, kernel_size, stride, dilation):
    ks, st_, dil = triple(kernel_size), triple(stride), triple(dilation)
    x = make_input(13, device, dtype, stride=tuple(2 * s for s in st_), n=60)
    weight = make_weight(14, kernel_size, 3, 4, device, dtype)
    expected_sites = brute_force_generative_sites(x.coords.cpu(), ks, st_, dil)
    ref_coords, ref_feats = reference(x, weight, ks, st_, dil, transposed=True)
    for dataflow in DATAFLOWS:
        y = conv3d(
            x, weight, kernel_size=kernel_size, stride=stride, dilation=dilation,
            transposed=True, generative=True, dataflow=dataflow,
        )
        assert y.stride == (2, 2, 2) and y.levels is x.levels
        assert site_set(y.coords.cpu()) == expected_sites
        err = compare_to_reference(y.coords.cpu(), y.feats.cpu(), ref_coords, ref_feats)
        assert err <= RELATIVE_TOLERANCE[dtype], dataflow


@pytest.mark.parametrize("dataflow", DATAFLOWS)
@pytest.mark.parametrize("stride", [1, 2])
def test_bias_is_added_to_every_site(device, dataflow, stride):
    x = make_input(15, device, torch.float64)
    weight = make_weight(16, 3, 3, 4, device, torch.float64)
    bias = torch.arange(4, dtype=torch.float64, device=device)
    plain = conv3d(x, weight, kernel_size=3, stride=stride, dataflow=dataflow)
    biased = conv3d(x, weight, bias, kernel_size=3, stride=stride, dataflow=dataflow)
    assert torch.equal(biased.feats, plain.feats + bias)


@st.composite
def conv_cases(draw):
    """(input, weights, conv arguments, kind): a random submanifold, strided, transposed (after the
    strided conv it inverts) or generative conv, in float32 or float64, with either dataflow."""
    kind = draw(st.sampled_from(["regular", "transposed", "generative"]))
    dtype = draw(st.sampled_from(DTYPES))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    n, batches, extent = draw(st.integers(1, 80)), draw(st.integers(1, 3)), draw(st.integers(1, 8))
    channels = [draw(st.integers(1, 4)) for _ in range(3)]
    feats, coords = random_input(g, n, channels[0], dtype, batches, extent)
    ks, stride, dilation = (draw(st.tuples(*[st.integers(1, hi)] * 3)) for hi in (4, 3, 3))
    tensor_stride = tuple(s * draw(st.integers(1, 2)) for s in stride)
    weights = [
        torch.randn(math.prod(ks), a, b, generator=g, dtype=torch.float64).to(dtype)
        for a, b in zip(channels, channels[1:])
    ]
    args = dict(kernel_size=ks, stride=stride, dilation=dilation, dataflow=draw(st.sampled_from(DATAFLOWS)))
    args.update(sites=draw(st.sampled_from(["dense", "floor"])))
    return SparseTensor(feats, coords, tensor_stride), weights, args, kind


@given(case=conv_cases())
def test_random_convolutions_match_dense(case):
    x, (weight, up), args, kind = case
    ks, st_, dil = args["kernel_size"], args["stride"], args["dilation"]
    tolerance = RELATIVE_TOLERANCE[weight.dtype]
    if kind == "generative":
        y = conv3d(x, weight, transposed=True, generative=True, **args)
        assert site_set(y.coords) == brute_force_generative_sites(x.coords, ks, st_, dil)
        ref_coords, ref_feats = reference(x, weight, ks, st_, dil, transposed=True)
        assert compare_to_reference(y.coords, y.feats, ref_coords, ref_feats) <= tolerance
        return
    y = conv3d(x, weight, **args)
    ref_coords, ref_feats = reference(x, weight, ks, st_, dil)
    if st_ == (1, 1, 1):
        assert relative_error(y.feats, read_sites(ref_coords, ref_feats, x.coords)) <= tolerance
    else:
        assert site_set(y.coords) == brute_force_strided_sites(x.coords, ks, st_, dil, args["sites"])
        assert relative_error(y.feats, read_sites(ref_coords, ref_feats, y.coords, missing_zero=True)) <= tolerance
    if kind == "transposed":
        z = conv3d(y, up, transposed=True, **args)
        assert z.coordinate_map is x.coordinate_map
        ref_coords, ref_feats = reference(y, up, ks, st_, dil, transposed=True)
        assert relative_error(z.feats, read_sites(ref_coords, ref_feats, x.coords, missing_zero=True)) <= tolerance


def run_case(x: SparseTensor, weights, args: dict, kind: str) -> SparseTensor:
    """The output of a conv_cases case (for "transposed": the strided conv, then its transpose)."""
    weight, up = weights
    if kind == "generative":
        return conv3d(x, weight, transposed=True, generative=True, **args)
    y = conv3d(x, weight, **args)
    return conv3d(y, up, transposed=True, **args) if kind == "transposed" else y


@given(case=conv_cases(), shift=st.tuples(*[st.integers(-6, 6)] * 3))
def test_translation_equivariance(case, shift):
    """Moving every input site by stride * t moves every output site by the same amount on its own
    grid (t for a strided conv, stride * t for transposed and generative ones), with bitwise equal
    features: the same maps, in the same row order, feed the same arithmetic."""
    x, weights, args, kind = case
    stride = args["stride"]
    step = [s * t for s, t in zip(stride, shift)]
    moved = x.coords.clone()
    moved[:, 1:] += torch.tensor(step, dtype=torch.int32)
    before = run_case(x, weights, args, kind)
    after = run_case(SparseTensor(x.feats, moved, x.stride), weights, args, kind)
    out_step = {"regular": shift, "transposed": step, "generative": [s * d for s, d in zip(stride, step)]}[kind]
    expected = before.coords.clone()
    expected[:, 1:] += torch.tensor(out_step, dtype=torch.int32)
    assert torch.equal(after.coords, expected)
    assert torch.equal(after.feats, before.feats)


@given(case=conv_cases(), seed=st.integers(0, 2**31))
def test_permutation_equivariance(case, seed):
    """Shuffling the input rows changes no output value at any site."""
    x, weights, args, kind = case
    perm = torch.randperm(x.num_sites, generator=torch.Generator().manual_seed(seed))
    before = run_case(x, weights, args, kind)
    after = run_case(SparseTensor(x.feats[perm], x.coords[perm], x.stride), weights, args, kind)
    assert site_set(after.coords) == site_set(before.coords)
    matched = read_sites(before.coords, before.feats, after.coords)
    if args["dataflow"] == "fused":
        # Output-stationary: each site sums its terms in offset order, wherever its rows sit.
        assert torch.equal(after.feats, matched)
    else:
        # A GEMM's rounding may depend on where a row sits in the gathered block: allow a few
        # dozen roundings, far below the reference tolerance.
        assert relative_error(after.feats, matched) <= 64 * torch.finfo(x.feats.dtype).eps
