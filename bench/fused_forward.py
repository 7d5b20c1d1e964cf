"""Would one batched call for the clean logits and the interval centre beat two calls?

IBP runs the network's affine layers on the clean batch and on the box centre with the same
weights; concatenating the two batches turns two convolutions into one of twice the batch.
This times forward + backward of DM-small both ways (interleaved, median), the measurement
behind whether certlight fuses the two passes on a device.

    python bench/fused_forward.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from certlight.models import dm_small  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    net = dm_small(1, 28, 10).to(args.device)
    clean, center = torch.rand(2, args.batch, 1, 28, 28, device=args.device)

    def separate():
        (net(clean).sum() + net(center).sum()).backward()

    def fused():
        net(torch.cat([clean, center])).sum().backward()

    times = {"separate": [], "fused": []}
    for step in range(args.steps + 5):
        for name, run in (("separate", separate), ("fused", fused)):
            if args.device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            run()
            if args.device == "cuda":
                torch.cuda.synchronize()
            if step >= 5:
                times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"device {args.device}, batch {args.batch}, {torch.get_num_threads()} thread(s), median of {args.steps}:")
    for name, seconds in medians.items():
        print(f"  {name}: {1000 * seconds:.2f} ms")
    print(f"  separate / fused: {medians['separate'] / medians['fused']:.3f}")


if __name__ == "__main__":
    main()
