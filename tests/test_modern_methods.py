"""Fast IBP, MTL-IBP, CC-IBP and SABR: losses against values worked out by hand from the papers'
equations, SABR's small box, the IBP initialisation's variance, and the regulariser's fade."""

from __future__ import annotations

import math
from functools import partial

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from certlight.bounds import input_box
from certlight.bounds.lirpa import lirpa_available
from certlight.errors import CertlightError
from certlight.losses import Reweighting
from certlight.methods import AutoEpsilon, BoundRegulariser, CCIBPModule, MTLIBPModule, NaturalModule, SABRModule
from certlight.methods.fast_ibp import ibp_initialise
from certlight.models import dm_large
from certlight.runs.pipeline import build_run
from certlight.runs.run_keys import method_label
from certlight.schedules import ScheduleValues, TrainingSchedule

from conftest import REPO, compose_train, tiny_run_overrides


def two_copies_net() -> nn.Sequential:
    """f_0 = 2 relu(x) - relu(x), f_1 = 0 on x in [0, 1]: the true margin is x, but IBP treats the
    two copies of relu(x) as independent: on [0.4, 0.6] it certifies 2*0.4 - 0.6 = 0.2 only."""
    net = nn.Sequential(nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0], [1.0]]))
        net[0].bias.zero_()
        net[2].weight.copy_(torch.tensor([[2.0, -1.0], [0.0, 0.0]]))
        net[2].bias.zero_()
    return net


def module(cls, net=None, **kwargs):
    return cls(
        net=net if net is not None else two_copies_net(),
        mean=(0.0,),
        std=(1.0,),
        eps_eval=0.1,
        optimizer=partial(torch.optim.SGD, lr=0.1),
        schedule=TrainingSchedule(eps_train=0.1),
        **kwargs,
    )


X, Y, EPS = torch.tensor([[0.5]]), torch.tensor([0]), torch.tensor([0.1])
RAMPED = ScheduleValues(eps=0.1, kappa=0.0, beta=0.0)


def ce_of_margin(margin: float) -> float:
    """Cross-entropy of the true class 0 of two logits whose difference f_0 - f_1 is ``margin``."""
    return math.log(1 + math.exp(-margin))


def test_mtl_ibp_loss_mixes_ibp_worst_case_and_attacked_point_by_alpha():
    # IBP margin over [0.4, 0.6]: 0.2. One PGD step of 10x the half-width ends at x = 0.4 (the
    # margin x falls with x), where the margin is 0.4.
    method = module(MTLIBPModule, alpha=0.08)
    term = method.robust_term(X, Y, method.region(X, Y, EPS), None, RAMPED)
    assert term.margin_lower.item() == pytest.approx(0.2, abs=1e-6)
    assert term.loss.item() == pytest.approx(0.08 * ce_of_margin(0.2) + 0.92 * ce_of_margin(0.4), abs=1e-6)


def test_cc_ibp_loss_is_cross_entropy_of_mixed_margins():
    method = module(CCIBPModule, alpha=0.3)
    term = method.robust_term(X, Y, method.region(X, Y, EPS), None, RAMPED)
    assert term.loss.item() == pytest.approx(ce_of_margin(0.3 * 0.2 + 0.7 * 0.4), abs=1e-6)
    assert term.margin_lower.item() == pytest.approx(0.2, abs=1e-6)


def test_sabr_small_box_sits_at_the_attacked_corner_inside_the_eps_box():
    # PGD reaches x = 0.4; the centre moves in to 0.4 + 0.5*0.1, so the small box is [0.4, 0.5],
    # whose IBP margin is 2*0.4 - 0.5 = 0.3.
    method = module(SABRModule, lambda_ratio=0.5)
    lower, upper = method.region(X, Y, EPS)
    assert (lower.item(), upper.item()) == pytest.approx((0.4, 0.5), abs=1e-6)
    assert method.robust_term(X, Y, (lower, upper), None, RAMPED).margin_lower.item() == pytest.approx(0.3, abs=1e-6)


@pytest.mark.parametrize("lambda_ratio", [0.1, 0.6, 1.0])
def test_sabr_small_box_lies_in_eps_box_and_data_domain(lambda_ratio):
    torch.manual_seed(0)
    mean, std = (0.1307,), (0.3081,)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 20), nn.ReLU(), nn.Linear(20, 10))
    method = SABRModule(
        net=net, mean=mean, std=std, eps_eval=0.3, optimizer=partial(torch.optim.SGD, lr=0.1), lambda_ratio=lambda_ratio
    )
    pixels = torch.rand(64, 1, 4, 4)
    pixels[:16] = pixels[:16].round()  # pixels at 0 and 1: the clipped sides of the eps box
    x = (pixels - mean[0]) / std[0]
    eps = torch.rand(64) * 0.4
    y = torch.randint(0, 10, (64,))
    big_lower, big_upper = input_box(x, eps, mean, std)
    lower, upper = method.region(x, y, eps)
    tolerance = 1e-6
    assert (lower >= big_lower - tolerance).all() and (upper <= big_upper + tolerance).all()
    assert (lower >= (0 - mean[0]) / std[0] - tolerance).all() and (upper <= (1 - mean[0]) / std[0] + tolerance).all()
    assert (lower <= upper).all()
    # Never wider than the small radius lambda * eps / std on each side.
    assert ((upper - lower) <= 2 * lambda_ratio * eps.view(-1, 1, 1, 1) / std[0] + tolerance).all()


def test_regulariser_by_hand():
    # Input box half-width 0.1; one ReLU layer, one example, pre-activation intervals
    # [-1,1], [1,3], [-3,-1], [2,4]: half-width 1, centres 0, 2, -2, 3.
    # Tightness: ReLU(0.5 - 0.1/1)/0.5 = 0.8.
    # Means: active (2 + 3)/4 = 1.25, inactive 2/4 = 0.5, ratio 2.5 -> 0.4 -> ReLU(0.5-0.4)/0.5 = 0.2.
    # Variances (around the mean 0.75): active 1.5625 + 5.0625, inactive 7.5625 -> 0.876: 0.
    lower, upper = torch.tensor([[-1.0, 1.0, -3.0, 2.0]]), torch.tensor([[1.0, 3.0, -1.0, 4.0]])
    box = (torch.zeros(1, 2), torch.full((1, 2), 0.2))
    regulariser = BoundRegulariser(weight=0.5, tolerance=0.5)
    assert regulariser.value(*box, [(lower, upper)]).item() == pytest.approx(1.0, abs=1e-6)
    # Weighted by lambda * (1 - eps/eps_max): 0.5 * 0.75 at a quarter of the ramp, 0 at its end.
    assert regulariser(*box, [(lower, upper)], eps=0.1, eps_max=0.4).item() == pytest.approx(0.375, abs=1e-6)
    assert regulariser(*box, [(lower, upper)], eps=0.4, eps_max=0.4).item() == 0.0


def test_regulariser_skips_a_layer_without_active_or_inactive_neurons_and_keeps_gradients_finite():
    lower = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    upper = torch.tensor([[1.0, 2.0]], requires_grad=True)
    value = BoundRegulariser(0.5, 0.5).value(torch.zeros(1, 2), torch.full((1, 2), 2.0), [(lower, upper)])
    # Tightness only: half-widths 1.5 vs input 1: ReLU(0.5 - 1/1.5)/0.5 = 0; the balance term is 0/0.
    assert value.item() == 0.0
    value.backward()
    assert torch.isfinite(lower.grad).all() and torch.isfinite(upper.grad).all()


def test_regulariser_drops_the_balance_term_of_a_layer_without_inactive_neurons():
    # Released compute_reg: mean_act / -mean_inact = x / -0.0 = -inf, dropped by its isinf guard.
    # Intervals [1,3] and [-1,1] (centres 2, 0; half-width 1), input half-width 0.5:
    # tightness ReLU(0.5 - 0.5/1)/0.5 = 0; the balance term would be (0.5 + 0.5)/0.5 = 2.
    lower, upper = torch.tensor([[1.0, -1.0]]), torch.tensor([[3.0, 1.0]])
    assert BoundRegulariser(0.5, 0.5).value(torch.zeros(1, 2), torch.ones(1, 2), [(lower, upper)]).item() == 0.0
    # Inactive but no active neurons: the released ratio is 0 / positive = 0, so the term counts (2).
    lower, upper = torch.tensor([[-3.0, -1.0]]), torch.tensor([[-1.0, 1.0]])
    assert BoundRegulariser(0.5, 0.5).value(
        torch.zeros(1, 2), torch.ones(1, 2), [(lower, upper)]
    ).item() == pytest.approx(2.0)


@pytest.mark.parametrize(
    "between, halved",
    [((), False), ((nn.ReLU(),), True), ((nn.BatchNorm2d(16),), True), ((nn.ReLU(), nn.ReLU()), False)],
    ids=["conv-right-after-the-sum", "relu", "batchnorm", "two-layers"],
)
def test_ibp_initialisation_halves_as_the_released_code_does(between, halved):
    """The released ibp_init halves a layer whose input node's input is the residual Add."""
    from certlight.models.residual import Residual

    torch.manual_seed(0)
    block = Residual(nn.Sequential(nn.Conv2d(16, 16, 3, padding=1)))
    conv = nn.Conv2d(16, 16, 3, padding=1)
    net = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), block, *between, conv, nn.Flatten(), nn.Linear(16 * 8 * 8, 10))
    ibp_initialise(net)
    expected = math.sqrt(2 * math.pi) / (16 * 9) * (0.5 if halved else 1.0)
    assert conv.weight.std().item() == pytest.approx(expected, rel=0.05)


def test_ibp_initialisation_has_the_papers_variance():
    torch.manual_seed(0)
    net = dm_large(in_channels=1, in_size=28, num_classes=10)
    last_before = net[-1].weight.clone()
    ibp_initialise(net)
    weighted = [m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    for layer in weighted[:-1]:
        fan_in = layer.weight[0].numel()  # in_features, or in_channels * kernel area
        assert layer.weight.std().item() == pytest.approx(math.sqrt(2 * math.pi) / fan_in, rel=0.05)
        assert abs(layer.weight.mean().item()) < 0.1 * math.sqrt(2 * math.pi) / fan_in
    assert torch.equal(net[-1].weight, last_before)


def test_ibp_initialisation_halves_layers_fed_by_a_residual_sum():
    from certlight.models.residual import resnet_small

    torch.manual_seed(0)
    net = resnet_small(width=16, batchnorm=False)
    ibp_initialise(net)
    stem, second_block = net[0], net[3][0]  # net[3] = the second block (after stem conv, ReLU, block 1)
    first_conv, projection = second_block.body[0], second_block.shortcut[0]
    for layer, factor in ((stem, 1.0), (first_conv, 0.5), (projection, 0.5)):
        fan_in = layer.weight[0].numel()
        assert layer.weight.std().item() == pytest.approx(factor * math.sqrt(2 * math.pi) / fan_in, rel=0.1)


def test_natural_training_refuses_the_tactics():
    with pytest.raises(CertlightError, match="method=natural.*reweight.gamma=5"):
        module(NaturalModule, reweight=Reweighting(gamma=5.0))
    with pytest.raises(CertlightError, match="method=natural.*auto_eps.eps_maxoff=0.05"):
        module(NaturalModule, auto_eps=AutoEpsilon(10, 0.05, 0.1))


@pytest.mark.skipif(not lirpa_available(), reason="auto_LiRPA not installed (CI installs it)")
def test_regulariser_needs_the_native_backend():
    from certlight.bounds.backends import make_backend

    with pytest.raises(CertlightError, match="method.regulariser.*bounds.backend=native"):
        module(MTLIBPModule, bounds=partial(make_backend, "auto_lirpa"), regulariser=BoundRegulariser())


METHODS = sorted(p.stem for p in (REPO / "conf" / "method").glob("*.yaml") if p.stem != "natural")
EXPERIMENTS = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))
# The large models' recipes take a step in the slow suite (each 10-15 s); the rest in the fast one.
RECIPES = [pytest.param(e, marks=pytest.mark.slow) if "large" in e else e for e in EXPERIMENTS]
ONE_STEP = (
    "schedule.ramp_epochs=0",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=1",
    "+trainer.limit_val_batches=1",
    "+trainer.num_sanity_val_steps=0",
    "callbacks.model_checkpoint=null",
)


@pytest.mark.parametrize("method", METHODS)
def test_the_tactics_work_with_every_method(method, fake_data_root, tmp_path):
    """reweight.gamma=5 auto_eps.eps_maxoff=... on any method=: weights vary and offsets move."""
    overrides = tiny_run_overrides(
        fake_data_root,
        f"method={method}",
        "reweight.gamma=5",
        "auto_eps.eps_maxoff=0.1",
        "dataset.train_subset=100",
        *ONE_STEP,
    )
    run = build_run(compose_train(overrides, tmp_path), tmp_path)
    seen = {}

    class Record(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.update(weights=outputs["weights"], offsets=pl_module.auto_eps.offsets.clone())

    run.trainer.callbacks.append(Record())
    run.trainer.fit(run.module, datamodule=run.datamodule)
    assert seen["weights"].std() > 0
    assert (seen["offsets"] > 0).any()


@pytest.mark.parametrize("experiment", RECIPES)
def test_every_recipe_takes_a_training_step(experiment, fake_data_root, tmp_path):
    overrides = [
        f"experiment={experiment}",
        f"data.root={fake_data_root}",
        "dataset.batch_size=8",
        "dataset.eval_batch_size=8",
        "dataset.train_subset=8",
        "dataset.test_subset=8",
        "+trainer.enable_progress_bar=false",
        "+trainer.enable_model_summary=false",
        *ONE_STEP,
    ]
    run = build_run(compose_train(overrides, tmp_path), tmp_path)
    before = [p.detach().clone() for p in run.module.parameters()]
    run.trainer.fit(run.module, datamodule=run.datamodule)
    assert run.trainer.global_step == 1
    assert any(not torch.equal(a, b) for a, b in zip(before, run.module.parameters()))


def test_natural_training_with_tactics_is_refused_from_the_config(fake_data_root, tmp_path):
    with pytest.raises(CertlightError, match="method=natural"):
        build_run(
            compose_train(tiny_run_overrides(fake_data_root, "method=natural", "reweight.gamma=5"), tmp_path), tmp_path
        )


@pytest.mark.parametrize(
    "overrides, label",
    [
        (["method=ibp"], "ibp"),
        (["method=fast_ibp"], "fast_ibp"),
        (["method=ibp", "+method.init=ibp"], "fast_ibp"),
        (["method=crown_ibp", "+method.init=ibp"], "fast_crown_ibp"),
        (["method=sabr"], "sabr"),
        (["method=mtl_ibp"], "mtl_ibp"),
    ],
)
def test_results_and_reports_name_the_method_a_user_chose(overrides, label, tmp_path):
    """A fast-IBP run must never be reported (or compared with the paper) as plain IBP."""
    from certlight.runs.pipeline import record_config

    assert method_label(record_config(compose_train(overrides, tmp_path))) == label


@pytest.mark.parametrize(
    "method, label",
    [
        ({"_target_": "certlight.methods.IBPModule", "init": "ibp", "regulariser": {"weight": 0.5}}, "fast_ibp"),
        ({"_target_": "certlight.methods.SABRModule", "init": "ibp"}, "sabr"),
    ],
)
def test_configs_recorded_before_the_method_name_are_named_by_their_class(method, label):
    assert method_label({"method": method}) == label


@pytest.mark.skipif(not lirpa_available(), reason="auto_LiRPA not installed (CI installs it)")
def test_auto_lirpa_bounds_the_re_initialised_network():
    """With init=ibp and the auto_LiRPA backend, its bounds are those of the new weights."""
    from certlight.bounds.backends import make_backend

    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 20), nn.ReLU(), nn.Linear(20, 10))
    method = SABRModule(
        net=net,
        mean=(0.0,),
        std=(1.0,),
        eps_eval=0.1,
        optimizer=partial(torch.optim.SGD, lr=0.1),
        init="ibp",
        bounds=partial(make_backend, "auto_lirpa"),
    )
    x, y = torch.rand(4, 1, 4, 4), torch.randint(0, 10, (4,))
    lower, upper = input_box(x, 0.05, (0.0,), (1.0,))
    theirs = method.bounder.margins(x, lower, upper, y, "ibp")
    ours = make_backend("native", net=net).margins(x, lower, upper, y, "ibp")
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-4)
