"""MinkUNet's dense products (its 1x1x1 convolutions and its classifier) with
pointengine.functional.linear, whose bits do not depend on the thread count, next to torch's BLAS,
whose bits do; everything in one process, round robin, on a real scan.

Two measurements: the products alone, on the shapes the scan produces (GFLOP/s), and whole forward
passes of the network next to its BLAS twin (the same modules and weights, but the 1x1x1
convolutions computing feats @ W[0] and the classifier a torch.nn.Linear, as before functional.linear
existed): the cost of thread-count independence end to end. Forward passes start from coordinates
(kernel maps built inside), eval mode, torch.no_grad.
Scan: SemanticKITTI 00/000000 from ../shared/data (the synthetic scan when absent), voxelized at 0.05 m.
Writes JSON lines to benchmarks/results/bench_linear.jsonl and prints a markdown table.
"""

import argparse
import copy
import json
import os
from pathlib import Path

import torch
from common import round_robin

import pointengine as pe
from pointengine import _ops
from pointengine.datasets import generate_scan, read_points
from pointengine.models import build_model

ROOT = Path(__file__).resolve().parents[1]
SCAN = ROOT.parent / "shared" / "data" / "semantickitti" / "sequences" / "00" / "velodyne" / "000000.bin"
RESULTS = ROOT / "benchmarks" / "results" / "bench_linear.jsonl"


class BlasPointwise(torch.nn.Module):
    """A 1x1x1 submanifold Conv3d computed with torch's BLAS."""

    def __init__(self, conv: pe.nn.Conv3d):
        super().__init__()
        self.conv = conv

    def forward(self, input: pe.SparseTensor) -> pe.SparseTensor:
        feats = input.feats @ self.conv.weight[0]
        return input.replace_feats(feats if self.conv.bias is None else feats + self.conv.bias)


def blas_twin(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of the model whose dense products go through torch's BLAS."""
    twin = copy.deepcopy(model)
    for module in list(twin.modules()):
        for name, child in module.named_children():
            if isinstance(child, pe.nn.Conv3d) and child.kernel_size == (1, 1, 1) and not child.generative:
                setattr(module, name, BlasPointwise(child))
            elif isinstance(child, pe.nn.Linear):
                plain = torch.nn.Linear(child.in_features, child.out_features, bias=child.bias is not None)
                plain.load_state_dict(child.state_dict())
                setattr(module, name, plain)
    return twin


def dense_shapes(model: torch.nn.Module, x: pe.SparseTensor) -> list[tuple[int, int, int]]:
    """(rows, in, out) of every dense product of one forward pass."""
    shapes = []

    def record(module, inputs, output):
        if isinstance(module, pe.nn.Conv3d) and module.kernel_size == (1, 1, 1):
            shapes.append((inputs[0].feats.shape[0], module.in_channels, module.out_channels))
        elif isinstance(module, torch.nn.Linear):
            shapes.append((inputs[0].shape[0], module.in_features, module.out_features))

    handles = [m.register_forward_hook(record) for m in model.modules()]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return shapes


def products(shapes: list[tuple[int, int, int]]) -> dict:
    """Callables computing every product of the shapes with BLAS and with linear."""
    gen = torch.Generator().manual_seed(0)
    operands = [
        (torch.randn(n, c_in, generator=gen), torch.randn(c_out, c_in, generator=gen)) for n, c_in, c_out in shapes
    ]
    return {
        "blas": lambda: [torch.mm(a, w.t()) for a, w in operands],
        "linear": lambda: [_ops.linear(a, w, None) for a, w in operands],
    }


def bench(cr: float, feats: torch.Tensor, coords: torch.Tensor, args) -> dict:
    torch.manual_seed(0)
    model = build_model(f"minkunet_cr{cr}").eval()
    twin = blas_twin(model)
    shapes = dense_shapes(model, pe.SparseTensor(feats, coords))
    alone = round_robin(products(shapes), args.repeats, warmup=1)

    def forward(network):
        with torch.no_grad():
            return network(pe.SparseTensor(feats, coords)).feats

    whole = round_robin({"blas": lambda: forward(twin), "linear": lambda: forward(model)}, args.repeats, warmup=1)
    ours, theirs = forward(model), forward(twin)
    flop = 2 * sum(n * c_in * c_out for n, c_in, c_out in shapes)
    return {
        "cr": cr,
        "threads": args.threads,
        "shapes": shapes,
        "products_blas_ms": alone["blas"] * 1e3,
        "products_linear_ms": alone["linear"] * 1e3,
        "blas_gflops": flop / alone["blas"] / 1e9,
        "linear_gflops": flop / alone["linear"] / 1e9,
        "forward_blas_s": whole["blas"],
        "forward_linear_s": whole["linear"],
        "forward_ratio": whole["linear"] / whole["blas"],
        "max_abs_difference": float((ours - theirs).abs().max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9, help="rounds after one warm-up round")
    parser.add_argument("--cr", type=float, nargs="+", default=[0.5, 1.0])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scan = "kitti/00/000000" if SCAN.exists() else "synthetic/seed0"
    voxels = pe.functional.voxelize_points(read_points(SCAN) if SCAN.exists() else generate_scan(seed=0).points, 0.05)
    machine = f"{os.cpu_count()} cores, torch {torch.__version__}, load {os.getloadavg()[0]:.2f}"
    records = [{"scan": scan, "machine": machine, **bench(cr, voxels.feats, voxels.coords, args)} for cr in args.cr]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as out:
        for record in records:
            out.write(json.dumps(record) + "\n")
    print(f"{machine}; {args.threads} threads, medians of {args.repeats} rounds")
    print(
        "| scan | cr | products: BLAS ms (GFLOP/s) | linear ms (GFLOP/s) | forward: BLAS twin s | ours s | ours / twin |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in records:
        print(
            f"| {r['scan']} | {r['cr']} | {r['products_blas_ms']:.1f} ({r['blas_gflops']:.0f}) "
            f"| {r['products_linear_ms']:.1f} ({r['linear_gflops']:.0f}) | {r['forward_blas_s']:.3f} "
            f"| {r['forward_linear_s']:.3f} | {r['forward_ratio']:.3f} |"
        )


if __name__ == "__main__":
    main()
