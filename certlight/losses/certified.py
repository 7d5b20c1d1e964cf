"""The mixed certified-training loss (eq. 8)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def certified_loss(
    clean_logits: torch.Tensor,
    worst_logits: torch.Tensor,
    y: torch.Tensor,
    kappa: float,
    weights: torch.Tensor | None = None,
    weight_total: torch.Tensor | None = None,
) -> torch.Tensor:
    """``kappa * mean CE(clean) + (1 - kappa) * sum(w * CE(worst)) / sum(w)``.

    Without weights the robust term is the plain mean, the IBP/CROWN-IBP baseline.
    ``weight_total`` replaces ``sum(w)`` when the batch is one shard of a larger one (DDP).
    """
    clean = F.cross_entropy(clean_logits, y)
    robust_each = F.cross_entropy(worst_logits, y, reduction="none")
    if weights is None:
        robust = robust_each.mean()
    else:
        robust = (weights * robust_each).sum() / (weights.sum() if weight_total is None else weight_total)
    return kappa * clean + (1 - kappa) * robust
