"""`pointengine profile SCAN`: the per-layer profile of a model on one scan, through the Segmenter's
preprocessing (the config's voxel size and features), as a table and optionally CSV, JSON, a Chrome
trace and plots. cli.py registers it with `add_profile_command`."""

import argparse
import warnings
from pathlib import Path


def add_profile_command(subparsers) -> None:
    command = subparsers.add_parser(
        "profile",
        help="per-layer profile of a model on a scan: kernel maps, compute, MACs, GFLOP/s against this machine's peak",
        description="Profile one forward pass of a model on a scan, layer by layer: kind, tensor stride, sites, "
        "kernel-map pairs, MACs, kernel-map and compute time, achieved GFLOP/s and its share of a GEMM of the "
        "layer's shape and of the machine's peak (both measured in the same run), a memory-traffic estimate, the "
        "share of the total; and the uninstrumented end-to-end time it should add up to. Kernel maps are built "
        "inside every timed forward, as for a new scan.",
    )
    command.add_argument("scan", metavar="SCAN", help="a scan file (.bin, .npy; .pcd/.ply/.las/.laz with pointengine[io])")
    command.add_argument("--config", default=None, help="zoo name or YAML path (default: the checkpoint's, else 'demo')")
    command.add_argument("--checkpoint", default=None, help="weights, any layout `pointengine segment` reads; the "
                         "dataflows a tuned checkpoint holds are used")
    command.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default cpu; CUDA times with events)")
    command.add_argument("--repeats", type=int, default=3, help="profiled forwards (each after an uninstrumented "
                         "one); times are medians (default 3)")
    command.add_argument("--no-peaks", action="store_true", help="skip the GEMM rates (same-shape and peak)")
    command.add_argument("--csv", default=None, metavar="FILE", help="also write the table as CSV")
    command.add_argument("--json", default=None, metavar="FILE", help="also write the profile as JSON")
    command.add_argument("--trace", default=None, metavar="FILE",
                         help="also write a Chrome trace (open in chrome://tracing or ui.perfetto.dev)")
    command.add_argument("--plot", default=None, metavar="DIR",
                         help="also write DIR/profile_time.png and DIR/profile_rates.png (needs matplotlib)")
    command.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    command.set_defaults(run=run_profile_command)


def run_profile_command(args: argparse.Namespace) -> int:
    import torch

    from .profile_report import profile_table, write_csv, write_json, write_trace
    from .profiler import profile
    from .segment import Segmenter
    from .segment_files import read_scan

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
    with warnings.catch_warnings(record=True):  # said below, in the command's own words
        seg = Segmenter(args.config, args.checkpoint, device=args.device)
    points = read_scan(seg, Path(args.scan))
    x = seg.preprocess(points)
    print(f"{seg.config.name} on {args.scan}: {len(points):,} points, {x.num_sites:,} voxels at {seg.config.voxel_size} m"
          + ("" if seg.trained else " (untrained weights: the times do not depend on them)"))
    result = profile(seg.model, x, repeats=args.repeats, peaks=not args.no_peaks)
    print(profile_table(result))
    written = []
    if args.csv:
        written.append(write_csv(result, args.csv))
    if args.json:
        written.append(write_json(result, args.json))
    if args.trace:
        written.append(write_trace(result, args.trace))
    if args.plot:
        from .profile_plot import write_plots

        written += write_plots(result, args.plot)
    for path in written:
        print(f"wrote {path}")
    return 0
