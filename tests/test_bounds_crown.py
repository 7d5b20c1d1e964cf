from pathlib import Path

import pytest
import torch
from torch import nn

from certlight.attacks import pgd_margins
from certlight.bounds import (
    check_supported,
    clean_forward,
    input_box,
    margin_lower_bounds,
    margin_spec,
    mixed_margin_lower,
)
from certlight.bounds.backends import NativeBounds
from certlight.bounds.rules import SequentialRule, channel_view
from certlight.errors import CertlightError
from certlight.models import cnn7_bn, dm_large, dm_medium, dm_small

from conftest import conv_problem, random_convnet, random_mlp

METHODS = ("ibp", "crown_ibp", "crown", "alpha_crown")


def sampled_min_margins(forward, lower, upper, spec, count=1000):
    mins = []
    for i in range(lower.shape[0]):
        points = lower[i] + (upper[i] - lower[i]) * torch.rand(count, *lower.shape[1:])
        points[: count // 3] = torch.where(torch.rand_like(points[: count // 3]) < 0.5, lower[i], upper[i])
        with torch.no_grad():
            mins.append((forward(points) @ spec[i].T).min(0).values)
    return torch.stack(mins)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("batchnorm", [False, True])
def test_sampled_and_attacked_points_never_beat_any_bound(seed, batchnorm):
    model = random_convnet(seed, batchnorm=batchnorm)
    x = torch.rand(6, 2, 7, 7)
    y = torch.randint(0, 5, (6,))
    eps = torch.tensor([0.0, 0.005, 0.02, 0.05, 0.1, 0.3])
    mean, std = [0.3, 0.5], [0.5, 0.25]
    lower, upper = input_box(x, eps, mean, std)
    spec = margin_spec(y, 5)
    sampled = sampled_min_margins(model, lower, upper, spec)
    attacked = pgd_margins(model, x, y, lower, upper, steps=20, restarts=2)
    for method in METHODS:
        bound = margin_lower_bounds(model, lower, upper, y, method)
        assert (bound <= sampled + 1e-4).all(), method
        assert (bound <= attacked + 1e-4).all(), method


def test_training_mode_batchnorm_bounds_are_sound_for_the_batch_statistics():
    model = random_convnet(7, batchnorm=True).train()
    x = torch.rand(8, 2, 7, 7)
    y = torch.randint(0, 5, (8,))
    _, state = clean_forward(model, x)
    lower, upper = input_box(x, 0.03, [0.0], [1.0])

    def fixed_statistics_forward(points):
        hidden = points
        for position, layer in enumerate(model):
            if (position,) in state.batchnorm:
                scale, shift = state.batchnorm[(position,)]
                hidden = hidden * channel_view(scale, hidden) + channel_view(shift, hidden)
            else:
                hidden = layer(hidden)
        return hidden

    spec = margin_spec(y, 5)
    sampled = sampled_min_margins(fixed_statistics_forward, lower, upper, spec, 800)
    for beta in (0.0, 0.5, 1.0):
        bound = mixed_margin_lower(model, lower, upper, y, beta, state)
        assert (bound <= sampled + 1e-4).all()


def test_tightness_order_ibp_crown_ibp_crown_on_average():
    gaps = {m: [] for m in METHODS}
    for seed in range(5):
        model = random_mlp(seed, widths=(20, 40, 40, 10))
        x = torch.rand(16, 20)
        y = torch.randint(0, 10, (16,))
        lower, upper = input_box(x, 0.05, [0.0], [1.0])
        for method in METHODS:
            gaps[method].append(margin_lower_bounds(model, lower, upper, y, method).mean())
    ibp, crown_ibp, crown, alpha_crown = (torch.stack(gaps[m]).mean() for m in METHODS)
    assert crown_ibp >= ibp
    assert crown >= crown_ibp
    assert alpha_crown > crown


def test_full_crown_is_tighter_than_crown_ibp_on_average():
    model, _, y, lower, upper = conv_problem(3, 5)
    crown_ibp = margin_lower_bounds(model, lower, upper, y, "crown_ibp")
    crown = margin_lower_bounds(model, lower, upper, y, "crown")
    # Tighter intermediate bounds can flip CROWN's adaptive lower slope, so single margins
    # may move either way; on average full CROWN must be tighter.
    assert crown.mean() > crown_ibp.mean()


def test_crown_is_exact_on_a_network_without_unstable_neurons():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 3))
    with torch.no_grad():
        model[1].weight.copy_(torch.eye(4, 3))
        model[1].bias.fill_(1.0)  # inputs in [0,1] -> every neuron active: the network is affine
    x = torch.rand(2, 3) * 0.5 + 0.25
    y = torch.tensor([0, 2])
    lower, upper = input_box(x, 0.1, [0.0], [1.0])
    crown = margin_lower_bounds(model, lower, upper, y, "crown_ibp")
    weight = margin_spec(y, 3) @ model[3].weight @ model[1].weight[:, :3]
    bias = margin_spec(y, 3) @ (model[3].weight @ model[1].bias + model[3].bias)
    exact = torch.stack(
        [
            (weight[i] @ ((lower[i] + upper[i]) / 2)) - weight[i].abs() @ ((upper[i] - lower[i]) / 2) + bias[i]
            for i in range(2)
        ]
    )
    torch.testing.assert_close(crown, exact, rtol=1e-5, atol=1e-5)


def test_per_example_eps_matches_single_examples_for_crown_ibp():
    model = random_convnet(4, batchnorm=True)
    x = torch.rand(4, 2, 7, 7)
    y = torch.randint(0, 5, (4,))
    eps = torch.tensor([0.0, 0.02, 0.07, 0.15])
    lower, upper = input_box(x, eps, [0.0], [1.0])
    batched = margin_lower_bounds(model, lower, upper, y, "crown_ibp")
    for i in range(4):
        lo, hi = input_box(x[i : i + 1], float(eps[i]), [0.0], [1.0])
        torch.testing.assert_close(
            batched[i : i + 1], margin_lower_bounds(model, lo, hi, y[i : i + 1], "crown_ibp"), rtol=1e-4, atol=1e-5
        )


def test_beta_zero_is_exactly_ibp_and_gradients_flow_through_the_mix():
    model = random_convnet(5).train()
    x = torch.rand(4, 2, 7, 7)
    y = torch.randint(0, 5, (4,))
    lower, upper = input_box(x, 0.05, [0.0], [1.0])
    assert torch.equal(
        mixed_margin_lower(model, lower, upper, y, 0.0), margin_lower_bounds(model, lower, upper, y, "ibp")
    )
    mixed = mixed_margin_lower(model, lower, upper, y, 0.5)
    mixed.sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_relu_relaxation_is_exact_on_stable_neurons_and_encloses_unstable_ones():
    from certlight.bounds.relaxation import relu_relaxation

    lower = torch.tensor([0.5, -2.0, -1.0, -3.0, 0.0, -1.0])
    upper = torch.tensor([2.0, -0.5, 3.0, 1.0, 0.0, 1.0])
    lower_slope, upper_slope, upper_intercept = relu_relaxation(lower, upper)
    torch.testing.assert_close(upper_slope, torch.tensor([1.0, 0.0, 0.75, 0.25, 0.0, 0.5]))
    torch.testing.assert_close(upper_intercept, torch.tensor([0.0, 0.0, 0.75, 0.75, 0.0, 0.5]))
    torch.testing.assert_close(lower_slope, torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 0.0]))
    z = lower + (upper - lower) * torch.linspace(0, 1, 101).unsqueeze(1)
    assert (lower_slope * z <= z.clamp(min=0) + 1e-6).all()
    assert (upper_slope * z + upper_intercept >= z.clamp(min=0) - 1e-6).all()


def test_at_zero_eps_every_method_gives_the_exact_clean_margins():
    model, x, y, lower, upper = conv_problem(6, 4, eps=0.0)
    with torch.no_grad():
        clean = (margin_spec(y, 5) @ model(x).unsqueeze(-1)).squeeze(-1)
    for method in METHODS:
        torch.testing.assert_close(margin_lower_bounds(model, lower, upper, y, method), clean, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("build", [dm_small, dm_medium, dm_large, cnn7_bn])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_layer_shapes_by_arithmetic_match_a_real_forward(build, shape):
    net = build(shape[0], shape[1], 10).eval()
    hidden = torch.zeros(1, *shape)
    expected = []
    for layer in net:
        expected.append(hidden.shape[1:])
        hidden = layer(hidden)
    assert SequentialRule().in_shapes(net, torch.Size(shape)) == [*expected, hidden.shape[1:]]


@pytest.mark.parametrize(
    "layer, message",
    [
        (nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect"), "padding_mode='reflect'"),
        (nn.Conv2d(1, 2, 3, padding="same"), "padding='same'"),
        (nn.Flatten(0), "start_dim=0"),
    ],
)
def test_layers_whose_bounds_would_be_wrong_are_refused(layer, message):
    net = (
        nn.Sequential(layer, nn.Flatten(), nn.Linear(2, 2))
        if not isinstance(layer, nn.Flatten)
        else nn.Sequential(layer, nn.Linear(2, 2))
    )
    with pytest.raises(CertlightError, match=message):
        check_supported(net)


@pytest.mark.slow  # compiling the kernels takes about 90 s
def test_compiled_bound_passes_equal_eager_ones_and_so_do_their_gradients():
    torch.manual_seed(0)
    net = dm_small(1, 28, 10)
    x = torch.rand(8, 1, 28, 28)
    y = torch.randint(0, 10, (8,))
    eager, compiled = NativeBounds(net), NativeBounds(net, compile=True)
    for eps in (0.05, 0.2):
        lower, upper = input_box(x, torch.full((8,), eps), [0.0], [1.0])
        gradients = []
        for bounds in (eager, compiled):
            margins = bounds.mixed(x, lower, upper, y, 0.7)
            gradients.append(torch.autograd.grad(margins.sum(), list(net.parameters())))
            if bounds is eager:
                expected = margins.detach()
        torch.testing.assert_close(margins.detach(), expected, rtol=1e-4, atol=1e-4)
        for ours, theirs in zip(*gradients):
            torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_alpha_crown_is_never_looser_than_crown_on_any_margin(seed):
    """Optimised slopes start at CROWN's and the best iterate is kept: per margin, >= CROWN."""
    model = random_mlp(seed, widths=(20, 40, 40, 10)) if seed % 2 else random_convnet(seed, batchnorm=True)
    shape, classes = ((20,), 10) if seed % 2 else ((2, 7, 7), 5)
    x = torch.rand(8, *shape)
    y = torch.randint(0, classes, (8,))
    lower, upper = input_box(x, torch.linspace(0.0, 0.15, 8), [0.0], [1.0])
    crown = margin_lower_bounds(model, lower, upper, y, "crown")
    alpha = margin_lower_bounds(model, lower, upper, y, "alpha_crown")
    assert (alpha >= crown - 1e-5).all()
    assert (alpha > crown + 1e-4).any() or seed % 2 == 0  # the MLPs have unstable neurons to gain on


def test_the_engine_and_backends_read_rule_declarations_not_layer_types():
    """A new non-linearity is one rule: nothing in the walks or the backends names ReLU."""
    import certlight.bounds.backends as backends
    import certlight.bounds.engine as engine

    for module in (engine, backends):
        source = Path(module.__file__).read_text()
        assert "ReLURule" not in source and "nn.ReLU" not in source, module.__name__


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("split", [2, 5])
def test_a_suffix_walk_continues_the_whole_networks_walk(training, split):
    """Bounding net[:k] and then net[k:] as Spans, under the whole network's walk keys, gives
    the whole network's IBP box and its backward (CROWN-IBP) coefficients exactly, with
    BatchNorm on the clean batch's statistics in training and on running ones in eval; a plain
    net[k:] would look its BatchNorms up under the wrong keys."""
    from certlight.bounds import Span, clean_forward, interval_propagate
    from certlight.bounds.rules import rule

    from conftest import random_convnet

    net = random_convnet(0, batchnorm=True).train(training)
    torch.manual_seed(0)
    x = torch.rand(4, 2, 7, 7)
    lower, upper = x - 0.05, x + 0.05
    _, state = clean_forward(net, x)
    whole_low, whole_high, whole_walk = interval_propagate(net, lower, upper, state)
    mid_low, mid_high, walk = interval_propagate(Span(net, 0, split), lower, upper, state)
    end_low, end_high, walk = interval_propagate(Span(net, split), mid_low, mid_high, walk)
    assert torch.equal(end_low, whole_low) and torch.equal(end_high, whole_high)
    spec = torch.randn(4, 3, net[-1].out_features)
    suffix_a, suffix_b = rule(Span(net, split)).backward(Span(net, split), spec, (), whole_walk, mid_low.shape[1:])
    prefix_a, prefix_b = rule(Span(net, 0, split)).backward(Span(net, 0, split), suffix_a, (), whole_walk, x.shape[1:])
    whole_a, whole_b = rule(net).backward(net, spec, (), whole_walk, x.shape[1:])
    torch.testing.assert_close(prefix_a, whole_a)
    torch.testing.assert_close(prefix_b + suffix_b, whole_b)
    if training:  # the plain slice re-keys from 0 and misses the recorded batch statistics
        with pytest.raises(ValueError, match="clean batch statistics"):
            interval_propagate(net[split:], mid_low, mid_high, state)
