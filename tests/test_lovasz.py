"""The Lovász-softmax loss against its definitions: 1 - IoU per class on hard predictions (IoU counted
from sets of points), the Lovász extension as an integral over error thresholds on soft ones, and its
gradient against finite differences."""

import numpy as np
import pytest
import torch

from pointengine.train.lovasz import lovasz_softmax


def jaccard_loss(mispredicted: set, truth: set) -> float:
    """Δ(M) = |M| / |truth ∪ M|, 0 for an empty M."""
    return len(mispredicted) / len(truth | mispredicted) if mispredicted else 0.0


def lovasz_by_thresholds(logits: np.ndarray, target: np.ndarray) -> float:
    """The mean over present classes of ∫_0^1 Δ({i : error_i >= t}) dt, summed exactly over the
    intervals between the distinct errors."""
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    losses = []
    for c in np.unique(target):
        truth = set(np.flatnonzero(target == c).tolist())
        errors = np.abs((target == c).astype(np.float64) - probs[:, c])
        levels = sorted(set(errors.tolist()), reverse=True) + [0.0]
        total = sum((high - low) * jaccard_loss(set(np.flatnonzero(errors >= high).tolist()), truth)
                    for high, low in zip(levels, levels[1:]))
        losses.append(total)
    return float(np.mean(losses))


@pytest.mark.parametrize("seed", range(6))
def test_hard_predictions_give_one_minus_iou(seed):
    rng = np.random.default_rng(seed)
    classes, n = 5, 60
    target = rng.integers(0, classes - 1, n)  # the last class is never present, only sometimes predicted
    predicted = np.where(rng.random(n) < 0.6, target, rng.integers(0, classes, n))
    logits = torch.full((n, classes), -1e4, dtype=torch.float64)
    logits[torch.arange(n), torch.from_numpy(predicted)] = 0.0  # softmax is exactly one-hot
    expected = []
    for c in np.unique(target):
        truth, said = set(np.flatnonzero(target == c)), set(np.flatnonzero(predicted == c))
        expected.append(1.0 - len(truth & said) / len(truth | said))
    loss = lovasz_softmax(logits, torch.from_numpy(target))
    assert float(loss) == pytest.approx(float(np.mean(expected)), abs=1e-12)


@pytest.mark.parametrize("seed", range(8))
def test_soft_predictions_give_the_lovasz_extension(seed):
    rng = np.random.default_rng(100 + seed)
    classes, n = 4, int(rng.integers(1, 14))
    logits = rng.normal(0.0, 2.0, (n, classes))
    target = rng.integers(0, classes, n)
    loss = lovasz_softmax(torch.from_numpy(logits), torch.from_numpy(target))
    assert float(loss) == pytest.approx(lovasz_by_thresholds(logits, target), abs=1e-12)


def test_float32_logits_give_a_float32_loss_close_to_float64():
    rng = np.random.default_rng(7)
    logits, target = rng.normal(0.0, 2.0, (500, 6)), torch.from_numpy(rng.integers(0, 6, 500))
    loss32 = lovasz_softmax(torch.from_numpy(logits).float(), target)
    assert loss32.dtype == torch.float32
    assert float(loss32) == pytest.approx(float(lovasz_softmax(torch.from_numpy(logits), target)), rel=1e-5)


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(3)
    logits = torch.from_numpy(rng.normal(0.0, 1.5, (12, 4))).requires_grad_()
    target = torch.from_numpy(rng.integers(0, 4, 12))
    assert torch.autograd.gradcheck(lambda x: lovasz_softmax(x, target), (logits,))


def test_no_points_give_zero_with_a_gradient():
    logits = torch.zeros(0, 3, requires_grad=True)
    loss = lovasz_softmax(logits, torch.zeros(0, dtype=torch.int64))
    loss.backward()
    assert float(loss.detach()) == 0.0 and logits.grad.shape == (0, 3)
