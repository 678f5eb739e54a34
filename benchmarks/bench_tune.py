"""The autotuner against single dataflows: a zoo model tuned on sample scans (pointengine.tune) next to
the same model with every sparse conv on one dataflow, end to end on the same scans.

Scans: the SemanticKITTI scans of sequence 00 (../shared/data; the seeded synthetic scan when absent),
through the Segmenter's preprocessing of --config (its voxel size and features). The tuner times each
candidate dataflow per group of convs sharing kernel maps on those scans (--tune-repeats per layer);
then each variant (every conv on dataflow D, for each D; the tuned model) runs one forward per scan per
round, the variants one after the other on each scan, over --repeats rounds after one warm-up round, on
fresh copies of the input (hash table built outside the timed region, every kernel map inside it).
Other processes skew every number: the load average before and after goes into each record. Per variant: the median per scan,
their sum, and the ratio to the best single dataflow's sum.

    python benchmarks/bench_tune.py                          # minkunet_cr0.5, 3 scans, 3 rounds
    python benchmarks/bench_tune.py --config minkunet_cr1.0 --repeats 5

JSON lines go to benchmarks/results/bench_tune.jsonl.
"""

import argparse
import copy
import os
import statistics
import time
import warnings
from collections import Counter

import torch
from bench_models import with_dataflow
from common import append_results, machine, named_scans

import pointengine as pe
from pointengine.functional.conv import distinct_dataflows
from pointengine.profiler import fresh_inputs
from pointengine.timing import Clock


def time_variants(variants: dict, inputs: list, repeats: int) -> dict[str, list[float]]:
    """Median seconds per scan of each variant: every round takes each scan in turn and runs every
    variant on it, one after the other, so that a change of machine load hits them alike."""
    clock = Clock(inputs[0].feats.device)
    times = {name: [[] for _ in inputs] for name in variants}
    with torch.no_grad():
        for round_index in range(repeats + 1):  # round 0 warms up
            for i, x in enumerate(inputs):
                for name, model in variants.items():
                    copies = fresh_inputs((x,))
                    start = clock.mark()
                    model(*copies)
                    if round_index:
                        times[name][i].append(clock.seconds(start, clock.mark()))
    return {name: [statistics.median(runs) for runs in per_scan] for name, per_scan in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="minkunet_cr0.5")
    parser.add_argument("--scans", type=int, default=3, help="how many scans of sequence 00")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds after one warm-up round")
    parser.add_argument("--tune-repeats", type=int, default=3, help="runs per layer and dataflow while tuning")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with warnings.catch_warnings(record=True):  # untrained weights: the times do not depend on them
        seg = pe.Segmenter(args.config, device=args.device)
    scans = named_scans(args.scans)
    inputs = [seg.preprocess(points) for _, points in scans]
    print(f"machine: {machine()}; {args.threads} threads; {args.config} on "
          + ", ".join(f"{name} ({x.num_sites} voxels)" for (name, _), x in zip(scans, inputs)))

    load_before = os.getloadavg()[0]
    tuned = copy.deepcopy(seg.model)
    start = time.perf_counter()
    result = pe.tune(tuned, inputs, repeats=args.tune_repeats)
    tune_s = time.perf_counter() - start
    chosen = Counter(group.dataflow for group in result.groups)
    print(f"tuned in {tune_s:.1f} s: {len(result.groups)} groups of convs sharing maps -> "
          + ", ".join(f"{d} x{n}" for d, n in chosen.items()))
    for group in result.groups:
        cells = ", ".join(f"{d} {s * 1e3:.1f} ms" for d, s in group.seconds.items())
        print(f"  {group.layers[0]} (+{len(group.layers) - 1}): {cells} -> {group.dataflow}")

    variants = {}
    for dataflow in distinct_dataflows(inputs[0].feats.device):
        single = copy.deepcopy(seg.model)
        with_dataflow(single, dataflow)
        variants[f"all {dataflow}"] = single
    variants["tuned"] = tuned
    medians = time_variants(variants, inputs, args.repeats)
    sums = {name: sum(per_scan) for name, per_scan in medians.items()}
    best = min((name for name in sums if name != "tuned"), key=sums.get)
    records = [{
        "bench": "tune", "config": args.config, "variant": name, "threads": args.threads, "repeats": args.repeats,
        "scans": [s for s, _ in scans], "median_s": per_scan, "sum_s": sums[name], "vs_best_single": sums[name] / sums[best],
        "tune_s": tune_s, "groups": dict(chosen), "machine": machine(),
        "load_before": load_before, "load_after": os.getloadavg()[0],
    } for name, per_scan in medians.items()]
    append_results("bench_tune", records)
    head = ["variant", *[f"{s} s" for s, _ in scans], "sum s", f"vs {best}"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for r in records:
        print(f"| {r['variant']} | " + " | ".join(f"{s:.3f}" for s in r["median_s"])
              + f" | {r['sum_s']:.3f} | {r['vs_best_single']:.3f} |")
    print(f"load average (1 min) before / after: {records[0]['load_before']:.2f} / {records[0]['load_after']:.2f}")


if __name__ == "__main__":
    main()
