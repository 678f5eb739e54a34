"""What this machine can do, measured in the same run as a profile: the rate of a dense GEMM of a
layer's shape, and the machine's peak.

On the CPU in float32 the peak is the FMA peak, measured by `_C.fma_peak_flops`: independent chains
of fused multiply-adds in registers on every thread, on the widest path the convolution takes here
(AVX-512, AVX2 or scalar). Elsewhere (float64, CUDA) it is the best GEMM rate, as follows.

Every layer that multiplies (a sparse conv, a 1x1 conv, a linear layer) computes, in pieces, the
product of a [pairs, C_in] matrix by a [C_in, C_out] one: `torch.mm` of that shape says what the
machine's BLAS reaches on the same work with no gathering and no kernel map. The peak is the best
rate `torch.mm` reaches in the run: on large square matrices (the BLAS's FMA-bound kernel: AVX-512 or
AVX2 FMA on a CPU, tensor cores on a GPU for half types), or on a layer's shape where that is higher
(a shape that fits the caches can beat the squares), so that no GEMM of the run exceeds it. It is the
closest measure of the FMA peak that needs no kernel of our own.
"""

import torch

from . import _C

from .timing import median_seconds

# Square sizes for the peak: large enough that the product is bound by the FMA units, not by memory
# (n^3 multiply-adds over 3 n^2 values), small enough to take well under a second on 2 CPU cores.
PEAK_SIZES = {"cpu": (1024, 2048), "cuda": (4096, 8192)}


def gemm_flops_per_second(rows: int, inner: int, cols: int, dtype: torch.dtype, device: torch.device, repeats: int = 3) -> float:
    """FLOP/s (2 x rows x inner x cols per product) of torch.mm of [rows, inner] @ [inner, cols]."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(rows, inner, generator=generator).to(device, dtype)
    b = torch.randn(inner, cols, generator=generator).to(device, dtype)
    seconds = median_seconds({"mm": lambda: torch.mm(a, b)}, device, repeats)["mm"]
    return 2 * rows * inner * cols / seconds


def peak_flops_per_second(dtype: torch.dtype, device: torch.device, repeats: int = 3) -> float:
    """The best FLOP/s of torch.mm on the square matrices of PEAK_SIZES."""
    device = torch.device(device)
    return max(gemm_flops_per_second(n, n, n, dtype, device, repeats) for n in PEAK_SIZES[device.type])


class GemmRates:
    """gemm_flops_per_second, measured once per shape: layers of one shape share the measurement."""

    def __init__(self, dtype: torch.dtype, device: torch.device, repeats: int):
        self.dtype, self.device, self.repeats = dtype, torch.device(device), repeats
        self.rates: dict[tuple[int, int, int], float] = {}

    def __call__(self, rows: int, inner: int, cols: int) -> float:
        shape = (rows, inner, cols)
        if shape not in self.rates:
            self.rates[shape] = gemm_flops_per_second(rows, inner, cols, self.dtype, self.device, self.repeats)
        return self.rates[shape]

    def peak(self) -> tuple[float, str]:
        """(peak FLOP/s, what it is): the FMA peak on the CPU in float32, else the best of
        peak_flops_per_second and of every shape measured so far; never below a GEMM of the run."""
        gemm = max(peak_flops_per_second(self.dtype, self.device, self.repeats), *self.rates.values())
        if self.device.type == "cpu" and self.dtype == torch.float32:
            fma = _C.fma_peak_flops(0.2)
            if fma >= gemm:
                return fma, f"FMA chains in registers on every thread, {_C.conv_fused_isa()}"
        return gemm, "best torch.mm of the run: large squares, every layer's shape"
