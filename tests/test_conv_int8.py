"""conv_int8 (7-bit activations x 8-bit weights -> exact int32 sums -> float32 epilogue, optionally
requantized to uint8) on every CPU path this machine runs and on the registered op: the integer sums
against an int64 gather-sum, the float32 results against a float64 reference and against the
epilogue's float32 steps replayed with torch, every path bit for bit equal to the portable loop, for
any thread count; bad arguments refused with a message naming them. quantize_u7 against torch's
round-half-to-even."""

import itertools

import pytest
import torch

from pointengine import _C, _ops

# The registered op (the path chosen for this CPU) and every path this CPU runs, by name.
PATHS = {
    "default": torch.ops.pointengine.conv_int8,
    **{path: lambda *args, path=path: _C.conv_int8_on(*args, path) for path in _C.int8_paths()},
}
C_INS = [1, 3, 5, 33, 64, 130]  # 130: AMX's three 64-channel chunks, the last one partial
C_OUTS = [1, 7, 8, 9, 15, 16, 17, 33, 64, 96]
EPS32 = 2.0**-24


def random_case(c_in, c_out, kvol=27, n_in=300, n_out=290, seed=0, density=0.3, weight_max=127):
    """(q_feats, weight, nbr, bias, residual): 7-bit activations, weights in [-weight_max, weight_max]
    with both ends present, a neighbour table with about `density` of its entries present; n_out = 290
    spans three 128-row tiles, the last one partial."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randint(0, 128, (n_in, c_in), generator=g, dtype=torch.uint8)
    weight = torch.randint(-weight_max, weight_max + 1, (kvol, c_in, c_out), generator=g).to(torch.int8)
    weight.view(-1)[:2] = torch.tensor([-weight_max, weight_max], dtype=torch.int8)[: weight.numel()]
    nbr = torch.randint(0, max(n_in, 1), (n_out, kvol), generator=g, dtype=torch.int32)
    nbr[torch.rand(n_out, kvol, generator=g) >= density] = -1
    if n_in == 0:
        nbr.fill_(-1)
    bias = torch.randn(c_out, generator=g) * 100
    residual = torch.randn(n_out, c_out, generator=g) * 100
    return q, weight, nbr, bias, residual


def exact_sums(q, in_zero, weight, nbr):
    """int64 [N_out, C_out]: sum over present offsets k, input channels of (q - in_zero) * weight[k]."""
    acc = torch.zeros(nbr.shape[0], weight.shape[2], dtype=torch.int64)
    for k in range(nbr.shape[1]):
        present = nbr[:, k] >= 0
        acc[present] += (q[nbr[present, k].long()].long() - in_zero) @ weight[k].long()
    return acc


def float32_epilogue(acc, in_scale, weight_scale, bias, residual, relu):
    """The epilogue's float32 steps, one torch op (one rounding) each, in the op's order."""
    scale = torch.tensor(in_scale, dtype=torch.float32) * weight_scale
    v = acc.float() * scale
    if bias is not None:
        v = v + bias
    if residual is not None:
        v = v + residual
    return v.clamp(min=0) if relu else v


def requantized(v, out_scale, out_zero):
    """uint8 clamp(round(v / out_scale) + out_zero, 0, 127), ties to even, divided in float32 element by
    element (a tensor divisor, not a scalar that torch might turn into a reciprocal)."""
    steps = torch.round(v / torch.full_like(v, out_scale)) + out_zero
    return steps.clamp(0, 127).to(torch.uint8)


def args_of(q, in_scale, in_zero, weight, weight_scale, nbr, bias=None, residual=None, relu=False,
            out_scale=None, out_zero=0):
    return (q, in_scale, in_zero, weight, weight_scale, nbr, bias, residual, relu, out_scale, out_zero)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("c_in", C_INS)
@pytest.mark.parametrize("c_out", C_OUTS)
def test_integer_sums_are_exact(path, c_in, c_out):
    q, weight, nbr, _, _ = random_case(c_in, c_out, seed=c_in * 100 + c_out)
    out = PATHS[path](*args_of(q, 1.0, 17, weight, torch.ones(c_out), nbr))
    acc = exact_sums(q, 17, weight, nbr)
    assert acc.abs().max() < 2**24  # so that float32 holds every sum exactly
    assert out.dtype == torch.float32
    assert torch.equal(out.double(), acc.double())


# Weights in [-64, 64] (quantize's weight_bits=7) take the AVX2 kernel that adds two groups' int16 pairs
# before widening; 65 does not. Extremes: activations 127 against weights of one sign, the largest int16
# sums that kernel forms (4 x 127 x 64).
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("c_in", C_INS)
@pytest.mark.parametrize("c_out", [1, 8, 9, 33, 64])
@pytest.mark.parametrize("weight_max", [64, 65])
def test_integer_sums_are_exact_with_narrow_weights(path, c_in, c_out, weight_max):
    q, weight, nbr, _, _ = random_case(c_in, c_out, seed=c_in * 100 + c_out + weight_max, weight_max=weight_max)
    q[:100] = 127
    weight[:, :, : c_out // 2] = weight_max
    weight[:, :, c_out // 2 :][weight[:, :, c_out // 2 :] < 0] = -weight_max
    for in_zero in [0, 17]:
        out = PATHS[path](*args_of(q, 1.0, in_zero, weight, torch.ones(c_out), nbr))
        acc = exact_sums(q, in_zero, weight, nbr)
        assert acc.abs().max() < 2**24
        assert torch.equal(out.double(), acc.double())


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kvol", [1, 8, 27])
@pytest.mark.parametrize("in_zero", [0, 64])
@pytest.mark.parametrize("with_bias, with_residual, relu", list(itertools.product([False, True], repeat=3)))
def test_float_output_matches_the_float64_reference(path, kvol, in_zero, with_bias, with_residual, relu):
    q, weight, nbr, bias, residual = random_case(33, 17, kvol, seed=kvol + in_zero)
    bias, residual = (bias if with_bias else None), (residual if with_residual else None)
    weight_scale = torch.rand(17, generator=torch.Generator().manual_seed(1)) * 0.01 + 1e-3
    in_scale = 0.0173
    out = PATHS[path](*args_of(q, in_scale, in_zero, weight, weight_scale, nbr, bias, residual, relu))
    acc = exact_sums(q, in_zero, weight, nbr).double()
    terms = [acc * in_scale * weight_scale.double()]
    terms += [t.double().expand_as(acc) for t in (bias, residual) if t is not None]
    expected = sum(terms)
    expected = expected.clamp(min=0) if relu else expected
    # A few float32 roundings (the sum, the scales, the product, each addition), each at most 2^-24 of
    # the magnitudes it adds.
    bound = 8 * EPS32 * sum(t.abs() for t in terms)
    assert ((out.double() - expected).abs() <= bound).all()
    assert torch.equal(out, float32_epilogue(acc.long(), in_scale, weight_scale, bias, residual, relu))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("c_out", [1, 9, 33])
@pytest.mark.parametrize("relu, out_zero", [(False, 0), (True, 60)])
def test_requantized_output(path, c_out, relu, out_zero):
    q, weight, nbr, bias, residual = random_case(5, c_out, seed=c_out + out_zero)
    weight_scale = torch.full((c_out,), 0.002)
    args = (q, 0.05, 3, weight, weight_scale, nbr, bias, residual, relu)
    v = float32_epilogue(exact_sums(q, 3, weight, nbr), 0.05, weight_scale, bias, residual, relu)
    out = PATHS[path](*args, 0.7, out_zero)
    assert out.dtype == torch.uint8
    expected = requantized(v, 0.7, out_zero)
    assert torch.equal(out, expected)
    # Values clamped at both ends (at 0 below out_zero, at out_zero by the ReLU), and values between.
    assert expected.min() == out_zero and expected.max() == 127
    assert ((expected > out_zero) & (expected < 127)).any()
    assert relu or (v / 0.7 < -0.5).any()


@pytest.mark.parametrize("path", PATHS)
def test_requantization_rounds_ties_to_even(path):
    # Unit scales: v is the integer sum, v / 2 an exact half wherever the sum is odd.
    q, weight, nbr, _, _ = random_case(4, 8, kvol=1, seed=3, density=1.0)
    q, weight = q % 4, weight % 5 - 2  # sums within [-48, 72]: no clamping at out_zero 40
    acc = exact_sums(q, 0, weight, nbr)
    assert (acc % 2 == 1).any()
    out = PATHS[path](*args_of(q, 1.0, 0, weight, torch.ones(8), nbr, out_scale=2.0, out_zero=40))
    assert torch.equal(out.long(), torch.round(acc / 2).long() + 40)


@pytest.mark.parametrize("c_in", C_INS)
@pytest.mark.parametrize("c_out", C_OUTS)
def test_every_path_gives_the_same_bits(c_in, c_out):
    q, weight, nbr, bias, residual = random_case(c_in, c_out, seed=7 * c_in + c_out)
    weight_scale = torch.rand(c_out, generator=torch.Generator().manual_seed(2)) * 0.01 + 1e-3
    base = (q, 0.021, 11, weight, weight_scale, nbr, bias, residual, True)
    for tail in [(None, 0), (0.5, 5)]:
        outs = {path: PATHS[path](*base, *tail) for path in PATHS}
        for path, out in outs.items():
            assert torch.equal(out, outs["portable"]), path


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("n_in, n_out", [(0, 5), (7, 0), (0, 0)])
def test_empty_inputs_and_outputs(path, n_in, n_out):
    q, weight, nbr, bias, _ = random_case(6, 9, seed=4, n_in=n_in, n_out=n_out)
    out = PATHS[path](*args_of(q, 0.1, 5, weight, torch.ones(9), nbr, bias))
    assert out.shape == (n_out, 9)
    assert torch.equal(out, bias.expand(n_out, 9))  # no neighbours: the bias alone


@pytest.mark.parametrize("path", PATHS)
def test_no_input_channels_leave_the_bias(path):
    q, weight, nbr, bias, _ = random_case(0, 9, seed=4)
    out = PATHS[path](*args_of(q, 0.1, 5, weight, torch.ones(9), nbr, bias))
    assert torch.equal(out, bias.expand(nbr.shape[0], 9))


@pytest.mark.parametrize("path", PATHS)
def test_bitwise_equal_across_thread_counts(path, restore_threads):
    q, weight, nbr, bias, residual = random_case(19, 35, n_in=2000, n_out=1500, seed=6)
    args = (q, 0.03, 9, weight, torch.rand(35) + 0.1, nbr, bias, residual, True)
    torch.set_num_threads(1)
    one, one_u8 = PATHS[path](*args, None, 0), PATHS[path](*args, 0.25, 3)
    torch.set_num_threads(2)
    assert torch.equal(one, PATHS[path](*args, None, 0))
    assert torch.equal(one_u8, PATHS[path](*args, 0.25, 3))


@pytest.mark.parametrize("path", PATHS)
def test_strided_arguments(path):
    q, weight, nbr, bias, residual = random_case(12, 10, kvol=8, seed=10)
    args = (q, 0.2, 7, weight, torch.rand(10) + 0.1, nbr, bias, residual, True, None, 0)
    strided = (q.t().contiguous().t(), 0.2, 7, weight.transpose(0, 2).contiguous().transpose(0, 2),
               torch.rand(20)[::2].copy_(args[4]), nbr.t().contiguous().t(), torch.zeros(20)[::2].copy_(bias),
               residual.t().contiguous().t(), True, None, 0)
    assert not any(t.is_contiguous() for t in strided if isinstance(t, torch.Tensor))
    assert torch.equal(PATHS[path](*strided), PATHS[path](*args))


def test_the_python_wrapper_is_the_op():
    # The fake kernel (dtype by out_scale) is checked by test_opcheck.
    q, weight, nbr, bias, _ = random_case(4, 6, kvol=8, seed=8)
    args = (q, 0.5, 2, weight, torch.ones(6), nbr, bias, None, False)
    assert torch.equal(_ops.conv_int8(*args), torch.ops.pointengine.conv_int8(*args))
    assert torch.equal(_ops.conv_int8(*args, out_scale=3.0, out_zero=1), torch.ops.pointengine.conv_int8(*args, 3.0, 1))


def good_args():
    q, weight, nbr, _, _ = random_case(4, 3, kvol=8, n_in=10, n_out=6, seed=9)
    return dict(q_feats=q, in_scale=0.1, in_zero=0, weight=weight, weight_scale=torch.ones(3), nbr=nbr, bias=None,
                residual=None, relu=False, out_scale=None, out_zero=0)


BAD_ARGUMENTS = {
    "float feats": (dict(q_feats=torch.zeros(10, 4)), "q_feats must have dtype torch.uint8, got torch.float32"),
    "int8 feats": (dict(q_feats=torch.zeros(10, 4, dtype=torch.int8)), "q_feats must have dtype torch.uint8, got torch.int8"),
    "uint8 weight": (dict(weight=torch.zeros(8, 4, 3, dtype=torch.uint8)), "weight must have dtype torch.int8, got torch.uint8"),
    "feats above 127": (dict(q_feats=torch.full((10, 4), 128, dtype=torch.uint8)), "q_feats holds 128, above 127"),
    "weight -128": (dict(weight=torch.full((8, 4, 3), -128, dtype=torch.int8)), r"weight holds -128: weights must be in \[-127, 127\]"),
    "weight shape": (dict(weight=torch.zeros(8, 5, 3, dtype=torch.int8)), r"weight must have shape \[K, C_in, C_out\] = \[8, 4, C_out\]"),
    "weight_scale shape": (dict(weight_scale=torch.ones(4)), r"weight_scale must have shape \[3\] \(C_out\), got \[4\]"),
    "weight_scale dtype": (dict(weight_scale=torch.ones(3, dtype=torch.float64)), "weight_scale must have dtype torch.float32"),
    "weight_scale zero": (dict(weight_scale=torch.tensor([1.0, 0.0, 1.0])), "weight_scale must be finite and > 0, got 0 at column 1"),
    "weight_scale NaN": (dict(weight_scale=torch.tensor([1.0, 1.0, float("nan")])), "weight_scale must be finite and > 0, got nan at column 2"),
    "nbr dtype": (dict(nbr=torch.zeros(6, 8, dtype=torch.int64)), "nbr must have dtype torch.int32"),
    "nbr past the inputs": (dict(nbr=torch.full((6, 8), 10, dtype=torch.int32)), r"nbr holds a row index >= the number of q_feats rows \(10\)"),
    "bias shape": (dict(bias=torch.ones(4)), r"bias must have shape \[C_out\] = \[3\], got \[4\]"),
    "residual shape": (dict(residual=torch.ones(5, 3)), r"residual must have shape \[N_out, C_out\] = \[6, 3\], got \[5, 3\]"),
    "residual dtype": (dict(residual=torch.ones(6, 3, dtype=torch.float64)), "residual must have dtype torch.float32"),
    "in_scale zero": (dict(in_scale=0.0), "in_scale must be a finite float32 > 0, got 0"),
    "in_scale NaN": (dict(in_scale=float("nan")), "in_scale must be a finite float32 > 0, got nan"),
    "in_scale past float32": (dict(in_scale=1e39), "in_scale must be a finite float32 > 0"),
    "in_scale below float32": (dict(in_scale=1e-50), "in_scale must be a finite float32 > 0"),
    "out_scale negative": (dict(out_scale=-1.0), "out_scale must be a finite float32 > 0, got -1"),
    "in_zero": (dict(in_zero=128), r"in_zero must be in \[0, 127\] \(7-bit activations\), got 128"),
    "out_zero": (dict(out_zero=-1), r"out_zero must be in \[0, 127\] \(7-bit activations\), got -1"),
    "overflow": (dict(q_feats=torch.zeros(10, 4932, dtype=torch.uint8), weight=torch.zeros(27, 4932, 3, dtype=torch.int8),
                      nbr=torch.full((6, 27), -1, dtype=torch.int32)), r"K \* C_in \* 127 \* 127 = 2147802156 reaches 2\^31"),
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", BAD_ARGUMENTS)
def test_bad_arguments_are_refused(path, case):
    change, message = BAD_ARGUMENTS[case]
    args = {**good_args(), **change}
    with pytest.raises(RuntimeError, match=message):
        PATHS[path](*args.values())


@pytest.mark.parametrize("path", PATHS)
def test_the_largest_safe_shape_runs(path):
    # 27 * 4931 * 127^2 < 2^31 <= 27 * 4932 * 127^2: the last C_in the overflow check lets through, each
    # product at its extreme.
    q = torch.full((1, 4931), 127, dtype=torch.uint8)
    weight = torch.full((27, 4931, 1), -127, dtype=torch.int8)
    nbr = torch.zeros(1, 27, dtype=torch.int32)
    out = PATHS[path](*args_of(q, 1.0, 0, weight, torch.ones(1), nbr))
    assert out.item() == torch.tensor(-27 * 4931 * 127 * 127).float().item()


@pytest.mark.parametrize("path", ["unknown", "avx512"])
def test_unknown_paths_are_refused(path):
    with pytest.raises(RuntimeError, match=f"unknown int8 path '{path}'; expected portable, avx2, avx512_vnni or amx"):
        _C.conv_int8_on(*good_args().values(), path)


def test_paths_are_listed_portable_first():
    paths = _C.int8_paths()
    assert paths[0] == "portable" and set(paths) <= {"portable", "avx2", "avx512_vnni", "amx"}
