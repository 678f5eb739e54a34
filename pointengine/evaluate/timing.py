"""Per-stage latency of a benchmark run as histograms: they add up over processes (one all-reduce), so
the run under torchrun reports the percentiles one process would compute from the same latencies.

Bins are log-spaced, 200 per decade from 1 microsecond to 10^4 seconds: a percentile is reported as
the geometric middle of its bin, within 0.6 % of the latency it stands for. Means come from the summed
seconds, exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..train.distributed import World, all_sum

# Work, wherever it ran (a DataLoader worker, or the main process without workers): load: reading the
# files and mapping the labels; voxelize: Segmenter's voxelization; model: the forward (synchronized on a
# GPU); map: each voxel's class carried back to its points; metrics: the confusion matrix; save: writing
# predictions; total: all of a scan's work, as if done in a row. And wait: how long the main process
# waited for the scan from the loader and moved it to the device (with workers, what reading and
# voxelizing ahead did not hide).
STAGES = ("load", "voxelize", "model", "map", "metrics", "save", "total", "wait")
OUTSIDE_MODEL = ("load", "voxelize", "map", "metrics")
MAIN_PATH_OUTSIDE_MODEL = ("wait", "map", "metrics")
LOWEST = 1e-6  # seconds: the lower edge of the first bin
BINS_PER_DECADE = 200
BINS = 10 * BINS_PER_DECADE


@dataclass
class StageTimes:
    """`counts` int64 [stages, BINS]: how many latencies of each stage fell in each bin; `seconds`
    float64 [stages]: their sum."""

    counts: Tensor = field(default_factory=lambda: torch.zeros(len(STAGES), BINS, dtype=torch.int64))
    seconds: Tensor = field(default_factory=lambda: torch.zeros(len(STAGES), dtype=torch.float64))

    def add(self, stage: str, seconds: float) -> None:
        row = STAGES.index(stage)
        self.counts[row, bin_of(seconds)] += 1
        self.seconds[row] += seconds

    def count(self, stage: str) -> int:
        return int(self.counts[STAGES.index(stage)].sum())

    def mean(self, stage: str) -> float:
        count = self.count(stage)
        return float(self.seconds[STAGES.index(stage)]) / count if count else math.nan

    def total(self, stage: str) -> float:
        return float(self.seconds[STAGES.index(stage)])

    def percentile(self, stage: str, q: float) -> float:
        """The q-th percentile (nearest rank: the smallest latency with at least q % of them at or below
        it), as the middle of its bin; NaN without latencies."""
        counts = self.counts[STAGES.index(stage)]
        count = int(counts.sum())
        if count == 0:
            return math.nan
        rank = max(1, math.ceil(q / 100 * count))
        index = int(torch.searchsorted(counts.cumsum(0), rank))
        return bin_middle(index)

    def summed(self, world: World, device: torch.device) -> StageTimes:
        """The histograms and sums of every process (reduced on `device`: nccl reduces CUDA tensors only)."""
        return StageTimes(all_sum(self.counts.to(device), world).cpu(), all_sum(self.seconds.to(device), world).cpu())


def bin_of(seconds: float) -> int:
    if seconds <= LOWEST:
        return 0
    return min(BINS - 1, int(math.log10(seconds / LOWEST) * BINS_PER_DECADE))


def bin_middle(index: int) -> float:
    return LOWEST * 10 ** ((index + 0.5) / BINS_PER_DECADE)
