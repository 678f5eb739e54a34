"""Segmentation metrics: confusion matrix, per-class intersection over union, and their mean; and the
official numbers of the SemanticKITTI and nuScenes-lidarseg benchmarks (semantickitti_scores,
nuscenes_scores), which differ in how they treat absent classes.

Points whose target is the ignore class are left out. A prediction of the ignore class on a
labelled point counts as a miss for the true class, so a model cannot gain by abstaining.
"""

from __future__ import annotations

from dataclasses import dataclass

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
        lo, hi = (int(v) for v in torch.aminmax(labels)) if labels.numel() else (0, 0)
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"{name} must be in [0, {num_classes - 1}], got [{lo}, {hi}]")
    pairs = target.long() * num_classes + pred.long().to(target.device)
    confusion = torch.bincount(pairs.reshape(-1), minlength=num_classes * num_classes).reshape(num_classes, num_classes)
    if 0 <= ignore_index < num_classes:  # the ignored targets' row: cheaper than selecting the other points first
        confusion[ignore_index] = 0
    return confusion.cpu()


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


@dataclass(frozen=True)
class Scores:
    """A benchmark's official numbers from a confusion matrix: `class_iou` float64 [C] (NaN for the ignore
    class and for the classes the protocol leaves out), `miou`, `accuracy`, and `present` (bool [C]):
    the classes found in the labels or the predictions. `miou_present` averages the IoU over those only,
    which is what a handful of scans can say (the official mean counts classes they lack as 0 in
    SemanticKITTI). `frequency_weighted_iou` is nuScenes' second number (None for SemanticKITTI)."""

    class_iou: Tensor
    miou: float
    accuracy: float
    present: Tensor
    miou_present: float
    frequency_weighted_iou: float | None = None


def semantickitti_scores(confusion: Tensor, ignore_index: int = 0) -> Scores:
    """As semantic-kitti-api's evaluate_semantics.py (auxiliary/np_ioueval.py) computes them: points
    labelled with the ignore class are dropped, a prediction of the ignore class on a labelled point is a
    miss; IoU = TP / (TP + FP + FN + 1e-15) for every class but the ignored one, mIoU their mean (a
    class absent from labels and predictions counts 0), accuracy = the hits over the labelled points not
    predicted as the ignore class."""
    confusion = _without_ignored_targets(confusion, ignore_index)
    hits = confusion.diagonal()
    predicted, labelled = confusion.sum(0), confusion.sum(1)
    union = predicted + labelled - hits
    include = torch.arange(confusion.shape[0]) != ignore_index
    iou = hits / (union + 1e-15)
    iou[ignore_index] = float("nan")
    accuracy = float(hits.sum() / (predicted[include].sum() + 1e-15))
    present = (union > 0) & include
    return Scores(iou, float(iou[include].mean()), accuracy, present, float(iou[present].mean()))


def nuscenes_scores(confusion: Tensor, ignore_index: int = 0) -> Scores:
    """As nuscenes-devkit's lidarseg evaluation (eval/lidarseg/utils.py, ConfusionMatrix) computes them:
    the ignore class's row and column are zeroed; IoU = TP / union with the union rounded to float32 as
    the devkit does (NaN where the union is 0), mIoU the mean over the classes with a union,
    frequency-weighted IoU = sum(labelled points of c x IoU_c) / labelled points. The devkit reports no
    accuracy: ours is the hits over the labelled points."""
    confusion = _without_ignored_targets(confusion, ignore_index)
    confusion[:, ignore_index] = 0
    hits = confusion.diagonal()
    labelled = confusion.sum(1)
    union = confusion.sum(0) + labelled - hits
    iou = hits / union.float().double()
    present = union > 0
    miou = float(iou.nanmean())
    weighted = float(torch.nansum(labelled * iou) / labelled.sum())
    return Scores(iou, miou, float(hits.sum() / labelled.sum()), present, miou, weighted)


def _without_ignored_targets(confusion: Tensor, ignore_index: int) -> Tensor:
    """A float64 copy of a [target, pred] confusion matrix with the ignore class's row zeroed."""
    if confusion.dim() != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(f"confusion must be a square matrix, got shape {list(confusion.shape)}")
    if not 0 <= ignore_index < confusion.shape[0]:
        raise ValueError(f"ignore_index must be a class id in [0, {confusion.shape[0] - 1}], got {ignore_index}")
    confusion = confusion.double().cpu().clone()
    confusion[ignore_index] = 0
    return confusion
