"""Bound backends behind one stated interface (:class:`BoundBackend`): the native engine, or
auto_LiRPA. This is the surface methods and verifiers use, and what a third backend implements.

Bad arguments raise plain ``ValueError``s that start with the parameter's name; the config
layer (``certlight.errors.keyed``) turns them into messages naming the user's key.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from certlight.bounds.engine import check_supported, clean_forward, relu_count, relu_keys, widest_layer
from certlight.bounds.margins import BOUND_METHODS, EAGER, margin_lower_bounds, mixed_margin_bounds
from certlight.bounds.rules import WalkState

BACKENDS = ("native", "auto_lirpa")
EXPENSIVE = ("crown", "alpha_crown")


@runtime_checkable
class BoundBackend(Protocol):
    """What every backend gives: ``methods`` names the bound methods ``margins`` computes;
    ``state`` is what the clean forward recorded (BatchNorm's batch statistics) for the
    bounds to hold fixed; every bound is a sound lower bound of ``f_y - f_j``, shape (B, K-1)."""

    methods: tuple[str, ...]

    def clean_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, WalkState | None]: ...

    def margins(self, x, lower, upper, y, method: str = "ibp", state: WalkState | None = None) -> torch.Tensor: ...

    def mixed(self, x, lower, upper, y, beta: float, state: WalkState | None = None) -> torch.Tensor:
        """``beta * CROWN-IBP + (1 - beta) * IBP`` margin lower bounds, as CROWN-IBP trains."""
        ...


@runtime_checkable
class ReluInputBounds(Protocol):
    """The optional capability Shi et al.'s regulariser reads: the training bounds and the IBP
    interval of every ReLU input, in network order."""

    def mixed_with_relu_inputs(
        self, x, lower, upper, y, beta: float, state: WalkState | None = None
    ) -> tuple[torch.Tensor, list]: ...


def check_options(compile: bool, alpha_iterations: int, alpha_lr: float, max_memory_gb: float | None) -> None:
    """Plain ValueErrors naming the parameter (the config layer adds its key)."""
    if not isinstance(compile, bool):
        raise ValueError(f"compile={compile!r} must be true or false")
    if isinstance(alpha_iterations, bool) or not isinstance(alpha_iterations, int) or alpha_iterations < 0:
        raise ValueError(f"alpha_iterations={alpha_iterations!r} must be a non-negative integer")
    for name, value in (("alpha_lr", alpha_lr), ("max_memory_gb", max_memory_gb)):
        if name == "max_memory_gb" and value is None:
            continue
        if (
            isinstance(value, (bool, str))
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ValueError(f"{name}={value!r} must be a number > 0")


class NativeBounds:
    """certlight's own engine: fast, batched, per-example epsilon; nn.Sequential with Residual blocks."""

    methods = BOUND_METHODS

    def __init__(
        self,
        net: nn.Module,
        compile: bool = False,
        alpha_iterations: int = 20,
        alpha_lr: float = 0.5,
        max_memory_gb: float | None = None,
    ):
        check_supported(net)
        self.net = net
        self.passes = EAGER.compiled() if compile else EAGER
        self.alpha = {"alpha_iterations": alpha_iterations, "alpha_lr": alpha_lr}
        self.max_memory_gb = max_memory_gb

    def clean_forward(self, x: torch.Tensor):
        return clean_forward(self.net, x)

    def margins(self, x, lower, upper, y, method: str = "ibp", state: WalkState | None = None):
        if method not in EXPENSIVE or self.max_memory_gb is None:
            return margin_lower_bounds(self.net, lower, upper, y, method, state, **self.alpha)
        per_pass, element_budget = self._plan(method, lower.shape[1:])
        parts = [
            margin_lower_bounds(
                self.net,
                lower[i : i + per_pass],
                upper[i : i + per_pass],
                y[i : i + per_pass],
                method,
                state,
                element_budget=element_budget,
                **self.alpha,
            )
            for i in range(0, y.shape[0], per_pass)
        ]
        return torch.cat(parts)

    def _plan(self, method: str, shape) -> tuple[int, int]:
        """Examples per pass and the CROWN chunk budget (floats) that keep ``max_memory_gb``:
        half of it for the per-example tensors (α-CROWN's slopes with gradient and two Adam
        moments: 4 per spec row and ReLU; a backward pass's coefficients and temporaries: about
        6 per spec row and unit of the widest layer), half for full CROWN's neuron chunks (a
        chunk tensor and about 5 temporaries). results/verification.md measures the peaks."""
        floats = self.max_memory_gb * 2**30 / 4
        specs = self.net[-1].out_features - 1
        widest = widest_layer(self.net, shape)
        per_example = specs * (4 * relu_count(self.net, shape) * (method == "alpha_crown") + 6 * widest)
        return max(1, int(floats / 2 // per_example)), max(1, int(floats / 2 / 6))

    def mixed(self, x, lower, upper, y, beta: float, state: WalkState | None = None):
        return self.mixed_with_relu_inputs(x, lower, upper, y, beta, state)[0]

    def mixed_with_relu_inputs(self, x, lower, upper, y, beta: float, state: WalkState | None = None):
        """The training bounds and the IBP input interval of every ReLU, in network order."""
        margins, walk = mixed_margin_bounds(self.net, lower, upper, y, beta, state, self.passes)
        return margins, [walk.pre_activation[key] for key in relu_keys(self.net, lower.shape[1:])]


def make_backend(
    backend: str = "native",
    net: nn.Module | None = None,
    compile: bool = False,
    alpha_iterations: int = 20,
    alpha_lr: float = 0.5,
    max_memory_gb: float | None = None,
) -> BoundBackend:
    """The bound backend for ``net`` (the ``bounds`` config builds it with ``_partial_``);
    ``compile``: run the CROWN-IBP training pass's ReLU relaxations as compiled kernels (bounds.compile);
    ``alpha_*``: α-CROWN's optimisation (steps, Adam learning rate); ``max_memory_gb``: the
    memory the expensive verifiers (CROWN, α-CROWN) are batched to fit (None: no limit)."""
    check_options(compile, alpha_iterations, alpha_lr, max_memory_gb)
    if backend == "native":
        return NativeBounds(net, compile, alpha_iterations, alpha_lr, max_memory_gb)
    if compile:
        raise ValueError(f"compile=true needs backend=native, got backend={backend!r}")
    if backend == "auto_lirpa":
        from certlight.bounds.lirpa import LirpaBounds

        return LirpaBounds(net)
    raise ValueError(f"backend={backend!r} is unknown; allowed: {', '.join(BACKENDS)}")
