"""The bound engine's walks over a network, pure functions of (layers, input box): IBP (Gowal
et al. 2019), CROWN (Zhang et al. 2018), CROWN-IBP (Zhang et al. 2020) and α-CROWN (Xu et
al. 2021).

What a layer does lives in its rule (:mod:`certlight.bounds.rules`); this module only decides
which walk to take. A linear function of the output, ``A @ f(x)``, is pushed backward rule by
rule to a linear function of the input and minimised in closed form over the box
(:func:`~certlight.bounds.linear.linear_lower`). The ReLU relaxations need bounds of their
inputs: IBP's for CROWN-IBP, CROWN's own (layer by layer) for full CROWN.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from certlight.bounds.linear import linear_lower
from certlight.bounds.rules import Key, SequentialRule, WalkState, rule
from certlight.errors import CertlightError

# Full CROWN bounds intermediate neurons a chunk at a time; a chunk's coefficient tensor holds
# batch x 2*chunk x (widest layer) floats, kept under this many elements unless told otherwise.
DEFAULT_ELEMENT_BUDGET = 2**25


def check_supported(model: nn.Module) -> None:
    """Fail early, naming the layer, instead of producing bounds for a network we cannot bound."""
    if not isinstance(model, nn.Sequential):
        raise CertlightError(
            f"the native bound engine needs an nn.Sequential, got {type(model).__name__}; "
            "use bounds.backend=auto_lirpa for other architectures"
        )
    rule(model).check(model, ())
    if not isinstance(model[-1], nn.Linear):
        raise CertlightError(
            "the last layer must be nn.Linear (the margin specification "
            f"is folded into it), got {type(model[-1]).__name__}"
        )


def clean_forward(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, WalkState]:
    """The model's output on clean inputs, and the state the bounds must hold fixed (the
    affine map every BatchNorm applied). Layers run as usual, so running statistics update."""
    state = WalkState()
    return rule(model).forward(model, x, (), state), state


def _fresh(state: WalkState | None) -> WalkState:
    return WalkState(batchnorm=dict(state.batchnorm) if state is not None else {})


def interval_propagate(model: nn.Sequential, lower, upper, state: WalkState | None = None, stop: int | None = None):
    """The box through ``model[:stop]``: the output interval, and a state holding the input
    interval of every ReLU on the way."""
    walk = _fresh(state)
    prefix = model if stop is None else model[:stop]
    lower, upper = SequentialRule().interval(prefix, lower, upper, (), walk)
    return lower, upper, walk


def fixed_statistics_forward(model: nn.Module, x: torch.Tensor, state: WalkState | None) -> torch.Tensor:
    """``model`` (a network or a Span of one) on concrete inputs, every BatchNorm applying the
    affine map ``state`` holds (the clean batch's, in training) rather than the statistics of
    ``x``: an attack's points are not a batch of data. With such maps, a zero-width interval
    walk (exact under every rule, twice a forward's cost); without, a plain forward."""
    if state is None or not state.batchnorm:
        return rule(model).forward(model, x, (), WalkState())
    return SequentialRule().interval(model, x, x, (), _fresh(state))[0]


def ibp_margin_lower(model: nn.Sequential, lower, upper, spec: torch.Tensor, state: WalkState | None = None):
    """IBP lower bounds of the margins ``spec @ f(x)`` (B, S), and the state with the ReLU input
    bounds. The spec is folded into the last Linear (Gowal et al.'s elision): each margin is
    bounded directly, tighter than subtracting two independently bounded logits."""
    hidden_lower, hidden_upper, walk = interval_propagate(model, lower, upper, state, stop=len(model) - 1)
    last = model[-1]
    bias = spec @ last.bias if last.bias is not None else spec.new_zeros(spec.shape[:2])
    return linear_lower(spec @ last.weight, bias, hidden_lower, hidden_upper), walk


def backward_lower_bound(model: nn.Module, coefficients, lower, upper, state: WalkState) -> torch.Tensor:
    """Lower bound of ``coefficients @ model(x)`` (B, S) over the box, with the ReLU relaxations
    built from ``state.pre_activation``."""
    input_coefficients, bias = rule(model).backward(model, coefficients, (), state, lower.shape[1:])
    return linear_lower(input_coefficients, bias, lower, upper)


def crown_ibp_margin_lower(model: nn.Sequential, lower, upper, spec: torch.Tensor, state: WalkState) -> torch.Tensor:
    """CROWN-IBP lower bounds of ``spec @ f(x)`` (B, S): CROWN backward, IBP intermediates."""
    return backward_lower_bound(model, spec, lower, upper, state)


# --- full CROWN ---------------------------------------------------------------------------
# A prefix maps coefficients at some layer's input to (coefficients at the network's input,
# bias): the backward pass through everything that layer's input depends on.
Prefix = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _identity_prefix(coefficients):
    return coefficients, coefficients.new_zeros(coefficients.shape[:2])


def _through(layer: nn.Module, key: Key, in_shape, state: WalkState, prefix: Prefix) -> Prefix:
    def composed(coefficients):
        inner, bias = rule(layer).backward(layer, coefficients, key, state, in_shape)
        outer, outer_bias = prefix(inner)
        return outer, bias + outer_bias

    return composed


def _refine(layer, key: Key, in_shape, prefix: Prefix, state: WalkState, box, chunk_elements: int) -> None:
    """Walk forward; at every layer whose relaxation reads its input bounds replace the IBP
    bounds of its input by CROWN's where tighter. Only the units the rule relaxes inexactly (in
    some example: for a ReLU, an interval across 0) are re-bounded."""
    layer_rule = rule(layer)
    for index, (child, child_key, child_shape) in enumerate(layer_rule.parts(layer, key, in_shape)):
        # A chained child's input depends on its earlier siblings; a parallel one's only on the container's input.
        child_prefix = _through(layer[:index], key, in_shape, state, prefix) if layer_rule.chained else prefix
        _refine(child, child_key, child_shape, child_prefix, state, box, chunk_elements)
    if not layer_rule.needs_input_bounds:
        return
    lower, upper = box
    ibp_low, ibp_high = state.pre_activation[key]
    low, high = ibp_low.flatten(1).clone(), ibp_high.flatten(1).clone()
    unstable = layer_rule.relaxed_units(low, high).any(0).nonzero().squeeze(1)
    batch, size = low.shape
    chunk_size = max(1, chunk_elements // (2 * batch))
    for chunk in unstable.split(chunk_size):
        rows = torch.zeros(chunk.numel(), size, dtype=lower.dtype, device=lower.device)
        rows[torch.arange(chunk.numel()), chunk] = 1
        rows = rows.view(-1, *in_shape)
        spec = torch.cat([rows, -rows]).unsqueeze(0).expand(batch, *([-1] * rows.dim()))
        bound = linear_lower(*prefix(spec), lower, upper)
        low[:, chunk] = torch.maximum(low[:, chunk], bound[:, : chunk.numel()])
        high[:, chunk] = torch.minimum(high[:, chunk], -bound[:, chunk.numel() :])
    state.pre_activation[key] = (low.view_as(ibp_low), high.view_as(ibp_high))


def layers_by_key(model: nn.Module, shape, key: Key = ()):
    """Every layer of the walk, containers included, as ``(walk key, layer, input shape)``."""
    yield key, model, torch.Size(shape)
    for child, child_key, child_shape in rule(model).parts(model, key, torch.Size(shape)):
        yield from layers_by_key(child, child_shape, child_key)


def layers_with_shapes(model: nn.Module, shape):
    """Every layer of the walk, containers included, with its per-example input shape."""
    return ((layer, layer_shape) for _, layer, layer_shape in layers_by_key(model, shape))


def widest_layer(model: nn.Module, shape) -> int:
    return max(max(s.numel(), rule(layer).out_shape(layer, s).numel()) for layer, s in layers_with_shapes(model, shape))


def crown_intermediate_bounds(
    model: nn.Sequential, lower, upper, state: WalkState | None = None, element_budget: int = DEFAULT_ELEMENT_BUDGET
) -> WalkState:
    """A state holding CROWN bounds of every ReLU's input (intersected with IBP's, which
    keeps them sound and never looser). Costs a backward pass per unstable hidden neuron;
    ``element_budget`` caps a chunk's coefficient tensor (batch x 2*chunk x widest layer)."""
    _, _, walk = interval_propagate(model, lower, upper, state, stop=len(model) - 1)
    shape = lower.shape[1:]
    _refine(
        model, (), shape, _identity_prefix, walk, (lower, upper), max(1, element_budget // widest_layer(model, shape))
    )
    return walk


def crown_margin_lower(
    model: nn.Sequential,
    lower,
    upper,
    spec: torch.Tensor,
    state: WalkState | None = None,
    element_budget: int = DEFAULT_ELEMENT_BUDGET,
) -> torch.Tensor:
    """Full CROWN lower bounds of ``spec @ f(x)``: every ReLU's input bounded by CROWN too,
    so it is for evaluating (small) networks."""
    return backward_lower_bound(
        model, spec, lower, upper, crown_intermediate_bounds(model, lower, upper, state, element_budget)
    )


def alpha_crown_margin_lower(
    model: nn.Sequential,
    lower,
    upper,
    spec: torch.Tensor,
    state: WalkState | None = None,
    iterations: int = 20,
    lr: float = 0.5,
    element_budget: int = DEFAULT_ELEMENT_BUDGET,
) -> torch.Tensor:
    """α-CROWN (Xu et al. 2021): CROWN whose lower ReLU slopes are optimised.

    Every unstable ReLU's lower relaxation ``a * x`` is sound for any ``a`` in [0, 1], so the
    slope becomes a parameter per example, specification row and neuron, optimised by
    projected Adam ascent on the margin lower bounds. Intermediate bounds are full CROWN's.
    Each iterate is a sound bound, so the best seen per example and row is returned; the
    first iterate is CROWN's own choice of slope, so the result is never looser than CROWN.
    """
    walk = crown_intermediate_bounds(model, lower, upper, state, element_budget)
    specs = spec.shape[1]
    slopes = {}
    rules = {key: rule(layer) for key, layer, _ in layers_by_key(model, lower.shape[1:])}
    for key, (low, high) in walk.pre_activation.items():
        if rules[key].optimisable_slopes:
            initial = rules[key].initial_lower_slope(low, high).unsqueeze(1).expand(-1, specs, *low.shape[1:])
            slopes[key] = initial.clone().requires_grad_(True)
    walk.lower_slopes = slopes
    parameters = list(slopes.values())
    if not parameters:  # nothing to optimise (no unstable ReLU, or only fixed relaxations): CROWN
        return backward_lower_bound(model, spec, lower, upper, walk)
    optimizer = torch.optim.Adam(parameters, lr=lr)
    best = None
    with torch.enable_grad():
        for step in range(iterations + 1):
            bound = backward_lower_bound(model, spec, lower.detach(), upper.detach(), walk)
            best = bound.detach() if best is None else torch.maximum(best, bound.detach())
            if step == iterations:
                break
            gradients = torch.autograd.grad(-bound.sum(), parameters)
            for parameter, gradient in zip(parameters, gradients):
                parameter.grad = gradient
            optimizer.step()
            with torch.no_grad():
                for parameter in parameters:
                    parameter.clamp_(0.0, 1.0)
    return best


def relu_count(model: nn.Module, shape) -> int:
    """How many relaxed units (inputs of layers whose relaxation reads their bounds) the
    network has for one input of ``shape``: full CROWN's cost, α-CROWN's slopes."""
    return sum(s.numel() for layer, s in layers_with_shapes(model, shape) if rule(layer).needs_input_bounds)


def relu_keys(model: nn.Module, shape) -> list[Key]:
    """The walk keys of the ReLU-like layers, in network order."""
    return [key for key, layer, _ in layers_by_key(model, shape) if rule(layer).relu_like]
