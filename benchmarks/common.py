"""What every benchmark shares: the machine it ran on, the real scans, and where results go."""

import json
import os
from pathlib import Path

import torch

from pointengine import _C
from pointengine.timing import median_seconds

ROOT = Path(__file__).resolve().parents[1]
KITTI_SCANS = ROOT.parent / "shared" / "data" / "semantickitti" / "sequences" / "00" / "velodyne"
RESULTS = ROOT / "benchmarks" / "results"


def named_scans(count: int) -> list[tuple[str, torch.Tensor]]:
    """(name, points) of the first `count` real scans of SemanticKITTI 00, or of the seeded synthetic
    scan when ../shared/data is absent (a note says so)."""
    from pointengine.datasets import generate_scan, read_points

    paths = sorted(KITTI_SCANS.glob("*.bin"))[:count]
    if not paths:
        print(f"no SemanticKITTI scans under {KITTI_SCANS}: the synthetic scan (seed 0) instead")
        return [("synthetic/seed0", generate_scan(seed=0).points)]
    return [(f"kitti/00/{path.stem}", read_points(path)) for path in paths]


def machine() -> str:
    """CPU model (with family and model numbers: a VM may hide the marketing name), cores, torch, and
    the path conv_fused takes on this CPU."""
    info = dict(line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().splitlines() if ":" in line)
    info = {key.strip(): value.strip() for key, value in info.items()}
    cpu = f"{info.get('model name', 'unknown CPU')} (family {info.get('cpu family', '?')} model {info.get('model', '?')})"
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, conv_fused path {_C.conv_fused_isa()}"


def append_results(name: str, records: list[dict], path: Path | None = None) -> Path:
    """Appends one JSON object per record to `path` (default benchmarks/results/NAME.jsonl)."""
    path = RESULTS / f"{name}.jsonl" if path is None else Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        for record in records:
            out.write(json.dumps(record) + "\n")
    return path


def round_robin(runs: dict, repeats: int, warmup: int) -> dict[str, float]:
    """Median seconds of each callable on the CPU, each round running every one in turn
    (pointengine.timing.median_seconds)."""
    return median_seconds(runs, torch.device("cpu"), repeats, warmup)
