"""How many of the images IBP leaves does each PGD setting falsify? The complete verifiers say
how many of them are not robust, so this measures how far an attack is from the truth.

On the first N test images at eps 0.3 of a kept DM-small run: the images IBP does not verify
(and the network classifies correctly), then PGD with each (steps, restarts, step fraction).

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

from certlight.attacks.pgd import pgd_margins  # noqa: E402
from certlight.bounds import input_box, margin_lower_bounds  # noqa: E402
from certlight.data import CertifiedDataModule  # noqa: E402
from certlight.runs.checkpoints import load_trained  # noqa: E402
from certlight.runs.pipeline import hardware  # noqa: E402
from certlight.verify import load_network  # noqa: E402

SETTINGS = [(40, 1, 0.25), (200, 10, 0.25), (100, 20, 0.1), (100, 20, 0.5), (1, 50, 1.0)]


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
        "| PGD steps | restarts | step (fraction of the box width) | falsified | seconds |",
        "|---|---|---|---|---|",
    ]
    for steps, restarts, fraction in SETTINGS:
        start = time.time()
        margins = pgd_margins(net, x[left], y[left], lower[left], upper[left], steps, restarts, fraction)
        falsified = int((margins <= 0).any(1).sum())
        lines.append(f"| {steps} | {restarts} | {fraction} | {falsified} | {time.time() - start:.1f} |")
    emit(lines, args.out)


if __name__ == "__main__":
    main()
