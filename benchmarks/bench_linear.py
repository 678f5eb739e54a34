"""The dense products of MinkUNet (its 1x1x1 convolutions and its classifier) with
pointengine.functional.linear, which gives the same bits at any thread count, next to torch's BLAS
(torch.mm), which does not; both in one process, round robin, on the shapes a real scan produces.

The difference is reported as a share of the whole forward pass, the cost of determinism end to end.
Scans: SemanticKITTI 00/000000 from ../shared/data (the synthetic scan when absent), voxelized at 0.05 m.
Writes JSON lines to benchmarks/results/bench_linear.jsonl and prints a markdown table.
"""

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

import pointengine as pe
from pointengine import _ops
from pointengine.datasets import generate_scan, read_points
from pointengine.models import build_model

ROOT = Path(__file__).resolve().parents[1]
SCAN = ROOT.parent / "shared" / "data" / "semantickitti" / "sequences" / "00" / "velodyne" / "000000.bin"
RESULTS = ROOT / "benchmarks" / "results" / "bench_linear.jsonl"


def dense_shapes(model: torch.nn.Module, x: pe.SparseTensor) -> tuple[list[tuple[int, int, int]], float]:
    """(rows, in, out) of every dense product of one forward pass, and the pass's seconds."""
    shapes = []

    def record(module, inputs, output):
        if isinstance(module, pe.nn.Conv3d) and module.kernel_size == (1, 1, 1):
            shapes.append((inputs[0].feats.shape[0], module.in_channels, module.out_channels))
        elif isinstance(module, torch.nn.Linear):
            shapes.append((inputs[0].shape[0], module.in_features, module.out_features))

    with torch.no_grad():
        model(x)  # warm-up
        handles = [m.register_forward_hook(record) for m in model.modules()]
        start = time.perf_counter()
        model(pe.SparseTensor(x.feats, x.coords))
        forward_s = time.perf_counter() - start
    for handle in handles:
        handle.remove()
    return shapes, forward_s


def round_robin(operands: list[tuple[torch.Tensor, torch.Tensor]], repeats: int) -> tuple[float, float]:
    """Median seconds of all the products with BLAS and with linear, one of each per round."""
    products = {
        "blas": lambda a, w: torch.mm(a, w.t()),
        "linear": lambda a, w: _ops.linear(a, w, None),
    }
    times = {name: [] for name in products}
    for _ in range(repeats + 1):  # the first round warms up
        for name, product in products.items():
            start = time.perf_counter()
            for a, w in operands:
                product(a, w)
            times[name].append(time.perf_counter() - start)
    return statistics.median(times["blas"][1:]), statistics.median(times["linear"][1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--cr", type=float, nargs="+", default=[0.5, 1.0])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    points = read_points(SCAN) if SCAN.exists() else generate_scan(seed=0).points
    voxels = pe.functional.voxelize_points(points, 0.05)
    x = pe.SparseTensor(voxels.feats, voxels.coords)
    records = []
    for cr in args.cr:
        torch.manual_seed(0)
        shapes, forward_s = dense_shapes(build_model(f"minkunet_cr{cr}").eval(), x)
        gen = torch.Generator().manual_seed(0)
        operands = [
            (torch.randn(n, c_in, generator=gen), torch.randn(c_out, c_in, generator=gen)) for n, c_in, c_out in shapes
        ]
        blas, linear = round_robin(operands, args.repeats)
        flop = 2 * sum(n * c_in * c_out for n, c_in, c_out in shapes)
        records.append(
            {
                "scan": "kitti/00/000000" if SCAN.exists() else "synthetic/seed0",
                "cr": cr,
                "threads": args.threads,
                "shapes": shapes,
                "forward_s": forward_s,
                "blas_ms": blas * 1e3,
                "linear_ms": linear * 1e3,
                "blas_gflops": flop / blas / 1e9,
                "linear_gflops": flop / linear / 1e9,
                "share_of_forward": (linear - blas) / forward_s,
                "machine": f"{os.cpu_count()} cores, torch {torch.__version__}",
            }
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as out:
        for record in records:
            out.write(json.dumps(record) + "\n")
    print(
        "| scan | cr | products | forward s | BLAS ms (GFLOP/s) | linear ms (GFLOP/s) | linear - BLAS, share of forward |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in records:
        print(
            f"| {r['scan']} | {r['cr']} | {len(r['shapes'])} | {r['forward_s']:.3f} | {r['blas_ms']:.1f} ({r['blas_gflops']:.0f}) "
            f"| {r['linear_ms']:.1f} ({r['linear_gflops']:.0f}) | {r['share_of_forward'] * 100:+.2f} % |"
        )


if __name__ == "__main__":
    main()
