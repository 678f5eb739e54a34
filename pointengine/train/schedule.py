"""The learning rate as a pure function of the step: linear warm-up, then a cosine decay to zero.

Being a function of the step alone, it needs no scheduler state in a checkpoint."""

from __future__ import annotations

import math


def learning_rate(step: int, base_lr: float, warmup_steps: int, total_steps: int) -> float:
    """The rate of optimizer step `step` (0-based): base_lr * (step + 1) / warmup_steps during the
    warm-up, then base_lr * (1 + cos(pi * t)) / 2 with t going from 0 to 1 over the remaining steps."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    remaining = max(1, total_steps - warmup_steps)
    t = min(1.0, (step - warmup_steps) / remaining)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * t))
