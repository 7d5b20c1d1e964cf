"""python -m tools.gpu_queue {pack,run,unpack}: a queue of training runs that survives time
limits and pre-emption. Each ``run`` command works for at most ``--budget`` seconds, stops what
still runs in time to save its last epoch, and the next command resumes where it stopped; for
GPU machines lent in short windows, with the files that travel there packed beforehand.

    python -m tools.gpu_queue pack                        # here: fill .campaign/ (wheels, data, queue)
    # on the GPU machine, carrying .campaign, as often as there is time:
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .campaign/wheels/*.whl && \\
      PYTHONPATH=/tmp/site:. python3 -m tools.gpu_queue run --budget 540 --out $OUT
    python -m tools.gpu_queue unpack FOLDER               # here: what came back into results/, then commit
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
    parser = argparse.ArgumentParser(
        prog="python -m tools.gpu_queue", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="verb", required=True)
    pack_cmd = sub.add_parser("pack", help="fill .campaign/ here")
    pack_cmd.add_argument(
        "--data", type=Path, default=None, help="data root holding MNIST/ and FashionMNIST/ (default: certlight's)"
    )
    pack_cmd.add_argument("--no-wheels", action="store_true", help="skip building the wheels (already there)")
    run_cmd = sub.add_parser("run", help="on the GPU machine: benchmarks once, then the queue")
    run_cmd.add_argument(
        "--budget", type=float, default=540, help="seconds this command may take (the device allows 600)"
    )
    run_cmd.add_argument("--out", type=Path, required=True, help="where the files that come back go ($OUT)")
    run_cmd.add_argument(
        "--parallel", type=int, default=None, help="runs side by side (default: probed once, then kept)"
    )
    run_cmd.add_argument("--no-bench", action="store_true")
    run_cmd.add_argument("--state", type=Path, default=STATE)
    run_cmd.add_argument("overrides", nargs="*", help="extra train.py overrides for every run (trainer=gpu by default)")
    unpack_cmd = sub.add_parser("unpack", help="here: file what came back into results/")
    unpack_cmd.add_argument("source", type=Path)
    unpack_cmd.add_argument("--results", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    try:
        if args.verb == "pack":
            from certlight.data import default_data_root
            from tools.gpu_queue.pack import pack

            pack(STATE, args.data or Path(default_data_root()), QUEUE_RECORD, wheels=not args.no_wheels)
        elif args.verb == "run":
            run(args)
        else:
            import json

            from tools.gpu_queue.unpack import unpack

            print(json.dumps(unpack(args.source, args.results), indent=1))
    except CertlightError as error:
        print(f"tools.gpu_queue: error: {error}", file=sys.stderr)
        return 2
    return 0


def run(args) -> None:
    import torch

    from tools.gpu_queue.outputs import pack_outputs
    from tools.gpu_queue.runner import Campaign, probe_parallel

    if not torch.cuda.is_available():
        raise CertlightError(
            "run needs a CUDA GPU (its runs train with trainer=gpu) "
            "and this machine has none; nothing was run or recorded"
        )
    overrides = tuple(args.overrides) or ("trainer=gpu",)
    campaign = Campaign(args.state, args.budget, extra_overrides=overrides)
    try:
        if not args.no_bench:
            campaign.benchmark(BENCHMARKS)
        meta = campaign.meta()
        parallel = args.parallel or meta.get("parallel")
        if parallel is None:
            parallel = probe_parallel(campaign, PROBE_RUN, steps=300)
            if parallel is None:
                raise CertlightError(
                    f"every probe run failed (see {campaign.state / 'campaign.log'}); nothing recorded"
                )
            campaign.write_meta({**campaign.meta(), "parallel": parallel})
        campaign.log(f"{parallel} run(s) side by side")
        failed = campaign.run_queue(parallel)
        if failed:
            raise CertlightError(f"{failed} run(s) failed in this command; their reasons are in campaign.log")
    finally:
        pack_outputs(args.state, args.out)


if __name__ == "__main__":
    sys.exit(main())
