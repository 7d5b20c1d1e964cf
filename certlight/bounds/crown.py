"""CROWN backward linear bounds (Zhang et al. 2018) and CROWN-IBP (Zhang et al. 2020).

A linear function of the network output, ``A @ f(x)``, is pushed backward layer by layer:
affine layers are composed exactly, each ReLU is replaced by a linear lower or upper
relaxation chosen by the sign of its coefficient, and what is left is a linear function of
the input, minimised in closed form over the input box. The ReLU relaxations need bounds of
their inputs: IBP's for CROWN-IBP, CROWN's own (layer by layer) for full CROWN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from certlight.bounds.ibp import PreActivationBounds, interval_propagate
from certlight.bounds.layers import BatchNormAffine, affine_for

# Full CROWN bounds intermediate neurons a chunk at a time; a chunk's coefficient tensor holds
# batch x 2*chunk x (widest layer) floats, kept under this many elements.
_CROWN_ELEMENT_BUDGET = 2**25


def relu_relaxation(lower: torch.Tensor, upper: torch.Tensor):
    """Slopes and intercept of the linear bounds of ReLU on ``[lower, upper]``.

    Upper line through (l, 0) and (u, u); lower line through the origin with slope 1 when
    ``u > -l`` and 0 otherwise (the adaptive choice of CROWN). Written with clamps rather
    than branches (it is on the hot path): with ``u+ = max(u, 0)`` and ``l- = min(l, 0)``,
    ``u+ / (u+ - l-)`` is 1 for active, 0 for inactive and ``u / (u - l)`` for unstable
    neurons, so stable neurons stay exact. Returns ``(lower_slope, upper_slope, upper_intercept)``.
    """
    upper_pos, lower_neg = upper.clamp(min=0), lower.clamp(max=0)
    upper_slope = upper_pos / (upper_pos - lower_neg).clamp(min=1e-12)
    upper_intercept = -lower_neg * upper_slope
    lower_slope = (upper + lower > 0).to(upper.dtype)
    return lower_slope, upper_slope, upper_intercept


def _sum_trailing(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.flatten(2).sum(-1)


def _conv_backward(coefficients: torch.Tensor, layer: nn.Conv2d, input_shape: torch.Size) -> torch.Tensor:
    """``A @ conv`` through the transposed convolution, never unrolling conv to a dense matrix."""
    batch, specs = coefficients.shape[:2]
    out = coefficients.reshape(batch * specs, *coefficients.shape[2:])
    expected = [
        (o - 1) * s - 2 * p + d * (k - 1) + 1
        for o, s, p, d, k in zip(out.shape[-2:], layer.stride, layer.padding, layer.dilation, layer.kernel_size)
    ]
    output_padding = [i - e for i, e in zip(input_shape[-2:], expected)]
    back = F.conv_transpose2d(
        out, layer.weight, None, layer.stride, layer.padding, output_padding, layer.groups, layer.dilation
    )
    return back.view(batch, specs, *input_shape)


def backward_lower_bound(
    model: nn.Sequential,
    coefficients: torch.Tensor,
    lower: torch.Tensor,
    upper: torch.Tensor,
    pre_activation: PreActivationBounds,
    input_shapes: list[torch.Size],
    batchnorm: BatchNormAffine | None = None,
) -> torch.Tensor:
    """Lower bound of ``coefficients @ model(x)`` over the box ``[lower, upper]``.

    ``coefficients`` has shape (B, S, *output shape of model); ``input_shapes[i]`` is the
    per-example input shape of ``model[i]``; ``pre_activation`` holds the bounds of every
    ReLU input. Returns (B, S).
    """
    bias = coefficients.new_zeros(coefficients.shape[:2])
    for position in reversed(range(len(model))):
        layer = model[position]
        if isinstance(layer, nn.Linear):
            if layer.bias is not None:
                bias = bias + coefficients @ layer.bias
            coefficients = coefficients @ layer.weight
        elif isinstance(layer, nn.Conv2d):
            if layer.bias is not None:
                bias = bias + (coefficients.sum(dim=(-2, -1)) * layer.bias).sum(-1)
            coefficients = _conv_backward(coefficients, layer, input_shapes[position])
        elif isinstance(layer, nn.ReLU):
            lower_slope, upper_slope, upper_intercept = relu_relaxation(*pre_activation[position])
            positive, negative = coefficients.clamp(min=0), coefficients.clamp(max=0)
            bias = bias + _sum_trailing(negative * upper_intercept.unsqueeze(1))
            coefficients = positive * lower_slope.unsqueeze(1) + negative * upper_slope.unsqueeze(1)
        elif isinstance(layer, nn.Flatten):
            coefficients = coefficients.reshape(*coefficients.shape[:2], *input_shapes[position])
        elif isinstance(layer, _BatchNorm):
            scale, shift = affine_for(model, position, batchnorm)
            view = (1, 1, -1) + (1,) * (coefficients.dim() - 3)
            bias = bias + _sum_trailing(coefficients * shift.view(view))
            coefficients = coefficients * scale.view(view)
        else:
            raise TypeError(f"unsupported layer {type(layer).__name__}; run check_supported first")
    center = ((upper + lower) / 2).flatten(1).unsqueeze(-1)
    radius = ((upper - lower) / 2).flatten(1).unsqueeze(-1)
    flat = coefficients.flatten(2)
    return (flat @ center).squeeze(-1) - (flat.abs() @ radius).squeeze(-1) + bias


def layer_input_shapes(model: nn.Sequential, input_shape: torch.Size) -> list[torch.Size]:
    """Per-example input shape of every layer (and the output shape last).

    Plain arithmetic on the layer hyper-parameters (check_supported admits only layers whose
    shape rule is below), so the hot path runs no extra forward pass to learn them.
    """
    shapes = [torch.Size(input_shape)]
    for layer in model:
        shape = shapes[-1]
        if isinstance(layer, nn.Linear):
            shape = torch.Size([layer.out_features])
        elif isinstance(layer, nn.Conv2d):
            spatial = [
                (size + 2 * p - d * (k - 1) - 1) // s + 1
                for size, s, p, d, k in zip(shape[-2:], layer.stride, layer.padding, layer.dilation, layer.kernel_size)
            ]
            shape = torch.Size([layer.out_channels, *spatial])
        elif isinstance(layer, nn.Flatten):
            shape = torch.Size([shape.numel()])
        shapes.append(shape)
    return shapes


def crown_ibp_margin_lower(
    model: nn.Sequential,
    lower: torch.Tensor,
    upper: torch.Tensor,
    spec: torch.Tensor,
    pre_activation: PreActivationBounds,
    batchnorm: BatchNormAffine | None = None,
) -> torch.Tensor:
    """CROWN-IBP lower bounds of ``spec @ f(x)`` (B, S): CROWN backward, IBP intermediates."""
    shapes = layer_input_shapes(model, lower.shape[1:])
    return backward_lower_bound(model, spec, lower, upper, pre_activation, shapes, batchnorm)


def _neuron_bounds(
    model: nn.Sequential,
    stop: int,
    neurons: torch.Tensor,
    lower: torch.Tensor,
    upper: torch.Tensor,
    pre_activation: PreActivationBounds,
    shapes: list[torch.Size],
    batchnorm: BatchNormAffine | None,
):
    """CROWN lower and upper bounds (B, len(neurons)) of chosen neurons of ``model[:stop]``'s output."""
    out_shape = shapes[stop]
    size = int(torch.Size(out_shape).numel())
    batch = lower.shape[0]
    widest = max(int(torch.Size(shape).numel()) for shape in shapes[: stop + 1])
    chunk_size = max(1, _CROWN_ELEMENT_BUDGET // (2 * batch * widest))
    lows, highs = [], []
    for chunk in neurons.split(chunk_size):
        rows = torch.zeros(chunk.numel(), size, dtype=lower.dtype, device=lower.device)
        rows[torch.arange(chunk.numel()), chunk] = 1
        rows = rows.view(-1, *out_shape)
        spec = torch.cat([rows, -rows]).unsqueeze(0).expand(batch, *([-1] * rows.dim()))
        bound = backward_lower_bound(model[:stop], spec, lower, upper, pre_activation, shapes[:stop], batchnorm)
        lows.append(bound[:, : chunk.numel()])
        highs.append(-bound[:, chunk.numel() :])
    return torch.cat(lows, 1), torch.cat(highs, 1)


def crown_margin_lower(
    model: nn.Sequential,
    lower: torch.Tensor,
    upper: torch.Tensor,
    spec: torch.Tensor,
    batchnorm: BatchNormAffine | None = None,
) -> torch.Tensor:
    """Full CROWN lower bounds of ``spec @ f(x)``: every ReLU's input bounded by CROWN too.

    Costs a backward pass per hidden neuron, so it is for evaluating small networks. Only
    neurons that IBP leaves unstable (in some example of the batch) are re-bounded: a stable
    neuron's relaxation is exact whatever its bounds. Each CROWN bound is intersected with
    IBP's, which keeps it sound and never looser.
    """
    shapes = layer_input_shapes(model, lower.shape[1:])
    _, _, ibp_pre_activation = interval_propagate(model, lower, upper, batchnorm, stop=len(model) - 1)
    pre_activation: PreActivationBounds = {}
    for position in sorted(ibp_pre_activation):
        ibp_low, ibp_high = ibp_pre_activation[position]
        low, high = ibp_low.flatten(1).clone(), ibp_high.flatten(1).clone()
        unstable = ((low < 0) & (high > 0)).any(0).nonzero().squeeze(1)
        if unstable.numel():
            crown_low, crown_high = _neuron_bounds(
                model, position, unstable, lower, upper, pre_activation, shapes, batchnorm
            )
            low[:, unstable] = torch.maximum(low[:, unstable], crown_low)
            high[:, unstable] = torch.minimum(high[:, unstable], crown_high)
        pre_activation[position] = (low.view_as(ibp_low), high.view_as(ibp_high))
    return backward_lower_bound(model, spec, lower, upper, pre_activation, shapes, batchnorm)
