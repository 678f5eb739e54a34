"""What every benchmark shares: the machine it ran on, the real scans, and where results go."""

import json
import os
import statistics
import time
from pathlib import Path

import torch

from pointengine import _C

ROOT = Path(__file__).resolve().parents[1]
KITTI_SCANS = ROOT.parent / "shared" / "data" / "semantickitti" / "sequences" / "00" / "velodyne"
RESULTS = ROOT / "benchmarks" / "results"


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
    """Median seconds of each callable; every round runs each of them once, in turn, so that a change
    of machine load hits them alike. `warmup` untimed rounds first."""
    for _ in range(warmup):
        for run in runs.values():
            run()
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}
