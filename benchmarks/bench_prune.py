"""pointengine.compress.prune on the CPU: parameters, MACs and latency of pruned models against the
model they came from (issue goals at ratio 0.5: >= 1.8x fewer MACs, >= 1.6x lower latency).

Models: the demo model (trained weights) and the zoo's MinkUNet cr 1.0 (random weights, random
BatchNorm statistics and affine parameters, so the "bn" scores differ), each pruned at --ratios by
the "bn" score. Input: the real SemanticKITTI scans of sequence 00 (../shared/data), voxelized by the
model's own Segmenter pipeline; without them the benchmark says so and stops.

MACs: pointengine.profiler.count_macs (sparse convs: kernel-map pairs x C_in x C_out; linear layers:
rows x in x out) on the scan. Latency, under torch.inference_mode at --threads threads:
SparseTensor(feats, coords) (every kernel map built again, as for a new scan) and the forward, of
each model in eval mode and after pointengine.optimize; every variant of a model runs once per round
(common.round_robin), medians of --repeats rounds after --warmup. Ratios are full / pruned.

JSON lines go to benchmarks/results/bench_prune.jsonl; a markdown table is printed.
"""

import argparse

import torch
from bench_optimize import randomize_affine
from common import KITTI_SCANS, append_results, machine, round_robin

import pointengine as pe
from pointengine.compress import prune
from pointengine.datasets import read_points
from pointengine.profiler import count_macs
from pointengine.testing import randomize_batchnorm

CONFIGS = ("minkunet_cr1.0", "demo")


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def bench(config: str, scans: list, args) -> list[dict]:
    segmenter = pe.Segmenter(config)
    model = segmenter.model
    if config != "demo":
        randomize_batchnorm(model)
        randomize_affine(model)
    model.eval()
    variants = {"full": model, **{f"pruned {ratio}": prune(model, ratio) for ratio in args.ratios}}
    variants.update({f"{name} optimized": pe.optimize(net) for name, net in list(variants.items())})
    records = []
    for name, points in scans:
        x = segmenter.preprocess(points)
        feats, coords = x.feats, x.coords

        def forward(net):
            return lambda: net(pe.SparseTensor(feats, coords))

        macs = {key: count_macs(net, x) for key, net in variants.items() if not key.endswith("optimized")}
        with torch.inference_mode():
            times = round_robin({key: forward(net) for key, net in variants.items()}, args.repeats, args.warmup)
        for ratio in args.ratios:
            pruned = f"pruned {ratio}"
            records.append({
                "bench": "prune", "config": config, "scan": name, "voxels": len(coords), "ratio": ratio,
                "score": "bn", "widths": list(variants[pruned].widths),
                "params_full": parameters(model), "params_pruned": parameters(variants[pruned]),
                "macs_full": macs["full"], "macs_pruned": macs[pruned],
                "eval_ms_full": times["full"] * 1e3, "eval_ms_pruned": times[pruned] * 1e3,
                "optimized_ms_full": times["full optimized"] * 1e3,
                "optimized_ms_pruned": times[f"{pruned} optimized"] * 1e3,
                "params_ratio": parameters(model) / parameters(variants[pruned]),
                "macs_ratio": macs["full"] / macs[pruned],
                "eval_latency_ratio": times["full"] / times[pruned],
                "optimized_latency_ratio": times["full optimized"] / times[f"{pruned} optimized"],
                "threads": torch.get_num_threads(), "repeats": args.repeats, "machine": machine(),
            })
            print(records[-1])
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    parser.add_argument("--ratios", nargs="+", type=float, default=[0.25, 0.5, 0.75])
    parser.add_argument("--scans", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()
    paths = sorted(KITTI_SCANS.glob("*.bin"))[: args.scans]
    if not paths:
        print(f"bench_prune: no SemanticKITTI scans in {KITTI_SCANS}; nothing measured")
        return
    torch.set_num_threads(args.threads)
    scans = [(f"kitti/00/{path.stem}", read_points(path)) for path in paths]
    records = [record for config in args.configs for record in bench(config, scans, args)]
    append_results("bench_prune", records)
    print(f"\n## bench_prune results\n\n{machine()}, {args.threads} threads, medians of {args.repeats}\n")
    print("| model | scan | voxels | ratio | params | MACs | eval ms | optimized ms | "
          "params ratio | MACs ratio | eval speed-up | optimized speed-up |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in records:
        print(f"| {r['config']} | {r['scan']} | {r['voxels']} | {r['ratio']} | "
              f"{r['params_full'] / 1e6:.2f} M -> {r['params_pruned'] / 1e6:.2f} M | "
              f"{r['macs_full'] / 1e9:.2f} G -> {r['macs_pruned'] / 1e9:.2f} G | "
              f"{r['eval_ms_full']:.0f} -> {r['eval_ms_pruned']:.0f} | "
              f"{r['optimized_ms_full']:.0f} -> {r['optimized_ms_pruned']:.0f} | "
              f"{r['params_ratio']:.2f}x | {r['macs_ratio']:.2f}x | {r['eval_latency_ratio']:.2f}x | "
              f"{r['optimized_latency_ratio']:.2f}x |")


if __name__ == "__main__":
    main()
