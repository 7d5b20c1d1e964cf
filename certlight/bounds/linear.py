"""The one place a linear function is bounded over a box: every bound ends here."""

from __future__ import annotations

import torch


def linear_lower(
    coefficients: torch.Tensor, bias: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor
) -> torch.Tensor:
    """Exact minimum of ``coefficients @ x + bias`` over the box ``[lower, upper]``, shape (B, S).

    ``coefficients`` is (B, S, *box shape), ``bias`` (B, S) or broadcastable; in closed form,
    ``A @ centre - |A| @ radius + bias``.
    """
    flat = coefficients.flatten(2)
    centre = ((upper + lower) / 2).flatten(1).unsqueeze(-1)
    radius = ((upper - lower) / 2).flatten(1).unsqueeze(-1)
    return (flat @ centre).squeeze(-1) - (flat.abs() @ radius).squeeze(-1) + bias
