"""The `pointengine bench` subcommand: its arguments and what it prints (cli.py registers it)."""

from __future__ import annotations

import sys
from pathlib import Path

from .layouts import LAYOUTS

# Segmenter's `views`, in the words of every command that takes --views (bench, segment, demo).
VIEWS_HELP = ("test-time augmentation: average each point's class probabilities over the scan turned about z "
              "by 360/N degrees N times (N passes of the model; default 1)")


def add_bench_parser(sub) -> None:
    bench = sub.add_parser(
        "bench",
        help="mIoU and latency of a model over a SemanticKITTI or nuScenes-lidarseg split",
        description="Run a model over a dataset split: per-class IoU, mIoU and accuracy as the official "
        "evaluations compute them, latency percentiles of each stage (loading, voxelization, model, mapping "
        "back), scans/s and peak memory. Under `torchrun --nproc_per_node N` the scans are shared between "
        "the processes and the first one reports the whole run.",
    )
    bench.add_argument("--dataset", required=True, choices=sorted(LAYOUTS))
    bench.add_argument("--root", required=True, metavar="DIR",
                       help="SemanticKITTI: the folder holding sequences/; nuScenes: the dataset root (devkit "
                       "tables in <version>/) or a plain folder of .pcd.bin scans")
    bench.add_argument("--split", nargs="+", default=["val"], metavar="NAME",
                       help="an official split (train, val, test; nuScenes also mini_train, mini_val), all, or "
                       "sequence names (SemanticKITTI: 00 08) or scene names (nuScenes: scene-0001); default val")
    bench.add_argument("--config", default=None,
                       help="zoo name or YAML path (default: the checkpoint's; else demo for SemanticKITTI, "
                       f"{LAYOUTS['nuscenes'].default_config} untrained for nuScenes)")
    bench.add_argument("--checkpoint", default=None, help="weights (any checkpoint `segment` reads)")
    bench.add_argument("--limit", type=int, default=None, metavar="N", help="only the split's first N scans")
    bench.add_argument("--save-predictions", default=None, metavar="DIR",
                       help="write predictions in the submission layout: SemanticKITTI "
                       "sequences/XX/predictions/*.label, nuScenes lidarseg/<split>/<token>_lidarseg.bin")
    bench.add_argument("--json", default=None, metavar="OUT", help="write every number as JSON to OUT, the "
                       "markdown tables beside it (.md)")
    bench.add_argument("--version", default=None, help="nuScenes tables to read (default: the split's, e.g. "
                       "v1.0-trainval for val, or the only ones there)")
    bench.add_argument("--skip-bad", action="store_true",
                       help="leave out scans that cannot be read (each one reported) instead of stopping")
    bench.add_argument("--workers", type=int, default=0,
                       help="processes that read and voxelize the next scans while the model runs (default 0: "
                       "all in this process)")
    bench.add_argument("--warmup", type=int, default=1, help="untimed forwards of the first scan (default 1)")
    bench.add_argument("--views", type=int, default=1, help=VIEWS_HELP)
    bench.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default cpu)")
    bench.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    bench.set_defaults(run=cmd_bench)


def cmd_bench(args) -> int:
    import torch

    from .report import markdown, write_reports
    from .run import BenchSettings, run_benchmark

    if args.threads:
        torch.set_num_threads(args.threads)
    settings = BenchSettings(
        dataset=args.dataset, root=Path(args.root), split=tuple(args.split), config=args.config,
        checkpoint=args.checkpoint, limit=args.limit,
        save_predictions=None if args.save_predictions is None else Path(args.save_predictions),
        version=args.version, device=args.device, workers=args.workers, warmup=args.warmup, skip_bad=args.skip_bad,
        views=args.views,
    )
    result = run_benchmark(settings)
    if torch.distributed.is_initialized() and torch.distributed.get_rank() > 0:
        return 0
    for item in result.skipped:
        print(f"skipped {item.path}: {item.reason}", file=sys.stderr)
    if not result.trained:
        print(f"note: {result.model!r} has no trained weights: its labels are meaningless (give --checkpoint)",
              file=sys.stderr)
    print(markdown(result), end="")
    if result.skipped:
        print(f"{len(result.skipped)} file{'s' if len(result.skipped) > 1 else ''} skipped (listed on stderr)")
    if args.json:
        json_path, markdown_path = write_reports(result, args.json)
        print(f"wrote {json_path} and {markdown_path}")
    if args.save_predictions:
        print(f"predictions under {args.save_predictions}")
    return 0
