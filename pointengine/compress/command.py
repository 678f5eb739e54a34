"""`pointengine compress`: a trained model through optimize, prune (and a fine-tune), quantize, with a
table of what each step costs and keeps, the final model written as a checkpoint `Segmenter` loads,
and optionally the accuracy-latency trade-off as a PNG. cli.py registers it with
`add_compress_command`."""

import argparse
import json
import warnings
from pathlib import Path

# Calibration scans by default: synthetic ones, seeds far from the demo's unseen scan and the
# README's training set.
CALIBRATION_SEEDS = range(9000, 9004)


def add_compress_command(subparsers) -> None:
    command = subparsers.add_parser(
        "compress",
        help="optimize, prune, fine-tune and quantize a model; report size, MACs, latency and accuracy of each step",
        description="Compress a trained model step by step (float, optimized, pruned, fine-tuned, quantized) and print, "
        "for each: parameters, size on disk, MACs, latency on this machine, mIoU on the evaluation scans and the share "
        "of points labelled as the float model labels them. The last step is written to --out (a checkpoint that "
        "`pointengine segment --checkpoint` reads).",
    )
    command.add_argument("--config", default=None, help="zoo name or YAML path (default: the checkpoint's, else 'demo')")
    command.add_argument("--checkpoint", default=None, help="weights (as for segment; default: the config's)")
    command.add_argument("--prune", type=float, default=None, metavar="R", help="remove this share of the channels (0-1)")
    command.add_argument("--score", default="bn", choices=("bn", "l1"), help="channel importance for --prune (default bn)")
    command.add_argument("--finetune-epochs", type=int, default=0, metavar="E",
                         help="fine-tune the pruned model for E epochs with `pointengine train` on --data")
    command.add_argument("--data", default=None, metavar="ROOT", help="SemanticKITTI-layout folder for the fine-tune")
    command.add_argument("--train-sequences", nargs="+", default=None, help="fine-tune sequences (train's default)")
    command.add_argument("--optimizer", default=None, choices=("sgd", "adamw"), help="fine-tune optimizer (train's default)")
    command.add_argument("--lr", type=float, default=None, help="fine-tune learning rate (train's default for the optimizer)")
    command.add_argument("--distill-weight", type=float, default=0.0, metavar="W",
                         help="fine-tune with the float model as teacher, its term this share of the loss "
                         "(train --distill; default 0: labels only)")
    command.add_argument("--quantize", default=None, choices=("int8", "bf16"), help="quantize the last model")
    command.add_argument("--calib", default=None, metavar="DIR",
                         help="scans (.bin) to calibrate int8 activations on (default: 4 synthetic scans)")
    command.add_argument("--weight-bits", type=int, default=8, choices=(7, 8),
                         help="int8 weights in [-127, 127] (8, default) or [-63, 63] (7: faster on AVX2 CPUs)")
    command.add_argument("--calib-method", default="percentile", choices=("minmax", "percentile"),
                         help="int8 activation ranges: the 99.999th percentile (default) or the extremes")
    command.add_argument("--eval", default=None, metavar="ROOT",
                         help="SemanticKITTI root whose sequence --eval-sequence is scored (default: the unseen "
                         "synthetic demo scan)")
    command.add_argument("--eval-sequence", default="00")
    command.add_argument("--repeats", type=int, default=5, help="timed forwards per step (median; default 5)")
    command.add_argument("--out", required=True, help="checkpoint (.safetensors) of the last step")
    command.add_argument("--json", default=None, metavar="FILE", help="also write the table as JSON")
    command.add_argument("--plot", default=None, metavar="PNG", help="also draw mIoU against latency (needs matplotlib)")
    command.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    command.set_defaults(run=run_compress_command)


def run_compress_command(args: argparse.Namespace) -> int:
    import torch

    from ..segment import Segmenter
    from .pipeline import compress_steps
    from .report import steps_table, write_plot
    from .steps import measure

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
    if args.finetune_epochs and args.data is None:
        raise ValueError("--finetune-epochs needs --data (a SemanticKITTI-layout folder)")
    if args.weight_bits != 8 and args.quantize != "int8":
        raise ValueError("--weight-bits is for --quantize int8")
    with warnings.catch_warnings(record=True):  # an untrained model is said below
        seg = Segmenter(args.config, args.checkpoint)
    scans, scans_name = _evaluation_scans(seg, args)
    calibration = [seg.preprocess(points) for points in _calibration_points(seg, args)] if args.quantize else None
    steps, saved = compress_steps(seg, args, calibration, log=print)
    results = measure(seg, steps, scans, args.repeats)
    print(f"{seg.config.name} on {scans_name}, {torch.get_num_threads()} threads")
    print(steps_table(results))
    print(f"wrote {saved}")
    if args.json:
        Path(args.json).write_text(json.dumps([r.row() for r in results], indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.plot:
        print(f"wrote {write_plot(results, args.plot, f'{seg.config.name} on {scans_name}')}")
    if not seg.trained:
        print(f"note: {seg.config.name!r} has no trained weights (give --checkpoint): the accuracies are meaningless")
    return 0


def _evaluation_scans(seg, args) -> tuple[list, str]:
    from ..datasets import generate_scan
    from ..datasets.semantickitti import SemanticKITTI
    from ..demo import DEMO_SEED

    if args.eval is None:
        return [generate_scan(DEMO_SEED)], f"the unseen synthetic scan (seed {DEMO_SEED})"
    frames = SemanticKITTI(args.eval, (args.eval_sequence,), seg.config.dataset)
    scans = [frames[i] for i in range(len(frames)) if frames.frames[i][1] is not None]
    if not scans:
        raise ValueError(f"--eval {args.eval}: sequence {args.eval_sequence} has no labelled scans")
    return scans, f"{len(scans)} scans of {args.eval} sequence {args.eval_sequence}"


def _calibration_points(seg, args) -> list:
    from ..datasets import generate_scan
    from ..segment_files import read_scan

    if args.calib is None:
        return [generate_scan(seed).points for seed in CALIBRATION_SEEDS]
    files = sorted(Path(args.calib).rglob("*.bin"))
    if not files:
        raise ValueError(f"--calib {args.calib}: no .bin scans found")
    return [read_scan(seg, path) for path in files]
