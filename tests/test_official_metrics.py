"""The official numbers of SemanticKITTI (semantic-kitti-api) and nuScenes-lidarseg (nuscenes-devkit)
on confusion matrices computed here by hand: where the two protocols differ (absent classes, a prediction
of the ignored class, float32 unions) each follows its own."""

import math

import pytest
import torch

from pointengine.datasets.metrics import confusion_matrix, nuscenes_scores, semantickitti_scores

# (labelled class, predicted class) of nine points; class 0 is ignored, class 3 is in neither labels nor
# predictions once the ignored points are dropped, one point of class 2 is predicted as the ignored class.
PAIRS = [(1, 1), (1, 1), (1, 2), (2, 2), (2, 2), (2, 0), (0, 1), (0, 3), (4, 4), (4, 1)]


@pytest.fixture
def confusion():
    target, pred = torch.tensor(PAIRS).T
    return confusion_matrix(pred, target, num_classes=5, ignore_index=0)


def test_semantickitti_by_hand(confusion):
    scores = semantickitti_scores(confusion, ignore_index=0)
    # class 1: 2 hits, 1 false alarm (a 4), 1 miss (a 2); class 2: 2 hits, 1 false alarm, 1 miss (predicted
    # as the ignored class); class 3: absent, IoU 0 and still averaged; class 4: 1 hit, 1 miss.
    assert math.isnan(scores.class_iou[0])
    assert scores.class_iou[1:].tolist() == pytest.approx([2 / 4, 2 / 4, 0.0, 1 / 2], abs=1e-14)
    assert scores.miou == pytest.approx((0.5 + 0.5 + 0.0 + 0.5) / 4, abs=1e-14)
    assert scores.present.tolist() == [False, True, True, False, True]
    assert scores.miou_present == pytest.approx(0.5, abs=1e-14)
    # 5 hits over the 8 labelled points less the one predicted as the ignored class
    assert scores.accuracy == pytest.approx(5 / 7, abs=1e-14)
    assert scores.frequency_weighted_iou is None


def test_nuscenes_by_hand(confusion):
    scores = nuscenes_scores(confusion, ignore_index=0)
    # the point predicted as the ignored class leaves the matrix (the devkit zeroes that column): class 2
    # has 2 hits and 1 false alarm (a 1), no miss. Class 3 has no union: NaN, left out of the mean.
    iou = scores.class_iou.tolist()
    assert math.isnan(iou[0]) and math.isnan(iou[3])
    assert [iou[1], iou[2], iou[4]] == pytest.approx([2 / 4, 2 / 3, 1 / 2], abs=1e-14)
    assert scores.miou == pytest.approx((0.5 + 2 / 3 + 0.5) / 3, abs=1e-14)
    assert scores.miou_present == scores.miou
    # labelled points per class 3, 2, 2 (7 in all)
    assert scores.frequency_weighted_iou == pytest.approx((3 * 0.5 + 2 * 2 / 3 + 2 * 0.5) / 7, abs=1e-14)
    assert scores.accuracy == pytest.approx(5 / 7, abs=1e-14)


def test_nuscenes_union_in_float32_as_the_devkit():
    """The devkit divides by the union cast to float32: above 2**24 points that rounds, and a class
    predicted perfectly on 2**24 + 1 points scores 16777217 / 16777216."""
    confusion = torch.zeros(3, 3, dtype=torch.int64)
    confusion[1, 1], confusion[2, 2] = 2**24 + 1, 5
    scores = nuscenes_scores(confusion)
    assert scores.class_iou[1].item() == (2**24 + 1) / 2**24
    assert semantickitti_scores(confusion).class_iou[1].item() == (2**24 + 1) / (2**24 + 1 + 1e-15)


def test_nothing_labelled_has_no_scores():
    scores = semantickitti_scores(torch.zeros(4, 4, dtype=torch.int64))
    assert scores.miou == 0.0 and scores.accuracy == 0.0 and not bool(scores.present.any())
    assert math.isnan(nuscenes_scores(torch.zeros(4, 4, dtype=torch.int64)).miou)


@pytest.mark.parametrize(
    "confusion, ignore_index, message",
    [
        (torch.zeros(3, 4, dtype=torch.int64), 0, r"confusion must be a square matrix, got shape \[3, 4\]"),
        (torch.zeros(3, 3, dtype=torch.int64), 3, r"ignore_index must be a class id in \[0, 2\], got 3"),
    ],
)
def test_bad_confusion(confusion, ignore_index, message):
    for scores in (semantickitti_scores, nuscenes_scores):
        with pytest.raises(ValueError, match=message):
            scores(confusion, ignore_index)
