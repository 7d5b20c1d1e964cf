"""The fused ReLU relaxation node: the values and gradients of the plain ops, less memory."""

import pytest
import torch

from certlight.bounds.relaxation import relaxed_relu_backward, relu_relaxation


def plain(coefficients, lower, upper, trained_slope=None):
    """The relaxation written with plain ops, as autograd differentiates them."""
    lower_slope, upper_slope, upper_intercept = (t.unsqueeze(1) for t in relu_relaxation(lower, upper))
    if trained_slope is not None:
        lower_slope = torch.where(((lower < 0) & (upper > 0)).unsqueeze(1), trained_slope, lower_slope)
    positive, negative = coefficients.clamp(min=0), coefficients.clamp(max=0)
    return positive * lower_slope + negative * upper_slope, (negative * upper_intercept).flatten(2).sum(-1)


def bounds_and_coefficients(seed):
    """Bounds with inactive, active and unstable neurons, an upper bound of exactly 0 (where
    the clamp passes no gradient), and coefficients with exact zeros."""
    generator = torch.Generator().manual_seed(seed)
    lower = torch.randn(3, 5, 8, generator=generator, dtype=torch.float64)
    upper = lower + 2 * torch.rand(3, 5, 8, generator=generator, dtype=torch.float64)
    lower[0, 0, :4], upper[0, 0, :4] = -1.0, 0.0
    coefficients = torch.randn(3, 4, 5, 8, generator=generator, dtype=torch.float64)
    coefficients[1, 2, :2] = 0.0
    assert (upper <= 0).any() and (lower >= 0).any() and ((lower < 0) & (upper > 0)).any()
    return coefficients, lower, upper


@pytest.mark.parametrize("alpha", [False, True])  # CROWN's own lower slope, or α-CROWN's trained one
def test_values_and_gradients_are_the_plain_ops(alpha):
    coefficients, lower, upper = bounds_and_coefficients(0)
    trained = torch.rand(3, 4, 5, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64) if alpha else None

    def run(function):
        leaves = [t.clone().requires_grad_(True) for t in (coefficients, lower, upper) + ((trained,) if alpha else ())]
        out, bias = function(*leaves[:3], leaves[3] if alpha else None)
        generator = torch.Generator().manual_seed(2)
        weights = (
            torch.randn(out.shape, generator=generator, dtype=out.dtype),
            torch.randn(bias.shape, generator=generator, dtype=bias.dtype),
        )
        torch.autograd.backward((out, bias), weights)
        return out, bias, [leaf.grad for leaf in leaves]

    ours, reference = run(relaxed_relu_backward), run(plain)
    torch.testing.assert_close(ours[0], reference[0], rtol=0, atol=0)
    torch.testing.assert_close(ours[1], reference[1], rtol=1e-12, atol=1e-12)  # summed in another order
    for name, mine, theirs in zip(("coefficients", "lower", "upper", "trained slope"), ours[2], reference[2]):
        torch.testing.assert_close(mine, theirs, rtol=1e-12, atol=1e-12, msg=name)
    assert ours[2][1].abs().sum() > 0 and ours[2][2].abs().sum() > 0  # the bounds' gradients are not vacuous


def test_gradcheck():
    generator = torch.Generator().manual_seed(3)
    lower = torch.randn(2, 6, generator=generator, dtype=torch.float64)
    upper = lower + 0.5 + torch.rand(2, 6, generator=generator, dtype=torch.float64)
    coefficients = torch.randn(2, 3, 6, generator=generator, dtype=torch.float64)
    inputs = [t.requires_grad_(True) for t in (coefficients, lower, upper)]
    assert torch.autograd.gradcheck(lambda a, low, high: relaxed_relu_backward(a, low, high), inputs)


def test_crown_relaxation_keeps_one_copy_of_the_coefficients_and_nothing_new_of_the_bounds():
    """It keeps its output, which the next layer of the bound pass keeps anyway, and the bounds
    the IBP pass keeps anyway: no coefficient-sized tensor of its own, no slopes."""
    coefficients = torch.randn(2, 9, 1000, requires_grad=True)
    lower = torch.randn(2, 1000, requires_grad=True)
    upper = (lower + 1).detach().requires_grad_(True)
    out, _ = relaxed_relu_backward(coefficients, lower, upper)
    kept = [t for t in out.grad_fn.saved_tensors if t is not None]
    assert sorted(t.data_ptr() for t in kept) == sorted([out.data_ptr(), lower.data_ptr(), upper.data_ptr()])
    trained = torch.rand(2, 9, 1000, requires_grad=True)  # α-CROWN: the input is kept instead
    out, _ = relaxed_relu_backward(coefficients, lower, upper, trained)
    assert out.grad_fn.saved_tensors[0].data_ptr() == coefficients.data_ptr()
