"""Clocks for the profiler, the GEMM rates and the autotuner: host time on the CPU, CUDA events on a GPU
(a GPU runs asynchronously, so host time would measure launches, not work)."""

import statistics
import time
from collections.abc import Callable

import torch


class Clock:
    """Marks points in time on `device`; the seconds between two marks are read afterwards. On CUDA a
    mark is an event recorded on the current stream, read (with a wait) only in `seconds`, so marking
    never stops the device."""

    def __init__(self, device: torch.device):
        self.cuda = torch.device(device).type == "cuda"

    def mark(self):
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def seconds(self, start, end) -> float:
        if not self.cuda:
            return end - start
        end.synchronize()
        return start.elapsed_time(end) / 1e3


def median_seconds(runs: dict[str, Callable], device: torch.device, repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each callable over `repeats` rounds after `warmup` untimed ones; every round
    runs each callable once, in turn, so that a change of machine load hits them alike."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    clock = Clock(device)
    for _ in range(warmup):
        for run in runs.values():
            run()
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = clock.mark()
            run()
            times[name].append(clock.seconds(start, clock.mark()))
    return {name: statistics.median(values) for name, values in times.items()}
