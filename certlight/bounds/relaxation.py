"""The ReLU relaxation applied to backward coefficients, as one autograd node.

Written with plain ops (``clamp``, three products, a sum) autograd keeps about three tensors of
the coefficients' size per ReLU for the backward pass: (batch x margin rows x layer width) each,
most of a CROWN-IBP training step's memory. This node keeps only its input and recomputes the
rest in backward, with exactly the gradients of the plain ops (including their choice at a
coefficient of 0, where neither clamp passes the gradient).
"""

from __future__ import annotations

import torch


def _reduce_to(grad: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum a broadcast gradient back to an input's shape."""
    dims = [d for d, (g, s) in enumerate(zip(grad.shape, shape)) if s == 1 and g != 1]
    return grad.sum(dim=dims, keepdim=True) if dims else grad


class _RelaxedBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, coefficients, lower_slope, upper_slope, upper_intercept):
        ctx.save_for_backward(coefficients, lower_slope, upper_slope, upper_intercept)
        negative = coefficients.clamp(max=0)
        out = coefficients.clamp(min=0) * lower_slope + negative * upper_slope
        bias = (negative * upper_intercept).flatten(2).sum(-1)
        return out, bias

    @staticmethod
    def backward(ctx, grad_out, grad_bias):
        coefficients, lower_slope, upper_slope, upper_intercept = ctx.saved_tensors
        grad_bias = grad_bias.view(*grad_bias.shape, *([1] * (coefficients.dim() - 2)))
        passes_positive, passes_negative = coefficients > 0, coefficients < 0
        grads = [None] * 4
        if ctx.needs_input_grad[0]:
            grads[0] = grad_out * (lower_slope * passes_positive + upper_slope * passes_negative) + grad_bias * upper_intercept * passes_negative
        if ctx.needs_input_grad[1]:
            grads[1] = _reduce_to(grad_out * coefficients.clamp(min=0), lower_slope.shape)
        negative = coefficients.clamp(max=0) if ctx.needs_input_grad[2] or ctx.needs_input_grad[3] else None
        if ctx.needs_input_grad[2]:
            grads[2] = _reduce_to(grad_out * negative, upper_slope.shape)
        if ctx.needs_input_grad[3]:
            grads[3] = _reduce_to(grad_bias * negative, upper_intercept.shape)
        return tuple(grads)


def relaxed_backward(coefficients, lower_slope, upper_slope, upper_intercept):
    """``(clamp(A, 0) * lower_slope + clamp(A, max=0) * upper_slope, sum(clamp(A, max=0) * upper_intercept))``
    for coefficients A (B, S, *shape) and slopes (B, 1 or S, *shape): the coefficients through
    the relaxed ReLU and the bias it adds, per example and row."""
    return _RelaxedBackward.apply(coefficients, lower_slope, upper_slope, upper_intercept)
