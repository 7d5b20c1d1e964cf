import itertools

import numpy as np
import pytest
import torch

from certlight.bounds import input_box, interval_propagate, margin_lower_bounds, margin_spec, worst_case_logits
from certlight.bounds.spec import is_verified

from conftest import random_convnet, random_mlp


def corners_and_samples(lower, upper, count):
    """All corners of a (small) box plus uniform samples inside it, shape (count', *box)."""
    flat_l, flat_u = lower.flatten(), upper.flatten()
    corners = [
        torch.where(torch.tensor(bits, dtype=torch.bool), flat_u, flat_l)
        for bits in itertools.product([0, 1], repeat=flat_l.numel())
    ]
    inside = flat_l + (flat_u - flat_l) * torch.rand(count, flat_l.numel())
    return torch.cat([torch.stack(corners), inside]).view(-1, *lower.shape)


@pytest.mark.parametrize("seed", range(4))
def test_ibp_contains_every_sampled_logit_and_margin(seed):
    model = random_mlp(seed)
    x = torch.rand(3, 6)
    eps = torch.tensor([0.02, 0.1, 0.3])
    lower, upper = input_box(x, eps, [0.0], [1.0])
    out_lower, out_upper, _ = interval_propagate(model, lower, upper)
    y = torch.randint(0, 4, (3,))
    margin_lower = margin_lower_bounds(model, lower, upper, y, "ibp")
    spec = margin_spec(y, 4)
    for i in range(3):
        points = corners_and_samples(lower[i], upper[i], 1000)
        with torch.no_grad():
            logits = model(points)
        assert (logits >= out_lower[i] - 1e-5).all() and (logits <= out_upper[i] + 1e-5).all()
        margins = logits @ spec[i].T
        assert (margin_lower[i] <= margins.min(0).values + 1e-5).all()


def test_ibp_is_sound_on_conv_batchnorm_networks():
    model = random_convnet(0, batchnorm=True)
    x = torch.rand(4, 2, 7, 7)
    y = torch.randint(0, 5, (4,))
    lower, upper = input_box(x, 0.05, [0.0, 0.0], [1.0, 1.0])
    margin_lower = margin_lower_bounds(model, lower, upper, y, "ibp")
    spec = margin_spec(y, 5)
    for i in range(4):
        points = lower[i] + (upper[i] - lower[i]) * torch.rand(2000, *x.shape[1:])
        points[:500] = torch.where(torch.rand_like(points[:500]) < 0.5, lower[i], upper[i])
        with torch.no_grad():
            margins = model(points) @ spec[i].T
        assert (margin_lower[i] <= margins.min(0).values + 1e-5).all()


def test_per_example_eps_equals_one_example_at_a_time():
    model = random_convnet(1)
    x = torch.rand(5, 2, 7, 7)
    y = torch.randint(0, 5, (5,))
    eps = torch.tensor([0.0, 0.01, 0.05, 0.1, 0.2])
    lower, upper = input_box(x, eps, [0.5, 0.4], [0.2, 0.3])
    batched = margin_lower_bounds(model, lower, upper, y, "ibp")
    for i in range(5):
        lo, hi = input_box(x[i : i + 1], float(eps[i]), [0.5, 0.4], [0.2, 0.3])
        single = margin_lower_bounds(model, lo, hi, y[i : i + 1], "ibp")
        torch.testing.assert_close(batched[i : i + 1], single, rtol=1e-5, atol=1e-5)


def test_input_box_is_clipped_to_the_normalised_pixel_range():
    mean, std = [0.5], [0.25]
    x = (torch.tensor([[[[0.0, 0.5, 1.0]]]]) - 0.5) / 0.25
    lower, upper = input_box(x, 0.1, mean, std)
    torch.testing.assert_close(lower, torch.tensor([[[[-2.0, -0.4, 1.6]]]]))
    torch.testing.assert_close(upper, torch.tensor([[[[-1.6, 0.4, 2.0]]]]))


def test_zero_eps_gives_the_clean_margins():
    model = random_mlp(3)
    x = torch.rand(4, 6)
    y = torch.randint(0, 4, (4,))
    lower, upper = input_box(x, 0.0, [0.0], [1.0])
    margin_lower = margin_lower_bounds(model, lower, upper, y, "ibp")
    with torch.no_grad():
        clean = model(x)
    expected = (margin_spec(y, 4) @ clean.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(margin_lower, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(is_verified(margin_lower), (clean.argmax(1) == y) & (expected > 0).all(1))


def test_worst_case_logits_are_zero_at_the_true_class_and_minus_margin_elsewhere():
    y = torch.tensor([2, 0])
    margin_lower = torch.tensor([[1.0, -2.0, 3.0], [0.5, 0.25, -1.0]])
    logits = worst_case_logits(margin_lower, y)
    torch.testing.assert_close(logits, torch.tensor([[-1.0, 2.0, 0.0, -3.0], [0.0, -0.5, -0.25, 1.0]]))


def test_input_box_refuses_inputs_outside_the_data_domain_and_negative_eps():
    x = torch.tensor([[[[0.2, 1.3]]]])  # 1.3 is no pixel value
    with pytest.raises(ValueError, match="1 input value"):
        input_box(x, 0.1, [0.0], [1.0])
    with pytest.raises(ValueError, match="eps must be >= 0"):
        input_box(x.clamp(max=1), -0.1, [0.0], [1.0])


def test_input_box_takes_a_numpy_scalar_eps():
    x = torch.tensor([[[[0.5]]]])
    lower, upper = input_box(x, np.float32(0.25), [0.0], [1.0])
    assert (lower.item(), upper.item()) == (0.25, 0.75)


@pytest.mark.parametrize("method", ["ibp", "crown_ibp", "crown"])
def test_a_final_linear_without_bias_is_bounded_soundly(method):
    model = random_mlp(5)
    model[-1] = torch.nn.Linear(8, 4, bias=False)
    x = torch.rand(3, 6)
    y = torch.tensor([0, 1, 2])
    lower, upper = input_box(x, 0.05, [0.0], [1.0])
    bound = margin_lower_bounds(model, lower, upper, y, method)
    samples = lower + (upper - lower) * torch.rand(200, *x.shape)
    with torch.no_grad():
        margins = margin_spec(y, 4) @ model(samples.flatten(0, 1)).view(200, 3, 4, 1)
    assert (bound <= margins.squeeze(-1).min(0).values + 1e-6).all()
