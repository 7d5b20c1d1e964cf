"""The bounds of fixed models stay what an earlier engine computed, to what survives another CPU's
or torch version's float32 summation order (1e-4 relative): a guard against a refactor changing
a bound, beside the soundness and auto_LiRPA oracle tests that say the bounds are right.
``data/reference_bounds.pt`` was written by this file's ``reference_bounds()``
(python tests/test_bounds_preserved.py)."""

from pathlib import Path

import torch

from certlight.bounds import input_box, margin_lower_bounds
from certlight.models import cnn7_bn, dm_small

from conftest import random_convnet, random_mlp

REFERENCE = Path(__file__).parent / "data" / "reference_bounds.pt"


def cases():
    """(name, model, input shape, classes) with weights fixed by seeds."""
    torch.manual_seed(0)
    small = dm_small().eval()
    torch.manual_seed(1)
    cnn7 = cnn7_bn(1, 12, 10).eval()
    return [
        ("dm_small", small, (1, 28, 28), 10),
        ("cnn7_bn", cnn7, (1, 12, 12), 10),
        ("conv_bn", random_convnet(0, True), (2, 7, 7), 5),
        ("mlp", random_mlp(3), (6,), 4),
    ]


def reference_bounds() -> dict:
    bounds = {}
    for name, model, shape, classes in cases():
        generator = torch.Generator().manual_seed(5)
        x = torch.rand(4, *shape, generator=generator)
        y = torch.randint(0, classes, (4,), generator=generator)
        lower, upper = input_box(
            x,
            torch.tensor([0.0, 0.01, 0.03, 0.05]),
            [0.0] * (shape[0] if len(shape) == 3 else 1),
            [1.0] * (shape[0] if len(shape) == 3 else 1),
        )
        # full CROWN only where it takes well under a second
        for method in ("ibp", "crown_ibp", "crown") if name in ("conv_bn", "mlp") else ("ibp", "crown_ibp"):
            with torch.no_grad():
                bounds[f"{name}/{method}"] = margin_lower_bounds(model, lower, upper, y, method)
    return bounds


def test_bounds_of_the_existing_models_are_unchanged():
    expected = torch.load(REFERENCE)
    got = reference_bounds()
    assert got.keys() == expected.keys()
    for key in expected:
        # cnn7_bn's margins reach 2e4: relative to each margin's size, with a floor for those near 0
        torch.testing.assert_close(got[key], expected[key], rtol=1e-4, atol=1e-4, msg=key)


if __name__ == "__main__":
    torch.save(reference_bounds(), REFERENCE)
