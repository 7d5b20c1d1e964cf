"""PGD inside a box: the same region a bound certifies or a method trains on.

A certified lower bound of a margin must never exceed the margin at an attacked point; a PGD
error is a lower bound of the true robust error, so it never exceeds any verified error.
Training methods (an adversarial term, a small box around an attack point) call it too, so it
takes the box itself, not eps/mean/std.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F

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
    """Smallest margins ``f(x')_y - f(x')_j`` (B, K-1) found by PGD on the worst margin: at
    ``x`` itself and along :func:`pgd_search` from ``restarts`` uniform random points of the box."""
    with torch.no_grad():
        logits = forward(x)
    clean = (margin_spec(y, logits.shape[1], logits.dtype) @ logits.unsqueeze(-1)).squeeze(-1)
    if restarts == 0:
        return clean
    starts = (
        lower + (upper - lower) * torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        for _ in range(restarts)
    )
    return torch.minimum(clean, pgd_search(forward, y, lower, upper, starts, steps, step_fraction)[0])


def pgd_search(
    forward: Callable[[torch.Tensor], torch.Tensor],
    y: torch.Tensor,
    lower: torch.Tensor,
    upper: torch.Tensor,
    starts: Iterable[torch.Tensor],
    steps: int,
    step_fraction: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Signed-gradient descent on the worst margin from each batch of start points (B, *shape):
    ``steps`` steps of ``step_fraction`` of the box's width, projected back into the box.

    Returns the row-wise smallest margins (B, K-1) over every point visited, and per example
    the visited point whose worst margin was lowest (a verifier's counterexample candidate);
    every point lies inside the box. The network's parameters get no gradient.
    """
    width = upper - lower
    spec = best = best_point = None
    with torch.enable_grad():
        for start in starts:
            point = start
            for _ in range(steps + 1):
                point = point.detach().requires_grad_(True)
                logits = forward(point)
                if spec is None:
                    spec = margin_spec(y, logits.shape[1], logits.dtype)
                margins = (spec @ logits.unsqueeze(-1)).squeeze(-1)
                worst = margins.min(dim=1).values
                if best is None:
                    best, best_point = margins.detach(), point.detach()
                else:
                    lower_worst = (worst.detach() < best.min(dim=1).values).view(-1, *[1] * (point.dim() - 1))
                    best_point = torch.where(lower_worst, point.detach(), best_point)
                    best = torch.minimum(best, margins.detach())
                (grad,) = torch.autograd.grad(worst.sum(), point)
                with torch.no_grad():
                    point = torch.minimum(torch.maximum(point - step_fraction * width * grad.sign(), lower), upper)
    return best, best_point


CORNERS = ("never", "always", "alternate")


def box_starts(lower: torch.Tensor, upper: torch.Tensor, restarts: int, corners: str = "never"):
    """``restarts`` batches of start points (B, *shape) in each example's box: uniform in the box,
    uniform among its corners, or the two in turn (``corners``: never / always / alternate).
    Each example's are drawn from a generator seeded by its own box, so a verifier's attack on an
    example (and its verdict) is the same in any batch."""
    if corners not in CORNERS:
        raise ValueError(f"corners={corners!r} must be one of {', '.join(CORNERS)}")
    generators = [torch.Generator().manual_seed(zlib.crc32(low.numpy().tobytes())) for low in lower.cpu()]
    for restart in range(restarts):
        noise = torch.stack([torch.rand(lower.shape[1:], generator=g, dtype=lower.dtype) for g in generators])
        if corners == "always" or (corners == "alternate" and restart % 2):
            noise = (noise < 0.5).to(noise.dtype)
        yield lower + (upper - lower) * noise.to(lower.device)


def pgd_point(
    forward: Callable[[torch.Tensor], torch.Tensor],
    y: torch.Tensor,
    lower: torch.Tensor,
    upper: torch.Tensor,
    steps: int,
    step_size: float,
    decay_at: tuple[float, ...] = (),
) -> torch.Tensor:
    """A point of the box with high cross-entropy: the adversarial point training methods use
    (MTL-IBP's adversarial term, SABR's small-box centre).

    Starts uniformly in the box and takes ``steps`` signed-gradient steps of ``step_size`` times
    the box half-width, projected into the box; the step shrinks tenfold at each fraction of
    ``steps`` in ``decay_at`` (SABR's schedule). Returns the point of highest loss seen, or the
    last one for a single step (as the released code of both methods does). The network's
    parameters get no gradient; the point is detached and always inside the box.
    """
    half_width = (upper - lower) / 2
    point = (lower + (upper - lower) * torch.rand_like(lower)).detach()
    best, best_loss = point, None
    milestones = [math.ceil(fraction * steps) for fraction in decay_at]
    with torch.enable_grad():
        for step in range(steps):
            point.requires_grad_(True)
            loss = F.cross_entropy(forward(point), y, reduction="none")
            if steps > 1:
                best, best_loss = _keep_best(point.detach(), loss.detach(), best, best_loss)
            (grad,) = torch.autograd.grad(loss.sum(), point)
            size = step_size * 0.1 ** sum(step >= m for m in milestones)
            point = torch.minimum(torch.maximum(point.detach() + size * half_width * grad.sign(), lower), upper)
    if steps <= 1:
        return point
    with torch.no_grad():
        return _keep_best(point, F.cross_entropy(forward(point), y, reduction="none"), best, best_loss)[0]


def pgd_point_eval_mode(
    net: torch.nn.Module, y, lower, upper, steps: int, step_size: float, decay_at: tuple[float, ...] = ()
) -> torch.Tensor:
    """:func:`pgd_point` with ``net`` in eval mode (BatchNorm on running statistics, as the
    released MTL-IBP and SABR code attack), its mode restored afterwards."""
    training = net.training
    net.eval()
    try:
        return pgd_point(net, y, lower, upper, steps, step_size, decay_at)
    finally:
        net.train(training)


def _keep_best(point, loss, best, best_loss):
    if best_loss is None:
        return point, loss
    better = loss >= best_loss
    return torch.where(better.view(-1, *([1] * (point.dim() - 1))), point, best), torch.where(better, loss, best_loss)


def attack_succeeds(margins: torch.Tensor) -> torch.Tensor:
    """(B,) True where some point in the box is not classified as the true class."""
    return (margins <= 0).any(dim=1)


def margin_attack_schedule(steps: int) -> list[int]:
    """The steps after which :func:`pgd_margin_points` shrinks its step size by 0.2 (CTBench's
    ``select_schedule``: fewer decays for shorter attacks, none under 10 steps)."""
    if steps > 80:
        return [int(steps * 0.3), int(steps * 0.6), int(steps * 0.8)]
    if steps > 50:
        return [int(steps * 0.4), int(steps * 0.7)]
    if steps >= 10:
        return [int(steps * 0.7)]
    return []


def pgd_margin_points(
    forward: Callable[[torch.Tensor], torch.Tensor],
    spec: torch.Tensor,
    lower: torch.Tensor,
    upper: torch.Tensor,
    steps: int,
    restarts: int,
) -> torch.Tensor:
    """One point of the box per margin row of ``spec`` (B, M, K): points (B, M, *shape), point
    ``j`` attacking margin ``j`` alone. TAPS' estimate of the margin lower bounds (Mao et al.
    2023) needs the worst point of each margin, not one point for all of them.

    As CTBench's ``_get_pivotal_points``: each restart starts uniformly in the box and takes
    signed steps of ``max(0.2, 2 / steps)`` box widths (0.2 times smaller after each step of
    :func:`margin_attack_schedule`), projected into the box; the point of the lowest margin
    seen at any step of any restart is kept. Detached, inside the box; the network's
    parameters get no gradient.
    """
    batch, rows = spec.shape[:2]
    low, high = lower.unsqueeze(1), upper.unsqueeze(1)
    width = high - low
    shape = (batch, rows, *lower.shape[1:])
    per_row = (batch, rows) + (1,) * (lower.dim() - 1)

    def margins(points):
        return (spec * forward(points.flatten(0, 1)).view(batch, rows, -1)).sum(-1)

    milestones = margin_attack_schedule(steps)
    best = best_points = None
    with torch.enable_grad():
        for _ in range(restarts):
            size = max(0.2, 2 / steps)
            points = low + width * torch.rand(shape, device=lower.device, dtype=lower.dtype)
            for step in range(steps + 1):
                points = points.detach().requires_grad_(True)
                value = margins(points)
                found = value.detach()
                if best is None:
                    best, best_points = found, points.detach()
                else:
                    better = found < best
                    best = torch.where(better, found, best)
                    best_points = torch.where(better.view(per_row), points.detach(), best_points)
                if step == steps:
                    break
                (grad,) = torch.autograd.grad(value.sum(), points)
                points = torch.minimum(torch.maximum(points.detach() - size * width * grad.sign(), low), high)
                if step + 1 in milestones:
                    size *= 0.2
    return best_points
