"""What this machine can do, measured in the same run as a profile: the rate of a dense GEMM of a
layer's shape, and the machine's peak.

Every layer that multiplies (a sparse conv, a 1x1 conv, a linear layer) computes, in pieces, the
product of a [pairs, C_in] matrix by a [C_in, C_out] one: `torch.mm` of that shape says what the
machine's BLAS reaches on the same work with no gathering and no kernel map. The peak is the best
rate `torch.mm` reaches in the run: on large square matrices (the BLAS's FMA-bound kernel: AVX-512 or
AVX2 FMA on a CPU, tensor cores on a GPU for half types), or on a layer's shape where that is higher
(a shape that fits the caches can beat the squares), so that no GEMM of the run exceeds it. It is the
closest measure of the FMA peak that needs no kernel of our own.
"""

import torch

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

    def peak(self) -> float:
        """The best of peak_flops_per_second and of every shape measured so far."""
        return max(peak_flops_per_second(self.dtype, self.device, self.repeats), *self.rates.values())
