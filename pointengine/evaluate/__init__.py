"""Dataset benchmarks (`pointengine bench`): a model over a SemanticKITTI or nuScenes-lidarseg split with
the official metrics and a latency split, sharded under torchrun (run.py); the split as a torch Dataset
with a voxelizing collate function (loader.py)."""

from .loader import LoadedScan, ScanBatch, ScanCollate, SplitDataset
from .run import BenchResult, BenchSettings, run_benchmark

__all__ = ["BenchResult", "BenchSettings", "LoadedScan", "ScanBatch", "ScanCollate", "SplitDataset", "run_benchmark"]
