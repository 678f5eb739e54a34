"""Segmentation metrics: confusion matrix, per-class intersection over union, and their mean.

Points whose target is the ignore class are left out. A prediction of the ignore class on a
labelled point counts as a miss for the true class, so a model cannot gain by abstaining.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import check_tensor


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int = 0) -> Tensor:
    """int64 [num_classes, num_classes]: entry [t, p] counts the points of class t predicted as p.
    Matrices of several scans add up."""
    check_tensor(pred, "pred")
    check_tensor(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have one shape, got {list(pred.shape)} and {list(target.shape)}")
    for name, labels in (("pred", pred), ("target", target)):
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise ValueError(f"{name} must hold integer class ids, got {labels.dtype}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            lo, hi = int(labels.min()), int(labels.max())
            raise ValueError(f"{name} must be in [0, {num_classes - 1}], got [{lo}, {hi}]")
    keep = target != ignore_index
    pairs = target[keep].long() * num_classes + pred[keep].long().to(target.device)
    return torch.bincount(pairs, minlength=num_classes * num_classes).reshape(num_classes, num_classes).cpu()


def class_iou(confusion: Tensor, ignore_index: int = 0) -> Tensor:
    """float64 [C]: true positives / (true + false positives + false negatives) per class; NaN for
    the ignore class and for classes neither present nor predicted."""
    confusion = confusion.double()
    hits = confusion.diagonal()
    union = confusion.sum(0) + confusion.sum(1) - hits
    iou = torch.where(union > 0, hits / union.clamp(min=1), float("nan"))
    iou[ignore_index] = float("nan")
    return iou


def mean_iou(confusion: Tensor, ignore_index: int = 0) -> float:
    """The mean of `class_iou` over the classes that are present or predicted."""
    return float(class_iou(confusion, ignore_index).nanmean())
