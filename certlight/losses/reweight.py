"""Bound-based re-weighting (eq. 7) and the monotonic baseline of Zeng et al. (2020)."""

from __future__ import annotations

import torch

from certlight.errors import CertlightError
from certlight.validate import number

REWEIGHT_KINDS = ("none", "symmetric", "monotonic")


class Reweighting:
    """Per-example weights of the robust loss from the worst-case margin.

    ``symmetric`` (the paper): ``exp(-gamma * |margin|) + alpha`` favours examples near the
    certified decision boundary on both sides. ``gamma = 0`` gives equal weights, i.e. the
    unweighted baseline. ``monotonic`` (Zeng et al.): ``exp(-alpha * margin)`` favours the
    most violated examples. ``none`` turns weighting off.

    Weights are detached from the graph: they are importance weights of a distribution, as
    in the paper, not a loss term. Letting gradients through would push margins away from 0
    (where weights peak) for reasons unrelated to robustness.
    """

    def __init__(self, kind: str = "symmetric", gamma: float = 0.0, alpha: float = 0.1):
        if kind not in REWEIGHT_KINDS:
            raise CertlightError(f"reweight.kind={kind!r} is unknown; allowed: {', '.join(REWEIGHT_KINDS)}")
        gamma = number(gamma, "reweight.gamma", minimum=0)  # 0 = equal weights
        alpha = number(alpha, "reweight.alpha", minimum=0)
        self.kind, self.gamma, self.alpha = kind, gamma, alpha

    @property
    def active(self) -> bool:
        return self.kind == "monotonic" or (self.kind == "symmetric" and self.gamma > 0)

    def __call__(self, margin: torch.Tensor) -> torch.Tensor | None:
        """Weights (B,), or None when every example weighs the same."""
        if not self.active:
            return None
        margin = margin.detach()
        if self.kind == "symmetric":
            return torch.exp(-self.gamma * margin.abs()) + self.alpha
        return torch.exp(-self.alpha * margin)
