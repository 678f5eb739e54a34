"""The steps of `pointengine compress` and what is measured of each: a trained model, optimized, pruned,
fine-tuned, quantized; per step its parameters, size on disk, MACs, latency, mIoU and agreement with
the float model's point labels, all on the same scans in one run."""

import copy
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..datasets import LidarScan
from ..datasets.metrics import Scores, confusion_matrix, semantickitti_scores
from ..models.checkpoint import save_checkpoint
from ..profiler import count_macs
from ..segment import Segmenter
from ..tensor import SparseTensor

# State-dict entries that describe no weight: BatchNorm statistics, counters.
NOT_PARAMETERS = ("running_mean", "running_var", "num_batches_tracked")


@dataclass(frozen=True)
class Step:
    """One form of the model: `model` what runs (inference form), `training_form` the float model it
    comes from (for MACs, which do not change with precision)."""

    name: str
    model: torch.nn.Module
    training_form: torch.nn.Module


@dataclass(frozen=True)
class StepResult:
    name: str
    parameters: int
    bytes_on_disk: int
    macs: int
    latency_s: float  # median model forward on the first scan, kernel maps included
    miou: float | None  # over the classes in the labels or predictions; None without labels
    agreement: float  # share of points labelled as the float model labels them

    def row(self) -> dict:
        return {"step": self.name, "parameters": self.parameters, "bytes": self.bytes_on_disk, "macs": self.macs,
                "latency_ms": 1e3 * self.latency_s, "miou": self.miou, "agreement": self.agreement}


def count_parameters(model: torch.nn.Module) -> int:
    """Weights and biases, whatever their dtype (int8 buffers included), BatchNorm statistics not."""
    return sum(v.numel() for k, v in model.state_dict().items() if not k.endswith(NOT_PARAMETERS) and torch.is_tensor(v))


def bytes_on_disk(model: torch.nn.Module, config: dict) -> int:
    with tempfile.TemporaryDirectory() as folder:
        return save_checkpoint(model, Path(folder) / "model.safetensors", config).stat().st_size


def median_latency(model: torch.nn.Module, x: SparseTensor, repeats: int) -> float:
    """Each forward on a fresh copy of x: its kernel maps are built inside, as for a new scan."""
    times = []
    with torch.no_grad():
        for _ in range(repeats + 1):  # the first is a warm-up
            fresh = SparseTensor(x.feats, x.coords)
            start = time.perf_counter()
            model(fresh)
            times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def labels_and_scores(seg: Segmenter, model: torch.nn.Module, scans: list[LidarScan]) -> tuple[list[torch.Tensor], Scores | None]:
    """The point labels `seg`'s pipeline gives with `model` on each scan, and their SemanticKITTI scores
    over all the scans (None unless every scan has labels)."""
    runner = copy.copy(seg)
    runner.model = model
    labels = [runner(scan.points) for scan in scans]
    if any(scan.labels is None for scan in scans):
        return labels, None
    dataset = seg.config.dataset
    confusion = sum(confusion_matrix(p, s.labels, dataset.num_classes, dataset.ignore_index) for p, s in zip(labels, scans))
    return labels, semantickitti_scores(confusion, dataset.ignore_index)


def agreement(labels: list[torch.Tensor], reference: list[torch.Tensor]) -> float:
    """The share of points labelled as in `reference`."""
    return sum(int((a == b).sum()) for a, b in zip(labels, reference)) / sum(len(a) for a in labels)


def measure(seg: Segmenter, steps: list[Step], scans: list[LidarScan], repeats: int) -> list[StepResult]:
    """Every step on the same scans: the first step's labels are the reference for agreement."""
    config = seg.config.to_dict()
    x = seg.preprocess(scans[0].points)
    reference, results = None, []
    for step in steps:
        labels, scores = labels_and_scores(seg, step.model, scans)
        if reference is None:
            reference = labels
        with torch.no_grad():
            macs = count_macs(step.training_form.eval(), SparseTensor(x.feats, x.coords))
        results.append(StepResult(step.name, count_parameters(step.model), bytes_on_disk(step.model, config), macs,
                                  median_latency(step.model, x, repeats),
                                  None if scores is None else scores.miou_present, agreement(labels, reference)))
    return results
