"""The steps `pointengine compress` takes: float -> optimized -> pruned -> fine-tuned -> quantized (each
after the first optional), and the checkpoint of the last one."""

import tempfile
from pathlib import Path

from ..models import build_model, load_checkpoint
from ..models.checkpoint import save_checkpoint
from .optimize import optimize
from .prune import prune
from .quantize import quantize
from .steps import Step


def compress_steps(seg, args, calibration, log=print) -> tuple[list[Step], Path]:
    """The steps the arguments ask for, from `seg`'s model; the last is saved to args.out (a quantized
    model in its own form, otherwise the training form, which optimizes on loading as any model)."""
    config = seg.config.to_dict()
    current = seg.model.eval()
    steps = [Step("float", current, current), Step("optimized", optimize(current), current)]
    if args.prune:
        current = prune(current, args.prune, args.score).eval()
        steps.append(Step(f"pruned {args.prune:g}", optimize(current), current))
        if args.finetune_epochs:
            current = finetune(current, config, args, log, teacher=seg.model).eval()
            steps.append(Step(f"fine-tuned {args.finetune_epochs} epochs", optimize(current), current))
    if args.quantize:
        quantized = quantize(current, calibration, args.quantize, method=args.calib_method, weight_bits=args.weight_bits)
        steps.append(Step(args.quantize, quantized, current))
        return steps, save_checkpoint(quantized, args.out, config, training_form=current, precision=args.quantize)
    return steps, save_checkpoint(current, args.out, config)


def finetune(model, config: dict, args, log, teacher=None):
    """`model` trained further by `pointengine train` (its loop, checkpoints and settings) on args.data;
    with args.distill_weight > 0 it also learns `teacher`'s predictions (train --distill)."""
    from ..train import new_settings, train

    with tempfile.TemporaryDirectory() as folder:
        init = save_checkpoint(model, Path(folder) / "start.safetensors", config)
        distill = {}
        if args.distill_weight and teacher is not None:
            distill = {"distill": str(save_checkpoint(teacher, Path(folder) / "teacher.safetensors", config)),
                       "distill_weight": args.distill_weight}
        # From trained weights: a short warm-up, no validation split (the steps table scores it).
        settings = new_settings(None, init=str(init), epochs=args.finetune_epochs, optimizer=args.optimizer, lr=args.lr,
                                warmup_epochs=0.1, train_sequences=args.train_sequences, val_sequences=(), **distill)
        train(settings, args.data, Path(folder) / "run", log=log)
        tuned = build_model(settings.model_config())
        load_checkpoint(tuned, Path(folder) / "run" / "model.safetensors")
    return tuned
