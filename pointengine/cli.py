"""The `pointengine` command: `info`, and `demo` (the main job on a built-in synthetic scan)."""

import argparse


def cmd_info(args) -> int:
    from .build_info import build_info

    print("\n".join(build_info().lines()))
    return 0


def cmd_demo(args) -> int:
    import torch

    from .demo import run_demo

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"synthetic 64-beam scan (seed {args.seed}) -> {args.model} at {args.voxel_size} m voxels, "
          f"{torch.get_num_threads()} threads")
    r = run_demo(args.seed, args.model, args.voxel_size, args.repeats)
    print(f"points   {r.points:,}")
    print(f"voxels   {r.voxels:,}")
    print(f"MACs     {r.macs / 1e9:.1f} G")
    print(f"latency  {r.latency_s * 1e3:.0f} ms end to end (kernel maps built inside; median of {args.repeats})")
    total = r.map_s + r.conv_s + r.other_s
    print(f"profile  kernel maps {r.map_s * 1e3:.0f} ms ({100 * r.map_s / total:.0f}%), "
          f"convolutions {r.conv_s * 1e3:.0f} ms ({100 * r.conv_s / total:.0f}%), "
          f"other layers {r.other_s * 1e3:.0f} ms ({100 * r.other_s / total:.0f}%)")
    top = sorted(r.point_classes.items(), key=lambda kv: -kv[1])[:5]
    print("points per predicted class: " + ", ".join(f"{name} {n:,}" for name, n in top))
    print("note: the weights are random (seeded) until a trained checkpoint ships, so the classes mean nothing yet")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pointengine", description="Sparse point-cloud inference for lidar.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="version, torch, build flags").set_defaults(run=cmd_info)
    demo = sub.add_parser("demo", help="MinkUNet on a built-in synthetic lidar scan (no downloads)")
    demo.add_argument("--seed", type=int, default=0, help="synthetic scene and weight seed")
    demo.add_argument("--model", default="minkunet_cr1.0", help="zoo name or YAML path")
    demo.add_argument("--voxel-size", type=float, default=0.05, help="metres")
    demo.add_argument("--repeats", type=int, default=3, help="timed forward passes")
    demo.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    demo.set_defaults(run=cmd_demo)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    return args.run(args)
