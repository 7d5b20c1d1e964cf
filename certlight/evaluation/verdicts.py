"""What a complete verifier says of one example, and the check every counterexample passes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

VERIFIED, FALSIFIED, UNKNOWN = "verified", "falsified", "unknown"


@dataclass
class Outcome:
    """One example's verdict, the counterexample that falsified it (an input in its box), the
    time spent on it, and (branch and bound, unknown) the sound lower bound of its margins it
    had reached: the lowest bound of the domains still open."""

    verdict: str
    counterexample: torch.Tensor | None = None
    seconds: float = 0.0
    bound: float | None = None


def confirmed_counterexample(net: nn.Module, point: torch.Tensor, label: int, lower, upper) -> torch.Tensor | None:
    """``point`` clipped into the box ``[lower, upper]`` if a plain forward pass of the network
    misclassifies it there, else None: a solver's or a bound's candidate is only a candidate."""
    candidate = point.to(lower).view_as(lower).clamp(lower, upper)  # a solver's point is on the CPU
    with torch.no_grad():
        logits = net(candidate.unsqueeze(0))[0]
    return candidate if int(logits.argmax()) != int(label) else None
