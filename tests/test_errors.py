"""Bad input raises a clear exception naming the argument, never a crash or a silent wrap."""

import pytest
import torch

from pointengine import CoordinateMap, SparseTensor, sparse_collate
from pointengine._checks import all_finite
from pointengine.functional import conv3d
from pointengine.functional.kmap import strided_output_coords


def coords_of(*rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.int32)


def feats_for(coords: torch.Tensor, channels: int = 2, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(len(coords), channels, generator=torch.Generator().manual_seed(0), dtype=dtype)


COORDS = coords_of([0, 0, 0, 0], [0, 1, 0, 0], [1, -2, 3, 4])


def tensor(stride=1, dtype=torch.float64) -> SparseTensor:
    return SparseTensor(feats_for(COORDS, dtype=dtype), COORDS, stride)


def weight(volume: int = 27, c_in: int = 2, c_out: int = 3, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(volume, c_in, c_out, dtype=dtype)


@pytest.mark.parametrize(
    "coords,message",
    [
        (COORDS.long(), r"coords must have dtype torch.int32, got torch.int64"),
        (COORDS.float(), r"coords must have dtype torch.int32"),
        (COORDS[:, :3], r"coords must have shape \[N, 4\] \(batch, x, y, z\), got \[3, 3\]"),
        (COORDS.flatten(), r"coords must have shape \[N, 4\]"),
        (COORDS[:0], r"coords is empty"),
        (coords_of([0, 0, 0, 0], [-1, 0, 0, 0]), r"batch index must be in \[0, 65534\], got \[-1, 0\]"),
        (coords_of([0, 0, 0, 0], [65535, 0, 0, 0]), r"batch index must be in \[0, 65534\], got \[0, 65535\]"),
        (coords_of([0, 32768, 0, 0]), r"x must be in \[-32768, 32767\]"),
        (coords_of([0, 0, -32769, 0]), r"y must be in \[-32768, 32767\]"),
        (coords_of([0, 0, 0, 2**31 - 1]), r"z must be in \[-32768, 32767\]"),
        (coords_of([0, 1, 2, 3], [0, 1, 2, 3]), r"coords has 1 duplicate rows"),
    ],
)
def test_bad_coords(coords, message):
    feats = torch.zeros(len(coords), 2)
    with pytest.raises(ValueError, match=message):
        SparseTensor(feats, coords)


def test_range_limits_are_accepted():
    coords = coords_of([65534, 32767, -32768, 0], [0, -32768, 32767, 32767])
    assert SparseTensor(torch.zeros(2, 1), coords).num_sites == 2


@pytest.mark.parametrize(
    "feats,message",
    [
        (torch.zeros(3, 2, dtype=torch.int64), r"feats must be a floating-point tensor, got torch.int64"),
        (torch.zeros(3), r"feats must have shape \[N, C\], got \[3\]"),
        (torch.zeros(3, 2, 1), r"feats must have shape \[N, C\], got \[3, 2, 1\]"),
        (torch.zeros(2, 2), r"feats has 2 rows but coords has 3"),
        (torch.tensor([[0.0], [float("nan")], [1.0]]), r"feats contains NaN or inf"),
        (torch.tensor([[0.0], [float("inf")], [1.0]]), r"feats contains NaN or inf"),
        (torch.tensor([[0.0], [-float("inf")], [1.0]]), r"feats contains NaN or inf"),
        (torch.zeros(3, 2, device="meta"), r"tensors must be on one device, got feats on meta, coords on cpu"),
    ],
)
def test_bad_feats(feats, message):
    with pytest.raises(ValueError, match=message):
        SparseTensor(feats, COORDS)


def test_non_tensors_are_type_errors():
    with pytest.raises(TypeError, match="coords must be a torch.Tensor, got list"):
        SparseTensor(torch.zeros(3, 2), COORDS.tolist())
    with pytest.raises(TypeError, match="feats must be a torch.Tensor, got list"):
        SparseTensor([[0.0]] * 3, COORDS)
    with pytest.raises(TypeError, match="input must be a SparseTensor, got Tensor"):
        conv3d(torch.zeros(3, 2), weight())
    with pytest.raises(TypeError, match="weight must be a torch.Tensor, got list"):
        conv3d(tensor(), weight().tolist())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a second real device")
def test_feats_and_coords_on_different_devices():
    with pytest.raises(ValueError, match="tensors must be on one device"):
        SparseTensor(feats_for(COORDS).cuda(), COORDS)


@pytest.mark.parametrize(
    "args,message",
    [
        (
            dict(weight=weight(26)),
            r"weight must have shape \[27, 2, C_out\] \(kernel volume, C_in, C_out\), got \[26, 2, 3\]",
        ),
        (dict(weight=weight(c_in=3)), r"weight must have shape \[27, 2, C_out\]"),
        (dict(weight=weight()[:, :, 0]), r"weight must have shape \[27, 2, C_out\]"),
        (dict(weight=weight(dtype=torch.float32)), r"weight dtype torch.float32 differs from feats dtype"),
        (dict(weight=weight().to("meta")), r"tensors must be on one device, got feats on cpu, weight on meta"),
        (dict(bias=torch.zeros(2, dtype=torch.float64)), r"bias must have shape \[3\], got \[2\]"),
        (dict(bias=torch.zeros(3, 1, dtype=torch.float64)), r"bias must have shape \[3\], got \[3, 1\]"),
        (dict(bias=torch.zeros(3)), r"bias dtype torch.float32 differs from weight dtype torch.float64"),
        (
            dict(bias=torch.zeros(3, dtype=torch.float64, device="meta")),
            r"tensors must be on one device, got feats on cpu, bias on meta",
        ),
        (dict(dataflow="im2col"), r"dataflow must be one of \('fused', 'gather_scatter', 'implicit_gemm'\), got 'im2col'"),
        (dict(stride=2, sites="ceil"), r"sites must be one of \('dense', 'floor'\), got 'ceil'"),
        (dict(sites="ceil"), r"sites must be one of \('dense', 'floor'\), got 'ceil'"),
        (dict(generative=True), r"generative=True needs transposed=True"),
    ],
)
def test_bad_conv_arguments(args, message):
    args = dict(dict(weight=weight(), kernel_size=3), **args)
    with pytest.raises(ValueError, match=message):
        conv3d(tensor(), **args)


def test_half_precision_conv_is_rejected():
    with pytest.raises(ValueError, match="sparse convolution supports float32 and float64 feats on cpu, got torch.float16"):
        conv3d(tensor().half(), weight(dtype=torch.float16), kernel_size=3)


@pytest.mark.parametrize("name", ["kernel_size", "stride", "dilation"])
@pytest.mark.parametrize(
    "value,message",
    [
        (0, r"must be >= 1, got 0"),
        (-1, r"must be >= 1, got -1"),
        ((3, 3, 0), r"must be >= 1, got \(3, 3, 0\)"),
        ((1, -2, 1), r"must be >= 1, got \(1, -2, 1\)"),
        ((1, 2), r"must be an int or three ints, got \(1, 2\)"),
        ((1, 1, 1, 1), r"must be an int or three ints, got \(1, 1, 1, 1\)"),
        (2.0, r"must be an int or three ints, got 2.0"),
        ("3", r"must be an int or three ints, got '3'"),
        ((1.0, 1, 1), r"must be an int or three ints"),
        (True, r"must be an int or three ints, got True"),
        ((1, False, 1), r"must be an int or three ints, got \(1, False, 1\)"),
        (65536, r"must be <= 65535 \(an axis of a packed key spans 2\*\*16 values\), got 65536"),
        ((1, 1, 2**32), r"must be <= 65535 .*, got \(1, 1, 4294967296\)"),
    ],
)
def test_bad_kernel_geometry(name, value, message):
    args = dict(kernel_size=1, stride=1, dilation=1)
    args[name] = value
    with pytest.raises(ValueError, match=f"{name} {message}"):
        conv3d(tensor(), weight(1), **args)


def test_bad_tensor_stride():
    with pytest.raises(ValueError, match=r"stride must be >= 1, got \(2, 0, 2\)"):
        SparseTensor(feats_for(COORDS), COORDS, (2, 0, 2))


def test_generative_outputs_outside_the_range():
    x = SparseTensor(torch.zeros(2, 2, dtype=torch.float64), coords_of([0, 20000, 0, 0], [0, -3, 0, 0]), stride=2)
    message = r"generative transposed conv outputs leave the coordinate range \[-32768, 32767\]"
    with pytest.raises(ValueError, match=message):
        conv3d(x, weight(8), kernel_size=2, stride=2, transposed=True, generative=True)


def test_strided_outputs_outside_the_range():
    # Stride 1 on x: the output x = input x - offset can step below -32768.
    x = SparseTensor(torch.zeros(2, 2, dtype=torch.float64), coords_of([0, -32768, 0, 0], [0, 5, 4, 2]))
    with pytest.raises(ValueError, match=r"strided conv outputs leave the coordinate range \[-32768, 32767\]"):
        conv3d(x, weight(), kernel_size=3, stride=(1, 2, 2))


def test_transposed_without_a_finer_level():
    with pytest.raises(ValueError, match=r"transposed conv: no sites at stride \(1, 1, 1\) to return to"):
        conv3d(tensor(stride=2), weight(), kernel_size=3, stride=2, transposed=True)


def test_transposed_with_another_kernel_than_the_strided_conv():
    coarse = conv3d(tensor(), weight(8), kernel_size=2, stride=2)
    message = r"were not made by a strided conv with kernel_size=\(3, 3, 3\), stride=\(2, 2, 2\)"
    with pytest.raises(ValueError, match=message):
        conv3d(coarse, weight(27, 3, 2), kernel_size=3, stride=2, transposed=True)


def test_transposed_stride_must_divide_the_tensor_stride():
    with pytest.raises(ValueError, match=r"tensor stride \(3, 3, 3\) is not divisible by stride \(2, 2, 2\)"):
        conv3d(tensor(stride=3), weight(), kernel_size=3, stride=2, transposed=True)


def test_bad_query_coords():
    cmap = CoordinateMap(COORDS)
    with pytest.raises(ValueError, match=r"query coords must have dtype torch.int32"):
        cmap.query(COORDS.long())
    with pytest.raises(ValueError, match=r"query coords must have shape \[N, 4\]"):
        cmap.query(COORDS[:, :2])


def test_bad_collate():
    with pytest.raises(ValueError, match="sparse_collate needs at least one SparseTensor"):
        sparse_collate([])
    with pytest.raises(ValueError, match=r"all tensors must have one stride, got \[\(1, 1, 1\), \(2, 2, 2\)\]"):
        sparse_collate([tensor(), tensor(stride=2)])


def test_bad_tensor_stride_bounds():
    with pytest.raises(ValueError, match=r"stride must be <= 65535 .*, got 4294967296"):
        SparseTensor(torch.ones(1, 1), torch.zeros(1, 4, dtype=torch.int32), stride=2**32)
    with pytest.raises(ValueError, match=r"stride must be an int or three ints, got True"):
        SparseTensor(torch.ones(1, 1), torch.zeros(1, 4, dtype=torch.int32), stride=True)


def test_stride_past_32_bits_is_an_error_not_a_division_by_zero():
    """stride=2**32 once passed the Python checks and truncated to 0 in C++ (SIGFPE)."""
    x = SparseTensor(torch.ones(1, 1), torch.zeros(1, 4, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"stride must be <= 65535"):
        conv3d(x, torch.ones(27, 1, 1), kernel_size=3, stride=2**32, transposed=True, generative=True)


def test_the_largest_stride_gives_the_right_sites_and_values():
    """A generative transposed conv at stride 65535 from one site at the origin: outputs are the 27
    offsets, and output o = off_k reads the input through offset k alone (o - off_j is no other
    multiple of the stride)."""
    x = SparseTensor(torch.tensor([[2.0, -1.0]], dtype=torch.float64), coords_of([3, 0, 0, 0]), stride=65535)
    w = weight(27, 2, 1)
    y = conv3d(x, w, kernel_size=3, stride=65535, transposed=True, generative=True)
    offsets = [(dx, dy, dz) for dx in (-1, 0, 1) for dy in (-1, 0, 1) for dz in (-1, 0, 1)]
    expected = {(3, *off): float(x.feats[0] @ w[k, :, 0]) for k, off in enumerate(offsets)}
    assert y.stride == (1, 1, 1)
    assert {tuple(c): float(f) for c, f in zip(y.coords.tolist(), y.feats[:, 0])} == expected


def test_kernels_wider_than_the_coordinate_range():
    with pytest.raises(ValueError, match=r"kernel_size \(3, 3, 3\) with dilation \(40000, 1, 1\) spans .* = 80000 grid units on x"):
        conv3d(tensor(), weight(), kernel_size=3, dilation=(40000, 1, 1))


def test_strided_outputs_are_computed_exactly_not_wrapped():
    """One site [0, 1, 0, 0], kernel 3, stride 65536, dilation 2**31 - 1: in int32, 1 + (2**31 - 1)
    wrapped to -2**31 = -32768 * 65536, a made-up output site. The public API rejects the geometry;
    the site computation itself works in 64 bits and finds the exact output out of range."""
    x = SparseTensor(torch.ones(1, 2, dtype=torch.float64), coords_of([0, 1, 0, 0]))
    with pytest.raises(ValueError, match=r"stride must be <= 65535"):
        conv3d(x, weight(), kernel_size=3, stride=65536, dilation=2**31 - 1)
    offsets = torch.tensor([[-(2**31 - 1), 0, 0], [0, 0, 0], [2**31 - 1, 0, 0]], dtype=torch.int32)
    with pytest.raises(ValueError, match=r"strided conv outputs leave the coordinate range \[-32768, 32767\]: got \[0, 32768\]"):
        strided_output_coords(x.coords, offsets, (65536, 1, 1), "dense")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_all_finite_finds_every_nan_and_infinity(dtype):
    g = torch.Generator().manual_seed(0)
    for trial in range(200):
        values = torch.randn(int(torch.randint(1, 300, (1,), generator=g)), 3, generator=g).to(dtype)
        if trial % 4:
            flat = values.view(-1)
            flat[torch.randint(0, flat.numel(), (1,), generator=g)] = [float("nan"), float("inf"), -float("inf")][trial % 3]
        view = values[:, ::2] if trial % 5 == 0 else values
        assert all_finite(view) == bool(torch.isfinite(view).all())
    assert all_finite(torch.empty(0, 3, dtype=dtype))
    assert all_finite(torch.full((2, 2), torch.finfo(dtype).max, dtype=dtype))
