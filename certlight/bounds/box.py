"""The input box: an L-inf ball of radius eps (pixel space, [0,1]) mapped into normalised space."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def input_box(
    x: torch.Tensor,
    eps: torch.Tensor | float,
    mean: Sequence[float] | torch.Tensor,
    std: Sequence[float] | torch.Tensor,
    check_domain: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(lower, upper)`` of ``clip(x +- eps/std, (0-mean)/std, (1-mean)/std)`` per channel.

    ``x`` is already normalised, shape (B, C, ...). ``eps`` is a scalar or one radius per
    example, shape (B,); it is measured in pixel space so the same number means the same
    perturbation for every dataset. Clipping to the valid pixel range keeps the box tight
    without losing soundness: no real image lies outside it. Pass ``mean``/``std`` as tensors
    already on ``x``'s device (and ``eps`` as a float or tensor there) and nothing is copied
    from the host, so the training step never waits on a host-to-device copy.

    An input outside the data domain (or a negative eps) has no sound box: clipping would
    invert it. ``check_domain`` refuses both with a ValueError; it reads values on the host, so
    callers whose inputs lie in the domain by construction (the training step) turn it off.
    """
    batch = x.shape[0]
    trailing = (1,) * (x.dim() - 2)
    # One value per channel (or one for all), broadcast over the remaining dimensions.
    mean_t = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, *trailing)
    std_t = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, *trailing)
    if isinstance(eps, torch.Tensor):
        eps_t = eps.to(x.dtype).expand(batch)
    else:
        eps_t = x.new_full((batch,), float(eps))  # Python and NumPy scalars alike
    domain_low, domain_high = (0.0 - mean_t) / std_t, (1.0 - mean_t) / std_t
    if check_domain:
        _check_domain(x, eps_t, domain_low, domain_high)
    radius = eps_t.view(batch, 1, *trailing) / std_t
    lower = torch.maximum(x - radius, domain_low)
    upper = torch.minimum(x + radius, domain_high)
    return lower, upper


def _check_domain(x: torch.Tensor, eps: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> None:
    if bool((eps < 0).any()):
        raise ValueError(f"eps must be >= 0, got minimum {float(eps.min()):g}")
    # Normalisation rounds: allow a few float32 ulps of the domain's width.
    slack = 1e-5 * (high - low)
    outside = (x < low - slack) | (x > high + slack)
    if bool(outside.any()):
        raise ValueError(
            f"{int(outside.sum())} input value(s) lie outside the data domain [(0-mean)/std, (1-mean)/std]: "
            "pixels must be in [0, 1] before normalisation"
        )
