"""python -m certlight.campaign {pack,run,unpack}

    python -m certlight.campaign pack                       # here: fill .campaign/ (wheels, data, queue)
    # on the GPU machine (device run, carry [".campaign"]), back to back while time is left:
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .campaign/wheels/*.whl && \\
      PYTHONPATH=/tmp/site:. python3 -m certlight.campaign run --budget 540 --out $OUT
    python -m certlight.campaign unpack /work/.device/...  # here: results/, then commit
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from certlight.errors import CertlightError

STATE, QUEUE_RECORD = Path(".campaign"), Path("results/campaign/queue.json")
PROBE_RUN = ["experiment=paper_mnist_large", "trainer=gpu"]
BENCHMARKS = [
    ("step_time", ["bench/step_time.py", "--settings", "dm_small/mnist", "dm_large/cifar"]),
    ("epoch_time", ["bench/epoch_time.py", "--model", "dm_large", "--limit-batches", "200"]),
    ("fused_forward", ["bench/fused_forward.py"]),
    ("sync_test", ["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_sync.py"]),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m certlight.campaign", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="verb", required=True)
    pack_cmd = sub.add_parser("pack", help="fill .campaign/ here")
    pack_cmd.add_argument("--data", type=Path, default=None, help="data root holding MNIST/ and FashionMNIST/ (default: certlight's)")
    pack_cmd.add_argument("--no-wheels", action="store_true", help="skip building the wheels (already there)")
    run_cmd = sub.add_parser("run", help="on the GPU machine: benchmarks once, then the queue")
    run_cmd.add_argument("--budget", type=float, default=540, help="seconds this command may take (the device allows 600)")
    run_cmd.add_argument("--out", type=Path, required=True, help="where the files that come back go ($OUT)")
    run_cmd.add_argument("--parallel", type=int, default=None, help="runs side by side (default: probed once, then kept)")
    run_cmd.add_argument("--no-bench", action="store_true")
    run_cmd.add_argument("--state", type=Path, default=STATE)
    run_cmd.add_argument("overrides", nargs="*", help="extra train.py overrides for every run (trainer=gpu by default)")
    unpack_cmd = sub.add_parser("unpack", help="here: file what came back into results/")
    unpack_cmd.add_argument("source", type=Path)
    unpack_cmd.add_argument("--results", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    try:
        if args.verb == "pack":
            from certlight.campaign.pack import pack
            from certlight.data import default_data_root

            pack(STATE, args.data or Path(default_data_root()), QUEUE_RECORD, wheels=not args.no_wheels)
        elif args.verb == "run":
            run(args)
        else:
            import json

            from certlight.campaign.unpack import unpack

            print(json.dumps(unpack(args.source, args.results), indent=1))
    except CertlightError as error:
        print(f"certlight.campaign: error: {error}", file=sys.stderr)
        return 2
    return 0


def run(args) -> None:
    from certlight.campaign.outputs import pack_outputs
    from certlight.campaign.runner import Campaign, probe_parallel

    overrides = tuple(args.overrides) or ("trainer=gpu",)
    campaign = Campaign(args.state, args.budget, extra_overrides=overrides)
    try:
        if not args.no_bench:
            campaign.benchmark(BENCHMARKS)
        meta = campaign.meta()
        parallel = args.parallel or meta.get("parallel")
        if parallel is None:
            parallel = probe_parallel(campaign, PROBE_RUN, steps=300)
            campaign.write_meta({**campaign.meta(), "parallel": parallel})
        campaign.log(f"{parallel} run(s) side by side")
        campaign.run_queue(parallel)
    finally:
        pack_outputs(args.state, args.out)


if __name__ == "__main__":
    sys.exit(main())
