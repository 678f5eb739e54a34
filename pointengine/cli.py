"""The `pointengine` command: a thin argparse layer over the package.

  info      version, torch, how the extension was built
  demo      the main job on a built-in synthetic scan (no downloads)
  segment   label the points of scan files with a zoo model or a checkpoint
  train     train or fine-tune a model on labelled scans (data-parallel under torchrun)
"""

import argparse
import sys
import warnings
from pathlib import Path

from . import __version__


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


def cmd_segment(args) -> int:
    import torch

    from .segment import Segmenter
    from .segment_files import plan_jobs, segment_files

    if args.threads:
        torch.set_num_threads(args.threads)
    jobs, fmt = plan_jobs(args.paths, args.out, args.format)
    with warnings.catch_warnings(record=True):  # said below, in the command's own words
        seg = Segmenter(args.config, args.checkpoint)
    if not seg.trained:
        print(f"note: {seg.config.name!r} has no trained weights yet: the labels are meaningless "
              "(give --checkpoint to use trained weights)", file=sys.stderr)
    summary = segment_files(seg, jobs, fmt, png=args.png, ply=args.ply)
    written = f"wrote {jobs[0].output(f'.{fmt}')}" if len(jobs) == 1 else f".{fmt} files under {args.out or 'predictions'}"
    print(f"{summary.line()}; {written}")
    return 0


def cmd_train(args) -> int:
    import torch

    from .train import load_train_state, new_settings, resumed_settings, train

    if args.threads:
        torch.set_num_threads(args.threads)
    given = {"train_sequences": args.train_sequences, "val_sequences": args.val_sequences, "epochs": args.epochs,
             "batch_size": args.batch_size, "optimizer": args.optimizer, "lr": args.lr,
             "weight_decay": args.weight_decay, "warmup_epochs": args.warmup_epochs, "seed": args.seed,
             "init": args.init}
    if args.resume:
        settings = resumed_settings(load_train_state(args.resume).settings, args.config, **given)
    else:
        settings = new_settings(args.config, **given)
    resumed_run = None if args.resume is None else Path(args.resume) if Path(args.resume).is_dir() else Path(args.resume).parent
    out = args.out or resumed_run or "runs/train"
    records = train(settings, args.data, out, resume=args.resume, device=args.device)
    main_process = not (torch.distributed.is_initialized() and torch.distributed.get_rank() > 0)
    if main_process and records and records[-1].val_miou is not None:
        print(f"final val mIoU {100 * records[-1].val_miou:.1f}% after {records[-1].epoch} epochs; weights in "
              f"{Path(out) / 'model.safetensors'}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pointengine", description="Sparse point-cloud inference for lidar.")
    p.add_argument("--version", action="version", version=f"pointengine {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="version, torch, build flags").set_defaults(run=cmd_info)

    demo = sub.add_parser("demo", help="MinkUNet on a built-in synthetic lidar scan (no downloads)")
    demo.add_argument("--seed", type=int, default=0, help="synthetic scene and weight seed")
    demo.add_argument("--model", default="minkunet_cr1.0", help="zoo name or YAML path")
    demo.add_argument("--voxel-size", type=float, default=0.05, help="metres")
    demo.add_argument("--repeats", type=int, default=3, help="timed forward passes")
    demo.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    demo.set_defaults(run=cmd_demo)

    seg = sub.add_parser(
        "segment",
        help="label every point of lidar scans",
        description="Label every point of lidar scans: .bin (KITTI, nuScenes .pcd.bin), .npy, and with "
        "pointengine[io] .pcd, .ply, .las, .laz. PATH: files, folders (searched recursively) or globs.",
    )
    seg.add_argument("paths", nargs="+", metavar="PATH")
    seg.add_argument("--config", default=None, help="zoo name or YAML path (default: the checkpoint's, else 'demo')")
    seg.add_argument("--checkpoint", default=None, help="weights: our .safetensors, or TorchSparse/SPVNAS, "
                     "MinkowskiEngine, spconv .pt/.pth files")
    seg.add_argument("--out", default=None, help="output folder (default ./predictions), or the .label/.npy file "
                     "of a single scan")
    seg.add_argument("--format", choices=["label", "npy"], default=None,
                     help="label: SemanticKITTI .label (uint32 raw ids); npy: the same ids as a numpy array")
    seg.add_argument("--png", action="store_true", help="also write a bird's-eye-view picture per scan")
    seg.add_argument("--ply", action="store_true", help="also write a point cloud coloured by class per scan")
    seg.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    seg.set_defaults(run=cmd_segment)

    tr = sub.add_parser(
        "train",
        help="train or fine-tune a model on labelled scans",
        description="Train a zoo model (or fine-tune a checkpoint) on scans in the SemanticKITTI layout "
        "(ROOT/sequences/<seq>/velodyne/*.bin, labels/*.label). Under `torchrun --nproc_per_node N` the same "
        "command trains data-parallel, the global batch shared between the processes.",
    )
    tr.add_argument("--config", default=None, help="zoo name or YAML path (default: the --init checkpoint's)")
    tr.add_argument("--data", required=True, metavar="ROOT", help="folder holding sequences/")
    tr.add_argument("--train-sequences", nargs="+", default=None, metavar="SEQ", help="default: 00-07 09 10")
    tr.add_argument("--val-sequences", nargs="*", default=None, metavar="SEQ",
                    help="default: 08; none to skip validation")
    tr.add_argument("--epochs", type=int, default=None, help="default 15")
    tr.add_argument("--batch-size", type=int, default=None, help="global batch in scans, default 2")
    tr.add_argument("--optimizer", choices=["sgd", "adamw"], default=None, help="default sgd (nesterov, momentum 0.9)")
    tr.add_argument("--lr", type=float, default=None, help="peak learning rate (default 0.1 sgd, 2e-3 adamw)")
    tr.add_argument("--weight-decay", type=float, default=None, help="default 1e-4")
    tr.add_argument("--warmup-epochs", type=float, default=None, help="linear warm-up before the cosine, default 1")
    tr.add_argument("--seed", type=int, default=None, help="initialisation, shuffling and augmentation, default 0")
    tr.add_argument("--out", default=None, help="run folder (default: the --resume folder, else runs/train)")
    tr.add_argument("--resume", default=None, metavar="DIR_OR_FILE", help="continue a run from its folder")
    tr.add_argument("--init", default=None, metavar="CHECKPOINT",
                    help="start from these weights (any checkpoint load_checkpoint reads)")
    tr.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default cpu)")
    tr.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    tr.set_defaults(run=cmd_train)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except ValueError as error:
        print(f"pointengine {args.command}: error: {error}", file=sys.stderr)
        return 2
