"""Long runs hold their memory: resident memory (RSS) while segmenting one scan many times through a
Segmenter, and while training for many steps, sampled every --every iterations.

The goal: after warm-up (the first 10% of the iterations) RSS stays within 15% of its value at the
end of warm-up. Writes JSON lines to benchmarks/results/bench_memory.jsonl and prints the curves.

    python benchmarks/bench_memory.py                      # 500 segmentations, 100 training steps
    python benchmarks/bench_memory.py --scans 50 --steps 20 --every 5
"""

import argparse
import os
import sys
import time
import warnings

import torch

from common import KITTI_SCANS, append_results, machine
from pointengine import Segmenter
from pointengine.datasets import LidarScan, generate_scan, load_scan
from pointengine.train.distributed import World
from pointengine.train.loop import train_step

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def scan_with_labels():
    """(name, points, labels): the first SemanticKITTI scan of sequence 00, else a synthetic one."""
    path = KITTI_SCANS / "000000.bin"
    if path.exists():
        scan = load_scan(path, path.parent.parent / "labels" / "000000.label")
        return "kitti/00/000000", scan.points, scan.labels
    scan = generate_scan(seed=0)
    return "synthetic/seed0", scan.points, scan.labels


def segment_curve(seg: Segmenter, points: torch.Tensor, iterations: int, every: int) -> list[tuple[int, float]]:
    curve = []
    for i in range(1, iterations + 1):
        seg(points)
        if i % every == 0 or i == 1:
            curve.append((i, rss_mb()))
            print(f"segment {i}: {curve[-1][1]:.0f} MB", file=sys.stderr, flush=True)
    return curve


def train_curve(seg: Segmenter, points: torch.Tensor, labels: torch.Tensor, steps: int, every: int):
    """SGD steps on one scan through `pointengine train`'s step (Segmenter's voxelization, per-point
    cross-entropy, the ignored class left out)."""
    model = seg.model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    scan = LidarScan(points, labels)
    curve = []
    for i in range(1, steps + 1):
        train_step(model, optimizer, seg.config, [scan], World(), "cpu")
        if i % every == 0 or i == 1:
            curve.append((i, rss_mb()))
            print(f"train {i}: {curve[-1][1]:.0f} MB", file=sys.stderr, flush=True)
    model.eval()
    return curve


def flatness(curve: list[tuple[int, float]], iterations: int) -> tuple[float, float, float]:
    """(RSS at the end of warm-up, the highest RSS after it, their ratio)."""
    warm = [rss for i, rss in curve if i <= max(1, iterations // 10)][-1]
    peak = max(rss for i, rss in curve if i >= iterations // 10)
    return warm, peak, peak / warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="demo", help="zoo config (default: demo)")
    parser.add_argument("--scans", type=int, default=500, help="segmentations of the same scan")
    parser.add_argument("--steps", type=int, default=100, help="training steps")
    parser.add_argument("--every", type=int, default=10, help="sample RSS every N iterations")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    name, points, labels = scan_with_labels()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # untrained demo weights: memory does not care
        seg = Segmenter(args.config)
    print(f"{machine()}, {args.threads} threads; {name} ({len(points):,} points) through {args.config}")
    records = []
    for job, curve, count in (
        ("segment", segment_curve(seg, points, args.scans, args.every), args.scans),
        ("train", train_curve(seg, points, labels, args.steps, args.every), args.steps),
    ):
        warm, peak, ratio = flatness(curve, count)
        print(f"\n{job}: RSS after warm-up {warm:.0f} MB, highest after {peak:.0f} MB ({100 * (ratio - 1):+.1f}%)")
        print("| iteration | RSS MB |\n|---|---|")
        print("\n".join(f"| {i} | {rss:.0f} |" for i, rss in curve))
        records.append({"job": job, "scan": name, "config": args.config, "iterations": count, "threads": args.threads,
                        "curve": curve, "warm_mb": warm, "peak_mb": peak, "ratio": ratio, "machine": machine(),
                        "time": time.strftime("%Y-%m-%d %H:%M:%S")})
    append_results("bench_memory", records)


if __name__ == "__main__":
    main()
