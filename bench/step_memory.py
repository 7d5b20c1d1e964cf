"""Peak memory of one CROWN-IBP training step (forward, bounds, backward, Adam) on a CPU:
certlight's engine against auto_LiRPA's, DM-small and DM-large at several batch sizes.

Each measurement runs in a fresh process (a process's resident set never shrinks back, so a
second measurement in the same process would reuse the first one's pages): the figure is the
peak resident set during the step minus the resident set just before it (model, optimizer and
batch already built). A user's out-of-memory error is about exactly this number.

    python bench/step_memory.py --out results/performance.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sections import emit, heading  # noqa: E402
from step_time import SETTINGS, build_variant, one_step, variants  # noqa: E402  (bench/step_time.py)

from certlight.evaluation.memory import PeakMemory, resident_bytes  # noqa: E402
from certlight.runs.pipeline import hardware  # noqa: E402

VARIANTS = ("plain", "crown_ibp", "lirpa_crown_ibp")


def measure(setting: str, variant: str, batch: int) -> float:
    """MiB above the resident set that one training step needed at its peak (this process)."""
    build, shape, _ = SETTINGS[setting]
    module, optimizer = build_variant(build, shape, variants(with_lirpa=True)[variant], torch.device("cpu"))
    torch.manual_seed(1)
    data = (torch.rand(batch, *shape), torch.randint(0, 10, (batch,)), torch.randperm(60000)[:batch])
    before = resident_bytes()
    with PeakMemory("cpu", interval_s=0.002) as peak:
        one_step(module, optimizer, data, torch.device("cpu"))
    return (peak.bytes - before) / 2**20


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--settings", nargs="+", default=["dm_small/mnist", "dm_large/mnist"], choices=list(SETTINGS))
    parser.add_argument("--batches", nargs="+", type=int, default=[64, 256])
    parser.add_argument("--child", nargs=3, metavar=("SETTING", "VARIANT", "BATCH"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help="append the markdown table to this file")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child[0], args.child[1], int(args.child[2]))))
        return
    lines = heading("Peak memory of one CROWN-IBP training step (CPU)")
    lines += [
        f"- hardware: {hardware()}, torch {torch.__version__}, threads {torch.get_num_threads()}",
        "",
        "| setting | batch | plain step (MiB) | certlight CROWN-IBP "
        "(MiB) | auto_LiRPA CROWN-IBP (MiB) | certlight / auto_LiRPA |",
        "|---|---|---|---|---|---|",
    ]
    for setting in args.settings:
        for batch in args.batches:
            mib = {}
            for variant in VARIANTS:
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", setting, variant, str(batch)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                mib[variant] = json.loads(proc.stdout.strip().splitlines()[-1])
            ratio = mib["crown_ibp"] / mib["lirpa_crown_ibp"]
            lines.append(
                f"| {setting} | {batch} | {mib['plain']:.0f} | {mib['crown_ibp']:.0f} "
                f"| {mib['lirpa_crown_ibp']:.0f} | {ratio:.2f} |"
            )
    emit(lines, args.out)


if __name__ == "__main__":
    main()
