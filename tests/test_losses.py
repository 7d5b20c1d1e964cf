import math

import pytest
import torch
import torch.nn.functional as F

from certlight.errors import CertlightError
from certlight.losses import Reweighting, certified_loss, softmax_margin


def test_margin_is_true_probability_minus_best_other():
    logits = torch.tensor([[math.log(6.0), math.log(3.0), 0.0], [0.0, 0.0, 0.0]])
    margin = softmax_margin(logits, torch.tensor([0, 2]))
    torch.testing.assert_close(margin, torch.tensor([0.6 - 0.3, 0.0]))
    assert softmax_margin(torch.tensor([[0.0, 5.0]]), torch.tensor([0])).item() < 0


def test_symmetric_weights_follow_eq7_and_peak_at_the_boundary():
    weights = Reweighting("symmetric", gamma=5.0, alpha=0.1)(torch.tensor([-0.5, 0.0, 0.2, 1.0]))
    expected = torch.exp(-5.0 * torch.tensor([0.5, 0.0, 0.2, 1.0])) + 0.1
    torch.testing.assert_close(weights, expected)
    assert weights.argmax() == 1


def test_monotonic_weights_grow_as_the_margin_falls():
    weights = Reweighting("monotonic", alpha=2.0)(torch.tensor([-0.5, 0.0, 0.5]))
    torch.testing.assert_close(weights, torch.exp(torch.tensor([1.0, 0.0, -1.0])))


def test_gamma_zero_and_none_mean_equal_weights():
    margin = torch.tensor([-0.3, 0.4])
    assert Reweighting("symmetric", gamma=0.0)(margin) is None
    assert Reweighting("none")(margin) is None


def test_weights_are_detached():
    margin = torch.tensor([0.1, -0.2], requires_grad=True)
    assert not Reweighting("symmetric", gamma=5.0)(margin).requires_grad


def test_weighted_loss_is_the_normalised_weighted_mean():
    clean = torch.randn(4, 3)
    worst = torch.randn(4, 3)
    y = torch.tensor([0, 1, 2, 0])
    weights = torch.tensor([1.0, 2.0, 0.5, 0.5])
    robust = F.cross_entropy(worst, y, reduction="none")
    expected = 0.25 * F.cross_entropy(clean, y) + 0.75 * (weights * robust).sum() / weights.sum()
    torch.testing.assert_close(certified_loss(clean, worst, y, 0.25, weights), expected)
    # Scaling all weights changes nothing: only their ratios matter.
    torch.testing.assert_close(certified_loss(clean, worst, y, 0.25, 3 * weights), expected)
    unweighted = 0.25 * F.cross_entropy(clean, y) + 0.75 * robust.mean()
    torch.testing.assert_close(certified_loss(clean, worst, y, 0.25), unweighted)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"gamma": -1.0}, "reweight.gamma=-1.0"), ({"alpha": -0.1}, "reweight.alpha=-0.1"), ({"kind": "focal"}, "reweight.kind='focal'")],
)
def test_bad_reweighting_values_are_named(kwargs, message):
    with pytest.raises(CertlightError, match=message):
        Reweighting(**kwargs)
