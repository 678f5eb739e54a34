"""pointengine.compress.quantize end to end on the CPU (issue 7): the optimized float32 model against its
int8 and bfloat16 forms, speed and agreement in one run.

Models: the demo model (trained weights) and the zoo's MinkUNet cr 1.0 (random weights, random
BatchNorm statistics). Calibration: four synthetic scans (seeds 9000-9003, as `pointengine compress`
uses by default), never the scans measured. Input: the real SemanticKITTI scans of sequence 00
(../shared/data), or the seeded synthetic scan when they are absent.

Timed region, under torch.inference_mode: SparseTensor(feats, coords) (every kernel map built again)
and the forward. The forms alternate run by run (common.round_robin); medians of --repeats runs.
Agreement: the share of points whose label (the voxel's argmax carried to its points, as Segmenter
labels them) equals the optimized float model's, over all the scans. mIoU for the trained demo model,
on the unseen synthetic scan over the classes present or predicted, and on the labelled real scans both
so and as the official SemanticKITTI mean (19 classes, one absent from labels and predictions counts 0).
On three scans the first is fragile: a class they lack enters its mean, at IoU 0, as soon as a model
calls one labelled point by it (the int8 demo model calls 5 of 373,751 points other-vehicle: -2.2 points).

`--weight-bits 7` quantizes the weights to [-63, 63] (quantize(weight_bits=7)), which the AVX2 kernel
sums faster. The kernels' paths are the best this CPU has; set POINTENGINE_CPU_PATH_MAX=avx2 to run the AVX2 ones on
an AVX-512 machine (bf16 is left out where its path is the portable emulation). JSON lines go to benchmarks/results/bench_quantize.jsonl.
"""

import argparse

import torch
from common import KITTI_SCANS, append_results, machine, round_robin

import pointengine as pe
from pointengine import _C
from pointengine.datasets import generate_scan
from pointengine.compress.steps import agreement, labels_and_scores
from pointengine.datasets.semantickitti import SemanticKITTI
from pointengine.demo import DEMO_SEED
from pointengine.testing import randomize_batchnorm

CONFIGS = ("demo", "minkunet_cr1.0")
CALIBRATION_SEEDS = range(9000, 9004)


def scans(count: int) -> tuple[str, list]:
    """(name, LidarScan list): the labelled real scans, else the unseen synthetic scan."""
    if KITTI_SCANS.is_dir():
        frames = SemanticKITTI(KITTI_SCANS.parents[2], ("00",), pe.Segmenter("demo").config.dataset)
        return "kitti/00", [frames[i] for i in range(min(count, len(frames)))]
    return f"synthetic/seed{DEMO_SEED}", [generate_scan(DEMO_SEED)]


def bench(config: str, name: str, scans_: list, args) -> dict:
    segmenter = pe.Segmenter(config)
    if config != "demo":
        randomize_batchnorm(segmenter.model)
    model = segmenter.model.eval()
    calibration = [segmenter.preprocess(generate_scan(seed).points) for seed in CALIBRATION_SEEDS]
    forms = {"float32": pe.optimize(model),
             "int8": pe.compress.quantize(model, calibration, "int8", weight_bits=args.weight_bits)}
    if _C.bf16_paths()[-1] != "portable":  # the portable bf16 loop emulates the instruction: not a speed path
        forms["bf16"] = pe.compress.quantize(model, calibration, "bf16")
    record = {"bench": "quantize", "config": config, "scans": name, "threads": torch.get_num_threads(),
              "int8_path": _C.int8_paths()[-1], "int8_weight_bits": args.weight_bits, "bf16_path": _C.bf16_paths()[-1], "float32_path": _C.conv_fused_isa(),
              "machine": machine()}
    reference = None
    for form, net in forms.items():
        labels, scores = labels_and_scores(segmenter, net, scans_)
        reference = reference or labels
        record[f"{form}_agreement"] = agreement(labels, reference)
        trained = config == "demo" and scores is not None
        record[f"{form}_miou"] = scores.miou_present if trained else None
        record[f"{form}_official_miou"] = scores.miou if trained else None
    if config == "demo":
        unseen = [generate_scan(DEMO_SEED)]
        base = None
        for form, net in forms.items():
            labels, scores = labels_and_scores(segmenter, net, unseen)
            base = base or labels
            record[f"{form}_synthetic_miou"] = scores.miou_present
            record[f"{form}_synthetic_agreement"] = agreement(labels, base)
    x = segmenter.preprocess(scans_[0].points)
    feats, coords = x.feats, x.coords

    def forward(net):
        return lambda: net(pe.SparseTensor(feats, coords))

    with torch.inference_mode():
        times = round_robin({form: forward(net) for form, net in forms.items()}, args.repeats, args.warmup)
    record["voxels"] = len(coords)
    for form in forms:
        record[f"{form}_ms"] = times[form] * 1e3
        record[f"{form}_speedup"] = times["float32"] / times[form]
    print(record)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    parser.add_argument("--scans", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--weight-bits", type=int, default=8, choices=(7, 8), help="int8 weights of 8 or 7 bits")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    name, scans_ = scans(args.scans)
    records = [bench(config, name, scans_, args) for config in args.configs]
    print(f"\n{machine()}, {torch.get_num_threads()} threads; paths: float32 {_C.conv_fused_isa()}, "
          f"int8 {_C.int8_paths()[-1]} ({args.weight_bits}-bit weights), bf16 {_C.bf16_paths()[-1]}; input {name}\n")
    print("| model | form | ms | speed-up | agreement % | mIoU % (real: present or predicted / official) | "
          "mIoU % (unseen synthetic) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in records:
        for form in [name for name in ("float32", "int8", "bf16") if f"{name}_ms" in r]:
            miou, official = r.get(f"{form}_miou"), r.get(f"{form}_official_miou")
            synthetic = r.get(f"{form}_synthetic_miou")
            print(f"| {r['config']} | {form} | {r[f'{form}_ms']:.0f} | {r[f'{form}_speedup']:.2f}x | "
                  f"{100 * r[f'{form}_agreement']:.2f} | {'-' if miou is None else f'{100 * miou:.1f} / {100 * official:.1f}'} | "
                  f"{'-' if synthetic is None else f'{100 * synthetic:.1f}'} |")
    print(f"wrote {append_results('bench_quantize', records)}")


if __name__ == "__main__":
    main()
