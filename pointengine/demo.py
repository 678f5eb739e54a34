"""The main job on built-in input (`make demo`, `pointengine demo`): a model, by default the trained
zoo entry `demo`, labels an unseen synthetic scan; the demo prints per-class IoU, latency and a
profile, writes a bird's-eye picture (labels beside predictions), and, when the real SemanticKITTI
scans of ../shared/data are there, scores them too (and pictures the first)."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .datasets import LidarScan, generate_scan
from .datasets.metrics import class_iou, confusion_matrix
from .datasets.semantickitti import SemanticKITTI
from .profiler import profile
from .segment import Segmenter
from .visualize import bird_eye_png

# The unseen scan: training sets written by write_synthetic_dataset seed each frame with frame_seed,
# a 32-bit hash; tests/test_demo.py checks that the README's training set does not contain this seed.
DEMO_SEED = 1
# Where the real scans are looked for: the project's sibling shared/ folder, seen from the repository.
REAL_DATA = Path("../shared/data/semantickitti")
REAL_SEQUENCE = "00"


@dataclass(frozen=True)
class Evaluation:
    """Predictions scored against labels over `scans` scans: IoU per class present or predicted;
    `labelled` names the classes the labels hold."""

    name: str
    scans: int
    points: int
    voxels: int
    iou: dict[str, float]
    labelled: frozenset[str]

    @property
    def miou(self) -> float:
        """The mean over the classes present or predicted (a class predicted but absent counts 0)."""
        return statistics.fmean(self.iou.values())

    @property
    def miou_labelled(self) -> float:
        """The mean over the classes the labels hold only."""
        return statistics.fmean(v for name, v in self.iou.items() if name in self.labelled)


@dataclass(frozen=True)
class DemoReport:
    model: str
    trained: bool
    classes: tuple[str, ...]  # the dataset's class names, in training-id order
    synthetic: Evaluation
    latency_s: float  # median end-to-end Segmenter call on the synthetic scan
    macs: int
    map_s: float
    conv_s: float
    other_s: float
    pictures: tuple[Path, ...]  # the synthetic scan's, then the first real scan's
    real: Evaluation | None  # None without the real scans


def evaluate(seg: Segmenter, scans: list[LidarScan], name: str) -> tuple[Evaluation, list[torch.Tensor]]:
    """Scores `seg` on labelled scans (one confusion matrix over all); also returns the predictions."""
    dataset = seg.config.dataset
    confusion = torch.zeros(dataset.num_classes, dataset.num_classes, dtype=torch.int64)
    predictions, voxels = [], 0
    for scan in scans:
        labels = seg(scan.points)
        predictions.append(labels)
        confusion += confusion_matrix(labels, scan.labels, dataset.num_classes, dataset.ignore_index)
        voxels += seg.voxelize([scan.points]).tensor.num_sites
    iou = class_iou(confusion, dataset.ignore_index)
    scores = {dataset.classes[c]: float(v) for c, v in enumerate(iou.tolist()) if not np.isnan(v)}
    labelled = frozenset(dataset.classes[c] for c in confusion.sum(1).nonzero()[:, 0].tolist())
    points = sum(s.points.shape[0] for s in scans)
    return Evaluation(name, len(scans), points, voxels, scores, labelled), predictions


def run_demo(seed: int = DEMO_SEED, model: str = "demo", checkpoint=None, repeats: int = 3,
             out: str | Path = "demo_output", real_data: str | Path | None = REAL_DATA, views: int = 1) -> DemoReport:
    """`model`: zoo name or YAML path, its shipped weights unless `checkpoint` is given (untrained
    weights warn). `real_data`: a SemanticKITTI root whose sequence 00 is scored too when present.
    `views`: Segmenter's test-time augmentation (1: none)."""
    seg = Segmenter(model, checkpoint, views=views)
    scan = generate_scan(seed)
    synthetic, (predicted,) = evaluate(seg, [scan], f"synthetic seed {seed}")

    latencies = []
    for _ in range(repeats):  # kernel maps are built inside each call, as for any new scan
        start = time.perf_counter()
        seg(scan.points)
        latencies.append(time.perf_counter() - start)
    layers = profile(seg.model, seg.preprocess(scan.points), repeats=1, warmup=0, end_to_end=False, peaks=False).layers

    dataset = seg.config.dataset
    Path(out).mkdir(parents=True, exist_ok=True)

    def picture(name: str, shown: LidarScan, labels: torch.Tensor, title: str) -> Path:
        path = Path(out) / f"{name}.png"
        bird_eye_png(path, shown.points[:, :3].numpy(), labels.numpy(), dataset.classes, dataset.colors,
                     title=f"{title}: {seg.config.name}", truth=shown.labels.numpy())
        return path

    pictures = [picture(f"synthetic_seed{seed}", scan, predicted, f"synthetic scan (seed {seed})")]
    real = None
    folder = Path(real_data) / "sequences" / REAL_SEQUENCE if real_data is not None else None
    if folder is not None and folder.is_dir():
        frames = SemanticKITTI(real_data, (REAL_SEQUENCE,), dataset)
        labelled = [i for i in range(len(frames)) if frames.frames[i][1] is not None]
        if labelled:
            scans = [frames[i] for i in labelled]
            real, labels = evaluate(seg, scans, f"SemanticKITTI {REAL_SEQUENCE}")
            name = frames.frames[labelled[0]][0].stem
            pictures.append(picture(f"semantickitti_{REAL_SEQUENCE}_{name}", scans[0], labels[0],
                                    f"SemanticKITTI {REAL_SEQUENCE}/{name}"))
    return DemoReport(
        model=seg.config.name,
        trained=seg.trained,
        classes=dataset.classes,
        synthetic=synthetic,
        latency_s=statistics.median(latencies),
        macs=sum(r.macs for r in layers),
        map_s=sum(r.map_s for r in layers),
        conv_s=sum(r.compute_s for r in layers if r.is_conv),
        other_s=sum(r.compute_s for r in layers if not r.is_conv),
        pictures=tuple(pictures),
        real=real,
    )
