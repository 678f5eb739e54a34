"""conv_bf16, the bfloat16 inference convolution: every element within the float32-summation error bound
of a float64 reference; its sums bit for bit those of vdpbf16ps (order emulated here in float64) on the
portable and AVX512_BF16 paths, bitwise equal to each other, with denormals too; the AMX path (whose
TDPBF16PS rounds its own way) within the bound and denormal-free; the epilogue, bfloat16 output, empty
output, thread-count independence, and bad inputs."""

import itertools

import pytest
import torch

from pointengine import _C, _ops

VDPBF16PS_PATHS = ["portable", "avx512_bf16"]  # the same bits, vdpbf16ps's
PATHS = [*VDPBF16PS_PATHS, "amx"]
EPILOGUES = list(itertools.product([False, True], repeat=3))  # (bias, residual, relu)
U = 2.0**-24  # float32 unit roundoff
FLOAT32_MIN_NORMAL = 2.0**-126


def run(path: str, feats, weight, nbr, bias, residual, relu: bool, bf16_out: bool = False):
    """conv_bf16 on a named path ("default": the registered op), skipped where the CPU lacks the path."""
    args = (feats, weight, nbr, bias, residual, relu, bf16_out)
    if path == "default":
        return _ops.conv_bf16(*args)
    if path not in _C.bf16_paths():
        pytest.skip(f"this CPU has no {path} path (it has {_C.bf16_paths()})")
    return _C.conv_bf16_on(*args, path)


def random_table(n_in: int, n_out: int, kvol: int, g: torch.Generator) -> torch.Tensor:
    """int32 [n_out, kvol], about half the entries -1; n_out > 2 tiles of 128 rows with a short last tile."""
    nbr = torch.randint(0, n_in, (n_out, kvol), generator=g, dtype=torch.int32)
    return torch.where(torch.rand(n_out, kvol, generator=g) < 0.5, -1, nbr).to(torch.int32)


def case(c_in: int, c_out: int, kvol: int, seed: int, n_in: int = 300, n_out: int = 290):
    """(feats, weight bfloat16, nbr, bias, residual float32), normal-range random values."""
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(n_in, c_in, generator=g).bfloat16()
    weight = torch.randn(kvol, c_in, c_out, generator=g).bfloat16()
    nbr = random_table(n_in, n_out, kvol, g)
    return feats, weight, nbr, torch.randn(c_out, generator=g), torch.randn(n_out, c_out, generator=g)


def reference(feats, weight, nbr, bias=None, residual=None):
    """(float64 conv + bias + residual, the sum of the magnitudes of its terms), by dense gathers."""
    out = torch.zeros(nbr.shape[0], weight.shape[2], dtype=torch.float64)
    magnitude = torch.zeros_like(out)
    for k in range(nbr.shape[1]):
        present = nbr[:, k] >= 0
        x = feats.double()[nbr[present, k].long()]
        out[present] += x @ weight[k].double()
        magnitude[present] += x.abs() @ weight[k].double().abs()
    for part in (bias, residual):
        if part is not None:
            out += part.double()
            magnitude += part.double().abs()
    return out, magnitude


def error_bound(magnitude, n_terms: int):
    """Each output is a float32 recursive sum of at most n_terms exact bfloat16 products (plus bias and
    residual), one rounding per term: |error| <= gamma(n) * sum |terms| with gamma(n) = n u / (1 - n u)
    (Higham, Accuracy and Stability of Numerical Algorithms, 4.2), plus what flushing a denormal
    partial sum to zero can lose, below 2^-126 a term. gamma(n + 1) leaves slack for the float64
    reference's own error, ~2^-29 times smaller."""
    n = n_terms + 1
    return n * U / (1 - n * U) * magnitude + n * FLOAT32_MIN_NORMAL


def terms(c_in: int, kvol: int) -> int:
    return kvol * (c_in + c_in % 2) + 2


@pytest.mark.parametrize("path", ["default", *PATHS])
@pytest.mark.parametrize("c_in", [1, 2, 3, 17, 64])
@pytest.mark.parametrize("c_out", [1, 7, 15, 16, 17, 33, 64, 96])
@pytest.mark.parametrize("kvol", [1, 8, 27])
def test_within_the_float32_bound_of_the_float64_reference(path, c_in, c_out, kvol):
    feats, weight, nbr, _, _ = case(c_in, c_out, kvol, seed=c_in * 1000 + c_out * 10 + kvol)
    out = run(path, feats, weight, nbr, None, None, False)
    expected, magnitude = reference(feats, weight, nbr)
    assert out.dtype == torch.float32 and out.shape == expected.shape
    assert ((out.double() - expected).abs() <= error_bound(magnitude, terms(c_in, kvol))).all()


@pytest.mark.parametrize("path", ["default", *PATHS])
@pytest.mark.parametrize("with_bias, with_residual, relu", EPILOGUES)
def test_epilogue_and_bf16_output(path, with_bias, with_residual, relu):
    feats, weight, nbr, bias, residual = case(17, 33, 27, seed=1)
    bias, residual = (bias if with_bias else None), (residual if with_residual else None)
    out = run(path, feats, weight, nbr, bias, residual, relu)
    expected, magnitude = reference(feats, weight, nbr, bias, residual)
    expected = expected.clamp(min=0) if relu else expected  # relu moves no value further from another
    assert ((out.double() - expected).abs() <= error_bound(magnitude, terms(17, 27))).all()
    if relu:
        assert (out >= 0).all()
    rounded = run(path, feats, weight, nbr, bias, residual, relu, True)
    assert rounded.dtype == torch.bfloat16
    assert torch.equal(rounded.view(torch.int16), out.to(torch.bfloat16).view(torch.int16))


def vdpbf16ps_sums(feats, weight, nbr):
    """The float32 sums vdpbf16ps makes, from Intel's definition: per channel pair (an odd C_in padded
    with a zero channel), acc += hi * hi, then acc += lo * lo, each rounded once to float32. Computed
    as float64 sums rounded to float32, exact for the magnitudes of exponent_spread_case."""
    x, w = feats.double(), weight.double()
    if x.shape[1] % 2:
        x = torch.cat([x, x.new_zeros(x.shape[0], 1)], 1)
        w = torch.cat([w, w.new_zeros(w.shape[0], 1, w.shape[2])], 1)
    acc = torch.zeros(nbr.shape[0], w.shape[2], dtype=torch.float32)
    for k in range(nbr.shape[1]):
        present = nbr[:, k] >= 0
        rows = x[nbr[present, k].long()]
        for pair in range(x.shape[1] // 2):
            for ch in (2 * pair + 1, 2 * pair):
                acc[present] = (acc[present].double() + rows[:, ch : ch + 1] * w[k, ch]).float()
    return acc


def exponent_spread_case(c_in: int, c_out: int, kvol: int, seed: int):
    """Magnitudes in [2^-8, 8]: a product has at most 16 significant bits and lies in [2^-16, 2^6], a
    sum below 2^16, so a float64 sum of a float32 and a product is exact (< 53 bits), and rounding it to
    float32 is the one rounding of a fused multiply-add."""
    g = torch.Generator().manual_seed(seed)

    def values(*size):
        signs = torch.randint(0, 2, size, generator=g) * 2 - 1
        return (signs * torch.exp2(torch.rand(*size, generator=g) * 11 - 8)).bfloat16()

    return values(60, c_in), values(kvol, c_in, c_out), random_table(60, 150, kvol, g)


@pytest.mark.parametrize("path", VDPBF16PS_PATHS)
@pytest.mark.parametrize("c_in, c_out, kvol", [(3, 17, 8), (16, 33, 27), (17, 7, 27)])
def test_bit_for_bit_the_sums_of_vdpbf16ps(path, c_in, c_out, kvol):
    feats, weight, nbr = exponent_spread_case(c_in, c_out, kvol, seed=c_in + c_out)
    out = run(path, feats, weight, nbr, None, None, False)
    assert torch.equal(out.view(torch.int32), vdpbf16ps_sums(feats, weight, nbr).view(torch.int32))


@pytest.mark.parametrize("path", VDPBF16PS_PATHS)
def test_the_order_within_a_pair_shows(path):
    """A case where hi-then-lo and lo-then-hi differ, so the check above can fail: after 2^-24, adding
    2^-24 then 1 gives 1 + 2^-23, adding 1 then 2^-24 gives 1 (1 + 2^-24 ties to even)."""
    feats = torch.tensor([[1.0, 1.0]]).bfloat16()
    weight = torch.tensor([[[2.0**-24], [0.0]], [[1.0], [2.0**-24]]]).bfloat16()  # [k][lo, hi][1]
    nbr = torch.tensor([[0, 0]], dtype=torch.int32)
    lo_first = (torch.tensor(2.0**-24) + 1) + 2.0**-24
    assert lo_first.item() == 1.0
    assert vdpbf16ps_sums(feats, weight, nbr).item() == 1 + 2.0**-23
    assert run(path, feats, weight, nbr, None, None, False).item() == 1 + 2.0**-23


@pytest.mark.parametrize("c_in, c_out, kvol", list(itertools.product([1, 2, 3, 17, 64], [1, 15, 17, 64, 96], [1, 27])))
def test_paths_give_the_same_bits(c_in, c_out, kvol):
    feats, weight, nbr, bias, residual = case(c_in, c_out, kvol, seed=c_in + 100 * c_out + kvol)
    for bf16_out in (False, True):
        args = (feats, weight, nbr, bias, residual, True, bf16_out)
        assert torch.equal(run("avx512_bf16", *args).view(torch.int16), run("portable", *args).view(torch.int16))


def c10_bfloat16_bits(x: torch.Tensor) -> torch.Tensor:
    """int64 bfloat16 bits of float32 x as c10::BFloat16 rounds it: to nearest even on the integer bits,
    any NaN to 0x7FC0 (torch's own vectorized .bfloat16() may write other NaN bits)."""
    u = x.view(torch.int32).long() & 0xFFFFFFFF
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFFFFFF) >> 16
    return torch.where(torch.isnan(x), 0x7FC0, rounded)


@pytest.mark.parametrize("path", ["default", *PATHS])
@pytest.mark.parametrize("relu", [False, True])
def test_special_values_in_the_epilogue(path, relu):
    """No neighbours, so each output is 0 + residual: NaNs of either sign and any payload, infinities,
    -0, denormals, the largest float32 (which rounds to infinity), ties either way, in the vector
    lanes and in the last columns (21 = 16 + 5)."""
    bits = [0x7FC00000, 0xFFC00001, 0x7F800001, 0x7F800000, 0xFF800000, 0x80000000, 0x00000001, 0x807FFFFF,
            0x7F7FFFFF, 0x3F808000, 0x3F818000, 0x3F80C000, 0xBF818000, 0x00018000, 0x3F800000]
    special = torch.tensor(bits, dtype=torch.int64).to(torch.int32).view(torch.float32)
    g = torch.Generator().manual_seed(5)
    residual = special[torch.randint(0, len(bits), (300, 21), generator=g)]
    residual[:15, :15] = special  # every value at least once in a vector lane and in the tail
    residual[:15, 16:] = special[:5]
    feats, weight = torch.ones(4, 3).bfloat16(), torch.ones(27, 3, 21).bfloat16()
    nbr = torch.full((300, 27), -1, dtype=torch.int32)
    expected = 0.0 + residual
    expected = torch.where(expected < 0, 0.0, expected) if relu else expected
    out = run(path, feats, weight, nbr, None, residual, relu)
    assert torch.equal(out.view(torch.int32), expected.view(torch.int32))
    rounded = run(path, feats, weight, nbr, None, residual, relu, True)
    assert torch.equal(rounded.view(torch.int16).long() & 0xFFFF, c10_bfloat16_bits(expected))


def bf16_with_exponents(exponent: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """bfloat16 of random sign and mantissa with the given biased exponents (0: denormal)."""
    bits = torch.randint(0, 1 << 16, exponent.shape, generator=g, dtype=torch.int32)
    return ((bits & 0x807F) | (exponent << 7)).to(torch.int16).view(torch.bfloat16)


def near_the_denormal_range(shape, g: torch.Generator) -> torch.Tensor:
    """Exponents 2^-65 .. 2^-63: products around 2^-126, so partial sums cross into the denormal range."""
    return bf16_with_exponents(63 + torch.randint(-1, 2, shape, generator=g), g)


def mixed_with_denormals(shape, g: torch.Generator) -> torch.Tensor:
    """Thirds: denormals, values near 1, and 2^-67 (whose products with each other underflow)."""
    kind = torch.randint(0, 3, shape, generator=g)
    near_one = 127 + torch.randint(-3, 3, shape, generator=g)
    return bf16_with_exponents(torch.where(kind == 0, 0, torch.where(kind == 1, near_one, 60)), g)


@pytest.mark.parametrize("values", [near_the_denormal_range, mixed_with_denormals])
def test_denormals_give_the_same_bits_on_every_path(values):
    """vdpbf16ps reads denormal inputs as zero and flushes denormal sums to zero; the portable path does
    the same, so nothing differs there (conv_tile_bf16.h)."""
    if "avx512_bf16" not in _C.bf16_paths():
        pytest.skip("this CPU has no avx512_bf16 path")
    g = torch.Generator().manual_seed(3)
    feats, weight, nbr = values((200, 19), g), values((27, 19, 40), g), random_table(200, 300, 27, g)
    portable, avx512_bf16 = (_C.conv_bf16_on(feats, weight, nbr, None, None, False, False, path)
                             for path in VDPBF16PS_PATHS)
    assert torch.equal(portable.view(torch.int32), avx512_bf16.view(torch.int32))
    assert not (portable.abs() < FLOAT32_MIN_NORMAL).logical_and(portable != 0).any()  # flushed, none left


@pytest.mark.parametrize("values", [near_the_denormal_range, mixed_with_denormals])
def test_the_amx_path_reads_denormals_as_zero_and_leaves_none(values):
    """TDPBF16PS, like vdpbf16ps, reads denormal inputs as zero and flushes denormal results: within the
    bound of the float64 sums of the inputs with their denormals zeroed, and no denormal left."""
    if "amx" not in _C.bf16_paths():
        pytest.skip("this CPU has no amx path")
    g = torch.Generator().manual_seed(3)
    feats, weight, nbr = values((200, 19), g), values((27, 19, 40), g), random_table(200, 300, 27, g)
    out = _C.conv_bf16_on(feats, weight, nbr, None, None, False, False, "amx")
    zeroed = [torch.where(t.float().abs() < FLOAT32_MIN_NORMAL, 0, t) for t in (feats, weight)]
    expected, magnitude = reference(*zeroed, nbr)
    assert ((out.double() - expected).abs() <= error_bound(magnitude, terms(19, 27))).all()
    assert not (out.abs() < FLOAT32_MIN_NORMAL).logical_and(out != 0).any()


def test_the_op_takes_the_best_path():
    feats, weight, nbr, bias, residual = case(17, 33, 27, seed=6)
    args = (feats, weight, nbr, bias, residual, True, False)
    best = _C.conv_bf16_on(*args, _C.bf16_paths()[-1])
    assert torch.equal(_ops.conv_bf16(*args).view(torch.int32), best.view(torch.int32))


def test_denormal_inputs_read_as_zero():
    """Denormal features times weights near 2^100 would give normal products near 2^-30; read as zero, 0."""
    g = torch.Generator().manual_seed(4)
    feats = bf16_with_exponents(torch.zeros(50, 5, dtype=torch.int32), g)
    weight = bf16_with_exponents(torch.full((8, 5, 3), 227), g)
    assert (run("default", feats, weight, random_table(50, 40, 8, g), None, None, False) == 0).all()


@pytest.mark.parametrize("path", ["default", *PATHS])
@pytest.mark.parametrize("bf16_out", [False, True])
def test_no_output_rows(path, bf16_out):
    feats, weight, _, bias, _ = case(5, 9, 27, seed=4)
    out = run(path, feats, weight, torch.empty(0, 27, dtype=torch.int32), bias, None, True, bf16_out)
    assert out.shape == (0, 9) and out.dtype == (torch.bfloat16 if bf16_out else torch.float32)


@pytest.mark.parametrize("path", ["default", *PATHS])
def test_no_input_channels_leave_the_bias(path):
    feats, weight, nbr, bias, _ = case(0, 9, 27, seed=4)
    out = run(path, feats, weight, nbr, bias, None, False)
    assert torch.equal(out, bias.expand(nbr.shape[0], 9))


@pytest.mark.parametrize("path", ["default", *PATHS])
@pytest.mark.parametrize("bf16_out", [False, True])
def test_bitwise_equal_across_thread_counts(path, bf16_out, restore_threads):
    feats, weight, nbr, bias, residual = case(19, 35, 27, seed=5, n_out=1000)
    args = (feats, weight, nbr, bias, residual, True, bf16_out)
    torch.set_num_threads(1)
    one = run(path, *args)
    torch.set_num_threads(2)
    assert torch.equal(one.view(torch.int16), run(path, *args).view(torch.int16))


def with_problem(problem: str) -> list:
    """conv_bf16's tensors (feats, weight, nbr, bias, residual) with one made bad."""
    feats, weight, nbr, bias, residual = case(4, 6, 8, seed=6, n_in=20, n_out=10)
    args = {"feats": feats, "weight": weight, "nbr": nbr, "bias": bias, "residual": residual}
    args[problem.split()[0]] = {
        "feats dtype": feats.float(),
        "weight dtype": weight.float(),
        "nbr dtype": nbr.long(),
        "bias dtype": bias.bfloat16(),
        "residual dtype": residual.bfloat16(),
        "feats shape": feats[0],
        "weight shape": weight[:, :3],
        "bias shape": bias[:5],
        "residual shape": residual[:9],
        "nbr index": torch.where(nbr == nbr.max(), 20, nbr),
    }[problem]
    return list(args.values())


@pytest.mark.parametrize("path", ["default", *PATHS])
@pytest.mark.parametrize(
    "problem, message",
    [
        ("feats dtype", r"feats must have dtype torch.bfloat16, got torch.float32"),
        ("weight dtype", r"weight must have dtype torch.bfloat16, got torch.float32"),
        ("nbr dtype", r"nbr must have dtype torch.int32, got torch.int64"),
        ("bias dtype", r"bias must have dtype torch.float32, got torch.bfloat16"),
        ("residual dtype", r"residual must have dtype torch.float32, got torch.bfloat16"),
        ("feats shape", r"feats must have shape \[N_in, C_in\], got \[4\]"),
        ("weight shape", r"weight must have shape \[K, C_in, C_out\] = \[8, 4, C_out\]"),
        ("bias shape", r"bias must have shape \[6\] \(C_out\), got \[5\]"),
        ("residual shape", r"residual must have shape \[10, 6\] \(nbr rows, C_out\), got \[9, 6\]"),
        ("nbr index", r"nbr holds a row index >= the number of feats rows \(20\)"),
    ],
)
def test_bad_inputs_raise_clear_errors(path, problem, message):
    with pytest.raises(RuntimeError, match=message):
        run(path, *with_problem(problem), False)


def test_unknown_path_is_refused():
    feats, weight, nbr, _, _ = case(4, 6, 8, seed=7)
    with pytest.raises(RuntimeError, match="unknown conv_bf16 path 'avx2'; expected portable, avx512_bf16 or amx"):
        _C.conv_bf16_on(feats, weight, nbr, None, None, False, False, "avx2")
    assert _C.bf16_paths()[0] == "portable"
