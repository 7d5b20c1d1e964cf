"""How many of the images IBP leaves does each PGD setting falsify? The complete verifiers say
how many of them are not robust, so this measures how far an attack is from the truth.

On the first N test images at eps 0.3 of a kept DM-small run: the images IBP does not verify
(and the network classifies correctly), then PGD with each (steps, restarts, step fraction,
start points).

    python bench/attack_strength.py results/runs/modern-methods/fast-ibp-100ep-tactics-seed1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sections import emit, heading  # noqa: E402  (bench/sections.py)

from certlight.attacks.pgd import box_starts, pgd_margins, pgd_search  # noqa: E402
from certlight.bounds import input_box, margin_lower_bounds  # noqa: E402
from certlight.data import CertifiedDataModule  # noqa: E402
from certlight.runs.checkpoints import load_trained  # noqa: E402
from certlight.runs.pipeline import hardware  # noqa: E402
from certlight.verify import load_network  # noqa: E402

# (steps, restarts, step fraction, starts): "uniform" restarts draw from the seeded global generator
# (pgd_margins, the cascade's attack); the others from box_starts, seeded per box as bab's are
SETTINGS = [
    (40, 1, 0.25, "uniform"),
    (200, 10, 0.25, "uniform"),
    (100, 20, 0.1, "uniform"),
    (100, 20, 0.5, "uniform"),
    (1, 50, 1.0, "uniform"),
    (20, 50, 0.1, "never"),
    (20, 200, 0.1, "never"),
    (20, 50, 0.1, "always"),
    (20, 200, 0.1, "always"),
    (20, 200, 0.1, "alternate"),  # bab's opening attack
]
STARTS = {
    "uniform": "uniform in the box",
    "never": "uniform, per box",
    "always": "corners, per box",
    "alternate": "uniform and corners in turn, per box",
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    trained = load_trained(args.run)
    data = CertifiedDataModule("mnist", root=args.data_root, device_resident=False)
    data.setup("test")
    net = load_network(trained, data)
    x, y, _ = data.test_set.__getitems__(list(range(args.images)))
    lower, upper = input_box(x, torch.full((args.images,), args.eps), data.info.mean, data.info.std)
    with torch.no_grad():
        unverified = margin_lower_bounds(net, lower, upper, y, "ibp").min(1).values <= 0
        left = (unverified & (net(x).argmax(1) == y)).nonzero().squeeze(1)
    lines = heading(f"PGD against the images IBP leaves, {args.run.name}") + [
        f"- hardware: {hardware()}, torch {torch.__version__}; first {args.images} test images, eps {args.eps}, "
        f"seed 0; {left.numel()} correctly classified images IBP does not verify",
        "",
        "| PGD steps | restarts | step (fraction of the box width) | starts | falsified | seconds |",
        "|---|---|---|---|---|---|",
    ]
    box = x[left], y[left], lower[left], upper[left]
    for steps, restarts, fraction, starts in SETTINGS:
        start = time.time()
        if starts == "uniform":
            margins = pgd_margins(net, *box, steps, restarts, fraction)
        else:
            points = box_starts(box[2], box[3], restarts, corners=starts)
            margins, _ = pgd_search(net, *box[1:], points, steps, fraction)
        falsified = int((margins <= 0).any(1).sum())
        lines.append(
            f"| {steps} | {restarts} | {fraction} | {STARTS[starts]} | {falsified} | {time.time() - start:.1f} |"
        )
    emit(lines, args.out)


if __name__ == "__main__":
    main()
