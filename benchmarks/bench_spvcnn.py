"""SPVCNN next to MinkUNet at the same width: what the point branch and the point-voxel ops add.

Both models in eval mode under torch.no_grad, timed end to end from voxel features and coordinates:
the SparseTensor (hash table) and every kernel map are built inside the timed region. Per repeat
the models run one after the other (MinkUNet, SPVCNN on the voxel sites as SPVNAS feeds it, SPVCNN
on the raw points), so a change in machine load hits all of them alike; medians are reported, and
the overhead is the median of the per-repeat ratios SPVCNN / MinkUNet - 1, of wall time and of
process CPU time (all threads; idle threads sleep, so on a loaded machine it tracks the work done).

A separate instrumented run of each SPVCNN input times the point branch alone: the point-voxel ops
(initial_voxelize, voxel_to_point, point_to_voxel, tables included) and the point MLPs
(point_transforms).

Scans: SemanticKITTI sequence 00 from ../shared/data (skipped when absent) and the seeded synthetic
scan, voxelized at 0.05 m with features x, y, z, remission (mean per voxel); the raw points enter
SPVCNN in voxel units (x, y, z / 0.05) with the same four features.

Writes JSON lines to benchmarks/results/bench_spvcnn.jsonl and prints a markdown table.
"""

import os

# Idle OpenMP threads sleep instead of spinning: on a shared machine spinning threads take the
# cores from the other runs (set before torch starts, as in bench_conv.py and bench_minkunet.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch
from bench_minkunet import load_scans, markdown_row, voxelize
from common import machine

import pointengine as pe
from pointengine.models import SPVCNN, MinkUNet
from pointengine.models import spvcnn as spvcnn_module
from pointengine.testing import randomize_batchnorm

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "bench_spvcnn.jsonl"
POINT_OPS = ("initial_voxelize", "voxel_to_point", "point_to_voxel")


def point_input(points: torch.Tensor, voxel_size: float) -> pe.PointTensor:
    """Points [N, 4] (x, y, z, remission) as a PointTensor in voxel units, features x, y, z, remission."""
    coords = torch.cat([torch.zeros(len(points), 1), points[:, :3] / voxel_size], 1)
    return pe.PointTensor(points[:, :4].contiguous(), coords)


class PointBranchTimer:
    """Seconds spent in the point-voxel ops and in the point MLPs during the forward passes it wraps."""

    def __init__(self, model: SPVCNN):
        self.model, self.seconds = model, defaultdict(float)

    def _timed(self, name, function):
        def run(*args, **kwargs):
            start = time.perf_counter()
            out = function(*args, **kwargs)
            self.seconds[name] += time.perf_counter() - start
            return out

        return run

    def __enter__(self):
        self.originals = {name: getattr(spvcnn_module, name) for name in POINT_OPS}
        for name, function in self.originals.items():
            setattr(spvcnn_module, name, self._timed(name, function))
        self.handles = []
        for mlp in self.model.point_transforms:
            self.handles.append(
                mlp.register_forward_pre_hook(lambda m, i: self.seconds.__setitem__("start", time.perf_counter()))
            )
            self.handles.append(mlp.register_forward_hook(lambda m, i, o: self._add_mlp()))
        return self

    def _add_mlp(self):
        self.seconds["point_mlp"] += time.perf_counter() - self.seconds["start"]

    def __exit__(self, *exc):
        for name, function in self.originals.items():
            setattr(spvcnn_module, name, function)
        for handle in self.handles:
            handle.remove()
        self.seconds.pop("start", None)


def point_branch(model: SPVCNN, make_input, repeats: int) -> dict:
    """Median seconds per part of the point branch over `repeats` instrumented forward passes."""
    runs = defaultdict(list)
    for _ in range(repeats):
        with PointBranchTimer(model) as timer, torch.no_grad():
            model(make_input())
        for name, seconds in timer.seconds.items():
            runs[name].append(seconds)
        runs["total"].append(sum(timer.seconds.values()))
    return {f"{name}_s": statistics.median(values) for name, values in runs.items()}


def bench_scan(name, points, cr, args) -> list[dict]:
    torch.manual_seed(0)
    mink = randomize_batchnorm(MinkUNet(cr=cr).eval(), seed=1)
    spv = randomize_batchnorm(SPVCNN(cr=cr).eval(), seed=1)
    feats, coords = voxelize(points, args.voxel_size)
    variants = {
        "minkunet": (mink, lambda: pe.SparseTensor(feats, coords)),
        "spvcnn (sites)": (spv, lambda: pe.SparseTensor(feats, coords)),
        "spvcnn (points)": (spv, lambda: point_input(points, args.voxel_size)),
    }
    times, cpu_times = defaultdict(list), defaultdict(list)
    with torch.no_grad():
        for repeat in range(args.repeats + 1):  # the first round warms up
            for variant, (model, make_input) in variants.items():
                start, cpu_start = time.perf_counter(), time.process_time()
                model(make_input())
                if repeat:
                    times[variant].append(time.perf_counter() - start)
                    cpu_times[variant].append(time.process_time() - cpu_start)
    common = {
        "bench": "spvcnn",
        "machine": machine(),
        "scan": name,
        "cr": cr,
        "points": len(points),
        "voxels": len(coords),
        "threads": args.threads,
    }
    records = []
    for variant, (model, make_input) in variants.items():
        record = {
            **common,
            "model": variant,
            "median_s": statistics.median(times[variant]),
            "runs_s": times[variant],
            "median_cpu_s": statistics.median(cpu_times[variant]),
            "cpu_runs_s": cpu_times[variant],
        }
        if variant != "minkunet":
            ratios = [t / m for t, m in zip(times[variant], times["minkunet"])]
            cpu_ratios = [t / m for t, m in zip(cpu_times[variant], cpu_times["minkunet"])]
            record["overhead_vs_minkunet"] = statistics.median(ratios) - 1
            record["cpu_overhead_vs_minkunet"] = statistics.median(cpu_ratios) - 1
            record.update(point_branch(model, make_input, args.repeats))
            record["point_branch_vs_minkunet"] = record["total_s"] / statistics.median(times["minkunet"])
        records.append(record)
    return records


def table(records: list[dict]) -> str:
    head = [
        "scan",
        "points",
        "voxels",
        "cr",
        "model",
        "median s",
        "CPU s",
        "vs MinkUNet (wall, CPU)",
        "point branch s",
        "point-voxel ops s",
        "point MLPs s",
        "point branch / MinkUNet",
    ]
    lines = [markdown_row(*head), markdown_row(*["---"] * len(head))]
    for r in records:
        extra = [""] * 5
        if "total_s" in r:
            ops = sum(r.get(f"{name}_s", 0.0) for name in POINT_OPS)
            overhead = f"{100 * r['overhead_vs_minkunet']:+.1f} %, {100 * r['cpu_overhead_vs_minkunet']:+.1f} %"
            extra = [
                overhead,
                f"{r['total_s']:.3f}",
                f"{ops:.3f}",
                f"{r['point_mlp_s']:.3f}",
                f"{100 * r['point_branch_vs_minkunet']:.1f} %",
            ]
        cells = (
            r["scan"],
            r["points"],
            r["voxels"],
            r["cr"],
            r["model"],
            f"{r['median_s']:.3f}",
            f"{r['median_cpu_s']:.3f}",
        )
        lines.append(markdown_row(*cells, *extra))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per scan, after one warm-up round")
    parser.add_argument("--scans", type=int, default=1, help="how many SemanticKITTI scans of sequence 00")
    parser.add_argument("--cr", type=float, nargs="+", default=[0.5, 1.0])
    parser.add_argument("--voxel-size", type=float, default=0.05)
    parser.add_argument("--no-synthetic", action="store_true", help="real scans only")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    scans = load_scans(args.scans)
    if args.no_synthetic:
        scans = [scan for scan in scans if not scan[0].startswith("synthetic")]
    print(f"machine: {machine()}, load average before: {os.getloadavg()}")
    records = []
    for cr in args.cr:
        for name, points in scans:
            for record in bench_scan(name, points, cr, args):
                print(json.dumps({k: v for k, v in record.items() if k != "machine"}), flush=True)
                records.append(record)
    load_after = os.getloadavg()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as f:
        for r in records:
            f.write(json.dumps({**r, "load_after": load_after}) + "\n")
    print(f"\nmachine: {machine()}, load average after: {load_after}\n")
    print(table(records))


if __name__ == "__main__":
    main()
