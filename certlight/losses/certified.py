"""The mixed certified-training loss (eq. 8)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def certified_loss(
    clean_logits: torch.Tensor,
    y: torch.Tensor,
    robust_each: torch.Tensor,
    kappa: float,
    weights: torch.Tensor | None = None,
    weight_total: torch.Tensor | None = None,
) -> torch.Tensor:
    """``kappa * mean CE(clean) + (1 - kappa) * sum(w * robust) / sum(w)``.

    ``robust_each`` is the method's per-example robust loss (for IBP / CROWN-IBP the
    cross-entropy of the worst-case logits). Without weights the robust term is its plain mean.
    ``weight_total`` replaces ``sum(w)`` when the batch is one shard of a larger one (DDP).
    """
    clean = F.cross_entropy(clean_logits, y)
    if weights is None:
        robust = robust_each.mean()
    else:
        robust = (weights * robust_each).sum() / (weights.sum() if weight_total is None else weight_total)
    return kappa * clean + (1 - kappa) * robust
