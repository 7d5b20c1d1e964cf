"""Wall time of one real training epoch, data loading included, and its peak memory.

Trains one epoch of certified training on the real dataset (eps at eps_train from the first
step) through the Lightning Trainer, once per data path: the host DataLoader and the
device-resident path (``dataset.device_resident``). On CPU the two do the same work; on
CUDA the resident path keeps the GPU from waiting for the loader.

    CERTLIGHT_DATA=../shared/data python bench/epoch_time.py --out results/performance.md
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sections import emit, heading  # noqa: E402  (bench/sections.py)

from certlight.data import CertifiedDataModule  # noqa: E402
from certlight.data.datamodule import default_data_root  # noqa: E402
from certlight.methods import CrownIBPModule, IBPModule  # noqa: E402
from certlight.models import cnn7_bn, dm_large, dm_medium, dm_small  # noqa: E402
from certlight.runs.pipeline import hardware  # noqa: E402
from certlight.schedules import TrainingSchedule  # noqa: E402

METHODS = {"ibp": IBPModule, "crown_ibp": CrownIBPModule}
MODELS = {f.__name__: f for f in (dm_small, dm_medium, dm_large, cnn7_bn)}


class EpochTimer(pl.Callback):
    def on_train_epoch_start(self, trainer, pl_module):
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        self.seconds = time.perf_counter() - self.start


def one_epoch(args, resident: bool) -> tuple[float, int, str]:
    torch.manual_seed(0)
    datamodule = CertifiedDataModule(args.dataset, args.data, batch_size=args.batch, device_resident=resident)
    datamodule.setup("fit")
    info = datamodule.info
    net = MODELS[args.model](info.channels, info.size, info.num_classes)
    schedule = TrainingSchedule(
        eps_train=args.eps, warmup_epochs=0, ramp_epochs=0, kappa_end=0.5, beta_start=1.0, beta_end=1.0
    )
    module = METHODS[args.method](
        net,
        info.mean,
        info.std,
        eps_eval=args.eps,
        optimizer=lambda params: torch.optim.Adam(params, lr=1e-3),
        schedule=schedule,
    )
    timer = EpochTimer()
    trainer = pl.Trainer(
        accelerator="gpu" if args.device == "cuda" else "cpu",
        devices=1,
        max_epochs=1,
        limit_train_batches=args.limit_batches,
        limit_val_batches=0,
        callbacks=[timer],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=datamodule)
    if args.device == "cuda":
        peak = f"{torch.cuda.max_memory_allocated() / 2**20:.0f} MiB (GPU)"
    else:
        peak = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB (process RSS so far)"
    return timer.seconds, trainer.global_step, peak


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=default_data_root())
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--model", default="dm_small", choices=list(MODELS))
    parser.add_argument("--method", default="ibp", choices=list(METHODS))
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--eps", type=float, default=0.4)
    parser.add_argument("--limit-batches", type=int, default=None, help="stop the epoch after this many batches")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", help="append the markdown table to this file")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    lines = [
        *heading("Epoch time"),
        f"- hardware: {hardware()}, torch {torch.__version__}, device {args.device}",
        f"- one epoch of {args.method} on {args.dataset} / {args.model}, batch "
        f"{args.batch}, eps {args.eps} from the first step, no validation",
        "",
        "| data path | steps | epoch (s) | examples/s | peak memory |",
        "|---|---|---|---|---|",
    ]
    for resident in (False, True):
        seconds, steps, peak = one_epoch(args, resident)
        name = "device-resident (indices only from the host)" if resident else "host DataLoader"
        lines.append(f"| {name} | {steps} | {seconds:.1f} | {steps * args.batch / seconds:.0f} | {peak} |")
        print(lines[-1], flush=True)
    emit(lines, args.out)


if __name__ == "__main__":
    main()
