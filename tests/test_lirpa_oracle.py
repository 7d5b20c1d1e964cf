"""auto_LiRPA as an independent oracle: our bounds must equal its bounds on the same box."""

import functools

import pytest
import torch

from certlight.bounds import input_box, margin_lower_bounds
from certlight.bounds.backends import make_backend
from certlight.bounds.lirpa import lirpa_available
from certlight.errors import CertlightError
from certlight.models import cnn7_bn, dm_small

from conftest import compose_train, conv_problem, random_convnet, random_mlp, tiny_run_overrides

pytestmark = pytest.mark.skipif(not lirpa_available(), reason="auto_LiRPA not installed (CI installs it)")


def assert_relative_close(ours, theirs, tolerance=1e-4):
    scale = theirs.abs().max().clamp(min=1.0)
    assert (ours - theirs).abs().max() <= tolerance * scale, ((ours - theirs).abs().max(), scale)


def conv_bn_net():
    model = cnn7_bn(1, 12, 10)
    for layer in model:
        if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
            layer.running_mean.uniform_(-0.2, 0.2)
            layer.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize(
    "build, shape",
    [
        (lambda: dm_small().eval(), (1, 28, 28)),
        (conv_bn_net, (1, 12, 12)),
        (lambda: random_convnet(0, True), (2, 7, 7)),
    ],
)
@pytest.mark.parametrize("method", ["ibp", "crown_ibp"])
def test_native_bounds_equal_auto_lirpa(build, shape, method):
    torch.manual_seed(0)
    model = build()
    classes = model[-1].out_features
    x = torch.rand(6, *shape)
    y = torch.randint(0, classes, (6,))
    lower, upper = input_box(x, torch.linspace(0.0, 0.1, 6), [0.0] * shape[0], [1.0] * shape[0])
    ours = margin_lower_bounds(model, lower, upper, y, method)
    theirs = make_backend("auto_lirpa", model).margins(x, lower, upper, y, method)
    assert_relative_close(ours, theirs)


def test_full_crown_is_sound_against_auto_lirpa_crown():
    model, x, y, lower, upper = conv_problem(2, 4)
    ours = margin_lower_bounds(model, lower, upper, y, "crown")
    theirs = make_backend("auto_lirpa", model).margins(x, lower, upper, y, "crown")
    # Ours intersects every intermediate bound with IBP's, so it may be tighter, never looser
    # beyond float error.
    assert (ours >= theirs - 1e-4 * theirs.abs().max().clamp(min=1)).all()


def test_training_with_the_auto_lirpa_backend_follows_the_native_run(fake_data_root, tmp_path):
    """Two engines, one function: the same CROWN-IBP run trained by either ends with the same
    numbers and weights (to what float32 rounding can do through Adam)."""
    from certlight.runs.pipeline import train

    runs = {}
    for backend in ("native", "auto_lirpa"):
        overrides = tiny_run_overrides(
            fake_data_root,
            f"bounds.backend={backend}",
            "method=crown_ibp",
            "trainer.max_epochs=1",
            "dataset.train_subset=100",
        )
        runs[backend] = train(compose_train(overrides, tmp_path / backend), tmp_path / backend)
    weights = [torch.load(tmp_path / b / "weights.pt", weights_only=True)["state_dict"] for b in runs]
    # Adam moves a weight by about lr per step whatever its gradient's size, so a gradient that is
    # ~0 in both runs may step either way: two steps of lr 1e-3 bound what rounding can do.
    for name in weights[0]:
        torch.testing.assert_close(weights[1][name], weights[0][name], rtol=0, atol=2e-3 + 1e-5, msg=name)
    for key in ("clean_err", "verified_err", "verified_err_by_method"):
        assert runs["auto_lirpa"][key] == runs["native"][key], key


def test_unknown_backend_is_named_by_its_config_key(fake_data_root, tmp_path):
    """The engine says ``backend=...`` (it knows no config); the config layer adds ``bounds.``."""
    from certlight.runs.pipeline import build_run

    with pytest.raises(ValueError, match="^backend='eran' is unknown; allowed: native, auto_lirpa$"):
        make_backend("eran", dm_small())
    with pytest.raises(CertlightError, match="^bounds.backend='eran' is unknown; allowed: native, auto_lirpa$"):
        build_run(compose_train(tiny_run_overrides(fake_data_root, "bounds.backend=eran"), tmp_path), tmp_path)


def test_first_training_step_with_auto_lirpa_backpropagates():
    """The BoundedModule is built lazily; building it must not break the clean forward's graph."""
    from certlight.methods import IBPModule
    from certlight.schedules import ScheduleValues

    lirpa = functools.partial(make_backend, "auto_lirpa")
    module = IBPModule(dm_small(), [0.0], [1.0], 0.3, lambda params: torch.optim.Adam(params), bounds=lirpa)
    module.schedule_values = ScheduleValues(eps=0.2, kappa=0.5, beta=0.0)
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    module.training_step((x, y, torch.arange(8)), 0)["loss"].backward()
    assert all(p.grad is not None for p in module.net.parameters())


def test_both_backends_bound_a_batchnorm_network_alike_in_training_mode():
    """Training-mode BatchNorm normalises with the batch's statistics: auto_LiRPA's bounds
    must use this batch's too (not those it was built with), and update the same running ones."""
    x = torch.rand(16, 2, 7, 7)
    y = torch.randint(0, 5, (16,))
    lower, upper = input_box(x, 0.05, [0.0], [1.0])
    nets = [random_convnet(0, batchnorm=True).train() for _ in range(2)]
    native, lirpa = make_backend("native", nets[0]), make_backend("auto_lirpa", nets[1])
    for step in range(3):  # the running statistics move every step
        x_step = (x + 0.1 * step).clamp(0, 1)
        logits, batchnorm = native.clean_forward(x_step)
        ours = native.mixed(x_step, lower, upper, y, 1.0, batchnorm)
        their_logits, _ = lirpa.clean_forward(x_step)
        theirs = lirpa.mixed(x_step, lower, upper, y, 1.0)
        torch.testing.assert_close(their_logits, logits)
        assert_relative_close(ours, theirs)
    for a, b in zip(nets[0].buffers(), nets[1].buffers()):
        if a.dtype.is_floating_point:
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("seed", range(3))
def test_alpha_crown_is_not_looser_than_auto_lirpas_crown(seed):
    """An independent CROWN (auto_LiRPA 0.3 offers no working α-CROWN: its optimised bound
    returns CROWN's) that our α-CROWN may only tighten; 1e-4 of float noise allowed."""
    model = random_mlp(seed, widths=(20, 40, 40, 10)) if seed != 1 else random_convnet(seed, batchnorm=True)
    shape, classes = ((20,), 10) if seed != 1 else ((2, 7, 7), 5)
    torch.manual_seed(seed)
    x = torch.rand(6, *shape)
    y = torch.randint(0, classes, (6,))
    lower, upper = input_box(x, 0.1, [0.0], [1.0])
    ours = margin_lower_bounds(model, lower, upper, y, "alpha_crown")
    theirs = make_backend("auto_lirpa", model).margins(x, lower, upper, y, "crown")
    assert (ours >= theirs - 1e-4).all(), (ours - theirs).min()


def test_auto_lirpa_refuses_alpha_crown_in_one_line():
    model = random_mlp(0)
    x = torch.rand(2, 6)
    lower, upper = input_box(x, 0.1, [0.0], [1.0])
    backend = make_backend("auto_lirpa", model)
    assert "alpha_crown" not in backend.methods
    with pytest.raises(ValueError, match="method='alpha_crown' is not offered by auto_LiRPA"):
        backend.margins(x, lower, upper, torch.tensor([0, 1]), "alpha_crown")
