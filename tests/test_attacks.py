"""PGD's search, on a network worked by hand: where its steps go and which point it keeps."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from certlight.attacks.pgd import box_starts, pgd_margins, pgd_search


def ramp_network() -> nn.Linear:
    """Logits (0, x - 0.55): class 0's margin is 0.55 - x, below 0 only for x > 0.55."""
    net = nn.Linear(1, 2)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[0.0], [1.0]]))
        net.bias.copy_(torch.tensor([0.0, -0.55]))
    return net


@pytest.mark.parametrize("steps, point, margin", [(5, 0.5, 0.05), (6, 0.6, -0.05), (20, 1.0, -0.45)])
def test_the_search_takes_signed_steps_of_a_fraction_of_the_box_and_stays_inside(steps, point, margin):
    # from x = 0 each step adds 0.1 (a tenth of the box [0, 1]) until the box's edge stops it
    y, lower, upper = torch.tensor([0]), torch.zeros(1, 1), torch.ones(1, 1)
    margins, best = pgd_search(ramp_network(), y, lower, upper, [torch.zeros(1, 1)], steps, 0.1)
    assert best.item() == pytest.approx(point, abs=1e-6)
    assert margins.item() == pytest.approx(margin, abs=1e-6)


def test_the_search_keeps_the_lowest_point_of_all_its_starts():
    # one step of 0.3 from 0.1 reaches 0.4 (margin 0.15), from 0.5 reaches 0.8 (margin -0.25)
    y, lower, upper = torch.tensor([0]), torch.zeros(1, 1), torch.ones(1, 1)
    starts = [torch.tensor([[0.1]]), torch.tensor([[0.5]])]
    margins, best = pgd_search(ramp_network(), y, lower, upper, starts, 1, 0.3)
    assert best.item() == pytest.approx(0.8)
    assert margins.item() == pytest.approx(-0.25)


def test_pgd_margins_without_restarts_is_the_clean_margin():
    margins = pgd_margins(
        ramp_network(), torch.tensor([[0.2]]), torch.tensor([0]), torch.zeros(1, 1), torch.ones(1, 1), restarts=0
    )
    assert margins.item() == pytest.approx(0.35)


def test_box_starts_lie_in_the_box_are_corners_when_asked_and_do_not_depend_on_the_batch():
    lower = torch.tensor([[0.0, 0.2], [0.5, 0.5], [0.1, 0.9]])
    upper = lower + 0.1
    together = list(box_starts(lower, upper, 4, corners="alternate"))
    alone = list(box_starts(lower[1:2], upper[1:2], 4, corners="alternate"))
    for restart, (batch, single) in enumerate(zip(together, alone)):
        assert torch.equal(batch[1:2], single)
        assert ((batch >= lower) & (batch <= upper)).all()
        at_corner = (batch == lower) | (batch == upper)
        assert at_corner.all() == bool(restart % 2)  # the odd restarts start at corners
    with pytest.raises(ValueError, match="corners='sometimes' must be one of never, always, alternate"):
        next(box_starts(lower, upper, 1, corners="sometimes"))
