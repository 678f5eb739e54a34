"""`pointengine bench`: a model over a dataset split, scan by scan, through Segmenter's pipeline, with
the official metrics and the latency of each stage; sharded over the processes of torchrun.

Under torchrun (`--nproc_per_node N`, and across machines with its rendezvous) each process takes a
contiguous share of the split's scans (train.data.shard), and the confusion matrix, the latency
histograms and the counts are summed over processes (gloo on CPU, nccl on GPU), the wall time and the
peak memory taken at their maximum: every process ends with what one process over the whole split
would report, and the first one reports it.
"""

from __future__ import annotations

import resource
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..datasets.frames import Skipped
from ..datasets.metrics import Scores, confusion_matrix
from ..segment import Segmenter, VoxelizedBatch, point_labels
from ..tensor import SparseTensor
from ..train.data import shard
from ..train.distributed import World, all_lists, all_max, all_sum, init_world, rank_device
from .layouts import LAYOUTS
from .loader import ScanBatch, ScanCollate, SplitDataset
from .timing import MAIN_PATH_OUTSIDE_MODEL, OUTSIDE_MODEL, StageTimes


@dataclass(frozen=True)
class BenchSettings:
    """What to run: `split` is [NAME] of an official split (e.g. ["val"]), ["all"], or sequence (scene)
    names; `limit` keeps the split's first scans; `version` picks nuScenes tables; `workers` DataLoader
    processes read and voxelize ahead; `warmup` untimed forwards of the first scan; `skip_bad` leaves
    bad scans out (each reported) instead of stopping; `views` > 1: Segmenter's test-time augmentation
    (the turned views voxelized in the model's stage, which then also maps the labels back)."""

    dataset: str
    root: Path
    split: tuple[str, ...] = ("val",)
    config: str | Path | None = None
    checkpoint: str | Path | None = None
    limit: int | None = None
    save_predictions: Path | None = None
    version: str | None = None
    device: str = "cpu"
    workers: int = 0
    warmup: int = 1
    skip_bad: bool = False
    progress: bool = True
    views: int = 1


@dataclass(frozen=True)
class BenchResult:
    """`confusion` int64 [C, C] ([labelled class, predicted class], points of the ignored class left
    out); `times` the latency histograms of every stage; `scans` benchmarked, `labelled_scans` of them
    scored; `wall_seconds` from the first scan to the last (the slowest process); peak memory of the
    largest process: resident set (`peak_rss_bytes`) and, on a GPU, torch's allocations."""

    settings: BenchSettings
    model: str
    trained: bool
    classes: tuple[str, ...]
    confusion: Tensor
    scores: Scores
    times: StageTimes
    scans: int
    labelled_scans: int
    points: int
    wall_seconds: float
    peak_rss_bytes: int
    peak_device_bytes: int | None
    processes: int
    threads: int
    skipped: list[Skipped]

    @property
    def scans_per_second(self) -> float:
        return self.scans / self.wall_seconds if self.wall_seconds > 0 else float("nan")

    @property
    def outside_model(self) -> float:
        """The time of reading, voxelization, mapping back and metrics over the model's time."""
        return sum(self.times.total(stage) for stage in OUTSIDE_MODEL) / self.times.total("model")

    @property
    def main_path_outside_model(self) -> float:
        """What of it the main process waited for (the rest ran in workers while the model ran), over
        the model's time; equal to outside_model, up to the loader's own overhead, without workers."""
        return sum(self.times.total(stage) for stage in MAIN_PATH_OUTSIDE_MODEL) / self.times.total("model")


def run_benchmark(settings: BenchSettings) -> BenchResult:
    """Benchmarks the model of `settings` on its split (see BenchSettings); under torchrun every process
    calls this on its share and gets the whole run's result."""
    layout = LAYOUTS.get(settings.dataset)
    if layout is None:
        raise ValueError(f"dataset must be one of {sorted(LAYOUTS)}, got {settings.dataset!r}")
    for name, lowest in (("limit", 1), ("workers", 0), ("warmup", 0)):
        value = getattr(settings, name)
        if value is not None and value < lowest:
            raise ValueError(f"{name} must be >= {lowest}, got {value}")
    device = rank_device(torch.device(settings.device))
    config = settings.config or (None if settings.checkpoint else layout.default_config)
    with warnings.catch_warnings(record=True):  # `trained` says it; the command prints a note
        seg = Segmenter(config, settings.checkpoint, device, views=settings.views)
    dataset = seg.config.dataset
    if dataset.point_columns != layout.point_columns:
        raise ValueError(
            f"model {seg.config.name!r} reads {dataset.name} scans (columns {list(dataset.point_columns)}), but "
            f"{layout.name} scans hold {list(layout.point_columns)}: give a {layout.name} model, e.g. --config "
            f"{layout.default_config}"
        )
    found = layout.find_frames(Path(settings.root), list(settings.split), settings.version, dataset, settings.skip_bad)
    frames = found.frames[: settings.limit]
    if not frames:
        raise ValueError(f"{settings.root}: no scans to benchmark in split {' '.join(settings.split)}")
    world = init_world(device)
    scans = SplitDataset(shard(frames, world.rank, world.size), layout.scan_format, dataset)
    collate = ScanCollate(seg.config)
    _warm_up(seg, scans, collate, device, settings.warmup)
    loader = DataLoader(scans, batch_size=1, num_workers=settings.workers, collate_fn=collate)
    bar = tqdm(loader, desc=f"bench {layout.name} {' '.join(settings.split)}", unit="scan", file=sys.stderr,
               disable=None if settings.progress and world.is_main else True, dynamic_ncols=True)  # None: on a tty
    tally = Tally(torch.zeros(dataset.num_classes, dataset.num_classes, dtype=torch.int64))
    start = waiting_since = time.perf_counter()
    for batch in bar:
        for item in batch.skipped:
            if not settings.skip_bad:
                raise ValueError(item.error)
            tally.skipped.append(Skipped(str(item.frame.scan), item.error))
        if batch.voxels is not None:
            tensor = batch.voxels.tensor.to(device)
            waited = _now(device) - waiting_since
            _run_batch(seg, batch, tensor, settings, tally, {"wait": waited})
        waiting_since = time.perf_counter()
    bar.close()
    tally.wall = time.perf_counter() - start
    if settings.save_predictions is not None and world.is_main:
        layout.finish_submission(settings.save_predictions, list(settings.split))
    return _result(settings, seg, world, device, tally, found.skipped)


def _run_batch(seg: Segmenter, batch: ScanBatch, tensor: SparseTensor, settings: BenchSettings, tally: Tally,
               stages: dict) -> None:
    """The model, the mapping back, the metrics and the predictions of one batch, each timed (`tensor`:
    the batch's input on the device), into `tally`."""
    dataset, device = seg.config.dataset, tensor.feats.device
    stages |= {"load": sum(item.seconds for item in batch.scans), "voxelize": batch.voxelize_seconds}
    begin = _now(device)
    if seg.views > 1:
        unturned = VoxelizedBatch(tensor, batch.voxels.inverse, batch.voxels.point_counts)
        labels, _ = seg.averaged_views([item.scan.points for item in batch.scans], unturned)
        stages["model"], stages["map"] = _now(device) - begin, 0.0
    else:
        with torch.no_grad():
            logits = seg.model(tensor).feats
        stages["model"] = _now(device) - begin
        begin = _now(device)
        labels = point_labels(seg.config, batch.voxels, logits).split(batch.voxels.point_counts)
        stages["map"] = time.perf_counter() - begin
    begin = time.perf_counter()
    for item, scan_labels in zip(batch.scans, labels):
        if item.scan.labels is not None:
            tally.confusion += confusion_matrix(scan_labels, item.scan.labels, dataset.num_classes, dataset.ignore_index)
            tally.counts[1] += 1
    stages["metrics"] = time.perf_counter() - begin
    if settings.save_predictions is not None:
        begin = time.perf_counter()
        layout = LAYOUTS[settings.dataset]
        for item, scan_labels in zip(batch.scans, labels):
            layout.write_prediction(settings.save_predictions, item.frame, scan_labels, dataset, list(settings.split))
        stages["save"] = time.perf_counter() - begin
    stages["total"] = sum(seconds for stage, seconds in stages.items() if stage != "wait")
    for stage, seconds in stages.items():
        tally.times.add(stage, seconds)
    tally.counts[0] += len(batch.scans)
    tally.counts[2] += sum(batch.voxels.point_counts)


@dataclass
class Tally:
    """One process's share of a run: confusion matrix, latencies, counts (scans, labelled scans,
    points), the scans it skipped and its wall time."""

    confusion: Tensor
    times: StageTimes = field(default_factory=StageTimes)
    counts: Tensor = field(default_factory=lambda: torch.zeros(3, dtype=torch.int64))
    skipped: list[Skipped] = field(default_factory=list)
    wall: float = 0.0


def _result(settings: BenchSettings, seg: Segmenter, world: World, device: torch.device, tally: Tally,
            found_skipped: list[Skipped]) -> BenchResult:
    """The run's result from every process's tally; `found_skipped` (every process found the same bad
    files before the run) is counted once."""
    dataset = seg.config.dataset
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux
    device_peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    confusion = all_sum(tally.confusion.to(device), world).cpu()
    scans, labelled, points = all_sum(tally.counts.to(device), world).cpu().tolist()
    peaks = all_max(torch.tensor([tally.wall, rss, device_peak], dtype=torch.float64, device=device), world)
    wall, rss, device_peak = peaks.cpu().tolist()
    return BenchResult(
        settings=settings,
        model=seg.config.name,
        trained=seg.trained,
        classes=dataset.classes,
        confusion=confusion,
        scores=LAYOUTS[settings.dataset].scores(confusion, dataset.ignore_index),
        times=tally.times.summed(world, device),
        scans=scans,
        labelled_scans=labelled,
        points=points,
        wall_seconds=wall,
        peak_rss_bytes=int(rss),
        peak_device_bytes=int(device_peak) if device.type == "cuda" else None,
        processes=world.size,
        threads=torch.get_num_threads(),
        skipped=found_skipped + all_lists(tally.skipped, world),
    )


def _warm_up(seg: Segmenter, scans: SplitDataset, collate: ScanCollate, device: torch.device, forwards: int) -> None:
    """Reads and voxelizes the first scan and runs the model on it `forwards` times, untimed: first-call
    costs (allocations, thread pools, lazily built tables) stay out of the latencies."""
    if forwards == 0 or len(scans) == 0:
        return
    batch = collate([scans[0]])
    if batch.voxels is None:
        return
    with torch.no_grad():
        for _ in range(forwards):
            seg.model(batch.voxels.tensor.to(device))


def _now(device: torch.device) -> float:
    """perf_counter after the device's queued work is done (a GPU runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()
