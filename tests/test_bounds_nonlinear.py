"""Sigmoid, Tanh and MaxPool2d: their relaxations worked by hand and sampled, equal to
auto_LiRPA's, and every walk sound on networks that use them (sampled and attacked points never
beat a bound)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from certlight.attacks import pgd_margins
from certlight.bounds import BOUND_METHODS, input_box, margin_lower_bounds
from certlight.bounds.lirpa import lirpa_available
from certlight.bounds.rules import SigmoidRule, TanhRule
from certlight.errors import CertlightError
from certlight.models.residual import Residual


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_sigmoid_relaxation_on_the_convex_side_is_the_chord_above_and_the_middle_tangent_below():
    """On [-2, -1] sigmoid is convex: the upper line is the chord, the lower the tangent at -1.5."""
    chord = sigmoid(-1) - sigmoid(-2)
    middle_slope = sigmoid(-1.5) * (1 - sigmoid(-1.5))
    low_k, low_b, high_k, high_b = SigmoidRule().relaxation(torch.tensor([-2.0]), torch.tensor([-1.0]))
    assert high_k.item() == pytest.approx(chord, abs=1e-6)
    assert high_b.item() == pytest.approx(sigmoid(-1) + chord, abs=3e-6)  # through (-1, σ(-1))
    assert low_k.item() == pytest.approx(middle_slope, abs=1e-6)
    assert low_b.item() == pytest.approx(sigmoid(-1.5) + 1.5 * middle_slope, abs=3e-6)


def test_tanh_across_zero_takes_the_tangent_that_still_passes_below_the_upper_end():
    """On [-1, 1.005] the chord (slope tanh(1.005)-ish) is steeper than tanh'(-1), so it would cut
    the curve: the lower line is the tangent at the d < 0 closest to 0 whose tangent passes below
    tanh at 1.01 (1.005 rounded up to the 0.01 grid), found here by bisection in plain Python."""

    def below(d, end=1.01):
        slope = 1 - math.tanh(d) ** 2
        return slope * (end - d) + math.tanh(d) <= math.tanh(end)

    far, near = -1.0, 0.0
    for _ in range(60):
        middle = (far + near) / 2
        far, near = (middle, near) if below(middle) else (far, middle)
    slope = 1 - math.tanh(far) ** 2
    low_k, low_b, _, _ = TanhRule().relaxation(torch.tensor([-1.0]), torch.tensor([1.005]))
    assert low_k.item() == pytest.approx(slope, abs=1e-5)
    assert low_b.item() == pytest.approx(math.tanh(far) - slope * far, abs=1e-5)


@pytest.mark.parametrize("activation", [SigmoidRule(), TanhRule()], ids=["sigmoid", "tanh"])
def test_the_relaxation_encloses_the_function_on_every_interval(activation):
    torch.manual_seed(0)
    lower = torch.randn(5000) * 4
    upper = lower + torch.cat([torch.rand(4000) * 6, torch.rand(1000) * 1e-5])  # narrow ones too
    low_k, low_b, high_k, high_b = activation.relaxation(lower, upper)
    points = lower + (upper - lower) * torch.rand(64, 5000)
    values = activation.function(points)
    assert (low_k * points + low_b <= values + 1e-7).all()
    assert (values <= high_k * points + high_b + 1e-7).all()


def scurve_net(seed: int, activation: type[nn.Module]) -> nn.Sequential:
    torch.manual_seed(seed)
    body = nn.Sequential(nn.Linear(10, 10), activation(), nn.Linear(10, 10))
    return nn.Sequential(
        nn.Linear(6, 10), activation(), Residual(body), nn.ReLU(), nn.Linear(10, 10), activation(), nn.Linear(10, 4)
    ).eval()


@pytest.mark.parametrize("activation", [nn.Sigmoid, nn.Tanh])
def test_every_walk_is_sound_on_networks_with_the_activation(activation):
    net = scurve_net(0, activation)
    torch.manual_seed(1)
    x = torch.rand(16, 6)
    with torch.no_grad():
        y = net(x).argmax(1)
    eps = torch.linspace(0.02, 0.3, 16)
    lower, upper = input_box(x, eps, [0.0], [1.0])
    bounds = {m: margin_lower_bounds(net, lower, upper, y, m).detach() for m in BOUND_METHODS}
    attacked = pgd_margins(net, x, y, lower, upper, steps=30, restarts=2)
    sampled = lower + (upper - lower) * torch.rand(256, *x.shape)
    with torch.no_grad():
        logits = net(sampled.view(-1, 6)).view(256, 16, 4)
    true = logits.gather(2, y.view(1, 16, 1).expand(256, 16, 1)) - logits
    others = torch.stack([torch.cat([row[:c], row[c + 1 :]]) for row, c in zip(true.min(0).values, y)])
    for method, bound in bounds.items():
        assert (bound <= attacked + 1e-5).all(), method
        assert (bound <= others + 1e-5).all(), method
    assert (bounds["alpha_crown"] >= bounds["crown"] - 1e-5).all()
    one_at_a_time = torch.cat(
        [margin_lower_bounds(net, lower[i : i + 1], upper[i : i + 1], y[i : i + 1], "crown") for i in range(16)]
    )
    torch.testing.assert_close(one_at_a_time, bounds["crown"], atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(not lirpa_available(), reason="auto_LiRPA not installed (CI installs it)")
@pytest.mark.parametrize("method", ["ibp", "crown_ibp", "crown"])
@pytest.mark.parametrize("activation", [nn.Sigmoid, nn.Tanh])
def test_bounds_equal_auto_lirpas(activation, method):
    from certlight.bounds.backends import make_backend

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 10), activation(), nn.Linear(10, 10), activation(), nn.Linear(10, 4)).eval()
    x = torch.rand(6, 6)
    y = torch.randint(0, 4, (6,))
    lower, upper = input_box(x, torch.linspace(0.0, 0.2, 6), [0.0], [1.0])
    ours = margin_lower_bounds(net, lower, upper, y, method)
    theirs = make_backend("auto_lirpa", net).margins(x, lower, upper, y, method)
    # the same relaxation; ours widens each intercept by RELAXATION_SLACK (1e-6) for the floats
    torch.testing.assert_close(ours, theirs, atol=2e-5, rtol=1e-5)


def pooled_net(seed: int, kernel: int, stride: int, padding: int, residual: bool = False) -> nn.Sequential:
    """Conv, ReLU, [a residual block whose body ends in a shape-keeping max pool,] the pool, a Linear."""
    torch.manual_seed(seed)
    pool = nn.MaxPool2d(kernel, stride, padding)
    side = (6 + 2 * padding - kernel) // stride + 1
    block = (
        [Residual(nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 1, 1)))] if residual else []
    )
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), *block, pool, nn.Flatten(), nn.Linear(3 * side * side, 4)
    ).eval()


def sampled_margins(net, x, y, lower, upper, samples=256):
    """The smallest margin f_y - f_j per example and other class over sampled points of the box."""
    points = lower + (upper - lower) * torch.rand(samples, *x.shape)
    with torch.no_grad():
        logits = net(points.flatten(0, 1)).view(samples, x.shape[0], -1)
    margins = (logits.gather(2, y.view(1, -1, 1).expand(samples, -1, 1)) - logits).min(0).values
    return torch.stack([torch.cat([row[:c], row[c + 1 :]]) for row, c in zip(margins, y)])


@pytest.mark.parametrize(
    "kernel, stride, padding, residual", [(2, 2, 0, False), (3, 2, 1, False), (3, 3, 0, False), (2, 2, 0, True)]
)
def test_max_pooling_is_sound_in_every_walk(kernel, stride, padding, residual):
    net = pooled_net(0, kernel, stride, padding, residual)
    torch.manual_seed(1)
    x = torch.rand(8, 2, 6, 6)
    with torch.no_grad():
        y = net(x).argmax(1)
    lower, upper = input_box(x, torch.linspace(0.01, 0.2, 8), [0.0], [1.0])
    attacked = pgd_margins(net, x, y, lower, upper, steps=30, restarts=2)
    sampled = sampled_margins(net, x, y, lower, upper)
    for method in BOUND_METHODS:
        bound = margin_lower_bounds(net, lower, upper, y, method).detach()
        assert (bound <= attacked + 1e-5).all() and (bound <= sampled + 1e-5).all(), method
    one_at_a_time = torch.cat(
        [margin_lower_bounds(net, lower[i : i + 1], upper[i : i + 1], y[i : i + 1], "crown") for i in range(8)]
    )
    torch.testing.assert_close(one_at_a_time, margin_lower_bounds(net, lower, upper, y, "crown"))


@pytest.mark.skipif(not lirpa_available(), reason="auto_LiRPA not installed (CI installs it)")
@pytest.mark.parametrize(
    "kernel, stride, padding, method",
    # auto_LiRPA 0.3's CROWN relaxation of a max pool needs stride == kernel; its IBP takes any
    [(2, 2, 0, m) for m in ("ibp", "crown_ibp", "crown")]
    + [(3, 3, 0, m) for m in ("ibp", "crown_ibp", "crown")]
    + [(3, 2, 1, "ibp")],
)
def test_max_pooling_bounds_equal_auto_lirpas(kernel, stride, padding, method):
    from certlight.bounds.backends import make_backend

    net = pooled_net(0, kernel, stride, padding)
    torch.manual_seed(1)
    x = torch.rand(4, 2, 6, 6)
    y = torch.randint(0, 4, (4,))
    lower, upper = input_box(x, torch.linspace(0.01, 0.1, 4), [0.0], [1.0])
    ours = margin_lower_bounds(net, lower, upper, y, method)
    theirs = make_backend("auto_lirpa", net).margins(x, lower, upper, y, method)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_the_pooled_max_is_bounded_by_the_input_with_the_largest_lower_bound_and_the_largest_upper():
    """One 2-wide window (a 1x1x2 image), x_0 in [0, 3] and x_1 in [1, 1.5], worked by hand:
    max >= x_1 (the larger lower bound), so max - 2.5 >= 1 - 2.5 = -1.5 (x_0 would give -2.5);
    max <= 3 (the larger upper bound), so 2.5 - max >= -0.5. Both are the true minima."""
    net = nn.Sequential(nn.MaxPool2d((1, 2)), nn.Flatten(), nn.Linear(1, 2)).eval()
    with torch.no_grad():
        net[2].weight.copy_(torch.tensor([[1.0], [0.0]]))
        net[2].bias.copy_(torch.tensor([-2.5, 0.0]))
    lower, upper = torch.tensor([[[[0.0, 1.0]]]]), torch.tensor([[[[3.0, 1.5]]]])
    for label, expected in ((0, -1.5), (1, -0.5)):  # margins max - 2.5 and 2.5 - max
        bound = margin_lower_bounds(net, lower, upper, torch.tensor([label]), "crown_ibp")
        assert bound.item() == pytest.approx(expected)


def test_unsupported_pooling_options_are_refused_in_one_line():
    from certlight.bounds import check_supported

    net = nn.Sequential(nn.MaxPool2d(2, ceil_mode=True), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(CertlightError, match=r"layer 0 \(MaxPool2d\) needs ceil_mode=False"):
        check_supported(net)
