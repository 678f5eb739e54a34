"""quantize_u7: float32 [N, C] -> uint8 clamp(round(x / scale) + zero, 0, 127), ties to even, against
torch's round on the float32 quotient; exact halves, both clamps, strided inputs, any thread count,
the same bits with the vector loop capped to SSE2, NaN (in any lane) and bad arguments refused."""

import os
import subprocess
import sys

import pytest
import torch

from pointengine import _ops


def expected(x, scale, zero):
    # A tensor divisor: torch divides element by element, as the op does, in float32.
    steps = torch.round(x / torch.full_like(x, scale)) + zero
    return steps.clamp(0, 127).to(torch.uint8)


@pytest.mark.parametrize("cols", [1, 15, 16, 17, 64, 300])
@pytest.mark.parametrize("scale, zero", [(0.05, 0), (0.37, 64), (3.0, 127)])
def test_matches_torch_round(cols, scale, zero):
    x = torch.randn(53, cols, generator=torch.Generator().manual_seed(cols)) * 4
    out = _ops.quantize_u7(x, scale, zero)
    assert out.dtype == torch.uint8 and out.shape == x.shape
    assert torch.equal(out, expected(x, scale, zero))


def test_halves_round_to_even():
    # x / 0.5 is exactly k + 0.5 for every k in [-40, 40].
    x = torch.arange(-40, 41, dtype=torch.float32)[None, :] / 2 + 0.25
    out = _ops.quantize_u7(x, 0.5, 60)
    halves = x / 0.5
    assert bool((halves - halves.floor() == 0.5).all())
    assert torch.equal(out.long(), (torch.round(halves) + 60).long())
    # x / 0.5 = -1.5, -0.5, 0.5, 1.5 -> -2, -0, 0, 2
    assert out[0, 38:42].tolist() == [58, 60, 60, 62]


def test_clamps_at_both_ends():
    x = torch.tensor([[-1e30, -float("inf"), -3.0, -2.4, 0.0, 124.4, 124.6, 1e30, float("inf")]])
    assert _ops.quantize_u7(x, 1.0, 2).tolist() == [[0, 0, 0, 0, 2, 126, 127, 127, 127]]


@pytest.mark.parametrize("view", ["transposed", "column slice", "row step"])
def test_strided_inputs(view):
    base = torch.randn(70, 90, generator=torch.Generator().manual_seed(1)) * 3
    x = {"transposed": base.t(), "column slice": base[:, 5:40], "row step": base[::3, ::2]}[view]
    assert not x.is_contiguous()
    assert torch.equal(_ops.quantize_u7(x, 0.1, 20), expected(x.contiguous(), 0.1, 20))


def test_bitwise_equal_across_thread_counts(restore_threads):
    x = torch.randn(5000, 33, generator=torch.Generator().manual_seed(2))
    torch.set_num_threads(1)
    one = _ops.quantize_u7(x, 0.02, 50)
    torch.set_num_threads(2)
    assert torch.equal(one, _ops.quantize_u7(x, 0.02, 50))


@pytest.mark.parametrize("path", ["portable", "avx2"])
def test_same_bits_on_the_narrower_paths(path, tmp_path):
    """The portable (4-column) and AVX2 (16-column) loops give the bits of the widest this CPU has
    (AVX-512: 16 columns in one vector) and of torch. Halves, clamps and a ragged width, so that
    every loop and the tail run."""
    x = torch.randn(300, 45, generator=torch.Generator().manual_seed(3)) * 60
    x[::7] = torch.arange(45, dtype=torch.float32) / 2 - 11
    torch.save(x, tmp_path / "x.pt")
    code = (f"import torch; from pointengine import _ops; x = torch.load({str(tmp_path / 'x.pt')!r}, weights_only=True); "
            f"torch.save(_ops.quantize_u7(x, 0.5, 30), {str(tmp_path / 'out.pt')!r})")
    env = dict(os.environ, POINTENGINE_CPU_PATH_MAX=path)
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    narrower = torch.load(tmp_path / "out.pt", weights_only=True)
    assert torch.equal(narrower, _ops.quantize_u7(x, 0.5, 30))
    assert torch.equal(narrower, expected(x, 0.5, 30))


@pytest.mark.parametrize("col", range(0, 40, 3))
def test_nan_in_any_column_is_refused(col):
    x = torch.zeros(4, 40)
    x[2, col] = float("nan")
    with pytest.raises(RuntimeError, match="quantize_u7: x holds NaN"):
        _ops.quantize_u7(x, 1.0, 0)


def test_empty():
    assert _ops.quantize_u7(torch.zeros(0, 4), 1.0, 0).shape == (0, 4)


@pytest.mark.parametrize(
    "x, scale, zero, message",
    [
        (torch.tensor([[0.0, float("nan")]]), 1.0, 0, "quantize_u7: x holds NaN"),
        (torch.zeros(3, 2, dtype=torch.float64), 1.0, 0, "x must have dtype torch.float32, got torch.float64"),
        (torch.zeros(3), 1.0, 0, r"x must have shape \[N, C\], got \[3\]"),
        (torch.zeros(3, 2), 0.0, 0, "scale must be a finite float32 > 0, got 0"),
        (torch.zeros(3, 2), float("inf"), 0, "scale must be a finite float32 > 0, got inf"),
        (torch.zeros(3, 2), 1.0, 128, r"zero must be in \[0, 127\] \(7-bit activations\), got 128"),
    ],
)
def test_bad_arguments_are_refused(x, scale, zero, message):
    with pytest.raises(RuntimeError, match=message):
        _ops.quantize_u7(x, scale, zero)
