"""conv_fused_epilogue, relu?(conv + bias + residual) in the conv's tile pass, on every CPU path with
channel tails and several tiles: every element against the float64 dense reference with the epilogue
applied after it; its gradients (gradcheck); conv3d's epilogue arguments on every dataflow and device
(CUDA: the GEMM, then the epilogue's passes)."""

import itertools

import pytest
import torch

from pointengine import SparseTensor, _C
from pointengine.coordinate_map import CoordinateMap
from pointengine.functional import DATAFLOWS, conv3d
from pointengine.functional import kmap as km
from pointengine.testing import RELATIVE_TOLERANCE, dense_conv_reference, random_sites, read_sites, relative_error

# The registered op (the best path) and every path this CPU runs, by name.
PATHS = {
    "default": torch.ops.pointengine.conv_fused_epilogue,
    **{path: lambda *args, path=path: _C.conv_fused_epilogue_on(*args, path) for path in _C.cpu_paths()},
}
# (bias, residual, relu): every combination.
EPILOGUES = list(itertools.product([False, True], repeat=3))


def case(c_in: int, c_out: int, kernel_size: int, stride: int, seed: int):
    """(feats, weight, nbr, bias, residual, float64 conv reference at the output rows) on ~350 sites."""
    g = torch.Generator().manual_seed(seed)
    coords = random_sites(400, 3, 9, g)
    cmap = CoordinateMap(coords)
    kmap = km.submanifold_map(cmap, kernel_size) if stride == 1 else km.strided_map(cmap, kernel_size, stride)
    feats = torch.randn(len(coords), c_in, generator=g, dtype=torch.float64)
    weight = torch.randn(kmap.nbr.shape[1], c_in, c_out, generator=g, dtype=torch.float64)
    bias = torch.randn(c_out, generator=g, dtype=torch.float64)
    residual = torch.randn(kmap.nbr.shape[0], c_out, generator=g, dtype=torch.float64)
    ref_coords, ref_feats = dense_conv_reference(feats, coords, weight, (kernel_size,) * 3, (stride,) * 3)
    return feats, weight, kmap.nbr, bias, residual, read_sites(ref_coords, ref_feats, kmap.out_map.coords)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("c_in, c_out", [(3, 7), (8, 33), (17, 64)])
@pytest.mark.parametrize("kernel_size, stride", [(3, 1), (2, 2)])
@pytest.mark.parametrize("with_bias, with_residual, relu", EPILOGUES)
def test_matches_the_dense_reference(path, dtype, c_in, c_out, kernel_size, stride, with_bias, with_residual, relu):
    feats, weight, nbr, bias, residual, expected = case(c_in, c_out, kernel_size, stride, seed=c_in + c_out)
    bias, residual = (bias if with_bias else None), (residual if with_residual else None)
    for part in (bias, residual):
        expected = expected if part is None else expected + part
    expected = expected.clamp(min=0) if relu else expected
    cast = lambda t: None if t is None else t.to(dtype)  # noqa: E731
    out = PATHS[path](cast(feats), cast(weight), nbr, cast(bias), cast(residual), relu)
    assert out.dtype == dtype
    assert relative_error(out, expected) <= RELATIVE_TOLERANCE[dtype]
    if relu:
        assert (out >= 0).all()


@pytest.mark.parametrize("path", PATHS)
def test_bitwise_equal_across_thread_counts(path, restore_threads):
    feats, weight, nbr, bias, residual, _ = case(19, 35, 3, 1, seed=5)
    args = (feats.float(), weight.float(), nbr, bias.float(), residual.float(), True)
    torch.set_num_threads(1)
    one = PATHS[path](*args)
    torch.set_num_threads(2)
    assert torch.equal(one, PATHS[path](*args))


def test_without_an_epilogue_it_is_conv_fused_bit_for_bit():
    feats, weight, nbr, _, _, _ = case(8, 33, 3, 1, seed=6)
    feats, weight = feats.float(), weight.float()
    assert torch.equal(torch.ops.pointengine.conv_fused_epilogue(feats, weight, nbr, None, None, False),
                       torch.ops.pointengine.conv_fused(feats, weight, nbr))


@pytest.mark.parametrize("with_bias, with_residual, relu", EPILOGUES)
def test_gradients(with_bias, with_residual, relu):
    feats, weight, nbr, bias, residual, _ = case(2, 3, 2, 2, seed=7)
    leaf = lambda t: t[:40].clone().requires_grad_() if t is residual else t.clone().requires_grad_()  # noqa: E731
    args = [leaf(feats), leaf(weight), leaf(bias) if with_bias else None, leaf(residual) if with_residual else None]
    # gradcheck needs the residual of every output row; 40 rows keeps the numerical Jacobian small.
    rows = nbr[:40]

    def fn(feats, weight, bias, residual):
        return torch.ops.pointengine.conv_fused_epilogue(feats, weight, rows, bias, residual, relu)

    assert torch.autograd.gradcheck(fn, args)


def sparse_input(seed: int, device="cpu") -> SparseTensor:
    g = torch.Generator().manual_seed(seed)
    coords = random_sites(300, 2, 8, g)
    return SparseTensor(torch.randn(len(coords), 6, generator=g, dtype=torch.float64).to(device), coords.to(device))


@pytest.mark.parametrize("dataflow", DATAFLOWS)
@pytest.mark.parametrize("kernel_size, stride", [(3, 1), (1, 1), (2, 2)])
def test_conv3d_epilogue_equals_the_separate_passes(dataflow, kernel_size, stride, device):
    x = sparse_input(seed=8, device=device)
    g = torch.Generator().manual_seed(9)
    weight = torch.randn(kernel_size**3, 6, 5, generator=g, dtype=torch.float64).to(device)
    bias = torch.randn(5, generator=g, dtype=torch.float64).to(device)
    plain = conv3d(x, weight, kernel_size=kernel_size, stride=stride, dataflow=dataflow)
    residual = torch.randn(plain.feats.shape, generator=g, dtype=torch.float64).to(device)
    fused = conv3d(x, weight, bias, kernel_size=kernel_size, stride=stride, dataflow=dataflow, residual=residual, relu=True)
    assert torch.equal(fused.coords, plain.coords)
    assert relative_error(fused.feats, (plain.feats + bias + residual).clamp(min=0)) <= 1e-12


@pytest.mark.parametrize(
    "residual, relu, error, message",
    [
        (torch.zeros(3, 5, dtype=torch.float64), False, ValueError, r"residual must have shape \[\d+, 5\] \(output sites, C_out\), got \[3, 5\]"),
        ("zeros_float32", False, ValueError, "residual dtype torch.float32 differs from weight dtype torch.float64"),
        (None, 1, TypeError, "relu must be a bool, got int"),
    ],
)
def test_conv3d_epilogue_bad_arguments(residual, relu, error, message):
    x = sparse_input(seed=10)
    weight = torch.zeros(27, 6, 5, dtype=torch.float64)
    if isinstance(residual, str):
        residual = torch.zeros(len(x.coords), 5)
    with pytest.raises(error, match=message):
        conv3d(x, weight, residual=residual, relu=relu)
