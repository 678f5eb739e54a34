"""The convolution's weight gradient on real scan layers: the C++ conv_weight_grad op against the
per-offset gather + matmul formula it replaced (pointengine.testing.gather_matmul_weight_grad), and
against the forward conv_fused of the same layer; conv_weight_grad_pairs on the pair lists built
beforehand, as the backward calls it, and the same with each chunk of rows copied before its products
(forced by padding feats with rows no pair reads: how the kernel read submanifold maps before it read
their rows in place); all timed round-robin in the same run (medians), with the largest relative
difference between the op and the formula.

Layers as in bench_conv.py (3x3x3 submanifold and a 2x2x2 stride-2 downsample) on SemanticKITTI
00/000000 voxelized at 0.05 m, else the synthetic scan. Writes JSON lines to
benchmarks/results/bench_weight_grad.jsonl and prints a markdown table.

    python benchmarks/bench_weight_grad.py --threads 2 --repeats 5
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as bench_conv.py: idle threads sleep

import argparse
import time

import torch
from common import KITTI_SCANS, append_results, machine, round_robin

from pointengine import _ops
from pointengine.coordinate_map import CoordinateMap
from pointengine.datasets import generate_scan, read_points
from pointengine.functional import kmap as km
from pointengine.functional import voxelize_points
from pointengine.testing import gather_matmul_weight_grad, relative_error

LAYERS = (("subm3 16->32", 3, 1, 16, 32), ("subm3 32->32", 3, 1, 32, 32), ("subm3 48->48", 3, 1, 48, 48), ("subm3 64->64", 3, 1, 64, 64),
          ("subm3 128->128", 3, 1, 128, 128), ("down2 32->64", 2, 2, 32, 64))


def scan_points() -> tuple[str, torch.Tensor]:
    path = KITTI_SCANS / "000000.bin"
    return ("kitti/00/000000", read_points(path)) if path.exists() else ("synthetic/seed0", generate_scan(seed=0).points)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scan, points = scan_points()
    cmap = CoordinateMap(voxelize_points(points, 0.05).coords)
    g = torch.Generator().manual_seed(0)
    records = []
    for name, kernel_size, stride, c_in, c_out in LAYERS:
        kmap = km.submanifold_map(cmap, kernel_size) if stride == 1 else km.strided_map(cmap, kernel_size, stride)
        feats = torch.randn(len(cmap), c_in, generator=g)
        grad_out = torch.randn(kmap.nbr.shape[0], c_out, generator=g)
        weight = torch.randn(kmap.nbr.shape[1], c_in, c_out, generator=g)
        pairs = _ops.kernel_pairs(kmap.nbr)
        # The same pairs over feats with 9x as many rows after its own, which no pair reads: the kernel
        # then copies each chunk of rows before its products, as it did before it read them in place
        # (conv_weight_grad_cpu.h, weight_grad_reads_in_place).
        padded = torch.cat([feats, feats.new_zeros(9 * len(cmap), c_in)])
        runs = {"gather_matmul": lambda: gather_matmul_weight_grad(feats, grad_out, kmap.nbr),
                "conv_weight_grad": lambda: _ops.conv_weight_grad(feats, grad_out, kmap.nbr),
                "pairs": lambda: _ops.conv_weight_grad_pairs(feats, grad_out, *pairs),
                "pairs_copied": lambda: _ops.conv_weight_grad_pairs(padded, grad_out, *pairs),
                "forward": lambda: _ops.conv_fused(feats, weight, kmap.nbr)}
        seconds = round_robin(runs, args.repeats, warmup=1)
        difference = relative_error(runs["conv_weight_grad"]().double(), runs["gather_matmul"]().double())
        records.append({"scan": scan, "layer": name, "sites": len(cmap), "pairs": int((kmap.nbr >= 0).sum()),
                        "threads": args.threads, "gather_matmul_ms": seconds["gather_matmul"] * 1e3,
                        "conv_weight_grad_ms": seconds["conv_weight_grad"] * 1e3,
                        "speedup": seconds["gather_matmul"] / seconds["conv_weight_grad"],
                        "pairs_ms": seconds["pairs"] * 1e3, "pairs_copied_ms": seconds["pairs_copied"] * 1e3,
                        "copied_over_pairs": seconds["pairs_copied"] / seconds["pairs"],
                        "forward_ms": seconds["forward"] * 1e3,
                        "pairs_over_forward": seconds["pairs"] / seconds["forward"],
                        "relative_difference": difference, "machine": machine(),
                        "time": time.strftime("%Y-%m-%d %H:%M:%S")})
    print(f"{machine()}, {args.threads} threads; {scan}, {len(cmap):,} voxels, median of {args.repeats}")
    print("| layer | pairs | gather + matmul | conv_weight_grad | speedup | from pair lists | rows copied first | "
          "copied / as run | forward | pair lists / forward | relative difference |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in records:
        print(f"| {r['layer']} | {r['pairs']:,} | {r['gather_matmul_ms']:.1f} ms | {r['conv_weight_grad_ms']:.1f} ms | "
              f"{r['speedup']:.1f}x | {r['pairs_ms']:.1f} ms | {r['pairs_copied_ms']:.1f} ms | "
              f"{r['copied_over_pairs']:.2f}x | {r['forward_ms']:.1f} ms | {r['pairs_over_forward']:.2f}x | "
              f"{r['relative_difference']:.1e} |")
    append_results("bench_weight_grad", records)


if __name__ == "__main__":
    main()
