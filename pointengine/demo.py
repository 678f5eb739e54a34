"""The main job on a built-in input: a synthetic scan through MinkUNet, timed and profiled."""

import time
from dataclasses import dataclass

import torch

from .datasets import generate_scan, load_dataset_config
from .functional.pointvoxel import devoxelize, voxelize_points
from .models import build_model
from .profiler import profile


@dataclass(frozen=True)
class DemoReport:
    points: int
    voxels: int
    macs: int
    latency_s: float
    map_s: float
    conv_s: float
    other_s: float
    point_classes: dict[str, int]


def run_demo(seed: int = 0, model_name: str = "minkunet_cr1.0", voxel_size: float = 0.05, repeats: int = 3) -> DemoReport:
    scan = generate_scan(seed)
    torch.manual_seed(seed)
    model = build_model(model_name).eval()
    voxels = voxelize_points(scan.points, voxel_size)

    def fresh_input():
        # A new coordinate map each time, so kernel maps are built inside the timed region.
        return voxelize_points(scan.points, voxel_size).to_sparse()

    rows = profile(model, fresh_input())
    latencies = []
    with torch.no_grad():
        for _ in range(repeats):
            x = fresh_input()
            start = time.perf_counter()
            logits = model(x).feats
            latencies.append(time.perf_counter() - start)
    labels = devoxelize(logits.argmax(1), voxels.inverse)
    names = load_dataset_config("semantickitti").classes
    counts = torch.bincount(labels, minlength=len(names) - 1)
    return DemoReport(
        points=scan.points.shape[0],
        voxels=voxels.coords.shape[0],
        macs=sum(r.macs for r in rows),
        latency_s=sorted(latencies)[len(latencies) // 2],
        map_s=sum(r.map_s for r in rows),
        conv_s=sum(r.compute_s for r in rows if r.kind == "conv"),
        other_s=sum(r.compute_s for r in rows if r.kind != "conv"),
        point_classes={names[c + 1]: int(n) for c, n in enumerate(counts.tolist()) if n},
    )
