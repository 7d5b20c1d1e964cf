import math

import pytest
import torch

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
    """Eq. 8 by hand: uniform clean logits over 3 classes give CE = ln 3; robust losses 1..4
    with weights 1, 2, 0.5, 0.5 give sum(w*r)/sum(w) = 8.5 / 4 = 2.125."""
    clean = torch.zeros(4, 3)
    y = torch.tensor([0, 1, 2, 0])
    robust = torch.tensor([1.0, 2.0, 3.0, 4.0])
    weights = torch.tensor([1.0, 2.0, 0.5, 0.5])
    ln3 = math.log(3)
    assert certified_loss(clean, y, robust, 0.25, weights).item() == pytest.approx(0.25 * ln3 + 0.75 * 2.125)
    # Scaling all weights changes nothing: only their ratios matter.
    assert certified_loss(clean, y, robust, 0.25, 3 * weights).item() == pytest.approx(0.25 * ln3 + 0.75 * 2.125)
    assert certified_loss(clean, y, robust, 0.25).item() == pytest.approx(0.25 * ln3 + 0.75 * 2.5)
    # A shard of a larger batch divides by the whole batch's weight sum (DDP): 8.5 / 8.
    assert certified_loss(clean, y, robust, 0.25, weights, torch.tensor(8.0)).item() == pytest.approx(
        0.25 * ln3 + 0.75 * 1.0625
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"gamma": -1.0}, "reweight.gamma=-1.0"),
        ({"alpha": -0.1}, "reweight.alpha=-0.1"),
        ({"kind": "focal"}, "reweight.kind='focal'"),
    ],
)
def test_bad_reweighting_values_are_named(kwargs, message):
    with pytest.raises(CertlightError, match=message):
        Reweighting(**kwargs)


def test_certification_errors_count_by_hand():
    """Four examples, two methods: counts written out by hand."""
    from certlight.metrics import CertificationErrors

    metric = CertificationErrors(["ibp", "crown_ibp"])
    correct = torch.tensor([True, True, True, False])
    ibp = torch.tensor([True, False, False, False])
    crown_ibp = torch.tensor([False, True, False, False])
    metric.update(correct[:2], {"ibp": ibp[:2], "crown_ibp": crown_ibp[:2]}, broken=torch.tensor([False, False]))
    metric.update(correct[2:], {"ibp": ibp[2:], "crown_ibp": crown_ibp[2:]}, broken=torch.tensor([True, True]))
    rates = {k: float(v) for k, v in metric.compute().items()}
    assert rates == {
        "clean_err": 0.25,
        "verified_err": 0.5,
        "verified_err_ibp": 0.75,
        "verified_err_crown_ibp": 0.75,
        "pgd_err": 0.5,
    }
