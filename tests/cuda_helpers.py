"""What the CUDA test files share: the dtypes CUDA computes in, the error each may make against the
CPU, and seeded random values that are the same on every device."""

import torch
from torch import Tensor

CUDA = torch.device("cuda")
HALF = (torch.float16, torch.bfloat16)
DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]
# Bounds on pointengine.testing.relative_error (max |difference| / max |reference|) of a CUDA result:
# float64 and float32 against the CPU's result in the same dtype; float16 and bfloat16 (float32
# accumulation, the output rounded once: ~5e-4 and ~4e-3 expected) against a float64 reference
# computed from the same rounded inputs.
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 3e-2}


def randn(*shape, dtype, seed: int) -> Tensor:
    """Standard normal values drawn in float64 on the CPU, rounded to dtype."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


def shuffled(rows: Tensor, seed: int) -> Tensor:
    """The rows in a seeded random order (no code may rely on sorted sites)."""
    return rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))].contiguous()
