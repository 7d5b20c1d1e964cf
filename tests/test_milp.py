"""The exact MILP verifier: its verdicts against a dense grid (the truth, on 2-D inputs), against
every sound bound and every attack, on MLPs, conv nets with BatchNorm and a residual block."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from certlight.attacks import attack_succeeds, pgd_margins
from certlight.bounds import input_box, is_verified, margin_lower_bounds
from certlight.evaluation.milp import FALSIFIED, UNKNOWN, VERIFIED, milp_verify

from conftest import ORACLE_NETWORKS, oracle_batch, random_mlp


def grid_minimum(net, x, y, eps, steps=201):
    """The smallest margin over a dense grid of the 2-D box, and a bound on how far the true
    minimum can lie below it (Lipschitz constant of the margins times the grid's half-spacing)."""
    axis = torch.linspace(-1.0, 1.0, steps)
    points = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).view(-1, 2)
    box = (x + eps * points).clamp(0, 1)
    with torch.no_grad():
        logits = net(box)
    margins = logits[:, y : y + 1] - logits
    margins[:, y] = torch.inf
    weights = [m.weight for m in net if isinstance(m, nn.Linear)]
    lipschitz = 2 * torch.stack([w.abs().sum(1).max() for w in weights]).prod()  # l_inf -> l_inf, margins of two logits
    return float(margins.min()), float(lipschitz * eps / (steps - 1))


@pytest.mark.parametrize("seed", range(6))
def test_the_verdict_on_a_2d_box_is_the_grids(seed):
    net = random_mlp(seed, widths=(2, 12, 12, 3)).eval()
    torch.manual_seed(seed)
    x = torch.rand(8, 2)
    y = net(x).argmax(1)
    decided = 0
    for eps in (0.05, 0.15, 0.3):
        lower, upper = input_box(x, eps, [0.0], [1.0])
        for example, outcome in enumerate(milp_verify(net, x, y, lower, upper)):
            minimum, slack = grid_minimum(net, x[example], int(y[example]), eps)
            if minimum < 0:
                assert outcome.verdict == FALSIFIED
            elif minimum > slack:
                assert outcome.verdict == VERIFIED
            decided += minimum < 0 or minimum > slack
    assert decided >= 20  # the grid decides most examples, so the test compares real verdicts


@pytest.mark.parametrize("name", ORACLE_NETWORKS)
@pytest.mark.parametrize("seed", range(2))
def test_milp_agrees_with_every_sound_bound_and_every_attack(name, seed):
    _, _, radii, falsifies = ORACLE_NETWORKS[name]
    net, x, y = oracle_batch(name, seed)
    counts = {VERIFIED: 0, FALSIFIED: 0}
    for eps in radii:
        lower, upper = input_box(x, eps, [0.0], [1.0])
        crown = margin_lower_bounds(net, lower, upper, y, "crown")
        broken = attack_succeeds(pgd_margins(net, x, y, lower, upper, steps=30, restarts=2))
        for example, outcome in enumerate(milp_verify(net, x, y, lower, upper, crown)):
            assert outcome.verdict != UNKNOWN
            counts[outcome.verdict] += 1
            if is_verified(crown[example : example + 1]).item():
                assert outcome.verdict == VERIFIED  # exact is never looser than a sound bound
            if broken[example]:
                assert outcome.verdict == FALSIFIED  # nothing an attack breaks is verified
            if outcome.verdict == FALSIFIED:
                point = outcome.counterexample
                assert (point >= lower[example]).all() and (point <= upper[example]).all()
                assert net(point.unsqueeze(0)).argmax(1).item() != y[example].item()
    assert counts[VERIFIED] > 0 and (counts[FALSIFIED] > 0 or not falsifies)  # both verdicts really occur


def test_the_time_limit_leaves_examples_unknown():
    net = random_mlp(0, widths=(20, 64, 64, 10)).eval()
    torch.manual_seed(0)
    x = torch.rand(3, 20)
    y = net(x).argmax(1)
    lower, upper = input_box(x, 0.3, [0.0], [1.0])
    outcomes = milp_verify(net, x, y, lower, upper, time_limit=1e-3)
    assert {o.verdict for o in outcomes} == {UNKNOWN}
    assert all(o.seconds < 5 for o in outcomes)
