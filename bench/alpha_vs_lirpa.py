"""α-CROWN: certlight's against CROWN and against auto_LiRPA 0.3's CROWN (its CROWN-Optimized
returns CROWN's bound), on the random networks of the tests (margin lower bounds; positive = certlight tighter).

    python bench/alpha_vs_lirpa.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from certlight.bounds import input_box, margin_lower_bounds  # noqa: E402
from certlight.bounds.backends import make_backend  # noqa: E402

from conftest import random_convnet, random_mlp  # noqa: E402


def main() -> None:
    print("| network | eps | α-CROWN − CROWN (mean) | α-CROWN − auto_LiRPA CROWN (mean / min / max) |")
    print("|---|---|---|---|")
    cases = [(f"mlp 20-40-40-10, seed {s}", random_mlp(s, widths=(20, 40, 40, 10)), (20,), 10, 0.1) for s in range(3)]
    cases += [(f"conv+BN (tests), seed {s}", random_convnet(s, batchnorm=True), (2, 7, 7), 5, 0.1) for s in range(2)]
    for name, model, shape, classes, eps in cases:
        torch.manual_seed(0)
        x = torch.rand(6, *shape)
        y = torch.randint(0, classes, (6,))
        lower, upper = input_box(x, eps, [0.0], [1.0])
        crown = margin_lower_bounds(model, lower, upper, y, "crown")
        ours = margin_lower_bounds(model, lower, upper, y, "alpha_crown")
        theirs = make_backend("auto_lirpa", model).margins(x, lower, upper, y, "crown")
        gap = ours - theirs
        print(
            f"| {name} | {eps:g} | {float((ours - crown).mean()):.4f} | "
            f"{float(gap.mean()):.4f} / {float(gap.min()):.2e} / {float(gap.max()):.4f} |"
        )


if __name__ == "__main__":
    main()
