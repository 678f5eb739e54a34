"""Logit adjustment of a trained model: its classifier's bias shifted by tau x log(share of each class in
labelled training scans), `pointengine adjust-logits`.

A loss weighted by share^-p (`pointengine train --class-balance P`) pushes the model's logits toward
the rare classes by about -p x log(share); adding tau x log(share) afterwards takes part or all of
that push back (tau = p: all of it, in theory) without training again. The demo model's tau was chosen
on its validation scans (README: "The demo model").
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor

from ..datasets.config import DatasetConfig


def logit_shift(class_points: Tensor, tau: float, config: DatasetConfig) -> Tensor:
    """tau x log(share) of each logit column (`config.predicted_classes` order), float32. `class_points`
    (int64 [num_classes], as LabelledFrames counts them) gets one point more in every predicted class
    first, so that a class without points has the smallest share instead of log(0)."""
    if not math.isfinite(tau):
        raise ValueError(f"tau must be a finite number, got {tau}")
    if class_points.shape != (config.num_classes,):
        raise ValueError(f"class_points must have one count per class ({config.num_classes}), got {tuple(class_points.shape)}")
    points = class_points.index_select(0, torch.tensor(config.predicted_classes)).double() + 1
    return (tau * (points / points.sum()).log()).float()


def shift_classifier_bias(model: torch.nn.Module, shift: Tensor) -> None:
    """Adds `shift` to the bias of `model.classifier` (a Linear with a bias, one output per logit column),
    in place."""
    classifier = getattr(model, "classifier", None)
    if not isinstance(classifier, torch.nn.Linear) or classifier.bias is None:
        raise ValueError(f"{type(model).__name__} has no float classifier with a bias (model.classifier, a Linear) "
                         "to shift; adjust the float model before compressing it")
    if classifier.bias.shape != shift.shape:
        raise ValueError(f"the classifier has {classifier.bias.shape[0]} outputs, the shift {shift.shape[0]} classes")
    with torch.no_grad():
        classifier.bias.add_(shift.to(classifier.bias))


def adjust_logits(config, checkpoint: str | Path, data: str | Path, sequences, tau: float, out: str | Path) -> Tensor:
    """Loads `checkpoint` (with `config`, or the checkpoint's own when None), shifts its classifier's bias
    by logit_shift of the labelled points of `sequences` under `data` (the SemanticKITTI layout), writes
    the result to `out` and returns the shift."""
    from ..models.checkpoint import save_checkpoint
    from ..segment import Segmenter
    from .data import LabelledFrames

    segmenter = Segmenter(config, checkpoint)
    frames = LabelledFrames(data, sequences, segmenter.config.dataset)
    shift = logit_shift(frames.class_points, tau, segmenter.config.dataset)
    shift_classifier_bias(segmenter.model, shift)
    save_checkpoint(segmenter.model, out, segmenter.config.to_dict())
    return shift
