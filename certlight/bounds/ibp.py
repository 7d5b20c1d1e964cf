"""Interval bound propagation (Gowal et al. 2019) as pure functions of (layers, input box)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from certlight.bounds.layers import BatchNormAffine, affine_for, channel_view

# Per ReLU layer (by position): the (lower, upper) bounds of its input, for CROWN's relaxations.
PreActivationBounds = dict[int, tuple[torch.Tensor, torch.Tensor]]


def _affine_interval(layer: nn.Module, center: torch.Tensor, radius: torch.Tensor):
    if isinstance(layer, nn.Linear):
        return layer(center), F.linear(radius, layer.weight.abs())
    return layer(center), F.conv2d(
        radius, layer.weight.abs(), None, layer.stride, layer.padding, layer.dilation, layer.groups
    )


def interval_propagate(
    model: nn.Sequential,
    lower: torch.Tensor,
    upper: torch.Tensor,
    batchnorm: BatchNormAffine | None = None,
    stop: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, PreActivationBounds]:
    """Propagate the box through ``model[:stop]``.

    Returns the output interval and the input interval of every ReLU on the way. Affine layers
    use the centre/radius form, which is exact for one affine layer on a box.
    """
    stop = len(model) if stop is None else stop
    pre_activation: PreActivationBounds = {}
    for position in range(stop):
        layer = model[position]
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            center, radius = _affine_interval(layer, (upper + lower) / 2, (upper - lower) / 2)
            lower, upper = center - radius, center + radius
        elif isinstance(layer, nn.ReLU):
            pre_activation[position] = (lower, upper)
            lower, upper = lower.clamp(min=0), upper.clamp(min=0)
        elif isinstance(layer, nn.Flatten):
            lower, upper = layer(lower), layer(upper)
        elif isinstance(layer, _BatchNorm):
            scale, shift = affine_for(model, position, batchnorm)
            center = channel_view(scale, lower) * (upper + lower) / 2 + channel_view(shift, lower)
            radius = channel_view(scale.abs(), lower) * (upper - lower) / 2
            lower, upper = center - radius, center + radius
        else:
            raise TypeError(f"unsupported layer {type(layer).__name__}; run check_supported first")
    return lower, upper, pre_activation


def spec_linear_lower(
    spec: torch.Tensor, last: nn.Linear, lower: torch.Tensor, upper: torch.Tensor
) -> torch.Tensor:
    """Lower bound of ``spec @ last(h)`` for ``h`` in the box, with the spec folded into ``last``.

    Folding (Gowal et al.'s elision) bounds each margin directly instead of subtracting two
    independently bounded logits, which is tighter and never looser.
    """
    weight = spec @ last.weight  # (B, S, n)
    bias = spec @ last.bias if last.bias is not None else 0.0  # (B, S)
    center = ((upper + lower) / 2).unsqueeze(-1)
    radius = ((upper - lower) / 2).unsqueeze(-1)
    return (weight @ center).squeeze(-1) - (weight.abs() @ radius).squeeze(-1) + bias


def ibp_margin_lower(
    model: nn.Sequential,
    lower: torch.Tensor,
    upper: torch.Tensor,
    spec: torch.Tensor,
    batchnorm: BatchNormAffine | None = None,
) -> tuple[torch.Tensor, PreActivationBounds]:
    """IBP lower bounds of the margins ``spec @ f(x)`` (B, S), and the ReLU input bounds."""
    hidden_lower, hidden_upper, pre_activation = interval_propagate(
        model, lower, upper, batchnorm, stop=len(model) - 1
    )
    return spec_linear_lower(spec, model[-1], hidden_lower, hidden_upper), pre_activation
