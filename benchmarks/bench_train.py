"""Training speed and memory: scans/s of `pointengine train`'s step (augmentation, the Segmenter's
voxelization, forward, point-level cross-entropy, backward, SGD) on a real-size scan for MinkUNet cr 0.5
and SPVCNN cr 0.5, peak RSS of each (one child process per model), and one training step against one
inference pass of the same model on the points of that step (augmented alike), the two alternating.

The goal: a training step of MinkUNet cr 0.5 within 3x its inference time (forward under no_grad, as
Segmenter runs it). Writes JSON lines to benchmarks/results/bench_train.jsonl and a markdown table.

    python benchmarks/bench_train.py                  # 2 threads, 4 untimed and 5 timed steps per model
    python benchmarks/bench_train.py --steps 10 --threads 1
"""

import os

# Idle OpenMP threads sleep instead of spinning on a shared machine (as in bench_conv.py); set before
# torch starts, and inherited by the child processes.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import itertools
import multiprocessing
import resource
import time

import torch

from common import KITTI_SCANS, append_results, machine, round_robin
from pointengine.datasets import LidarScan, generate_scan, load_scan
from pointengine.models import build_model, load_model_config
from pointengine.segment import voxelize_scans
from pointengine.train.augment import augment
from pointengine.train.distributed import World
from pointengine.train.loop import build_optimizer, train_step
from pointengine.train.settings import TrainSettings

CONFIGS = ("minkunet_cr0.5", "spvcnn_cr0.5")
GOAL = 3.0
WARMUP = 4  # untimed rounds (a step and an inference pass) first


def real_size_scan() -> tuple[str, LidarScan]:
    """The first SemanticKITTI scan of sequence 00, else a full-size (64-beam) synthetic one."""
    path = KITTI_SCANS / "000000.bin"
    if path.exists():
        return "kitti/00/000000", load_scan(path, path.parent.parent / "labels" / "000000.label")
    return "synthetic/seed0 (64 beams)", generate_scan(seed=0)


def measure(name: str, steps: int, threads: int) -> dict:
    """In a child process: median step and inference times, peak RSS (MB)."""
    torch.set_num_threads(threads)
    scan_name, scan = real_size_scan()
    config = load_model_config(name)
    torch.manual_seed(0)
    model = build_model(config)
    optimizer = build_optimizer(TrainSettings(config.to_dict(), lr=1e-3), model)  # the train command's SGD
    world = World()
    steps_taken = itertools.count()

    augmented = [scan.points]

    def step() -> None:
        model.train()
        augmented[0] = augment(scan.points, 0, 0, next(steps_taken))
        train_step(model, optimizer, config, [LidarScan(augmented[0], scan.labels)], world, torch.device("cpu"))

    # On the points the step just trained on: rotated off the street's axes, a scan fills 5-8 % more
    # voxels than as recorded (97,926 on average against 91,852 for kitti/00/000000).
    @torch.no_grad()
    def infer() -> None:
        model.eval()
        batch = voxelize_scans(config, [augmented[0]])
        model(batch.tensor).feats.index_select(0, batch.inverse)

    # Alternating (a step, then an inference pass, each round), so that a change of the machine's load
    # hits both alike: timed one after the other, the ratio moved from 2.8x to 4.8x between runs on a
    # busy VM. The first WARMUP rounds warm up: the allocator's heap grows over the first steps (on
    # the real scan, 2 threads: 248k, 101k, 34k, 14k, 14k page faults in steps 1-5, 260 ms of system
    # time in step 2, none from step 6), which a training run of many steps pays once.
    for _ in range(WARMUP):
        step(), infer()
    faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    times = round_robin({"step": step, "infer": infer}, steps, warmup=0)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before
    step_s, infer_s = times["step"], times["infer"]
    voxels = voxelize_scans(config, [scan.points]).tensor.num_sites
    return {"config": name, "scan": scan_name, "points": int(scan.points.shape[0]), "voxels": int(voxels),
            "augmented_voxels": int(voxelize_scans(config, [augmented[0]]).tensor.num_sites),
            "threads": threads, "steps": steps, "warmup": WARMUP, "timed_page_faults_per_round": faults / steps,
            "step_s": step_s, "scans_per_s": 1.0 / step_s, "infer_s": infer_s,
            "step_over_infer": step_s / infer_s, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5, help="timed training steps (and inference passes) per model")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")  # each model's peak RSS on its own
    records = []
    for name in CONFIGS:
        with context.Pool(1) as pool:
            record = pool.apply(measure, (name, args.steps, args.threads))
        record.update(machine=machine(), time=time.strftime("%Y-%m-%d %H:%M:%S"))
        records.append(record)
    print(f"{machine()}, {args.threads} threads; {records[0]['scan']} ({records[0]['points']:,} points), "
          f"batch 1, median of {args.steps} steps after {WARMUP} untimed rounds")
    print("| model | voxels (scan / last step's) | train step | scans/s | inference | step / inference | peak RSS | "
          "page faults per timed round |")
    print("|---|---|---|---|---|---|---|---|")
    for r in records:
        print(f"| {r['config']} | {r['voxels']:,} / {r['augmented_voxels']:,} | {r['step_s'] * 1e3:.0f} ms | "
              f"{r['scans_per_s']:.2f} | {r['infer_s'] * 1e3:.0f} ms | {r['step_over_infer']:.2f}x | "
              f"{r['peak_rss_mb']:.0f} MB | {r['timed_page_faults_per_round']:,.0f} |")
    mink = records[0]
    verdict = "meets" if mink["step_over_infer"] <= GOAL else "misses"
    print(f"\n{mink['config']}: a training step takes {mink['step_over_infer']:.2f}x its inference time "
          f"({verdict} the {GOAL:.0f}x goal)")
    append_results("bench_train", records)


if __name__ == "__main__":
    main()
