"""Run by test_ddp.py: a real 2-process CPU DDP fit (gloo) that records every rank's auto-eps table,
and its first step's batch and (DDP-averaged) gradients.

Lightning re-launches this same script for rank 1, so it must be a plain script, not a test.
Usage: python ddp_auto_eps_worker.py DATA_ROOT OUT_DIR DEVICE_RESIDENT METHOD
"""

import os
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import compose_train, tiny_run_overrides  # noqa: E402

WORKER_OVERRIDES = (
    "auto_eps.eps_maxoff=0.1",
    "dataset.train_subset=200",
    "reweight.gamma=5",
    "schedule.ramp_epochs=0",
    "schedule.kappa_start=0.5",
)

from certlight.runs.pipeline import build_run  # noqa: E402


class RecordUpdates(pl.Callback):
    """Each rank's own (index, margin) per step and its table after every step."""

    def __init__(self):
        self.steps = []
        self.first_step = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:
            self.first_step["batch"] = [t.cpu().clone() for t in batch]

    def on_train_epoch_end(self, trainer, pl_module):
        self.first_step["epoch_mean_weight"] = float(trainer.callback_metrics["train/mean_weight"])

    def on_after_backward(self, trainer, pl_module):
        if "grads" not in self.first_step:
            self.first_step["grads"] = {n: p.grad.detach().cpu().clone() for n, p in pl_module.named_parameters()}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        _, _, index = batch
        self.steps.append(
            {
                "index": index.cpu(),
                "margin": outputs["margin"].cpu(),
                "weights": outputs["weights"].cpu(),
                "table": pl_module.auto_eps.offsets.cpu().clone(),
            }
        )


def main(data_root: str, out_dir: str, device_resident: str, method: str) -> None:
    overrides = tiny_run_overrides(
        Path(data_root),
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.max_epochs=1",
        *WORKER_OVERRIDES,
        "logger=csv",
        f"dataset.device_resident={device_resident}",
        f"method={method}",
    )
    cfg = compose_train(overrides, Path(out_dir) / "run")
    run = build_run(cfg)
    recorder = RecordUpdates()
    run.trainer.callbacks.append(recorder)
    run.trainer.fit(run.module, datamodule=run.datamodule)
    rank = run.trainer.global_rank
    torch.save(recorder.steps, Path(out_dir) / f"rank{rank}.pt")
    torch.save(recorder.first_step, Path(out_dir) / f"first_step{rank}.pt")
    torch.save(run.module.net.state_dict(), Path(out_dir) / f"weights{rank}.pt")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main(*sys.argv[1:5])
