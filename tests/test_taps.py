"""TAPS and STAPS: the gradient connector, the per-margin latent attack and the loss, against
values worked out by hand on networks small enough to do so."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from torch import nn

from certlight.attacks.pgd import margin_attack_schedule, pgd_margin_points
from certlight.bounds import input_box, margin_spec
from certlight.errors import CertlightError
from certlight.methods import STAPSModule, TAPSModule
from certlight.methods.taps import RectifiedLinearLink, scale_gradient
from certlight.schedules import ScheduleValues, TrainingSchedule


def test_gradient_connector_passes_each_points_gradient_to_the_bound_it_is_near():
    # box [0, 2], c = 0.5: a point within 1 of a bound passes (distance-from-threshold / 1) of its gradient
    lower, upper = torch.tensor([[0.0]], requires_grad=True), torch.tensor([[2.0]], requires_grad=True)
    points = torch.tensor([[[0.0], [1.5], [2.0]]], requires_grad=True)
    out = RectifiedLinearLink.apply(lower, upper, points, 0.5, 1e-5)
    assert torch.equal(out, points)
    (out * torch.tensor([[[1.0], [10.0], [100.0]]])).sum().backward()
    assert lower.grad.item() == pytest.approx(1.0)  # the point at 0: all of its gradient
    assert upper.grad.item() == pytest.approx(10 * 0.5 + 100 * 1.0)  # 1.5 is halfway into the band, 2 at the bound
    assert points.grad is None


def test_scaled_gradient_keeps_the_value():
    value = torch.tensor(1.5, requires_grad=True)
    scaled = scale_gradient(value * 2, 4.0)
    scaled.backward()
    assert scaled.item() == 3.0 and value.grad.item() == 8.0


def test_each_margin_is_attacked_at_its_own_point():
    """f = (0, z, -z), true class 0: margin 1 is -z (lowest at z = 1), margin 2 is z (at z = -1)."""
    net = nn.Linear(1, 3, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[0.0], [1.0], [-1.0]]))
    spec = margin_spec(torch.tensor([0]), 3, torch.float32)
    torch.manual_seed(0)
    points = pgd_margin_points(net, spec, torch.tensor([[-1.0]]), torch.tensor([[1.0]]), steps=5, restarts=1)
    assert points.shape == (1, 2, 1)
    assert points[0, :, 0].tolist() == [1.0, -1.0]


def test_attack_schedule_is_ctbenchs():
    assert margin_attack_schedule(5) == []
    assert margin_attack_schedule(10) == [7]
    assert margin_attack_schedule(60) == [24, 42]
    assert margin_attack_schedule(100) == [30, 60, 80]


def latent_gap_net() -> nn.Sequential:
    """z = 2x; f_0 = relu(z) - 0.5 relu(z - 1), f_1 = 0. On x in [0, 1] (z in [0, 2]) the margin
    is lowest at z = 0 (0), but IBP bounds the two ReLUs apart: 0 - 0.5 * 1 = -0.5."""
    net = nn.Sequential(nn.Linear(1, 1), nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 2))
    with torch.no_grad():
        net[0].weight.fill_(2.0), net[0].bias.zero_()
        net[1].weight.copy_(torch.tensor([[1.0], [1.0]])), net[1].bias.copy_(torch.tensor([0.0, -1.0]))
        net[3].weight.copy_(torch.tensor([[1.0, -0.5], [0.0, 0.0]])), net[3].bias.zero_()
    return net


def taps(grad_scale=4.0, cls=TAPSModule, **kwargs):
    return cls(
        net=latent_gap_net(),
        mean=(0.0,),
        std=(1.0,),
        eps_eval=0.5,
        optimizer=partial(torch.optim.SGD, lr=0.1),
        schedule=TrainingSchedule(eps_train=0.5),
        split=kwargs.pop("split", 1),
        grad_scale=grad_scale,
        **kwargs,
    )


X, Y, EPS = torch.tensor([[0.5]]), torch.tensor([0]), torch.tensor([0.5])
RAMPED = ScheduleValues(eps=0.5, kappa=0.0, beta=0.0)


def ce_of_margin(margin: float) -> float:
    return math.log(1 + math.exp(-margin))


def test_taps_loss_is_the_attack_estimates_cross_entropy_times_ibps():
    module = taps()
    _, state = module.bounder.clean_forward(X)
    term = module.robust_term(X, Y, input_box(X, EPS, (0.0,), (1.0,)), state, RAMPED)
    # the attack finds z = 0 (margin 0); IBP certifies only -0.5, and that is what the tactics read
    assert term.loss.item() == pytest.approx(ce_of_margin(0.0) * ce_of_margin(-0.5), rel=1e-5)
    assert term.margin_lower.item() == pytest.approx(-0.5)
    # d loss / d (last bias of class 0) = 4 * CE_ibp * dCE(0) + CE_taps * dCE(-0.5), dCE(m) = -1 / (1 + e^m)
    term.loss.sum().backward()
    expected = 4 * ce_of_margin(-0.5) * (-1 / (1 + math.exp(0.0))) + ce_of_margin(0.0) * (-1 / (1 + math.exp(-0.5)))
    assert module.net[3].bias.grad[0].item() == pytest.approx(expected, rel=1e-5)


def test_while_eps_ramps_up_taps_trains_with_plain_ibp():
    module = taps()
    _, state = module.bounder.clean_forward(X)
    half = torch.tensor([0.25])
    ramping = ScheduleValues(eps=0.25, kappa=0.0, beta=0.0)
    term = module.robust_term(X, Y, input_box(X, half, (0.0,), (1.0,)), state, ramping)
    # x in [0.25, 0.75], z in [0.5, 1.5]: IBP certifies 0.5 - 0.5 * 0.5 = 0.25, and the loss is its CE alone
    assert term.margin_lower.item() == pytest.approx(0.25)
    assert term.loss.item() == pytest.approx(ce_of_margin(0.25), rel=1e-5)


def test_staps_attacks_the_latent_box_of_sabrs_small_box():
    module = taps(cls=STAPSModule, lambda_ratio=0.5)
    _, state = module.bounder.clean_forward(X)
    small = module.region(X, Y, EPS)
    assert (small[1] - small[0]).item() == pytest.approx(0.5)  # radius 0.5 * eps
    term = module.robust_term(X, Y, small, state, RAMPED)
    # the small box [a, a + 0.5] inside [0, 1]: z in [2a, 2a + 1], IBP takes relu(z) >= 2a and
    # relu(z - 1) <= 2a, so it certifies 2a - 0.5 * 2a = a
    a = small[0].item()
    assert 0 <= a <= 0.5 and term.margin_lower.item() == pytest.approx(a, abs=1e-6)


@pytest.mark.parametrize("split", [0, 4])
def test_split_outside_the_network_is_refused_in_one_line(split):
    with pytest.raises(CertlightError, match=rf"method.split={split} must be an integer in \[1, 3\]"):
        taps(split=split)


def test_taps_needs_the_native_engine():
    from certlight.bounds.backends import make_backend

    with pytest.raises(CertlightError, match="bounds.backend=native"):
        taps(bounds=partial(make_backend, "auto_lirpa"))


def test_attacked_points_see_the_clean_batchs_batchnorm_statistics():
    """In training, the classifier's BatchNorm normalises the attack's points with the clean
    batch's mean and variance (as the released code freezes them), not the points' own."""
    from certlight.bounds import Span
    from certlight.bounds.engine import clean_forward, fixed_statistics_forward

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 2)).train()
    x = torch.randn(8, 2)
    _, state = clean_forward(net, x)
    hidden = net[0](x)
    mean, var = hidden.mean(0), hidden.var(0, unbiased=False)
    points = torch.randn(5, 3) * 4 + 2
    normalised = (points - mean) / torch.sqrt(var + net[1].eps) * net[1].weight + net[1].bias
    expected = net[3](torch.relu(normalised))
    torch.testing.assert_close(fixed_statistics_forward(Span(net, 1), points, state), expected)
    assert not torch.allclose(net[1:](points), expected)  # the points' own statistics differ
