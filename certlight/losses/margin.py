"""The paper's margin (eq. 6): worst-case probability of the true class minus the best other."""

from __future__ import annotations

import torch

from certlight.bounds.spec import other_classes_mask


def softmax_margin(worst_logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``softmax(z_hat)[y] - max_{m != y} softmax(z_hat)[m]``, in [-1, 1], shape (B,).

    Positive exactly when the example is certified at the bounded epsilon.
    """
    probs = worst_logits.softmax(dim=1)
    true = probs.gather(1, y.unsqueeze(1)).squeeze(1)
    others = probs.masked_fill(~other_classes_mask(y, probs.shape[1]), float("-inf"))
    return true - others.max(dim=1).values
