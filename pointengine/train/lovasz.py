"""The Lovász-softmax loss (Berman, Rannen Triki and Blaschko, CVPR 2018): a convex surrogate of 1 - IoU
per class, which cross-entropy alone does not optimise. For class c, m_i = |[y_i = c] - p_i(c)| is each
point's error; the loss is the Lovász extension of the Jaccard loss Δ(M) = |M| / |{y = c} ∪ M| (M the
mispredicted points) at m, which equals Δ itself where the probabilities are 0 or 1. It is taken per
scan, so that a global batch split between processes sums the same terms."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def lovasz_softmax(logits: Tensor, target: Tensor) -> Tensor:
    """The mean over the classes present in `target` [N] (class ids; no ignored points) of the Lovász
    extension of their Jaccard loss at softmax(logits [N, C]), in the logits' dtype; 0 when N = 0."""
    if target.numel() == 0:
        return logits.sum() * 0.0
    probs = F.softmax(logits, dim=1)
    present = torch.unique(target)
    truth = (target.unsqueeze(0) == present.unsqueeze(1)).to(probs.dtype)  # [classes present, N]
    errors = (truth - probs.index_select(1, present).t()).abs()
    errors, order = errors.sort(dim=1, descending=True)
    truth = truth.gather(1, order)
    # Δ of the first k sorted points taken as mispredicted, for k = 1..N; its steps weigh the errors.
    positives = truth.sum(1, keepdim=True)
    jaccard = 1.0 - (positives - truth.cumsum(1)) / (positives + (1.0 - truth).cumsum(1))
    steps = torch.cat([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], dim=1)
    return (errors * steps).sum(1).mean()
