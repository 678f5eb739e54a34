"""The `pointengine` command: a thin argparse layer over the package.

  info      version, torch, how the extension was built
  demo      the main job on a built-in synthetic scan (no downloads)
  segment   label the points of scan files with a zoo model or a checkpoint
  train     train or fine-tune a model on labelled scans (data-parallel under torchrun)
  adjust-logits  shift a checkpoint's classifier bias by tau x log(class share) of labelled scans
  synthetic write seeded synthetic lidar scans with labels, in the SemanticKITTI layout
  export    a model as a torch.export program on plain tensors (.pt2)
  profile   per-layer profile of a model on a scan (profile_command.py)
  bench     mIoU and latency of a model over a SemanticKITTI or nuScenes-lidarseg split (evaluate/)
"""

import argparse
import sys
import warnings
from pathlib import Path

from . import __version__
from .demo import DEMO_SEED, REAL_DATA, run_demo
from .profile_command import add_profile_command
from .evaluate.command import VIEWS_HELP, add_bench_parser
from .compress.command import add_compress_command


def cmd_info(args) -> int:
    from .build_info import build_info

    print("\n".join(build_info().lines()))
    return 0


def cmd_demo(args) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    with warnings.catch_warnings(record=True):  # said below, in the command's own words
        r = run_demo(args.seed, args.model, args.checkpoint, args.repeats, args.out, args.real_data, args.views)
    views = f", {args.views} views (the scan turned about z, probabilities averaged)" if args.views > 1 else ""
    print(f"{r.model} on an unseen synthetic 64-beam scan (seed {args.seed}), {torch.get_num_threads()} threads{views}")
    print(f"points   {r.synthetic.points:,}")
    print(f"voxels   {r.synthetic.voxels:,}")
    print(f"MACs     {r.macs / 1e9:.1f} G" + (" per view" if args.views > 1 else ""))
    print(f"latency  {r.latency_s * 1e3:.0f} ms end to end (voxelize, kernel maps, network, labels per point"
          f"{', every view' if args.views > 1 else ''}; median of {args.repeats})")
    total = r.map_s + r.conv_s + r.other_s
    print(f"profile  kernel maps {r.map_s * 1e3:.0f} ms ({100 * r.map_s / total:.0f}%), "
          f"convolutions {r.conv_s * 1e3:.0f} ms ({100 * r.conv_s / total:.0f}%), "
          f"other layers {r.other_s * 1e3:.0f} ms ({100 * r.other_s / total:.0f}%)")
    scored = [r.synthetic] + ([r.real] if r.real is not None else [])
    print("\nIoU per class (%), classes present or predicted:")
    print(f"{'class':<14}" + "".join(f"{e.name:>18}" for e in scored))
    for name in (c for c in r.classes if any(c in e.iou for e in scored)):
        print(f"{name:<14}" + "".join(f"{100 * e.iou[name]:>18.1f}" if name in e.iou else f"{'-':>18}" for e in scored))
    for e in scored:
        print(f"mIoU {100 * e.miou:5.1f} %  {e.name}: {e.scans} scan{'s' if e.scans > 1 else ''}, "
              f"{e.points:,} points, {e.voxels:,} voxels; over the {len(e.labelled)} classes in its labels "
              f"only {100 * e.miou_labelled:.1f} %")
    if r.real is None:
        print(f"(no real scans at {args.real_data}/sequences/00: only the synthetic scan is scored)")
    for path in r.pictures:
        print(f"picture  {path}")
    if not r.trained:
        print(f"note: {r.model!r} has no trained weights: its labels are meaningless (give --checkpoint)")
    return 0


def cmd_segment(args) -> int:
    import torch

    from .segment import Segmenter
    from .segment_files import plan_jobs, segment_files

    if args.threads:
        torch.set_num_threads(args.threads)
    jobs, fmt = plan_jobs(args.paths, args.out, args.format)
    with warnings.catch_warnings(record=True):  # said below, in the command's own words
        seg = Segmenter(args.config, args.checkpoint, views=args.views)
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
             "weight_decay": args.weight_decay, "warmup_epochs": args.warmup_epochs,
             "class_balance": args.class_balance, "seed": args.seed,
             "init": args.init, "distill": args.distill, "distill_weight": args.distill_weight,
             "distill_temperature": args.distill_temperature, "lovasz_weight": args.lovasz_weight}
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


def cmd_adjust_logits(args) -> int:
    from .train.logit_adjustment import adjust_logits

    shift = adjust_logits(args.config, args.checkpoint, args.data, args.sequences, args.tau, args.out)
    print(f"classifier bias shifted by {args.tau} x log(class share) of sequences {' '.join(args.sequences)} "
          f"(from {shift.min().item():+.3f} to {shift.max().item():+.3f}); wrote {args.out}")
    return 0


def cmd_synthetic(args) -> int:
    from .datasets import write_synthetic_dataset

    sequences = {}
    for item in args.sequences:
        name, _, frames = item.partition("=")
        if not frames.isdigit():
            raise ValueError(f"--sequences takes SEQ=FRAMES items such as 00=600, got {item!r}")
        sequences[name] = int(frames)
    root = write_synthetic_dataset(args.root, sequences, args.seed, progress=True, rare=args.rare)
    count = sum(sequences.values())
    print(f"wrote {count} labelled scan{'s' if count != 1 else ''} under {root / 'sequences'}")
    return 0


def cmd_export(args) -> int:
    import torch

    from .compress import export_model, optimize
    from .datasets import generate_scan
    from .segment import Segmenter
    from .segment_files import read_scan

    with warnings.catch_warnings(record=True):  # an untrained model is said below
        seg = Segmenter(args.config, args.checkpoint)
    model = optimize(seg.model) if args.optimize else seg.model
    example = seg.preprocess(generate_scan(seed=0).points if args.scan is None else read_scan(seg, Path(args.scan)))
    export_model(model, example, args.out)
    program = torch.export.load(args.out).module()
    with torch.no_grad():
        logits = program(example.feats, example.coords)
        agree = logits.argmax(1) == model(example).feats.argmax(1)
    print(f"wrote {args.out} ({'optimized ' if args.optimize else ''}{seg.config.name}, feats [N, "
          f"{example.feats.shape[1]}] and int32 coords [N, 4] in, logits [N, {logits.shape[1]}] out); loaded "
          f"back, it gives the module's label on {int(agree.sum())} of {len(agree)} voxels of the example")
    if not seg.trained:
        print(f"note: {seg.config.name!r} has no trained weights (give --checkpoint)", file=sys.stderr)
    return 0 if bool(agree.all()) else 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pointengine", description="Sparse point-cloud inference for lidar.")
    p.add_argument("--version", action="version", version=f"pointengine {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="version, torch, build flags").set_defaults(run=cmd_info)

    demo = sub.add_parser("demo", help="the trained demo model on an unseen synthetic scan, and real scans when present (no downloads)")
    demo.add_argument("--seed", type=int, default=DEMO_SEED, help=f"synthetic scene seed (default {DEMO_SEED}, unseen in training)")
    demo.add_argument("--model", default="demo", help="zoo name or YAML path (default: the trained demo model)")
    demo.add_argument("--checkpoint", default=None, help="weights (default: the ones shipped with --model)")
    demo.add_argument("--repeats", type=int, default=3, help="timed passes")
    demo.add_argument("--views", type=int, default=1, help=VIEWS_HELP)
    demo.add_argument("--out", default="demo_output", help="folder for the picture (default ./demo_output)")
    demo.add_argument("--real-data", default=str(REAL_DATA), metavar="ROOT",
                      help=f"SemanticKITTI root whose sequence 00 is scored when present (default {REAL_DATA})")
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
    seg.add_argument("--views", type=int, default=1, help=VIEWS_HELP)
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
    tr.add_argument("--class-balance", type=float, default=None, metavar="P",
                    help="weight each class's loss by its share of the training points to the power -P "
                    "(0.5: inverse square root), default 0: unweighted")
    tr.add_argument("--lovasz-weight", type=float, default=None, metavar="W",
                    help="add W x the Lovász-softmax loss (a surrogate of 1 - IoU per class, taken per scan) to "
                    "the cross-entropy, default 0: none")
    tr.add_argument("--seed", type=int, default=None, help="initialisation, shuffling and augmentation, default 0")
    tr.add_argument("--out", default=None, help="run folder (default: the --resume folder, else runs/train)")
    tr.add_argument("--resume", default=None, metavar="DIR_OR_FILE", help="continue a run from its folder")
    tr.add_argument("--init", default=None, metavar="CHECKPOINT",
                    help="start from these weights (any checkpoint load_checkpoint reads)")
    tr.add_argument("--distill", default=None, metavar="CHECKPOINT",
                    help="a teacher: the model also learns to match its class distribution on every voxel "
                    "(knowledge distillation; e.g. the float model when fine-tuning a pruned one)")
    tr.add_argument("--distill-weight", type=float, default=None, metavar="W",
                    help="the teacher term's share of the loss, in [0, 1] (default 0.5)")
    tr.add_argument("--distill-temperature", type=float, default=None, metavar="T",
                    help="softens both distributions (default 2)")
    tr.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default cpu)")
    tr.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    tr.set_defaults(run=cmd_train)

    adj = sub.add_parser(
        "adjust-logits",
        help="shift a checkpoint's classifier bias by tau x log(class share) of labelled scans",
        description="Logit adjustment: add TAU x log(share of each class in the labelled points of SEQ under ROOT) "
        "to the classifier's bias and write the checkpoint again. Undoes part (TAU < P) or all (TAU = P) of the "
        "push toward rare classes of a loss weighted with --class-balance P, without training again.",
    )
    adj.add_argument("--config", default=None, help="zoo name or YAML path (default: the checkpoint's)")
    adj.add_argument("--checkpoint", required=True, help="the weights to adjust")
    adj.add_argument("--data", required=True, metavar="ROOT", help="folder holding sequences/ (the training scans)")
    adj.add_argument("--sequences", nargs="+", required=True, metavar="SEQ", help="whose labels give the shares")
    adj.add_argument("--tau", type=float, required=True, help="the multiple of log(share) added")
    adj.add_argument("--out", required=True, help="the checkpoint to write (.safetensors)")
    adj.set_defaults(run=cmd_adjust_logits)

    exp = sub.add_parser(
        "export",
        help="write a model as a torch.export program (.pt2)",
        description="Write a torch.export program that takes feats [N, C] and int32 coords [N, 4] (batch, x, y, z "
        "voxel indices) and returns voxel logits; N is dynamic. Load it with `import pointengine` and "
        "torch.export.load(PATH).module().",
    )
    exp.add_argument("--config", default=None, help="zoo name or YAML path (default: the checkpoint's, else 'demo')")
    exp.add_argument("--checkpoint", default=None, help="weights (as for segment)")
    exp.add_argument("--optimize", action="store_true", help="export pointengine.optimize(model): BN folded, fused epilogues")
    exp.add_argument("--scan", default=None, help="point file to trace on (default: a synthetic scan)")
    exp.add_argument("--out", required=True, help="the .pt2 file to write")
    exp.set_defaults(run=cmd_export)

    syn = sub.add_parser(
        "synthetic",
        help="write seeded synthetic lidar scans with labels (SemanticKITTI layout)",
        description="Write synthetic 64-beam scans of procedural streets with their labels under "
        "ROOT/sequences/<seq>/{velodyne,labels}/; every (seed, sequence, frame) is its own street, the same "
        "on every machine.",
    )
    syn.add_argument("root", metavar="ROOT")
    syn.add_argument("--sequences", nargs="+", required=True, metavar="SEQ=FRAMES", help="e.g. 00=600 08=12")
    syn.add_argument("--seed", type=int, default=0, help="default 0")
    syn.add_argument("--rare", type=float, default=1.0, metavar="R",
                     help="R times as many riders, two-wheelers, people, trucks, other vehicles and fences "
                     "(default 1: the usual streets)")
    syn.set_defaults(run=cmd_synthetic)

    add_profile_command(sub)
    add_bench_parser(sub)
    add_compress_command(sub)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except ValueError as error:
        print(f"pointengine {args.command}: error: {error}", file=sys.stderr)
        return 2
