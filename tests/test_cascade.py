"""The verification cascade: what it verifies is the union of what its stages verify alone."""

import torch

from certlight.bounds import input_box, is_verified
from certlight.bounds.backends import make_backend
from certlight.evaluation.cascade import CASCADE, cascade_certify

from conftest import random_mlp


def test_the_cascade_verifies_the_union_of_its_stages():
    # Radii where IBP, CROWN-IBP and CROWN each verify examples the earlier stages do not.
    net = random_mlp(0, widths=(20, 40, 40, 10))
    for eps in (0.01, 0.04):
        shape = (20,)
        torch.manual_seed(0)
        x = torch.rand(40, *shape)
        with torch.no_grad():
            y = net(x).argmax(1)  # every example correct, so only the bounds decide
        bounder = make_backend("native", net)
        lower, upper = input_box(x, eps, [0.0], [1.0])
        alone = {m: is_verified(bounder.margins(x, lower, upper, y, m)) for m in CASCADE}
        union = torch.stack(list(alone.values())).any(0)
        (row,) = cascade_certify(
            net, bounder, [(x[:25], y[:25]), (x[25:], y[25:])], [0.0], [1.0], [eps], CASCADE, pgd_steps=5
        )
        assert row["n"] == 40
        assert round((1 - row["verified_err"]["cascade"]) * 40) == int(union.sum())
        stages = {s["stage"]: s for s in row["cascade"]}
        assert stages["ibp"]["ran_on"] == 40 - round(row["pgd_err"] * 40)  # PGD-broken examples never reach a stage
        assert stages["ibp"]["verified"] == int(alone["ibp"].sum())  # the first stage sees everything undecided
        assert sum(s["verified"] for s in stages.values()) == int(union.sum())
        # every later stage runs only on what the earlier ones left
        for before, after in zip(CASCADE, CASCADE[1:]):
            assert stages[after]["ran_on"] == stages[before]["ran_on"] - stages[before]["verified"]
        assert 0 < int(union.sum()) < 40  # not vacuous: some verified, some not


def test_a_memory_budget_splits_the_work_without_changing_a_bound():
    net = random_mlp(2, widths=(20, 40, 40, 10))
    torch.manual_seed(2)
    x = torch.rand(12, 20)
    y = torch.randint(0, 10, (12,))
    lower, upper = input_box(x, 0.03, [0.0], [1.0])
    tight = make_backend("native", net, max_memory_gb=2e-5)  # ~20 KB: a few examples per pass, tiny chunks
    per_pass, _ = tight._plan("alpha_crown", (20,))
    assert per_pass < 12
    for method in ("crown", "alpha_crown"):
        torch.testing.assert_close(
            tight.margins(x, lower, upper, y, method), make_backend("native", net).margins(x, lower, upper, y, method)
        )
