"""The input box: an L-inf ball of radius eps (pixel space, [0,1]) mapped into normalised space."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def input_box(
    x: torch.Tensor,
    eps: torch.Tensor | float,
    mean: Sequence[float] | torch.Tensor,
    std: Sequence[float] | torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(lower, upper)`` of ``clip(x +- eps/std, (0-mean)/std, (1-mean)/std)`` per channel.

    ``x`` is already normalised, shape (B, C, ...). ``eps`` is a scalar or one radius per
    example, shape (B,); it is measured in pixel space so the same number means the same
    perturbation for every dataset. Clipping to the valid pixel range keeps the box tight
    without losing soundness: no real image lies outside it. Pass ``mean``/``std`` as tensors
    already on ``x``'s device (and ``eps`` as a float or tensor there) and nothing is copied
    from the host, so the training step never waits on a host-to-device copy.
    """
    batch = x.shape[0]
    trailing = (1,) * (x.dim() - 2)
    # One value per channel (or one for all), broadcast over the remaining dimensions.
    mean_t = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, *trailing)
    std_t = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, *trailing)
    eps_t = x.new_full((batch,), eps) if isinstance(eps, (int, float)) else eps.to(x.dtype).expand(batch)
    radius = eps_t.view(batch, 1, *trailing) / std_t
    lower = torch.maximum(x - radius, (0.0 - mean_t) / std_t)
    upper = torch.minimum(x + radius, (1.0 - mean_t) / std_t)
    return lower, upper
