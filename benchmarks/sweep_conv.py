"""Kernel sweep: one coordinate set through sparse convolutions of every channel width, kernel size,
stride and dataflow, with GFLOP/s of useful work next to torch.mm of the same GEMM shape; a table and
a heat map.

Coordinates: a SemanticKITTI scan (default 00/000000 of ../shared/data), else the seeded synthetic
scan, voxelized at --voxel-size (0.05 m). Per (kernel, stride): the kernel map is built from bare
coordinates (hash table + neighbour table; for stride 2 the output sites too), median of --repeats
fresh builds, and its pair lists (gather_scatter's form) timed apart. Per channel width C (C_in = C_out
= C): each dataflow on that map, round-robin after --warmup rounds, medians; GFLOP/s = 2 x pairs x C x
C / time. A 1x1x1 stride-1 conv is run by conv3d as one dense product (`linear`, no map): that row
times `linear` too. torch.mm multiplies [pairs, C] @ [C, C], the GEMM every dataflow computes in
pieces (pointengine.peaks).

The default run is short (three widths, three repeats: about three minutes on 2 cores); --full sweeps
16, 32, 64, 128, 256 channels with five repeats (gather_scatter alone takes 30 s a call at k5 s2 C256).
Other processes skew every number: the load average before and after goes into each record.

    python benchmarks/sweep_conv.py                       # 000000, C 16 64 128, k 1 2 3 5, s 1 2
    python benchmarks/sweep_conv.py --full --png benchmarks/results/sweep_conv_full.png

JSON lines go to benchmarks/results/sweep_conv.jsonl, the heat map to --png.
"""

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from common import KITTI_SCANS, RESULTS, append_results, machine, round_robin

from pointengine.coordinate_map import CoordinateMap
from pointengine.datasets import generate_scan, read_points
from pointengine.functional import conv as conv_ops
from pointengine.functional import kmap as km
from pointengine.functional import linear, voxelize_points
from pointengine.peaks import gemm_flops_per_second

QUICK = {"channels": (16, 64, 128), "repeats": 3}
FULL = {"channels": (16, 32, 64, 128, 256), "repeats": 5}


def load_coords(scan: str | None, voxel_size: float) -> tuple[str, torch.Tensor]:
    path = Path(scan) if scan else KITTI_SCANS / "000000.bin"
    if path.is_file():
        return f"kitti/{path.parent.parent.name}/{path.stem}", voxelize_points(read_points(path), voxel_size).coords
    print(f"no scan at {path}: the synthetic scan (seed 0) instead")
    return "synthetic/seed0", voxelize_points(generate_scan(seed=0).points, voxel_size).coords


def build_map(coords: torch.Tensor, kernel: int, stride: int) -> km.KernelMap:
    cmap = CoordinateMap(coords, validate=False)
    return km.submanifold_map(cmap, kernel) if stride == 1 else km.strided_map(cmap, kernel, stride)


def map_seconds(coords: torch.Tensor, kernel: int, stride: int, repeats: int) -> tuple[float, float]:
    """Median seconds of (hash + neighbour table, pair lists), each from bare coordinates."""
    tables, pairs = [], []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        kmap = build_map(coords, kernel, stride)
        mapped = time.perf_counter()
        kmap.pairs  # noqa: B018  (cached property: the pair lists gather_scatter reads)
        tables.append(mapped - start)
        pairs.append(time.perf_counter() - mapped)
    return statistics.median(tables[1:]), statistics.median(pairs[1:])


def sweep_map(scan: str, coords: torch.Tensor, kernel: int, stride: int, args) -> list[dict]:
    kmap = build_map(coords, kernel, stride)
    table_s, pairs_s = map_seconds(coords, kernel, stride, args.repeats)
    n_pairs = kmap.n_pairs
    records = []
    for channels in args.channels:
        gen = torch.Generator().manual_seed(channels)
        feats = torch.randn(len(coords), channels, generator=gen)
        weight = torch.randn(kmap.nbr.shape[1], channels, channels, generator=gen) / channels**0.5
        runs = {d: lambda d=d: conv_ops.apply_kernel_map(feats, weight, kmap, d) for d in args.dataflows}
        if kernel == 1 and stride == 1:
            runs["linear"] = lambda: linear(feats, weight[0].t())
        seconds = round_robin(runs, args.repeats, args.warmup)
        flop = 2 * n_pairs * channels * channels
        mm = gemm_flops_per_second(n_pairs, channels, channels, torch.float32, torch.device("cpu"), args.repeats)
        records.append({
            "bench": "sweep_conv", "scan": scan, "kernel": kernel, "stride": stride, "channels": channels,
            "sites_in": len(coords), "sites_out": kmap.nbr.shape[0], "pairs": n_pairs, "threads": args.threads,
            "map_ms": table_s * 1e3, "pairs_ms": pairs_s * 1e3,
            **{f"{name}_ms": s * 1e3 for name, s in seconds.items()},
            **{f"{name}_gflops": flop / s / 1e9 for name, s in seconds.items()},
            "mm_gflops": mm / 1e9,
        })
        best = max(args.dataflows, key=lambda d: records[-1][f"{d}_gflops"])
        print(f"  k{kernel} s{stride} C{channels}: pairs {n_pairs}, "
              + ", ".join(f"{name} {s * 1e3:.1f} ms" for name, s in seconds.items()) + f"; best {best}", flush=True)
    return records


def table(records: list[dict], dataflows: list[str]) -> str:
    head = ["kernel", "stride", "C", "sites out", "pairs", "map ms", "pairs ms"]
    head += [f"{d} ms" for d in dataflows] + [f"{d} GFLOP/s" for d in dataflows]
    head += ["linear GFLOP/s", "torch.mm GFLOP/s", "best"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        best = max(dataflows, key=lambda d: r[f"{d}_gflops"])
        cells = [r["kernel"], r["stride"], r["channels"], r["sites_out"], r["pairs"]]
        cells += [f"{r['map_ms']:.1f}", f"{r['pairs_ms']:.1f}"]
        cells += [f"{r[f'{d}_ms']:.1f}" for d in dataflows] + [f"{r[f'{d}_gflops']:.1f}" for d in dataflows]
        cells += [f"{r['linear_gflops']:.1f}" if "linear_gflops" in r else "", f"{r['mm_gflops']:.1f}", best]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines)


def heat_map(records: list[dict], dataflows: list[str], path: Path, title: str) -> Path:
    """One panel per dataflow and one for torch.mm: GFLOP/s by (kernel, stride) row and channel column."""
    from matplotlib.figure import Figure

    rows = sorted({(r["kernel"], r["stride"]) for r in records})
    columns = sorted({r["channels"] for r in records})
    panels = [*dataflows, "mm"]
    grids = {p: np.full((len(rows), len(columns)), np.nan) for p in panels}
    for r in records:
        for p in panels:
            grids[p][rows.index((r["kernel"], r["stride"])), columns.index(r["channels"])] = r[f"{p}_gflops"]
    top = max(np.nanmax(g) for g in grids.values())
    figure = Figure(figsize=(3.2 * len(panels) + 1, 0.45 * len(rows) + 1.8), layout="constrained")
    axes = figure.subplots(1, len(panels), sharey=True)
    for ax, panel in zip(axes, panels):
        image = ax.imshow(grids[panel], cmap="viridis", vmin=0, vmax=top, aspect="auto")
        for (i, j), value in np.ndenumerate(grids[panel]):
            shade = "white" if value < top / 2 else "black"
            ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=7, color=shade)
        ax.set_xticks(range(len(columns)), columns)
        ax.set_xlabel("C_in = C_out")
        ax.set_title("torch.mm (same GEMM)" if panel == "mm" else panel, fontsize=9)
    axes[0].set_yticks(range(len(rows)), [f"k{k} s{s}" for k, s in rows])
    figure.colorbar(image, ax=list(axes), label="GFLOP/s of useful work")
    figure.suptitle(title, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scan", default=None, help="a .bin scan (default: SemanticKITTI 00/000000, else synthetic)")
    parser.add_argument("--voxel-size", type=float, default=0.05)
    parser.add_argument("--channels", type=int, nargs="+", default=None, help=f"default {QUICK['channels']}")
    parser.add_argument("--kernels", type=int, nargs="+", default=[1, 2, 3, 5])
    parser.add_argument("--strides", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--dataflows", nargs="+", default=list(conv_ops.distinct_dataflows(torch.device("cpu"))),
                        choices=conv_ops.DATAFLOWS)
    parser.add_argument("--repeats", type=int, default=None, help=f"default {QUICK['repeats']}")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--full", action="store_true", help=f"channels {FULL['channels']}, {FULL['repeats']} repeats")
    parser.add_argument("--png", type=Path, default=RESULTS / "sweep_conv.png")
    args = parser.parse_args()
    preset = FULL if args.full else QUICK
    args.channels = args.channels or list(preset["channels"])
    args.repeats = args.repeats or preset["repeats"]
    torch.set_num_threads(args.threads)
    scan, coords = load_coords(args.scan, args.voxel_size)
    print(f"machine: {machine()}; {args.threads} threads; {scan}: {len(coords)} voxels at {args.voxel_size} m; "
          f"median of {args.repeats} after {args.warmup} warm-up")
    load_before, records = os.getloadavg()[0], []
    for kernel in args.kernels:
        for stride in args.strides:
            records += sweep_map(scan, coords, kernel, stride, args)
    load = {"load_before": load_before, "load_after": os.getloadavg()[0], "machine": machine()}
    append_results("sweep_conv", [{**r, **load} for r in records])
    print(table(records, args.dataflows))
    title = f"{scan}, {len(coords)} voxels, {args.threads} threads: {machine()}"
    print(f"heat map: {heat_map(records, args.dataflows, args.png, title)}")
    print(f"load average (1 min) before / after: {load['load_before']:.2f} / {load['load_after']:.2f}")


if __name__ == "__main__":
    main()
