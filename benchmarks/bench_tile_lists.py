"""The fused convolution reading a kernel map's tile lists (KernelMap.tile_lists, built once per map by
tile_pairs and read by every submanifold layer of its level) against compacting the neighbour table
in every layer, as it did before; and what building the lists costs, in layers' savings.

On the 3x3x3 submanifold map of the first real SemanticKITTI scan (the seeded synthetic scan when
../shared/data is absent) at 0.05 m (MinkUNet's voxels) and 0.1 m (the demo model's), for a range of
channel counts: `torch.ops.pointengine.conv_fused_epilogue` with bias and ReLU (the layer of an
optimized model) on the best path, with and without the lists, alternating (common.round_robin),
medians; `tile_pairs` timed the same way. JSON lines go to benchmarks/results/bench_tile_lists.jsonl;
a markdown table is printed.

    python benchmarks/bench_tile_lists.py --threads 2 --repeats 9
"""

import argparse

import torch
from common import append_results, machine, named_scans, round_robin

from pointengine import SparseTensor, _C, _ops
from pointengine.functional import kmap as km
from pointengine.functional import voxelize_points

CHANNELS = (4, 8, 16, 32, 48, 64, 128)
VOXEL_SIZES = (0.05, 0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--channels", type=int, nargs="+", default=list(CHANNELS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    [(scan, points)] = named_scans(1)
    conv = torch.ops.pointengine.conv_fused_epilogue
    records = []
    for voxel_size in VOXEL_SIZES:
        voxels = voxelize_points(points, voxel_size)
        kmap = km.submanifold_map(SparseTensor(voxels.feats, voxels.coords).coordinate_map, 3)
        nbr, lists = kmap.nbr, kmap.tile_lists
        build_ms = round_robin({"tile_pairs": lambda: _ops.tile_pairs(nbr, kmap.n_in)}, args.repeats, warmup=1)
        gen = torch.Generator().manual_seed(0)
        for channels in args.channels:
            feats = torch.randn(nbr.shape[0], channels, generator=gen)
            weight = torch.randn(27, channels, channels, generator=gen) / (27 * channels) ** 0.5
            bias = torch.randn(channels, generator=gen)
            times = round_robin({
                "table": lambda: conv(feats, weight, nbr, bias, None, True),
                "lists": lambda: conv(feats, weight, nbr, bias, None, True, *lists),
            }, args.repeats, warmup=1)
            table_ms, lists_ms = times["table"] * 1e3, times["lists"] * 1e3
            saved = table_ms - lists_ms
            records.append({
                "bench": "tile_lists", "scan": scan, "voxel_size": voxel_size, "sites": nbr.shape[0],
                "pairs": int(lists[0].shape[1]), "channels": channels, "path": _C.conv_fused_isa(),
                "table_ms": table_ms, "lists_ms": lists_ms, "table_over_lists": table_ms / lists_ms,
                "tile_pairs_ms": build_ms["tile_pairs"] * 1e3,
                "layers_to_repay": build_ms["tile_pairs"] * 1e3 / saved if saved > 0 else None,
                "threads": args.threads, "repeats": args.repeats, "machine": machine(),
            })
            print(records[-1], flush=True)
    append_results("bench_tile_lists", records)
    print(f"\n## bench_tile_lists results\n\n{machine()}, {scan}, {args.threads} threads, medians of {args.repeats}\n")
    print("| voxel | sites | pairs | C -> C | table ms | lists ms | table / lists | tile_pairs ms | layers to repay it |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in records:
        repay = f"{r['layers_to_repay']:.1f}" if r["layers_to_repay"] is not None else "never"
        print(f"| {r['voxel_size']} m | {r['sites']:,} | {r['pairs']:,} | {r['channels']} -> {r['channels']} | "
              f"{r['table_ms']:.2f} | {r['lists_ms']:.2f} | {r['table_over_lists']:.2f}x | {r['tile_pairs_ms']:.2f} | "
              f"{repay} |")


if __name__ == "__main__":
    main()
