"""Bound backends behind one interface: the native engine, or auto_LiRPA."""

from __future__ import annotations

import torch
from torch import nn

from certlight.bounds.engine import check_supported, clean_forward
from certlight.bounds.margins import EAGER, margin_lower_bounds, mixed_margin_lower
from certlight.bounds.rules import WalkState
from certlight.errors import CertlightError
from certlight.validate import integer_at_least, number

BACKENDS = ("native", "auto_lirpa")


class NativeBounds:
    """certlight's own engine: fast, batched, per-example epsilon; nn.Sequential with Residual blocks."""

    def __init__(self, net: nn.Module, compile: bool = False, alpha_iterations: int = 20, alpha_lr: float = 0.5):
        check_supported(net)
        self.net = net
        self.passes = EAGER.compiled() if compile else EAGER
        self.alpha = {"alpha_iterations": alpha_iterations, "alpha_lr": alpha_lr}

    def clean_forward(self, x: torch.Tensor):
        return clean_forward(self.net, x)

    def margins(self, x, lower, upper, y, method: str = "ibp", state: WalkState | None = None):
        return margin_lower_bounds(self.net, lower, upper, y, method, state, **self.alpha)

    def mixed(self, x, lower, upper, y, beta: float, state: WalkState | None = None):
        return mixed_margin_lower(self.net, lower, upper, y, beta, state, self.passes)


def make_backend(backend: str = "native", net: nn.Module | None = None, compile: bool = False, alpha_iterations: int = 20, alpha_lr: float = 0.5):
    """The bound backend for ``net`` (the ``bounds`` config builds it with ``_partial_``);
    ``compile``: torch.compile the native training bound passes (bounds.compile);
    ``alpha_*``: α-CROWN's optimisation (steps, Adam learning rate)."""
    if not isinstance(compile, bool):
        raise CertlightError(f"bounds.compile={compile!r} must be true or false")
    integer_at_least(alpha_iterations, "bounds.alpha_iterations", 0)
    number(alpha_lr, "bounds.alpha_lr", minimum=0, exclusive_minimum=True)
    if backend == "native":
        return NativeBounds(net, compile, alpha_iterations, alpha_lr)
    if compile:
        raise CertlightError(f"bounds.compile=true needs bounds.backend=native, got {backend!r}")
    if backend == "auto_lirpa":
        from certlight.bounds.lirpa import LirpaBounds

        return LirpaBounds(net)
    raise CertlightError(f"bounds.backend={backend!r} is unknown; allowed: {', '.join(BACKENDS)}")
