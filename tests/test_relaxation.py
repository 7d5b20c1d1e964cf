"""The fused ReLU relaxation node: same values and gradients as the plain ops, less memory."""

import pytest
import torch

from certlight.bounds.relaxation import relaxed_backward


def plain(coefficients, lower_slope, upper_slope, upper_intercept):
    positive, negative = coefficients.clamp(min=0), coefficients.clamp(max=0)
    return positive * lower_slope + negative * upper_slope, (negative * upper_intercept).flatten(2).sum(-1)


@pytest.mark.parametrize("alpha_slopes", [False, True])  # CROWN's (B, 1, ...) slopes, or alpha-CROWN's (B, S, ...)
def test_values_and_gradients_equal_the_plain_ops(alpha_slopes):
    torch.manual_seed(0)
    coefficients = torch.randn(3, 4, 5, 6, dtype=torch.float64)
    coefficients[0, 0, :2] = 0.0  # exact zeros, where neither clamp passes the gradient
    lower_slope = torch.rand(3, 4 if alpha_slopes else 1, 5, 6, dtype=torch.float64)
    upper_slope, upper_intercept = torch.rand(3, 1, 5, 6, dtype=torch.float64), torch.rand(3, 1, 5, 6, dtype=torch.float64)
    inputs = [t.clone().requires_grad_(True) for t in (coefficients, lower_slope, upper_slope, upper_intercept)]
    ours = relaxed_backward(*inputs)
    reference_inputs = [t.clone().requires_grad_(True) for t in (coefficients, lower_slope, upper_slope, upper_intercept)]
    reference = plain(*reference_inputs)
    for a, b in zip(ours, reference):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    weights = (torch.randn_like(ours[0]), torch.randn_like(ours[1]))
    torch.autograd.backward(ours, weights)
    torch.autograd.backward(reference, weights)
    for a, b in zip(inputs, reference_inputs):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-12)


def test_gradcheck():
    torch.manual_seed(1)
    inputs = [torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)] + [
        torch.rand(2, 1, 4, dtype=torch.float64, requires_grad=True) for _ in range(3)
    ]
    assert torch.autograd.gradcheck(relaxed_backward, inputs)


def test_only_the_input_is_kept_for_backward():
    coefficients = torch.randn(2, 9, 1000, requires_grad=True)
    slopes = [torch.rand(2, 1, 1000, requires_grad=True) for _ in range(3)]
    out, _ = relaxed_backward(coefficients, *slopes)
    saved = out.grad_fn.saved_tensors
    assert sum(t.numel() for t in saved) == coefficients.numel() + 3 * 2 * 1000
