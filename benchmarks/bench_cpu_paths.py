"""Each float32 path that this CPU runs (portable, AVX2 + FMA, AVX-512) of the fused convolution and of
its weight gradient, on one 3x3x3 submanifold layer of the first real SemanticKITTI scan (0.05 m voxels; the synthetic scan
when ../shared/data is absent), for a range of channel counts (issue 7: kernels chosen at run time).

Timed: `_C.conv_fused_on(feats, weight, nbr, path)` and `_C.conv_weight_grad_on(feats, grad_out, nbr,
path)` with the kernel map built beforehand; the paths alternate run by run (common.round_robin).
GFLOP/s = 2 x pairs x C_in x C_out / time. The AVX2 and AVX-512 outputs are compared bit for bit in
the same run. JSON lines go to
benchmarks/results/bench_cpu_paths.jsonl; a markdown table is printed.
"""

import argparse
import itertools

import torch
from common import KITTI_SCANS, append_results, machine, round_robin

from pointengine import SparseTensor, _C
from pointengine.datasets import generate_scan, read_points
from pointengine.functional import kmap as km
from pointengine.functional import voxelize_points

CHANNELS = ((8, 8), (16, 16), (32, 32), (64, 64), (128, 128), (32, 64), (64, 96))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--portable", action="store_true", help="time the portable loop too (slow)")
    args = parser.parse_args()
    paths = [p for p in _C.cpu_paths() if args.portable or p != "portable"]
    scan = sorted(KITTI_SCANS.glob("*.bin"))
    points = read_points(scan[0]) if scan else generate_scan(seed=0).points
    voxels = voxelize_points(points, 0.05)
    nbr = km.submanifold_map(SparseTensor(voxels.feats, voxels.coords).coordinate_map, 3).nbr
    pairs = int((nbr >= 0).sum())
    gen = torch.Generator().manual_seed(0)
    records = []
    for (c_in, c_out), op in itertools.product(CHANNELS, ("conv_fused", "conv_weight_grad")):
        feats = torch.randn(nbr.shape[0], c_in, generator=gen)
        if op == "conv_fused":
            weight = torch.randn(27, c_in, c_out, generator=gen)
            runs = {p: (lambda p=p: _C.conv_fused_on(feats, weight, nbr, p)) for p in paths}
        else:
            grad_out = torch.randn(nbr.shape[0], c_out, generator=gen)
            runs = {p: (lambda p=p: _C.conv_weight_grad_on(feats, grad_out, nbr, p)) for p in paths}
        times = round_robin(runs, args.repeats, warmup=1)
        same = None
        if {"avx2", "avx512"} <= set(paths):
            same = torch.equal(runs["avx2"](), runs["avx512"]())
        record = {"bench": "cpu_paths", "op": op, "c_in": c_in, "c_out": c_out, "sites": nbr.shape[0], "pairs": pairs,
                  "ms": {p: t * 1e3 for p, t in times.items()},
                  "gflops": {p: 2 * pairs * c_in * c_out / t / 1e9 for p, t in times.items()},
                  "op_path_default": _C.conv_fused_isa(), "avx2_equals_avx512": same,
                  "threads": torch.get_num_threads(), "machine": machine()}
        records.append(record)
        print(record)
    append_results("bench_cpu_paths", records)
    print(f"\n## bench_cpu_paths results\n\n{machine()}, {torch.get_num_threads()} threads, {nbr.shape[0]} sites, {pairs} pairs\n")
    print("| op | C_in -> C_out | " + " | ".join(f"{p} ms (GFLOP/s)" for p in paths) + " | AVX-512 / AVX2 | bitwise equal |")
    print("|---|---|" + "---|" * (len(paths) + 2))
    for r in records:
        cells = " | ".join(f"{r['ms'][p]:.1f} ({r['gflops'][p]:.0f})" for p in paths)
        ratio = f"{r['ms']['avx2'] / r['ms']['avx512']:.2f}x" if "avx512" in r["ms"] and "avx2" in r["ms"] else "-"
        print(f"| {r['op']} | {r['c_in']} -> {r['c_out']} | {cells} | {ratio} | {r['avx2_equals_avx512']} |")


if __name__ == "__main__":
    main()
