"""pointengine.optimize against the eval-mode model it came from, on the CPU (issue 7).

Models: the demo model (trained weights) and the zoo's MinkUNet cr 1.0 (random weights, and random
BatchNorm statistics and affine parameters, so that folding is exercised). Input: the real
SemanticKITTI scans of sequence 00 (../shared/data), or the seeded synthetic scan when they are
absent, voxelized by the model's own Segmenter pipeline outside the timed region.

Timed region, under torch.inference_mode: SparseTensor(feats, coords) (so every kernel map is built
again, as for a new scan) and the forward. The plain and the optimized model alternate run by run
(common.round_robin), so machine load hits both alike; medians of --repeats runs after --warmup.
Checked in the same run: the relative error of the optimized logits (max abs difference / max abs
logit) and the share of voxels whose argmax agrees.

JSON lines go to benchmarks/results/bench_optimize.jsonl; a markdown table is printed.
"""

import argparse

import torch
from common import append_results, machine, named_scans, round_robin

import pointengine as pe
from pointengine.testing import randomize_batchnorm, relative_error

CONFIGS = ("demo", "minkunet_cr1.0")


def randomize_affine(model: torch.nn.Module) -> None:
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d) and module.affine:
                module.weight.copy_(torch.rand(module.num_features, generator=gen) + 0.5)
                module.bias.copy_(torch.rand(module.num_features, generator=gen) * 0.4 - 0.2)


def bench(config: str, points_of: list, args) -> list[dict]:
    segmenter = pe.Segmenter(config)
    model = segmenter.model
    if config != "demo":
        randomize_batchnorm(model)
        randomize_affine(model)
    model.eval()
    optimized = pe.optimize(model)
    records = []
    for name, points in points_of:
        x = segmenter.preprocess(points)
        feats, coords = x.feats, x.coords

        def forward(net):
            return lambda: net(pe.SparseTensor(feats, coords))

        with torch.inference_mode():
            plain_logits, fast_logits = forward(model)().feats, forward(optimized)().feats
            times = round_robin({"plain": forward(model), "optimized": forward(optimized)}, args.repeats, args.warmup)
        records.append({
            "bench": "optimize", "config": config, "scan": name, "voxels": len(coords),
            "plain_ms": times["plain"] * 1e3, "optimized_ms": times["optimized"] * 1e3,
            "speedup": times["plain"] / times["optimized"],
            "relative_error": relative_error(fast_logits, plain_logits),
            "argmax_agreement": float((fast_logits.argmax(1) == plain_logits.argmax(1)).double().mean()),
            "threads": torch.get_num_threads(), "machine": machine(),
        })
        print(records[-1])
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    parser.add_argument("--scans", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()
    points_of = named_scans(args.scans)
    records = [record for config in args.configs for record in bench(config, points_of, args)]
    append_results("bench_optimize", records)
    print(f"\n## bench_optimize results\n\n{machine()}, {torch.get_num_threads()} threads\n")
    print("| model | scan | voxels | plain ms | optimized ms | speed-up | rel. error | argmax agreement |")
    print("|---|---|---|---|---|---|---|---|")
    for r in records:
        print(f"| {r['config']} | {r['scan']} | {r['voxels']} | {r['plain_ms']:.0f} | {r['optimized_ms']:.0f} | "
              f"{r['speedup']:.2f}x | {r['relative_error']:.1e} | {100 * r['argmax_agreement']:.3f} % |")


if __name__ == "__main__":
    main()
