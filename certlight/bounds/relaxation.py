"""The ReLU relaxation and its use on backward coefficients, as one autograd node.

Written with plain ops (the slopes from the bounds with clamps and a division, then ``clamp``,
three products and a sum on the coefficients) autograd keeps about five tensors of the layer's
size per ReLU and three of the coefficients' size, (batch x margin rows x layer width) each:
most of a CROWN-IBP training step's memory, and a score of full-size element-wise passes. This
node makes four passes forward and keeps only the ReLU's input bounds (which the IBP pass keeps
anyway) and its *output*, which the next layer of the bound pass (a transposed convolution or a
matrix product) keeps too, so a layer's coefficients are held once. Its backward recomputes the
slopes from the bounds and recovers what it needs of the coefficients from the output: a
coefficient's sign is its output's (slopes are non-negative), and
``min(A, 0) = min(out, 0) / upper_slope``.

That recovery is exact: wherever ``upper_slope`` is 0 (an inactive neuron, ``u <= 0``) the
lower slope and the intercept are 0 too, so the output is 0 and so is the coefficient's
gradient, whatever the coefficient was; the slopes' gradients it then cannot recover are
multiplied by ``d upper_slope / d u = 0`` on their way to the bounds. The gradients are the plain
ops' (tests/test_relaxation.py), including the plain ops' choice at a coefficient or bound of
exactly 0, where a clamp passes no gradient. When the lower slope itself is trained (α-CROWN)
its gradient needs the positive coefficients, which the output does not hold where the slope is
0; then the node keeps its input instead.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools

import torch

MIN_WIDTH = 1e-12  # an interval narrower than this counts as this wide in the upper slope
_COMPILE = contextvars.ContextVar("certlight_compiled_relaxation", default=False)


def relu_relaxation(lower: torch.Tensor, upper: torch.Tensor):
    """Slopes and intercept of the linear bounds of ReLU on ``[lower, upper]``.

    Upper line through (l, 0) and (u, u); lower line through the origin with slope 1 when
    ``u > -l`` and 0 otherwise (the adaptive choice of CROWN). Written with clamps rather
    than branches: with ``u+ = max(u, 0)`` and ``l- = min(l, 0)``, ``u+ / (u+ - l-)`` is 1 for
    active, 0 for inactive and ``u / (u - l)`` for unstable neurons, so stable neurons stay
    exact. Returns ``(lower_slope, upper_slope, upper_intercept)``.
    """
    upper_pos, lower_neg = upper.clamp(min=0), lower.clamp(max=0)
    upper_slope = upper_pos / (upper_pos - lower_neg).clamp(min=MIN_WIDTH)
    upper_intercept = -lower_neg * upper_slope
    lower_slope = (upper + lower > 0).to(upper.dtype)
    return lower_slope, upper_slope, upper_intercept


def _weighted_over_rows(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``sum_s weights[b, s] * values[b, s, ...]`` (B, ...), as one batched product."""
    batch, rows = weights.shape
    return torch.bmm(weights.unsqueeze(1), values.reshape(batch, rows, values.shape[2:].numel())).view(
        batch, *values.shape[2:]
    )


def _weighted_over_units(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum_n values[b, s, n] * weights[b, n]`` (B, S), as one batched product."""
    batch, rows, units = *values.shape[:2], values.shape[2:].numel()
    return torch.bmm(values.reshape(batch, rows, units), weights.reshape(batch, units, 1)).squeeze(-1)


def _slopes(lower, upper, trained_slope):
    """The relaxation's slopes and intercept (B, *shape), the lower slope (B, S, *shape) when
    trained (α-CROWN: its value on unstable neurons, CROWN's exact one elsewhere), and the mask
    of unstable neurons."""
    lower_slope, upper_slope, upper_intercept = relu_relaxation(lower, upper)
    unstable = None
    if trained_slope is not None:
        unstable = ((lower < 0) & (upper > 0)).unsqueeze(1)
        lower_slope = torch.where(unstable, trained_slope, lower_slope.unsqueeze(1))
    else:
        lower_slope = lower_slope.unsqueeze(1)
    return lower_slope, upper_slope, upper_intercept, unstable


def _forward(coefficients, lower, upper, trained_slope):
    lower_slope, upper_slope, upper_intercept, _ = _slopes(lower, upper, trained_slope)
    out = coefficients.clamp(min=0).mul_(lower_slope)
    negative = coefficients.clamp(max=0)
    out.addcmul_(negative, upper_slope.unsqueeze(1))  # exact: of max(A, 0) and min(A, 0) one is 0
    return out, _weighted_over_units(negative, upper_intercept)


def _backward(kept, lower, upper, trained_slope, grad_out, grad_bias, needs_grad: tuple, keeps_input: bool):
    """The gradients of the coefficients, bounds and trained slope (None where not needed)."""
    # Masks as 0/1 floats from sign() and clamps: on the CPU, comparisons, bool masks and
    # where() on coefficient-sized tensors run several times slower than float arithmetic.
    lower_slope, upper_slope, upper_intercept, unstable = _slopes(lower, upper, trained_slope)
    grad_coefficients = grad_lower = grad_upper = grad_trained = None
    # In place wherever a buffer is free again, the slopes' gradients first: at most two
    # coefficient-sized buffers exist besides the kept tensor and the incoming gradient.
    if needs_grad[3]:
        grad_trained = (grad_out * kept.clamp(min=0)) * unstable
    if needs_grad[1] or needs_grad[2]:
        negative = kept.clamp(max=0)  # min(A, 0), or min(out, 0) = min(A, 0) * upper_slope
        grad_intercept = _weighted_over_rows(grad_bias, negative)
        grad_slope = negative.mul_(grad_out).sum(1)
        del negative
        if not keeps_input:
            divisor = upper_slope + (upper_slope == 0).to(
                upper_slope.dtype
            )  # 1 where the slope is 0 (and so is the numerator)
            grad_intercept, grad_slope = grad_intercept / divisor, grad_slope / divisor
        grad_lower, grad_upper = _bounds_gradient(lower, upper, upper_slope, grad_slope, grad_intercept)
    if needs_grad[0]:
        negative_side = kept.sign()
        grad = negative_side.clamp(min=0)  # the positive side
        negative_side.neg_().add_(grad)  # the negative side
        grad.mul_(lower_slope).addcmul_(negative_side, upper_slope.unsqueeze(1)).mul_(grad_out)
        row_weights = grad_bias.view(*grad_bias.shape, *([1] * (kept.dim() - 2)))
        grad_coefficients = grad.addcmul_(row_weights, negative_side.mul_(upper_intercept.unsqueeze(1)))
    return grad_coefficients, grad_lower, grad_upper, grad_trained


@functools.cache
def _compiled() -> tuple:
    """``_forward`` and ``_backward`` as fused kernels (torch.compile), built on first use."""
    return torch.compile(_forward, dynamic=False), torch.compile(_backward, dynamic=False)


class _RelaxedReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, coefficients, lower, upper, trained_slope, compiled):
        ctx.compiled = compiled
        out, bias = (_compiled()[0] if compiled else _forward)(coefficients, lower, upper, trained_slope)
        ctx.keeps_input = trained_slope is not None and ctx.needs_input_grad[3]
        ctx.save_for_backward(coefficients if ctx.keeps_input else out, lower, upper, trained_slope)
        return out, bias

    @staticmethod
    def backward(ctx, grad_out, grad_bias):
        backward = _compiled()[1] if ctx.compiled else _backward
        return *backward(
            *ctx.saved_tensors, grad_out, grad_bias, tuple(ctx.needs_input_grad[:4]), ctx.keeps_input
        ), None


def _bounds_gradient(lower, upper, upper_slope, grad_slope, grad_intercept):
    """Chain rule from the upper slope and intercept back to the bounds, as autograd would take
    it through :func:`relu_relaxation` (a clamp passes no gradient at its bound)."""
    upper_pos, lower_neg = upper.clamp(min=0), lower.clamp(max=0)
    width = upper_pos - lower_neg
    grad_slope = grad_slope - grad_intercept * lower_neg  # intercept = -l- * slope
    grad_lower_neg = -grad_intercept * upper_slope
    # slope = u+ / max(width, MIN_WIDTH), width = u+ - l-
    grad_upper_pos = grad_slope / width.clamp(min=MIN_WIDTH)
    grad_width = -grad_upper_pos * upper_slope * (width > MIN_WIDTH).to(width.dtype)
    grad_upper_pos = grad_upper_pos + grad_width
    grad_lower_neg = grad_lower_neg - grad_width
    return grad_lower_neg * (lower < 0).to(lower.dtype), grad_upper_pos * (upper > 0).to(upper.dtype)


def relaxed_relu_backward(coefficients, lower, upper, trained_slope=None):
    """A linear function ``A @ relu(h)`` (A: (B, S, *shape)) rewritten as ``A' @ h + b`` for h
    in the box ``[lower, upper]`` (B, *shape), by CROWN's relaxation of the ReLU: returns
    ``(A', b)`` with ``A' = clamp(A, 0) * lower_slope + clamp(A, max=0) * upper_slope`` and
    ``b = sum(clamp(A, max=0) * upper_intercept)`` per example and row. ``trained_slope``
    (B, S, *shape) in [0, 1]: α-CROWN's lower slopes, used on unstable neurons. Inside
    :func:`compiled_relaxation` (CROWN's own slopes only) it runs as fused compiled kernels."""
    return _RelaxedReLU.apply(coefficients, lower, upper, trained_slope, trained_slope is None and _COMPILE.get())


@contextlib.contextmanager
def compiled_relaxation():
    """Run the relaxations of the bound passes inside this block as fused compiled kernels
    (``bounds.compile``): the element-wise passes fused, the same values to float rounding."""
    token = _COMPILE.set(True)
    try:
        yield
    finally:
        _COMPILE.reset(token)
