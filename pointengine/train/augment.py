"""Training augmentation: a random rotation about z, scaling, flips of x and y, and per-point jitter.

The draws of scan `index` in `epoch` come from a generator seeded by (seed, epoch, index) alone, so a
resumed run, or a rank that reads only its shard, augments every scan exactly as one uninterrupted
process would, without saving any random state.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

SCALE_RANGE = (0.95, 1.05)
JITTER_SIGMA = 0.01  # m, about the range noise of an HDL-64E
JITTER_CLIP = 0.05  # m


def augment(points: Tensor, seed: int, epoch: int, index: int) -> Tensor:
    """A copy of points [N, 3 + C] with x, y, z rotated about z, scaled, flipped and jittered."""
    rng = np.random.default_rng([seed, epoch, index])
    angle = rng.uniform(0.0, 2.0 * math.pi)
    scale = rng.uniform(*SCALE_RANGE)
    flip_x, flip_y = rng.random(2) < 0.5
    cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
    transform = np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, scale]])
    if flip_x:
        transform[0] *= -1
    if flip_y:
        transform[1] *= -1
    jitter = np.clip(rng.normal(0.0, JITTER_SIGMA, (points.shape[0], 3)), -JITTER_CLIP, JITTER_CLIP)
    out = points.clone()
    xyz = points[:, :3].double() @ torch.from_numpy(transform).T + torch.from_numpy(jitter)
    out[:, :3] = xyz.to(points.dtype)
    return out
