"""PGD inside a box: the same region a bound certifies or a method trains on.

A certified lower bound of a margin must never exceed the margin at an attacked point; a PGD
error is a lower bound of the true robust error, so it never exceeds any verified error.
Training methods (an adversarial term, a small box around an attack point) call it too, so it
takes the box itself, not eps/mean/std.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from certlight.bounds import margin_spec


def pgd_margins(
    forward: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    lower: torch.Tensor,
    upper: torch.Tensor,
    steps: int = 20,
    restarts: int = 1,
    step_fraction: float = 0.25,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Smallest margins ``f(x')_y - f(x')_j`` (B, K-1) found by PGD on the worst margin.

    Each restart starts at a random point of the box and takes signed-gradient steps of
    ``step_fraction`` of the box half-width, projected back into the box. The returned
    margins are the row-wise minimum over every point visited, all of them inside the box.
    """
    half_width = (upper - lower) / 2
    with torch.no_grad():
        logits = forward(x)
    spec = margin_spec(y, logits.shape[1], logits.dtype)
    best = (spec @ logits.unsqueeze(-1)).squeeze(-1)
    for _ in range(restarts):
        noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        point = lower + (upper - lower) * noise
        for _ in range(steps + 1):
            point = point.detach().requires_grad_(True)
            margins = (spec @ forward(point).unsqueeze(-1)).squeeze(-1)
            best = torch.minimum(best, margins.detach())
            (grad,) = torch.autograd.grad(margins.min(dim=1).values.sum(), point)
            with torch.no_grad():
                point = torch.minimum(torch.maximum(point - step_fraction * half_width * 2 * grad.sign(), lower), upper)
    return best


def attack_succeeds(margins: torch.Tensor) -> torch.Tensor:
    """(B,) True where some point in the box is not classified as the true class."""
    return (margins <= 0).any(dim=1)
