"""A benchmark result as JSON (every number, the confusion matrix included) and as markdown tables."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from ..outputs import write_bytes_atomically
from .run import BenchResult
from .timing import OUTSIDE_MODEL, STAGES

PERCENTILES = (50, 90, 99)


def machine_name(device: str) -> str:
    """The CPU's model name (as lscpu shows it) and, on a GPU, the GPU's."""
    names = [line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")]
    cpu = names[0] if names else "unknown CPU"
    if torch.device(device).type == "cuda":
        return f"{cpu}, {torch.cuda.get_device_name(torch.device(device))}"
    return cpu


def _cpuinfo() -> list[str]:
    path = Path("/proc/cpuinfo")
    return path.read_text().splitlines() if path.is_file() else []


def result_dict(result: BenchResult) -> dict:
    """Plain JSON types; NaN (a class without points, a stage never timed) becomes null."""
    settings, scores = result.settings, result.scores
    latency = {
        stage: {"count": result.times.count(stage), "mean": 1e3 * result.times.mean(stage),
                **{f"p{q}": 1e3 * result.times.percentile(stage, q) for q in PERCENTILES}}
        for stage in STAGES
    }
    values = {
        "dataset": settings.dataset,
        "root": str(settings.root),
        "split": list(settings.split),
        "model": result.model,
        "trained": result.trained,
        "checkpoint": None if settings.checkpoint is None else str(settings.checkpoint),
        "device": settings.device,
        "machine": machine_name(settings.device),
        "processes": result.processes,
        "threads": result.threads,
        "workers": settings.workers,
        "scans": result.scans,
        "labelled_scans": result.labelled_scans,
        "points": result.points,
        "skipped": [{"path": item.path, "reason": item.reason} for item in result.skipped],
        "class_iou": dict(zip(result.classes, scores.class_iou.tolist())),
        "classes_present": [name for name, present in zip(result.classes, scores.present.tolist()) if present],
        "miou": scores.miou,
        "miou_present": scores.miou_present,
        "accuracy": scores.accuracy,
        "frequency_weighted_iou": scores.frequency_weighted_iou,
        "latency_ms": latency,
        "outside_model_percent": 100 * result.outside_model,
        "main_path_outside_model_percent": 100 * result.main_path_outside_model,
        "scans_per_second": result.scans_per_second,
        "wall_seconds": result.wall_seconds,
        "peak_rss_bytes": result.peak_rss_bytes,
        "peak_device_bytes": result.peak_device_bytes,
        "confusion": result.confusion.tolist(),
    }
    return _without_nan(values)


def _without_nan(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _without_nan(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_nan(item) for item in value]
    return value


def markdown(result: BenchResult) -> str:
    """The per-class IoU, the summary numbers and the latency of each stage as markdown."""
    settings, scores = result.settings, result.scores
    head = (f"**{result.model}**{'' if result.trained else ' (untrained weights)'} on {settings.dataset} "
            f"{' '.join(settings.split)}: {result.scans} scans ({result.points:,} points, {result.labelled_scans} "
            f"labelled), {settings.device}, {result.processes} process{'es' if result.processes > 1 else ''} x "
            f"{result.threads} thread{'s' if result.threads > 1 else ''}, {machine_name(settings.device)}"
            + (f", {settings.views} views (the scans turned about z)" if settings.views > 1 else ""))
    lines = [head, "", "| class | IoU % |", "|---|---:|"]
    for name, iou, present in zip(result.classes, scores.class_iou.tolist(), scores.present.tolist()):
        if not math.isnan(iou):
            lines.append(f"| {name} | {100 * iou:.1f}{'' if present else ' (absent)'} |")
    counted = int((~scores.class_iou.isnan()).sum())
    lines.append(f"| **mIoU** (official, over {counted} classes) | **{100 * scores.miou:.1f}** |")
    if scores.miou_present != scores.miou:
        lines.append(f"| mIoU over the {int(scores.present.sum())} classes in labels or predictions | "
                     f"{100 * scores.miou_present:.1f} |")
    if scores.frequency_weighted_iou is not None:
        lines.append(f"| frequency-weighted IoU | {100 * scores.frequency_weighted_iou:.1f} |")
    lines.append(f"| accuracy | {100 * scores.accuracy:.1f} |")
    lines += ["", "| stage | mean ms | p50 ms | p90 ms | p99 ms |", "|---|---:|---:|---:|---:|"]
    for stage in STAGES:
        if result.times.count(stage):
            numbers = [result.times.mean(stage)] + [result.times.percentile(stage, q) for q in PERCENTILES]
            lines.append(f"| {stage} | " + " | ".join(f"{1e3 * n:.1f}" for n in numbers) + " |")
    memory = f"peak memory {result.peak_rss_bytes / 2**20:.0f} MiB resident"
    if result.peak_device_bytes is not None:
        memory += f", {result.peak_device_bytes / 2**20:.0f} MiB on the GPU"
    lines += ["", f"{result.scans_per_second:.2f} scans/s; {memory}; outside the model "
                  f"({' + '.join(OUTSIDE_MODEL)}): {100 * result.outside_model:.1f} % of the model's time"]
    if settings.workers:
        lines[-1] += (f", of which the main process waited for {100 * result.main_path_outside_model:.1f} % "
                      f"({settings.workers} worker{'s' if settings.workers > 1 else ''} read and voxelized ahead)")
    return "\n".join(lines) + "\n"


def write_reports(result: BenchResult, path: str | Path) -> tuple[Path, Path]:
    """The JSON at `path` and the markdown beside it (same name, .md)."""
    path = Path(path)
    markdown_path = path.with_suffix(".md")
    write_bytes_atomically(path, (json.dumps(result_dict(result), indent=1) + "\n").encode())
    write_bytes_atomically(markdown_path, markdown(result).encode())
    return path, markdown_path
