"""The cost of the TorchSparse compatibility layer: SPVNAS's MinkUNet written against TorchSparse's
API (torchsparse_minkunet.py, run through alias_torchsparse()) next to pointengine's own MinkUNet
with the same weights (converted by load_checkpoint), on the CPU, in one process, round-robin.

Each timed run starts from voxel coordinates and features (hash table and kernel maps built inside
the timed region, as in deployment); eval mode, torch.no_grad. The outputs are compared first.
Goal: compat / ours <= 1.03. Writes benchmarks/results/bench_compat.jsonl and a markdown table.
"""

import argparse

import torch
from common import append_results, machine, round_robin
from torchsparse_minkunet import TorchSparseMinkUNet

import pointengine as pe
import torchsparse
from pointengine.datasets import generate_scan
from pointengine.models import MinkUNet, load_checkpoint


def randomize_statistics(model: torch.nn.Module, generator: torch.Generator) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cr", type=float, default=0.5, help="MinkUNet channel ratio")
    parser.add_argument("--voxel-size", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    theirs = TorchSparseMinkUNet(cr=args.cr)
    randomize_statistics(theirs, torch.Generator().manual_seed(0))
    ours = MinkUNet(cr=args.cr)
    load_checkpoint(ours, theirs.state_dict(), layout="torchsparse")
    theirs.eval(), ours.eval()

    voxels = pe.voxelize_points(generate_scan(seed=0).points, args.voxel_size)
    feats, coords = voxels.feats, voxels.coords

    def run_compat():
        return theirs(torchsparse.SparseTensor(feats, coords))

    def run_ours():
        return ours(pe.SparseTensor(feats, coords)).feats

    with torch.no_grad():
        got, expected = run_compat(), run_ours()
        error = float((got - expected).norm() / expected.norm())
        times = round_robin({"compat": run_compat, "pointengine": run_ours}, args.repeats, args.warmup)
    ratio = times["compat"] / times["pointengine"]
    record = {
        "bench": "compat_minkunet", "machine": machine(), "threads": args.threads, "cr": args.cr,
        "voxel_size": args.voxel_size, "sites": int(coords.shape[0]), "repeats": args.repeats,
        "compat_s": times["compat"], "pointengine_s": times["pointengine"], "ratio": ratio, "relative_error": error,
    }
    append_results("bench_compat", [record])
    print(f"machine: {record['machine']}, {args.threads} threads; synthetic scan seed 0, {record['sites']} voxels at {args.voxel_size} m")
    print("| network | median s | ratio to ours |\n| --- | --- | --- |")
    print(f"| MinkUNet cr {args.cr}, torchsparse compat | {times['compat']:.4f} | {ratio:.4f} |")
    print(f"| MinkUNet cr {args.cr}, pointengine.models | {times['pointengine']:.4f} | 1.0000 |")
    print(f"relative error compat vs ours: {error:.2e}; goal ratio <= 1.03: {'met' if ratio <= 1.03 else 'NOT met'}")


if __name__ == "__main__":
    main()
