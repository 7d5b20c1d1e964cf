"""One entry point from (model, box, labels) to margin lower bounds, by method name."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from certlight.bounds.engine import (
    DEFAULT_ELEMENT_BUDGET,
    alpha_crown_margin_lower,
    crown_ibp_margin_lower,
    crown_margin_lower,
    ibp_margin_lower,
)
from certlight.bounds.relaxation import compiled_relaxation
from certlight.bounds.rules import WalkState
from certlight.bounds.spec import margin_spec

BOUND_METHODS = ("ibp", "crown_ibp", "crown", "alpha_crown")


@dataclass(frozen=True)
class BoundPasses:
    """The two passes training mixes, as functions of tensors only."""

    ibp: Callable = ibp_margin_lower
    crown_ibp: Callable = crown_ibp_margin_lower

    def compiled(self) -> BoundPasses:
        """The same passes with the CROWN-IBP pass's ReLU relaxations as fused compiled kernels
        (its element-wise work; compiling whole passes gained nothing over that, and slowed IBP
        on the CPU: results/performance.md)."""
        return BoundPasses(self.ibp, _with_compiled_relaxation(self.crown_ibp))


def _with_compiled_relaxation(bound_pass: Callable) -> Callable:
    @functools.wraps(bound_pass)
    def run(*args, **kwargs):
        with compiled_relaxation():
            return bound_pass(*args, **kwargs)

    return run


EAGER = BoundPasses()


def mixed_margin_bounds(
    model: nn.Sequential,
    lower: torch.Tensor,
    upper: torch.Tensor,
    y: torch.Tensor,
    beta: float,
    state: WalkState | None = None,
    passes: BoundPasses = EAGER,
) -> tuple[torch.Tensor, WalkState]:
    """``beta * CROWN-IBP + (1 - beta) * IBP`` margin lower bounds, as CROWN-IBP trains, and
    the IBP walk (every ReLU's input interval, which bound regularisers read).

    A convex combination of two sound lower bounds is sound. At ``beta == 0`` the CROWN pass
    is skipped and the result is exactly IBP's.
    """
    spec = margin_spec(y, model[-1].out_features, lower.dtype)
    ibp_lower, walk = passes.ibp(model, lower, upper, spec, state)
    if beta == 0:
        return ibp_lower, walk
    crown_lower = passes.crown_ibp(model, lower, upper, spec, walk)
    return beta * crown_lower + (1 - beta) * ibp_lower, walk


def mixed_margin_lower(
    model, lower, upper, y, beta: float, state: WalkState | None = None, passes: BoundPasses = EAGER
) -> torch.Tensor:
    """The margin lower bounds of :func:`mixed_margin_bounds` alone."""
    return mixed_margin_bounds(model, lower, upper, y, beta, state, passes)[0]


def margin_lower_bounds(
    model: nn.Sequential,
    lower: torch.Tensor,
    upper: torch.Tensor,
    y: torch.Tensor,
    method: str = "ibp",
    state: WalkState | None = None,
    alpha_iterations: int = 20,
    alpha_lr: float = 0.5,
    element_budget: int = DEFAULT_ELEMENT_BUDGET,
) -> torch.Tensor:
    """Lower bounds of ``f(x)_y - f(x)_j`` for every j != y over the box, shape (B, K-1).
    ``alpha_*``: α-CROWN's optimisation steps and Adam learning rate; ``element_budget``:
    the largest coefficient tensor full CROWN builds (memory)."""
    if method == "ibp":
        return mixed_margin_lower(model, lower, upper, y, 0.0, state)
    if method == "crown_ibp":
        return mixed_margin_lower(model, lower, upper, y, 1.0, state)
    if method in ("crown", "alpha_crown"):
        spec = margin_spec(y, model[-1].out_features, lower.dtype)
        if method == "crown":
            return crown_margin_lower(model, lower, upper, spec, state, element_budget)
        return alpha_crown_margin_lower(model, lower, upper, spec, state, alpha_iterations, alpha_lr, element_budget)
    raise ValueError(f"unknown bound method {method!r}; allowed: {', '.join(BOUND_METHODS)}")
