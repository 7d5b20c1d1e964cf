"""Residual networks in the native engine: sound, equal to auto_LiRPA, per-example eps exact."""

import pytest
import torch
from test_bounds_crown import sampled_min_margins

from certlight.attacks import pgd_margins
from certlight.bounds import input_box, margin_lower_bounds, margin_spec
from certlight.bounds.backends import make_backend
from certlight.bounds.lirpa import lirpa_available
from certlight.models import Residual, resnet_small
from certlight.runs.pipeline import train

from conftest import compose_train, tiny_run_overrides

METHODS = ("ibp", "crown_ibp", "crown", "alpha_crown")


def small_resnet(seed: int, batchnorm: bool = True) -> torch.nn.Sequential:
    """resnet_small on 2x8x8 inputs, width 2, with random BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    net = resnet_small(2, 8, 5, width=2, batchnorm=batchnorm)
    for layer in net.modules():
        if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
            layer.running_mean.uniform_(-0.3, 0.3)
            layer.running_var.uniform_(0.5, 2.0)
    return net.eval()


def test_the_model_really_has_residual_blocks_with_and_without_projection():
    blocks = [m for m in small_resnet(0).modules() if isinstance(m, Residual)]
    assert len(blocks) == 3 and [b.shortcut is None for b in blocks] == [True, False, True]


@pytest.mark.parametrize("seed", range(2))
def test_sampled_and_attacked_points_never_beat_any_bound(seed):
    net = small_resnet(seed)
    x = torch.rand(5, 2, 8, 8)
    y = torch.randint(0, 5, (5,))
    eps = torch.tensor([0.0, 0.01, 0.03, 0.06, 0.1])
    lower, upper = input_box(x, eps, [0.0], [1.0])
    spec = margin_spec(y, 5)
    sampled = sampled_min_margins(net, lower, upper, spec, 500)
    attacked = pgd_margins(net, x, y, lower, upper, steps=20, restarts=2)
    bounds = {m: margin_lower_bounds(net, lower, upper, y, m) for m in METHODS}
    for method, bound in bounds.items():
        assert (bound <= sampled + 1e-4).all(), method
        assert (bound <= attacked + 1e-4).all(), method
    assert (bounds["crown"] >= bounds["crown_ibp"] - 1e-4).float().mean() > 0.9  # full CROWN refines
    torch.testing.assert_close(bounds["crown"][0], (spec[0] @ net(x[:1]).T).squeeze(-1), rtol=1e-4, atol=1e-4)  # eps 0


def test_per_example_eps_equals_one_example_at_a_time():
    net = small_resnet(3)
    x = torch.rand(4, 2, 8, 8)
    y = torch.randint(0, 5, (4,))
    eps = torch.tensor([0.0, 0.02, 0.05, 0.08])
    lower, upper = input_box(x, eps, [0.0], [1.0])
    for method in METHODS:
        batched = margin_lower_bounds(net, lower, upper, y, method)
        for i in range(4):
            single = margin_lower_bounds(net, lower[i : i + 1], upper[i : i + 1], y[i : i + 1], method)
            torch.testing.assert_close(batched[i : i + 1], single, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not lirpa_available(), reason="auto_LiRPA not installed (CI installs it)")
@pytest.mark.parametrize("method", ["ibp", "crown_ibp", "crown"])  # α-CROWN: tests/test_lirpa_oracle.py
def test_bounds_equal_auto_lirpa(method):
    net = small_resnet(4)
    x = torch.rand(4, 2, 8, 8)
    y = torch.randint(0, 5, (4,))
    lower, upper = input_box(x, torch.tensor([0.0, 0.01, 0.03, 0.05]), [0.0], [1.0])
    ours = margin_lower_bounds(net, lower, upper, y, method)
    theirs = make_backend("auto_lirpa", net).margins(x, lower, upper, y, method)
    scale = theirs.abs().max().clamp(min=1.0)
    assert (ours - theirs).abs().max() <= 1e-4 * scale


@pytest.mark.parametrize("method", ["ibp", "crown_ibp"])
def test_a_residual_network_trains(method, fake_data_root, tmp_path):
    overrides = tiny_run_overrides(
        fake_data_root,
        "model=resnet_small",
        "model.width=2",
        f"method={method}",
        "trainer.max_epochs=1",
        "dataset.train_subset=100",
    )
    results = train(compose_train(overrides, tmp_path), tmp_path)
    assert results["complete"]
    # Validation inside Lightning and verify from the run folder: two paths, the same numbers.
    from test_verify import compose_verify

    from certlight.verify import verify

    report = verify(
        compose_verify(
            [
                f"ckpt={tmp_path}",
                f"data.root={fake_data_root}",
                f"methods=[{','.join(results['verified_err_by_method'])}]",
                "pgd.steps=1",
            ]
        ),
        tmp_path / "verify",
    )
    (row,) = report["results"]
    assert row["clean_err"] == pytest.approx(results["clean_err"])
    assert {m: row["verified_err"][m] for m in results["verified_err_by_method"]} == pytest.approx(
        results["verified_err_by_method"]
    )


@pytest.mark.parametrize("extra", [torch.nn.AvgPool2d(2), torch.nn.Identity(), torch.nn.Dropout(0.3)])
def test_pooling_identity_and_eval_dropout_are_bounded_soundly(extra):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, 3, padding=1),
        torch.nn.ReLU(),
        extra,
        torch.nn.Flatten(),
        torch.nn.LazyLinear(6),
        torch.nn.ReLU(),
        torch.nn.Linear(6, 4),
    )
    net(torch.zeros(1, 2, 6, 6))  # materialise the lazy layer
    net.eval()
    x = torch.rand(3, 2, 6, 6)
    y = torch.tensor([0, 1, 2])
    lower, upper = input_box(x, 0.05, [0.0], [1.0])
    sampled = sampled_min_margins(net, lower, upper, margin_spec(y, 4), 500)
    for method in METHODS:
        assert (margin_lower_bounds(net, lower, upper, y, method) <= sampled + 1e-5).all(), method


def test_an_unsupported_layer_is_named_with_the_supported_list():
    from certlight.bounds import check_supported
    from certlight.errors import CertlightError

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 4), torch.nn.GELU(), torch.nn.Linear(4, 2))
    with pytest.raises(
        CertlightError,
        match=r"layer 2: layer GELU is not supported by the native bound engine; supported: .*AvgPool2d.*Residual",
    ):
        check_supported(net)
