"""pointengine.compress.prune: structured channel pruning of MinkUNet and SPVCNN. Whole channels go,
chosen per channel group (pointengine/models/channels.py: the outputs a residual sum, a voxel-point
join or a skip concatenation line up), so the result is a smaller model of the same classes that
trains, saves, loads and optimizes as any other."""

import copy
import math

import torch
from torch import Tensor

from ..models.channels import Layer, channel_graph, select_channels

SCORES = ("bn", "l1")


def prune(model: torch.nn.Module, ratio: float, score: str = "bn") -> torch.nn.Module:
    """A copy of `model` (a MinkUNet or SPVCNN in training form, i.e. before pointengine.optimize)
    keeping, in each channel group of C channels, the ceil((1 - ratio) * C) (at least 1) that score
    highest, in their original order. `model` itself is not changed.

    score "bn": |gamma| of the BatchNorm after each layer writing the group, summed over those layers
    (Liu et al., "Network Slimming", ICCV 2017); "l1": the L1 norm of each layer's filter of that
    channel, summed alike (Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017).
    The network's input channels and the classes are never pruned.
    """
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
        raise ValueError(f"ratio must be a number in [0, 1), got {ratio!r}")
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    if channel_graph(model) is None:
        raise TypeError(
            "prune works on MinkUNet and SPVCNN in training form (before pointengine.optimize), "
            f"got {type(model).__name__}"
        )
    pruned = copy.deepcopy(model)
    graph = channel_graph(pruned)
    keep = {name: _strongest(_scores(producers, score), ratio) for name, producers in graph.groups.items()}
    select_channels(pruned, keep)
    return pruned


def kept_channels(width: int, ratio: float) -> int:
    """ceil((1 - ratio) * width), at least 1; the product is rounded to 9 digits first so that, say,
    (1 - 0.7) * 10 = 3.0000000000000004 keeps 3 channels, not 4."""
    return max(1, math.ceil(round((1 - ratio) * width, 9)))


def _scores(producers: tuple[Layer, ...], score: str) -> Tensor:
    """float64 [C]: the group's score of each channel, summed over the layers writing it."""
    total = 0
    for layer in producers:
        if score == "bn":
            total = total + layer.norm.weight.detach().double().abs()
        else:
            weight = layer.module.weight.detach().double().abs()
            # Conv3d weight [K, C_in, C_out], Linear weight [out, in].
            total = total + (weight.sum((0, 1)) if weight.dim() == 3 else weight.sum(1))
    return total.cpu()


def _strongest(scores: Tensor, ratio: float) -> Tensor:
    """Indices (ascending) of the kept_channels highest scores; ties go to the lower index."""
    count = kept_channels(len(scores), ratio)
    order = torch.sort(scores, descending=True, stable=True).indices
    return order[:count].sort().values
