"""The bfloat16 convolution (conv_bf16, on its AVX512_BF16 path and, where the CPU has AMX, its AMX path)
against the float32 one (conv_fused_epilogue, AVX-512 path), both with bias + ReLU, on one 3x3x3 submanifold layer of the first real SemanticKITTI scan
(0.05 m voxels), C -> C for a range of C, at 2 and 1 threads.

Timed, with the kernel map built beforehand: `_C.conv_fused_epilogue_on(..., "avx512")` on float32
feats and weight, `_C.conv_bf16_on(..., path)` on bfloat16 ones with a float32 and with a bfloat16 result, for each
vector path; all alternate run by run (common.round_robin). Ratio = float32 ms / bfloat16 ms
(> 1: bfloat16 faster). Also timed: converting the 64-channel float32 input to bfloat16 (`.to`), what
a float32 network pays per bfloat16 layer input. JSON lines go to benchmarks/results/bench_bf16.jsonl;
a markdown table is printed.
"""

import argparse
import sys

import torch
from common import KITTI_SCANS, append_results, machine, round_robin

from pointengine import SparseTensor, _C
from pointengine.datasets import read_points
from pointengine.functional import kmap as km
from pointengine.functional import voxelize_points

CHANNELS = (32, 64, 96, 128, 256)


def vector_paths() -> list[str]:
    return [path for path in _C.bf16_paths() if path != "portable"]


def time_layer(nbr: torch.Tensor, channels: int, repeats: int, gen: torch.Generator) -> dict:
    feats = torch.randn(nbr.shape[0], channels, generator=gen)
    weight = torch.randn(27, channels, channels, generator=gen) / channels**0.5
    bias = torch.randn(channels, generator=gen)
    feats16, weight16 = feats.bfloat16(), weight.bfloat16()
    runs = {"fp32": lambda: _C.conv_fused_epilogue_on(feats, weight, nbr, bias, None, True, "avx512")}
    for path in vector_paths():
        for out, bf16_out in (("f32", False), ("bf16", True)):
            runs[f"{path} {out}-out"] = lambda p=path, b=bf16_out: _C.conv_bf16_on(feats16, weight16, nbr, bias, None,
                                                                                   True, b, p)
    return {name: seconds * 1e3 for name, seconds in round_robin(runs, repeats, warmup=1).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    args = parser.parse_args()
    scans = sorted(KITTI_SCANS.glob("*.bin"))
    if not scans:
        sys.exit(f"bench_bf16: skipped, no real scan under {KITTI_SCANS} (../shared/data is absent)")
    missing = {"avx512_bf16"} - set(_C.bf16_paths()) | {"avx512"} - set(_C.cpu_paths())
    if missing:
        sys.exit(f"bench_bf16: skipped, this CPU has no {sorted(missing)} path")
    voxels = voxelize_points(read_points(scans[0]), 0.05)
    nbr = km.submanifold_map(SparseTensor(voxels.feats, voxels.coords).coordinate_map, 3).nbr
    pairs = int((nbr >= 0).sum())
    gen = torch.Generator().manual_seed(0)
    records = []
    threads_before = torch.get_num_threads()
    try:
        for threads in args.threads:
            torch.set_num_threads(threads)
            inputs = torch.randn(nbr.shape[0], 64, generator=gen)
            convert = {"to_bf16": lambda: inputs.to(torch.bfloat16)}
            convert_ms = round_robin(convert, args.repeats, warmup=1)["to_bf16"] * 1e3
            for channels in CHANNELS:
                ms = time_layer(nbr, channels, args.repeats, gen)
                record = {"bench": "bf16", "c_in": channels, "c_out": channels, "sites": nbr.shape[0], "pairs": pairs,
                          "threads": threads, "ms": ms,
                          "gflops": {name: 2 * pairs * channels**2 / t / 1e6 for name, t in ms.items()},
                          "fp32_over_bf16": {name: ms["fp32"] / t for name, t in ms.items() if name != "fp32"},
                          "to_bf16_64ch_ms": convert_ms, "machine": machine()}
                records.append(record)
                print(record)
    finally:
        torch.set_num_threads(threads_before)
    append_results("bench_bf16", records)
    print(f"\n## bench_bf16 results\n\n{machine()}, {nbr.shape[0]} sites, {pairs} pairs, 3x3x3 submanifold, "
          "bias + ReLU\n")
    bf16_names = [name for name in records[0]["ms"] if name != "fp32"]
    print("| threads | C -> C | fp32 avx512 ms (GFLOP/s) | " + " | ".join(f"{n} ms (GFLOP/s)" for n in bf16_names)
          + " | " + " | ".join(f"fp32 / {n}" for n in bf16_names) + " | 64-ch .to(bf16) ms |")
    print("|---|---|" + "---|" * (2 * len(bf16_names) + 2))
    for r in records:
        cells = " | ".join(f"{r['ms'][n]:.1f} ({r['gflops'][n]:.0f})" for n in ["fp32", *bf16_names])
        ratios = " | ".join(f"{r['fp32_over_bf16'][n]:.2f}x" for n in bf16_names)
        print(f"| {r['threads']} | {r['c_in']} -> {r['c_out']} | {cells} | {ratios} | {r['to_bf16_64ch_ms']:.2f} |")


if __name__ == "__main__":
    main()
