"""conv_int8 (7-bit activations x int8 weights, exact int32 sums) against the float32 fused convolution,
both with bias + ReLU, on one 3x3x3 submanifold layer of the first real SemanticKITTI scan (0.05 m
voxels; `--synthetic` for the seeded synthetic scan), at 2 threads and at 1.

Timed, with the kernel map and its tile lists (KernelMap.tile_lists, which every submanifold layer of a
model reads) built beforehand, each variant once per round (common.round_robin), medians:
- fp32 on a named path: `_C.conv_fused_epilogue_on(feats, weight, nbr, bias, None, True, path)`;
- int8 on a named path, float32 output and requantized uint8 output: `_C.conv_int8_on(...)`; on AVX2
  also with 7-bit weights ("w7", in [-63, 63]: quantize's weight_bits=7), which its kernel sums faster;
- quantize_u7 of the float32 input (the cost of entering int8 from float).
Ratios fp32 / int8: AVX-512 fp32 against (a) AMX int8 and (b) AVX-512 VNNI int8, (c) AVX2 against AVX2 (8-bit and
7-bit weights), each where this CPU has the paths. Goals (the issue): >= 3x from 64 -> 64 up where VNNI exists,
>= 2x on AVX2. JSON lines go to benchmarks/results/bench_int8.jsonl; a markdown table is printed.
"""

import argparse
import os
import sys

import torch
from common import KITTI_SCANS, append_results, machine, round_robin

from pointengine import SparseTensor, _C, _ops
from pointengine.datasets import generate_scan, read_points
from pointengine.functional import kmap as km
from pointengine.functional import voxelize_points

CHANNELS = (32, 64, 96, 128, 256)
# (fp32 path, int8 path) of each comparison.
PAIRS = {"amx": ("avx512", "amx"), "vnni": ("avx512", "avx512_vnni"), "avx2": ("avx2", "avx2"),
         "avx2 w7": ("avx2", "avx2 w7")}


def kernel_map(synthetic: bool):
    scans = sorted(KITTI_SCANS.glob("*.bin"))
    if not scans and not synthetic:
        print(f"no SemanticKITTI scans under {KITTI_SCANS}: skipped (--synthetic times the synthetic scan)")
        sys.exit(0)
    name, points = ("synthetic/seed0", generate_scan(seed=0).points) if synthetic else (
        f"kitti/00/{scans[0].stem}", read_points(scans[0]))
    voxels = voxelize_points(points, 0.05)
    return name, km.submanifold_map(SparseTensor(voxels.feats, voxels.coords).coordinate_map, 3)


def time_layer(kmap: km.KernelMap, channels: int, repeats: int) -> dict:
    """Median ms of every variant this CPU runs at C_in = C_out = channels."""
    nbr, lists = kmap.nbr, kmap.tile_lists
    gen = torch.Generator().manual_seed(channels)
    n = nbr.shape[0]
    feats = torch.randn(n, channels, generator=gen)
    weight = torch.randn(27, channels, channels, generator=gen) / (27 * channels) ** 0.5
    bias = torch.randn(channels, generator=gen)
    q = _ops.quantize_u7(feats, 0.05, 64)
    weight_q = torch.randint(-127, 128, (27, channels, channels), generator=gen).to(torch.int8)
    weight_scale = torch.rand(channels, generator=gen) * 1e-3 + 1e-4
    int8_args = (q, 0.05, 64, weight_q, weight_scale, nbr, bias, None, True)
    # 7-bit weights (quantize(weight_bits=7)): the AVX2 kernel adds two groups' products in int16.
    narrow_args = (q, 0.05, 64, weight_q.div(2, rounding_mode="trunc"), weight_scale, nbr, bias, None, True)
    runs = {}
    for path in _C.cpu_paths():
        if path != "portable":
            runs[f"fp32 {path}"] = lambda p=path: _C.conv_fused_epilogue_on(feats, weight, nbr, bias, None, True, p,
                                                                            *lists)
    for path in _C.int8_paths():
        if path != "portable":
            runs[f"int8 {path}"] = lambda p=path: _C.conv_int8_on(*int8_args, None, 0, p, *lists)
            runs[f"int8->u8 {path}"] = lambda p=path: _C.conv_int8_on(*int8_args, 0.05, 10, p, *lists)
        if path == "avx2":
            runs["int8 avx2 w7"] = lambda: _C.conv_int8_on(*narrow_args, None, 0, "avx2", *lists)
            runs["int8->u8 avx2 w7"] = lambda: _C.conv_int8_on(*narrow_args, 0.05, 10, "avx2", *lists)
    runs["quantize_u7"] = lambda: _ops.quantize_u7(feats, 0.05, 64)
    return {name: t * 1e3 for name, t in round_robin(runs, repeats, warmup=1).items()}


def ratios(ms: dict) -> dict:
    out = {}
    for name, (fp32, int8) in PAIRS.items():
        for kind in ("int8", "int8->u8"):
            if f"fp32 {fp32}" in ms and f"{kind} {int8}" in ms:
                out[f"{name} {kind}"] = ms[f"fp32 {fp32}"] / ms[f"{kind} {int8}"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--channels", type=int, nargs="+", default=list(CHANNELS))
    parser.add_argument("--synthetic", action="store_true", help="the synthetic scan instead of the real one")
    args = parser.parse_args()
    scan, kmap = kernel_map(args.synthetic)
    nbr = kmap.nbr
    pairs = int((nbr >= 0).sum())
    load_before = os.getloadavg()[0]
    records = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for channels in args.channels:
            ms = time_layer(kmap, channels, args.repeats)
            record = {"bench": "int8", "scan": scan, "sites": nbr.shape[0], "pairs": pairs, "c_in": channels,
                      "c_out": channels, "threads": threads, "ms": ms, "fp32_over_int8": ratios(ms),
                      "int8_default_path": _C.int8_paths()[-1], "load_before": load_before,
                      "load_after": os.getloadavg()[0], "machine": machine()}
            records.append(record)
            print(record, flush=True)
    append_results("bench_int8", records)
    columns = [name for name in records[0]["ms"] if name != "quantize_u7"]
    ratio_columns = list(records[0]["fp32_over_int8"])
    print(f"\n## bench_int8 results\n\n{machine()}, {scan}, {nbr.shape[0]} sites, {pairs} pairs, "
          f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after\n")
    print("| threads | C | " + " | ".join(f"{c} ms" for c in columns) + " | quantize_u7 ms | "
          + " | ".join(f"fp32/{c}" for c in ratio_columns) + " |")
    print("|---|---|" + "---|" * (len(columns) + 1 + len(ratio_columns)))
    for r in records:
        cells = " | ".join(f"{r['ms'][c]:.1f}" for c in columns)
        ratio_cells = " | ".join(f"{r['fp32_over_int8'][c]:.2f}x" for c in ratio_columns)
        print(f"| {r['threads']} | {r['c_in']} | {cells} | {r['ms']['quantize_u7']:.2f} | {ratio_cells} |")


if __name__ == "__main__":
    main()
