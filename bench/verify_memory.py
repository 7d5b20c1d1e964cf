"""Peak memory and time of one full-CROWN / α-CROWN pass under bounds.max_memory_gb, on the widest
part of the big networks (MNIST shape), measured with certlight.evaluation.memory.PeakMemory.

    python bench/verify_memory.py --budgets 0.25 0.5 1 --examples 1

The networks are the first two convolution blocks of DM-large and of CNN7-BN (64 x 28 x 28 each,
their widest layers, where CROWN's coefficient tensors are largest) followed by a linear
classifier, with random weights in eval mode: the pass's memory is set by the budget's chunk
and batch sizes, not by the weights; the whole networks would take hours of CPU time per example
for full CROWN here. Prints a markdown table; the process's resident memory just before the
pass is the baseline.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from certlight.bounds import input_box, relu_count  # noqa: E402
from certlight.bounds.backends import make_backend  # noqa: E402
from certlight.bounds.engine import interval_propagate  # noqa: E402
from certlight.evaluation.memory import PeakMemory, resident_bytes  # noqa: E402
from certlight.models import cnn7_bn, dm_large  # noqa: E402


def unstable(net, lower, upper) -> int:
    _, _, walk = interval_propagate(net, lower, upper, stop=len(net) - 1)
    return sum(int(((low < 0) & (high > 0)).any(0).sum()) for low, high in walk.pre_activation.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budgets", nargs="+", type=float, default=[0.5, 1.0])
    parser.add_argument("--examples", type=int, default=2)
    parser.add_argument("--eps", type=float, default=0.002)
    parser.add_argument("--methods", nargs="+", default=["crown", "alpha_crown"])
    args = parser.parse_args()
    print(
        "| network | ReLUs | unstable (IBP) | method | max_memory_gb "
        "| examples/pass | peak RSS over baseline (MiB) | seconds |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, build in (("dm_large", dm_large), ("cnn7_bn", cnn7_bn)):
        torch.manual_seed(0)
        blocks = 4 if name == "dm_large" else 6  # conv-ReLU (-BN) twice
        net = torch.nn.Sequential(
            *list(build(1, 28, 10))[:blocks], torch.nn.Flatten(), torch.nn.Linear(64 * 28 * 28, 10)
        ).eval()
        name = f"{name}[:2 conv blocks]"
        x = torch.rand(args.examples, 1, 28, 28)
        y = torch.randint(0, 10, (args.examples,))
        lower, upper = input_box(x, args.eps, [0.0], [1.0])
        count = unstable(net, lower, upper)
        for method in args.methods:
            for budget in args.budgets:
                bounder = make_backend("native", net, max_memory_gb=budget)
                per_pass = bounder._plan(method, (1, 28, 28))[0]
                baseline = resident_bytes()
                start = time.perf_counter()
                with torch.no_grad(), PeakMemory("cpu") as peak:
                    bounder.margins(x, lower, upper, y, method)
                seconds = time.perf_counter() - start
                print(
                    f"| {name} | {relu_count(net, (1, 28, 28))} | {count} | {method} | {budget:g} "
                    f"| {per_pass} | {(peak.bytes - baseline) / 2**20:.0f} | {seconds:.1f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
