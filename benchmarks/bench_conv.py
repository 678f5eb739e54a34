"""Sparse convolution layers on lidar scans: kernel-map time, conv time per dataflow and GFLOP/s,
next to torch.mm of the same GEMM shape and spconv's CPU build, all measured in the same run.

Layers: 3x3x3 submanifold 16->32, 32->32, 64->64, 128->128 and a 2x2x2 stride-2 downsample 32->64.
GFLOP/s counts useful work only: 2 x pairs x C_in x C_out / time, pairs = kernel-map hits. torch.mm
multiplies a dense [pairs, C_in] @ [C_in, C_out]: the GEMM every dataflow computes in pieces.
Scans: SemanticKITTI sequence 00 from ../shared/data (skipped when absent) and the seeded synthetic
scan of pointengine.datasets, voxelized at 0.05 m.

Timing: the variants of a layer run round-robin (one of each per repeat) after a warm-up, so a change
in machine load hits all of them alike; medians are reported. Map times start from coordinates:
a fresh CoordinateMap (hash table) each repeat. spconv's CPU conv races with more than one thread,
so it is timed for speed only.

Writes JSON lines to benchmarks/results/bench_conv.jsonl and prints a markdown table.
"""

import os

# spconv's wheel ships its own OpenMP runtime next to torch's. By default the threads of each spin
# after a parallel region and take the cores from the other pool: spconv's conv ran 10x slower
# here. Passive waiting lets idle pools sleep. It must be set before either runtime starts.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from common import machine, round_robin

from pointengine.coordinate_map import CoordinateMap
from pointengine.datasets import generate_scan, read_points
from pointengine.functional import conv as conv_ops
from pointengine.functional import kmap as km
from pointengine.functional import voxelize_points

ROOT = Path(__file__).resolve().parents[1]
SCANS = ROOT.parent / "shared" / "data" / "semantickitti" / "sequences" / "00" / "velodyne"
RESULTS = ROOT / "benchmarks" / "results" / "bench_conv.jsonl"


@dataclass(frozen=True)
class Layer:
    name: str
    kernel_size: int
    stride: int
    c_in: int
    c_out: int


LAYERS = (
    Layer("subm3 16->32", 3, 1, 16, 32),
    Layer("subm3 32->32", 3, 1, 32, 32),
    Layer("subm3 64->64", 3, 1, 64, 64),
    Layer("subm3 128->128", 3, 1, 128, 128),
    Layer("down2 32->64", 2, 2, 32, 64),
)


def load_scans(names: list[str] | None) -> list[tuple[str, torch.Tensor]]:
    """(name, points [N, 4]) of the SemanticKITTI scans of sequence 00 and the synthetic scan;
    `names` keeps those whose name contains one of them."""
    paths = sorted(SCANS.glob("*.bin"))
    if not paths:
        print(f"no SemanticKITTI scans under {SCANS}: real scans skipped")
    scans = [(f"kitti/00/{path.stem}", path) for path in paths] + [("synthetic/seed0", None)]
    if names:
        scans = [(name, path) for name, path in scans if any(n in name for n in names)]
    return [(name, read_points(path) if path else generate_scan(seed=0).points) for name, path in scans]


def build_map(coords: torch.Tensor, layer: Layer) -> tuple[km.KernelMap, dict]:
    """The layer's kernel map from bare coordinates, and the seconds of each step."""
    start = time.perf_counter()
    cmap = CoordinateMap(coords, validate=False)
    hashed = time.perf_counter()
    if layer.stride == 1:
        kmap = km.submanifold_map(cmap, layer.kernel_size)
    else:
        kmap = km.strided_map(cmap, layer.kernel_size, layer.stride)
    mapped = time.perf_counter()
    kmap.pairs  # noqa: B018  (the pair-list form gather_scatter reads, cached on the map)
    done = time.perf_counter()
    return kmap, {"hash": hashed - start, "table": mapped - hashed, "pairs": done - mapped}


def map_times(coords: torch.Tensor, layer: Layer, repeats: int) -> dict[str, float]:
    """Median seconds of hash build, neighbour table and pair lists, each from scratch."""
    build_map(coords, layer)
    steps = [build_map(coords, layer)[1] for _ in range(repeats)]
    return {step: statistics.median(s[step] for s in steps) for step in steps[0]}


def map_record(scan: str, coords: torch.Tensor, layer: Layer, args) -> dict:
    """The map column alone (--maps-only): for comparing builds of the map code."""
    maps = map_times(coords, layer, args.repeats)
    return {"scan": scan, "layer": layer.name, **asdict(layer), "sites_in": len(coords), "threads": args.threads,
            **{f"{step}_ms": seconds * 1e3 for step, seconds in maps.items()}}


def spconv_runs(coords: torch.Tensor, feats: torch.Tensor, weight: torch.Tensor, layer: Layer) -> dict | None:
    """Callables timing spconv's layer: map + conv from bare coordinates, the map alone, and (for
    submanifold layers, whose maps spconv can reuse) the conv alone."""
    try:
        import spconv.pytorch as sp
        from spconv.pytorch import ops
    except ImportError:
        return None
    indices = coords.clone()
    indices[:, 1:] -= indices[:, 1:].amin(0)
    shape = (indices[:, 1:].amax(0) + 1).tolist()
    batch_size = int(indices[:, 0].max()) + 1
    k, s = layer.kernel_size, layer.stride
    if s == 1:
        conv = sp.SubMConv3d(layer.c_in, layer.c_out, k, bias=False, indice_key="map")
    else:
        conv = sp.SparseConv3d(layer.c_in, layer.c_out, k, s, bias=False, indice_key="map")
    with torch.no_grad():
        # ours [K, C_in, C_out] with K = (kx, ky, kz), x slowest; spconv 2.x [C_out, kx, ky, kz, C_in]
        conv.weight.copy_(weight.reshape(k, k, k, layer.c_in, layer.c_out).permute(4, 0, 1, 2, 3))
    conv.eval()

    def fresh():
        return sp.SparseConvTensor(feats, indices, shape, batch_size)

    def total():
        with torch.no_grad():
            conv(fresh())

    def map_only():
        ops.get_indice_pairs(indices, batch_size, shape, conv.algo, conv.kernel_size, conv.stride, conv.padding,
                             conv.dilation, conv.output_padding, conv.subm, conv.transposed)

    runs = {"spconv_total": total, "spconv_map": map_only}
    if s == 1:
        with torch.no_grad():
            mapped = conv(fresh()).replace_feature(feats)

        def conv_only():
            with torch.no_grad():
                conv(mapped)

        runs["spconv_conv"] = conv_only
    return runs


def bench_layer(scan: str, coords: torch.Tensor, layer: Layer, args) -> dict:
    gen = torch.Generator().manual_seed(0)
    kmap, _ = build_map(coords, layer)
    pairs = kmap.n_pairs
    feats = torch.randn(len(coords), layer.c_in, generator=gen)
    weight = torch.randn(kmap.nbr.shape[1], layer.c_in, layer.c_out, generator=gen) / layer.c_in**0.5
    a, b = torch.randn(pairs, layer.c_in, generator=gen), torch.randn(layer.c_in, layer.c_out, generator=gen)
    runs = {
        "fused": lambda: conv_ops.apply_kernel_map(feats, weight, kmap, "fused"),
        "gather_scatter": lambda: conv_ops.apply_kernel_map(feats, weight, kmap, "gather_scatter"),
        "mm": lambda: torch.mm(a, b),
    }
    sp_runs = None if args.no_spconv else spconv_runs(coords, feats, weight, layer)
    runs.update(sp_runs or {})
    seconds = round_robin(runs, args.repeats, args.warmup)
    maps = map_times(coords, layer, args.repeats)
    flop = 2 * pairs * layer.c_in * layer.c_out
    record = {
        "scan": scan, "layer": layer.name, **asdict(layer), "sites_in": len(coords),
        "sites_out": kmap.nbr.shape[0], "pairs": pairs, "threads": args.threads,
        "hash_ms": maps["hash"] * 1e3, "table_ms": maps["table"] * 1e3, "pairs_ms": maps["pairs"] * 1e3,
        **{f"{name}_ms": s * 1e3 for name, s in seconds.items()},
        **{f"{name}_gflops": flop / seconds[name] / 1e9 for name in ("fused", "gather_scatter", "mm")},
    }
    record["fused_vs_mm"] = seconds["mm"] / seconds["fused"]
    if sp_runs:
        if "spconv_conv" not in seconds:
            record["spconv_conv_ms"] = (seconds["spconv_total"] - seconds["spconv_map"]) * 1e3
        record["spconv_conv_vs_fused"] = record["spconv_conv_ms"] / record["fused_ms"]
    return record


def table(records: list[dict]) -> str:
    head = ("| scan | layer | pairs | map ms (hash + table) | fused ms | GFLOP/s | gather-scatter ms | GFLOP/s "
            "| torch.mm GFLOP/s | fused / mm | spconv map ms | spconv conv ms | spconv / fused |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in records:
        sp = [f"{r[key]:.1f}" if key in r else "-" for key in ("spconv_map_ms", "spconv_conv_ms")]
        ratio = f"{r['spconv_conv_vs_fused']:.2f}" if "spconv_conv_vs_fused" in r else "-"
        lines.append(
            f"| {r['scan']} | {r['layer']} | {r['pairs']} | {r['hash_ms'] + r['table_ms']:.1f} "
            f"({r['hash_ms']:.1f} + {r['table_ms']:.1f}) | {r['fused_ms']:.1f} | {r['fused_gflops']:.1f} "
            f"| {r['gather_scatter_ms']:.1f} | {r['gather_scatter_gflops']:.1f} | {r['mm_gflops']:.1f} "
            f"| {r['fused_vs_mm']:.2f} | {sp[0]} | {sp[1]} | {ratio} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--scan", nargs="*", help="keep scans whose name contains one of these (e.g. 000000 synthetic)")
    parser.add_argument("--voxel-size", type=float, default=0.05)
    parser.add_argument("--no-spconv", action="store_true", help="skip spconv even when it is installed")
    parser.add_argument("--maps-only", action="store_true", help="time the kernel-map column alone")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {machine()}; {args.threads} threads, median of {args.repeats} after {args.warmup} warm-up")
    load_before = os.getloadavg()[0]
    records = []
    for scan, points in load_scans(args.scan):
        coords = voxelize_points(points, args.voxel_size).coords
        for layer in LAYERS:
            if args.maps_only:
                records.append(map_record(scan, coords, layer, args))
                continue
            records.append(bench_layer(scan, coords, layer, args))
            print(f"  {scan} {layer.name}: fused {records[-1]['fused_ms']:.1f} ms", flush=True)
    # Other processes on the machine skew every number; the load average says whether they ran.
    load = {"load_before": load_before, "load_after": os.getloadavg()[0], "machine": machine()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as out:
        for record in records:
            out.write(json.dumps({**record, **load}) + "\n")
    if args.maps_only:
        for r in records:
            print(f"| {r['scan']} | {r['layer']} | {r['hash_ms'] + r['table_ms']:.2f} ({r['hash_ms']:.2f} + {r['table_ms']:.2f}) |")
    else:
        print(table(records))
    print(f"load average (1 min) before / after: {load['load_before']:.2f} / {load['load_after']:.2f}")


if __name__ == "__main__":
    main()
