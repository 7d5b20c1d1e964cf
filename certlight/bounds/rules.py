"""One rule per layer type: everything the bound engine knows about that layer, in one place.

A rule says, for its layer type,
- ``out_shape``: the per-example output shape (plain arithmetic: no probe forward pass);
- ``forward``: the clean forward, recording what the bounds must hold fixed (BatchNorm's
  batch statistics in training mode);
- ``interval``: the interval (IBP) image of a box;
- ``backward``: a linear function ``A @ layer(h)`` rewritten as ``A' @ h + b`` (CROWN), using
  a linear relaxation where the layer is not affine.
Containers (``nn.Sequential``, :class:`~certlight.models.Residual`) walk their children with
the children's rules. Everything a walk records is keyed by the layer's *walk key* (the path
of child indices from the network's root), so a module object used twice never shares state.

Adding a layer type is one class here with ``@rule_for_type(LayerType)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from certlight.bounds.relaxation import relaxed_relu_backward, relu_relaxation
from certlight.errors import CertlightError
from certlight.models.residual import Residual

Key = tuple  # a layer's path in the walk: () for the root, (3,) for its 4th child, (3, "body", 0), ...
Bounds = tuple[torch.Tensor, torch.Tensor]


@dataclass
class WalkState:
    """What one pass over the network records, keyed by walk key: the (scale, shift) each
    BatchNorm applied in the clean forward, the input bounds of every ReLU, (α-CROWN) chosen
    lower-relaxation slopes of the unstable ReLUs, (B, S, *shape) in [0, 1], and (β-CROWN) the
    split constraints' Lagrangian terms added to a ReLU input's coefficients, (B, S, *shape).
    ``relu_coefficients``, when a dict, receives the coefficients each ReLU's output gets in
    a backward pass (what branching heuristics score)."""

    batchnorm: dict[Key, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    pre_activation: dict[Key, Bounds] = field(default_factory=dict)
    lower_slopes: dict[Key, torch.Tensor] = field(default_factory=dict)
    split_multipliers: dict[Key, torch.Tensor] = field(default_factory=dict)
    relu_coefficients: dict[Key, torch.Tensor] | None = None


class Rule:
    # Containers list their parts; ``chained`` parts feed each other in order (Sequential),
    # parallel ones all read the container's input (the branches of a Residual).
    chained = False
    # What the walks need to know of a layer, declared rather than guessed from its type:
    # ``needs_input_bounds``: its backward relaxation reads its input interval, recorded by the IBP
    # walk in ``WalkState.pre_activation`` (full CROWN tightens exactly these);
    # ``optimisable_slopes``: α-CROWN may optimise its lower relaxation's slopes
    # (:meth:`initial_lower_slope` gives the starting ones);
    # ``relu_like``: a ReLU for Shi et al.'s regulariser, branch and bound's splits and the MILP.
    needs_input_bounds = False
    optimisable_slopes = False
    relu_like = False

    def parts(self, layer: nn.Module, key: Key, in_shape: torch.Size) -> list[tuple[nn.Module, Key, torch.Size]]:
        """``(child, walk key, child's input shape)`` for each child; none for a leaf layer."""
        return []

    def check(self, layer: nn.Module, key: Key) -> None:
        """Raise a CertlightError naming the layer if this instance cannot be bounded soundly."""

    def out_shape(self, layer: nn.Module, shape: torch.Size) -> torch.Size:
        return shape

    def forward(self, layer: nn.Module, x: torch.Tensor, key: Key, state: WalkState) -> torch.Tensor:
        return layer(x)

    def interval(self, layer: nn.Module, lower, upper, key: Key, state: WalkState) -> Bounds:
        raise NotImplementedError

    def backward(self, layer: nn.Module, coefficients, key: Key, state: WalkState, in_shape: torch.Size):
        """``(A', b)`` with ``A @ layer(h) >= A' @ h + b`` (equality for affine layers); ``b`` is (B, S)."""
        raise NotImplementedError

    def initial_lower_slope(self, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
        """The lower relaxation's slopes (B, *shape) α-CROWN starts from (optimisable rules only)."""
        raise NotImplementedError

    def relaxed_units(self, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
        """Where the relaxation is inexact and tighter input bounds pay (rules needing bounds)."""
        raise NotImplementedError


RULES: dict[type, Rule] = {}


def rule_for_type(*types: type) -> Callable[[type[Rule]], type[Rule]]:
    def register(cls: type[Rule]) -> type[Rule]:
        for layer_type in types:
            RULES[layer_type] = cls()
        return cls

    return register


def rule(layer: nn.Module, key: Key | None = None) -> Rule:
    """The rule of ``layer``'s type (or of its nearest base class); ``key``, when given, names
    the layer's place in the network in the error for an unsupported type."""
    for layer_type in type(layer).__mro__:
        if layer_type in RULES:
            return RULES[layer_type]
    supported = ", ".join(sorted(t.__name__ for t in RULES))
    where = f"layer {_name(key)}: " if key is not None else ""
    raise CertlightError(
        f"{where}layer {type(layer).__name__} is not supported by the native bound engine; supported: {supported}"
    )


def _sum_trailing(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.flatten(2).sum(-1)


def channel_view(vector: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a per-channel vector so it broadcasts over a (B, C, ...) tensor."""
    return vector.view(1, -1, *([1] * (like.dim() - 2)))


def _centre_radius(lower, upper):
    return (upper + lower) / 2, (upper - lower) / 2


class Monotone(Rule):
    """Element-wise non-decreasing layers: the interval image is the image of the ends."""

    def interval(self, layer, lower, upper, key, state):
        return layer(lower), layer(upper)


# --- affine layers ------------------------------------------------------------------------
@rule_for_type(nn.Linear)
class LinearRule(Rule):
    def out_shape(self, layer, shape):
        return torch.Size([layer.out_features])

    def interval(self, layer, lower, upper, key, state):
        centre, radius = _centre_radius(lower, upper)
        centre, radius = layer(centre), F.linear(radius, layer.weight.abs())
        return centre - radius, centre + radius

    def backward(self, layer, coefficients, key, state, in_shape):
        bias = coefficients @ layer.bias if layer.bias is not None else coefficients.new_zeros(coefficients.shape[:2])
        return coefficients @ layer.weight, bias


@rule_for_type(nn.Conv2d)
class Conv2dRule(Rule):
    def check(self, layer, key):
        # The radius pass and the transposed convolution assume zero padding given as numbers.
        if isinstance(layer.padding, str) or layer.padding_mode != "zeros":
            raise CertlightError(
                f"layer {_name(key)} (Conv2d) has padding={layer.padding!r}, padding_mode={layer.padding_mode!r}; "
                "the native bound engine needs numeric padding with padding_mode='zeros'"
            )

    def out_shape(self, layer, shape):
        spatial = [
            (size + 2 * p - d * (k - 1) - 1) // s + 1
            for size, s, p, d, k in zip(shape[-2:], layer.stride, layer.padding, layer.dilation, layer.kernel_size)
        ]
        return torch.Size([layer.out_channels, *spatial])

    def interval(self, layer, lower, upper, key, state):
        centre, radius = _centre_radius(lower, upper)
        centre = layer(centre)
        radius = F.conv2d(radius, layer.weight.abs(), None, layer.stride, layer.padding, layer.dilation, layer.groups)
        return centre - radius, centre + radius

    def backward(self, layer, coefficients, key, state, in_shape):
        """``A @ conv`` through the transposed convolution, never unrolling conv to a dense matrix."""
        batch, specs = coefficients.shape[:2]
        bias = (
            (coefficients.sum(dim=(-2, -1)) * layer.bias).sum(-1)
            if layer.bias is not None
            else coefficients.new_zeros(batch, specs)
        )
        out = coefficients.reshape(batch * specs, *coefficients.shape[2:])
        expected = [
            (o - 1) * s - 2 * p + d * (k - 1) + 1
            for o, s, p, d, k in zip(out.shape[-2:], layer.stride, layer.padding, layer.dilation, layer.kernel_size)
        ]
        output_padding = [i - e for i, e in zip(in_shape[-2:], expected)]
        back = F.conv_transpose2d(
            out, layer.weight, None, layer.stride, layer.padding, output_padding, layer.groups, layer.dilation
        )
        return back.view(batch, specs, *in_shape), bias


def batchnorm_affine(layer: _BatchNorm, inputs: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-channel ``(scale, shift)`` that ``layer`` applies.

    In training mode BatchNorm normalises with the statistics of the clean batch (``inputs``);
    the bound treats those statistics as constants of the network, which is what makes the
    bound sound for the function the clean forward actually computed. In eval mode it uses
    the running statistics.
    """
    if layer.training or not layer.track_running_stats:
        if inputs is None:
            raise CertlightError(
                "a BatchNorm layer in training mode needs the clean batch statistics; "
                "compute them with clean_forward() and pass its state"
            )
        dims = [0] + list(range(2, inputs.dim()))
        mean, var = inputs.mean(dim=dims), inputs.var(dim=dims, unbiased=False)
    else:
        mean, var = layer.running_mean, layer.running_var
    scale = torch.rsqrt(var + layer.eps)
    if layer.affine:
        scale = scale * layer.weight
        shift = layer.bias - mean * scale
    else:
        shift = -mean * scale
    return scale, shift


@rule_for_type(_BatchNorm)
class BatchNormRule(Rule):
    """A per-channel affine map: the clean batch's statistics in training, running ones in eval."""

    def _affine(self, layer, key, state):
        return state.batchnorm[key] if key in state.batchnorm else batchnorm_affine(layer, None)

    def forward(self, layer, x, key, state):
        state.batchnorm[key] = batchnorm_affine(layer, x)
        return layer(x)

    def interval(self, layer, lower, upper, key, state):
        scale, shift = self._affine(layer, key, state)
        centre, radius = _centre_radius(lower, upper)
        centre = channel_view(scale, lower) * centre + channel_view(shift, lower)
        radius = channel_view(scale.abs(), lower) * radius
        return centre - radius, centre + radius

    def backward(self, layer, coefficients, key, state, in_shape):
        scale, shift = self._affine(layer, key, state)
        view = (1, 1, -1) + (1,) * (coefficients.dim() - 3)
        return coefficients * scale.view(view), _sum_trailing(coefficients * shift.view(view))


@rule_for_type(nn.AvgPool2d)
class AvgPool2dRule(Rule):
    """Average pooling is linear with non-negative weights: the box maps end to end."""

    def check(self, layer, key):
        if (
            layer.ceil_mode
            or layer.divisor_override is not None
            or (_pair(layer.padding) != (0, 0) and not layer.count_include_pad)
        ):
            raise CertlightError(
                f"layer {_name(key)} (AvgPool2d) needs ceil_mode=False, "
                "no divisor_override, and count_include_pad with padding"
            )

    def out_shape(self, layer, shape):
        return _pooled_shape(layer, shape)

    def interval(self, layer, lower, upper, key, state):
        return layer(lower), layer(upper)

    def backward(self, layer, coefficients, key, state, in_shape):
        batch, specs = coefficients.shape[:2]
        channels = in_shape[0]
        k, s, p = _pool_geometry(layer)
        weight = coefficients.new_full((channels, 1, *k), 1.0 / (k[0] * k[1]))
        out = coefficients.reshape(batch * specs, *coefficients.shape[2:])
        expected = [(o - 1) * si - 2 * pi + ki for o, si, pi, ki in zip(out.shape[-2:], s, p, k)]
        output_padding = [i - e for i, e in zip(in_shape[-2:], expected)]
        back = F.conv_transpose2d(out, weight, None, s, p, output_padding, channels)
        return back.view(batch, specs, *in_shape), coefficients.new_zeros(batch, specs)


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _pool_geometry(layer: nn.Module) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """A pooling layer's (kernel, stride, padding), each as a pair; stride defaults to the kernel."""
    return _pair(layer.kernel_size), _pair(layer.stride or layer.kernel_size), _pair(layer.padding)


def _pooled_shape(layer: nn.Module, shape: torch.Size) -> torch.Size:
    k, s, p = _pool_geometry(layer)
    return torch.Size([shape[0], *[(size + 2 * pi - ki) // si + 1 for size, ki, si, pi in zip(shape[-2:], k, s, p)]])


# --- shape-only and identity layers ------------------------------------------------------
@rule_for_type(nn.Flatten)
class FlattenRule(Monotone):
    def check(self, layer, key):
        if (layer.start_dim, layer.end_dim) != (1, -1):
            raise CertlightError(
                f"layer {_name(key)} (Flatten) has start_dim={layer.start_dim}, end_dim={layer.end_dim}; "
                "the native bound engine needs Flatten(1, -1)"
            )

    def out_shape(self, layer, shape):
        return torch.Size([shape.numel()])

    def backward(self, layer, coefficients, key, state, in_shape):
        return coefficients.reshape(*coefficients.shape[:2], *in_shape), coefficients.new_zeros(coefficients.shape[:2])


@rule_for_type(nn.Identity)
class IdentityRule(Monotone):
    def backward(self, layer, coefficients, key, state, in_shape):
        return coefficients, coefficients.new_zeros(coefficients.shape[:2])


@rule_for_type(nn.Dropout)
class DropoutRule(IdentityRule):
    """Dropout is the identity in eval mode (how certified networks are evaluated); in training
    its random mask is a different function for every batch, so training with p > 0 is refused."""

    def forward(self, layer, x, key, state):
        if layer.training and layer.p > 0:
            raise CertlightError(
                f"layer {_name(key)} (Dropout, p={layer.p}) cannot be bounded in training mode; use p=0"
            )
        return layer(x)


# --- ReLU ---------------------------------------------------------------------------------
@rule_for_type(nn.ReLU)
class ReLURule(Monotone):
    needs_input_bounds = optimisable_slopes = relu_like = True

    def initial_lower_slope(self, lower, upper):
        return relu_relaxation(lower, upper)[0]

    def relaxed_units(self, lower, upper):
        return (lower < 0) & (upper > 0)

    def interval(self, layer, lower, upper, key, state):
        state.pre_activation[key] = (lower, upper)
        return lower.clamp(min=0), upper.clamp(min=0)

    def backward(self, layer, coefficients, key, state, in_shape):
        lower, upper = state.pre_activation[key]
        if state.relu_coefficients is not None:
            state.relu_coefficients[key] = coefficients
        coefficients, bias = relaxed_relu_backward(coefficients, lower, upper, state.lower_slopes.get(key))
        if key in state.split_multipliers:
            coefficients = coefficients + state.split_multipliers[key]
        return coefficients, bias


# --- max pooling --------------------------------------------------------------------------
@rule_for_type(nn.MaxPool2d)
class MaxPool2dRule(Monotone):
    """The maximum over each window. Its relaxation (CROWN's choice for a max): below by the input
    with the largest lower bound in the window, ``max >= x_j*``; above by the window's largest
    upper bound, a constant, or by ``x_j*`` itself where that input's lower bound reaches every
    other upper bound of the window (the max is then exactly x_j*; found for non-overlapping
    windows only, the constant elsewhere)."""

    needs_input_bounds = True

    def check(self, layer, key):
        if layer.ceil_mode or _pair(layer.dilation) != (1, 1) or layer.return_indices:
            raise CertlightError(
                f"layer {_name(key)} (MaxPool2d) needs ceil_mode=False, dilation=1 and return_indices=False"
            )

    def out_shape(self, layer, shape):
        return _pooled_shape(layer, shape)

    def interval(self, layer, lower, upper, key, state):
        state.pre_activation[key] = (lower, upper)
        return layer(lower), layer(upper)

    def relaxed_units(self, lower, upper):
        return upper > lower

    def backward(self, layer, coefficients, key, state, in_shape):
        lower, upper = state.pre_activation[key]
        k, s, p = _pool_geometry(layer)
        _, chosen = F.max_pool2d(lower, k, s, p, return_indices=True)  # x_j*: flat spatial index per window
        ceiling = F.max_pool2d(upper, k, s, p)
        exact = torch.zeros_like(ceiling, dtype=torch.bool)
        if k == s:  # non-overlapping windows: is x_j* above every other input of its window?
            others = upper.flatten(2).scatter(2, chosen.flatten(2), -torch.inf).view_as(upper)
            exact = lower.flatten(2).gather(2, chosen.flatten(2)).view_as(ceiling) >= F.max_pool2d(others, k, s, p)
        positive, negative = coefficients.clamp(min=0), coefficients.clamp(max=0)
        on_input = positive + torch.where(exact.unsqueeze(1), negative, 0.0)
        constant = torch.where(exact.unsqueeze(1), 0.0, negative)
        batch, specs, channels = coefficients.shape[:3]
        index = chosen.unsqueeze(1).expand(-1, specs, -1, -1, -1).reshape(batch, specs, channels, -1)
        back = coefficients.new_zeros(batch, specs, channels, in_shape[-2] * in_shape[-1])
        back.scatter_add_(3, index, on_input.reshape(batch, specs, channels, -1))
        bias = _sum_trailing(constant * ceiling.unsqueeze(1))
        return back.view(batch, specs, *in_shape), bias


# --- S-shaped activations -------------------------------------------------------------------
RELAXATION_SLACK = 1e-6  # intercepts widened by this: the lines are computed in floats


class SCurveRule(Monotone):
    """An increasing S-shaped activation (convex below 0, concave above) with CROWN's relaxation
    (Zhang et al. 2018) as auto_LiRPA implements it, so the two engines give the same bounds:
    - wholly on one side of 0, the chord on the side where the function curves away from it and
      the tangent at the interval's midpoint on the other;
    - across 0, each bound is the chord when the chord stays on its side of the curve (its slope
      below the derivative at the far end), otherwise the tangent at a point on the other side of
      0 looked up in a table: for the upper end rounded up to a grid step, the point closest to 0
      whose tangent still lies below the curve there (:meth:`tangent_points`).
    Each line is sound by construction; intercepts are widened by ``RELAXATION_SLACK`` for the
    floats. The slopes are not optimised: α-CROWN leaves these layers at this relaxation."""

    needs_input_bounds = True
    GRID_STEP, GRID_LIMIT = 0.01, 500.0  # auto_LiRPA 0.3's table: every 0.01 up to |x| = 500

    def __init__(self):
        self._tables: dict = {}

    def function(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def interval(self, layer, lower, upper, key, state):
        state.pre_activation[key] = (lower, upper)
        return layer(lower), layer(upper)

    def tangent_points(self, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Per grid point ``g_i = i * GRID_STEP``: ``below[i]`` <= 0, the tangent point closest to
        0 whose tangent stays below f at ``g_i``, and ``above[i]`` >= 0, the one closest to 0
        whose tangent stays above f at ``-g_i`` (by bisection, 100 halvings, once per device)."""
        if (device, dtype) in self._tables:
            return self._tables[(device, dtype)]
        f, df = self.function, self.derivative
        grid = self.GRID_STEP * torch.arange(int(self.GRID_LIMIT / self.GRID_STEP) + 5, device=device, dtype=dtype)

        def below_at(end, point):  # the tangent at point lies below f at end
            return df(point) * (end - point) + f(point) <= f(end)

        def above_at(end, point):  # the tangent at point lies above f at end
            return df(point) * (end - point) + f(point) >= f(end)

        def bisect(valid, far, near):  # valid(far) holds; move towards near while it still holds
            holds = valid(far)
            while not holds.all():
                far = torch.where(holds, far, 2 * far)
                holds = valid(far)
            for _ in range(100):
                middle = (far + near) / 2
                holds = valid(middle)
                far, near = torch.where(holds, middle, far), torch.where(holds, near, middle)
            return far

        below = bisect(lambda point: below_at(grid, point), -torch.ones_like(grid), torch.zeros_like(grid))
        above = bisect(lambda point: above_at(-grid, point), torch.ones_like(grid), torch.zeros_like(grid))
        self._tables[(device, dtype)] = below, above
        return below, above

    def relaxation(self, lower, upper):
        """``(lower slope, lower intercept, upper slope, upper intercept)`` of two lines with
        ``kl x + bl <= f(x) <= ku x + bu`` on ``[lower, upper]``."""
        f, df = self.function, self.derivative
        lower, upper = lower.clamp(min=-self.GRID_LIMIT), upper.clamp(max=self.GRID_LIMIT)
        f_lower = f(lower)
        close = (upper - lower) < 1e-6
        chord = torch.where(close, df(upper), (f(upper) - f_lower) / (upper - lower).clamp(min=1e-6))
        chord_bias = f_lower - chord * lower
        middle = (lower + upper) / 2
        middle_slope = df(middle)
        middle_bias = f(middle) - middle_slope * middle
        positive, negative = lower >= 0, upper <= 0
        across = ~(positive | negative)
        below, above = self.tangent_points(lower.device, lower.dtype)
        step = self.GRID_STEP
        tangent_low = below[((upper / step).long().clamp(min=0) + 1).clamp(max=below.numel() - 1)]
        tangent_high = above[((lower / -step).long().clamp(min=0) + 1).clamp(max=above.numel() - 1)]
        low_slope, high_slope = df(tangent_low), df(tangent_high)
        low_bias, high_bias = f(tangent_low) - low_slope * tangent_low, f(tangent_high) - high_slope * tangent_high
        chord_below = across & (chord < df(lower))
        chord_above = across & (chord < df(upper))
        lower_slope = torch.where(positive | chord_below, chord, torch.where(negative, middle_slope, low_slope))
        lower_bias = torch.where(positive | chord_below, chord_bias, torch.where(negative, middle_bias, low_bias))
        upper_slope = torch.where(negative | chord_above, chord, torch.where(positive, middle_slope, high_slope))
        upper_bias = torch.where(negative | chord_above, chord_bias, torch.where(positive, middle_bias, high_bias))
        return lower_slope, lower_bias - RELAXATION_SLACK, upper_slope, upper_bias + RELAXATION_SLACK

    def backward(self, layer, coefficients, key, state, in_shape):
        lower_slope, lower_bias, upper_slope, upper_bias = (
            part.unsqueeze(1) for part in self.relaxation(*state.pre_activation[key])
        )
        positive, negative = coefficients.clamp(min=0), coefficients.clamp(max=0)
        bias = _sum_trailing(positive * lower_bias + negative * upper_bias)
        return positive * lower_slope + negative * upper_slope, bias

    def relaxed_units(self, lower, upper):
        return upper > lower


@rule_for_type(nn.Sigmoid)
class SigmoidRule(SCurveRule):
    def function(self, x):
        return torch.sigmoid(x)

    def derivative(self, x):
        return torch.sigmoid(x) * (1 - torch.sigmoid(x))


@rule_for_type(nn.Tanh)
class TanhRule(SCurveRule):
    def function(self, x):
        return torch.tanh(x)

    def derivative(self, x):
        # 0 beyond |x| = 25, where cosh² overflows (auto_LiRPA's dtanh does the same)
        inside = x.abs() < 25
        return torch.where(inside, 1 / torch.cosh(torch.where(inside, x, 0.0)) ** 2, 0.0)


# --- containers ---------------------------------------------------------------------------
class Span:
    """Layers ``start`` to ``stop - 1`` of an ``nn.Sequential``, walked under the whole network's
    walk keys: a suffix finds the BatchNorm statistics and ReLU bounds the whole network's walks
    recorded, so a prefix and a suffix can be bounded apart (TAPS: IBP to a split point, an
    attack through the rest). ``net[a:b]`` would re-key its layers from 0."""

    def __init__(self, net: nn.Sequential, start: int = 0, stop: int | None = None):
        self.net, self.start, self.stop = net, start, len(net) if stop is None else stop
        if not 0 <= self.start <= self.stop <= len(net):
            raise ValueError(f"span [{start}, {stop}) is not inside a network of {len(net)} layers")

    def indexed(self) -> list[tuple[int, nn.Module]]:
        return [(index, self.net[index]) for index in range(self.start, self.stop)]

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, item):
        if isinstance(item, slice):
            start, stop, _ = item.indices(len(self))
            return Span(self.net, self.start + start, self.start + max(start, stop))
        return self.net[self.start + range(len(self))[item]]


def _indexed(layer) -> list[tuple[int, nn.Module]]:
    """A chain's children with their walk-key indices (a Span's are the whole network's)."""
    return layer.indexed() if isinstance(layer, Span) else list(enumerate(layer))


@rule_for_type(nn.Sequential, Span)
class SequentialRule(Rule):
    chained = True

    def parts(self, layer, key, in_shape):
        return [
            (child, (*key, index), shape)
            for (index, child), shape in zip(_indexed(layer), self.in_shapes(layer, in_shape))
        ]

    def check(self, layer, key):
        for index, child in _indexed(layer):
            rule(child, (*key, index)).check(child, (*key, index))

    def in_shapes(self, layer, shape) -> list[torch.Size]:
        """Each child's input shape, and the output shape last."""
        shapes = [torch.Size(shape)]
        for _, child in _indexed(layer):
            shapes.append(rule(child).out_shape(child, shapes[-1]))
        return shapes

    def out_shape(self, layer, shape):
        return self.in_shapes(layer, shape)[-1]

    def forward(self, layer, x, key, state):
        for index, child in _indexed(layer):
            x = rule(child).forward(child, x, (*key, index), state)
        return x

    def interval(self, layer, lower, upper, key, state):
        for index, child in _indexed(layer):
            lower, upper = rule(child).interval(child, lower, upper, (*key, index), state)
        return lower, upper

    def backward(self, layer, coefficients, key, state, in_shape):
        children = _indexed(layer)
        shapes = self.in_shapes(layer, in_shape)
        bias = coefficients.new_zeros(coefficients.shape[:2])
        for (index, child), shape in reversed(list(zip(children, shapes))):
            coefficients, child_bias = rule(child).backward(child, coefficients, (*key, index), state, shape)
            bias = bias + child_bias
        return coefficients, bias


@rule_for_type(Residual)
class ResidualRule(Rule):
    """``body(x) + shortcut(x)``: the interval of a sum is the sum of intervals; a linear
    function of a sum splits into the two branches, whose coefficients meet again at ``x``."""

    def _branches(self, layer, key):
        shortcut = layer.shortcut if layer.shortcut is not None else nn.Identity()
        return ((layer.body, (*key, "body")), (shortcut, (*key, "shortcut")))

    def parts(self, layer, key, in_shape):
        return [(branch, branch_key, in_shape) for branch, branch_key in self._branches(layer, key)]

    def check(self, layer, key):
        for branch, branch_key in self._branches(layer, key):
            rule(branch, branch_key).check(branch, branch_key)

    def out_shape(self, layer, shape):
        return rule(layer.body).out_shape(layer.body, shape)

    def forward(self, layer, x, key, state):
        return sum(rule(b).forward(b, x, k, state) for b, k in self._branches(layer, key))

    def interval(self, layer, lower, upper, key, state):
        (body_low, body_high), (short_low, short_high) = (
            rule(b).interval(b, lower, upper, k, state) for b, k in self._branches(layer, key)
        )
        return body_low + short_low, body_high + short_high

    def backward(self, layer, coefficients, key, state, in_shape):
        (body_a, body_b), (short_a, short_b) = (
            rule(b).backward(b, coefficients, k, state, in_shape) for b, k in self._branches(layer, key)
        )
        return body_a + short_a, body_b + short_b


def _name(key: Key) -> str:
    return ".".join(str(part) for part in key) or "<root>"
