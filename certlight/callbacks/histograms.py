"""Margin histograms (the paper's Figure 3) every epoch: to W&B, TensorBoard, a PNG, and JSON.

Train margins are the ones the loss used (at each example's training epsilon); test margins
are at ``eps.eval``. Under DDP every rank's examples are gathered before counting. The JSON
keeps fixed-bin counts of every epoch so two runs can be compared later
(``certlight.report --margins``) without re-running anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from certlight.reporting.figures import plot_margins

BINS = np.linspace(-1.0, 1.0, 51)


def _gathered_numpy(trainer, pl_module, batches: list[torch.Tensor]) -> np.ndarray:
    """This rank's values, and under DDP every rank's (shards may differ in length by a batch)."""
    local = torch.cat(batches).float()
    if trainer.world_size == 1:
        return local.cpu().numpy()
    sizes = pl_module.all_gather(local.new_tensor([local.numel()])).flatten().long().tolist()
    padded = torch.nn.functional.pad(local, (0, max(sizes) - local.numel()))
    gathered = pl_module.all_gather(padded).reshape(len(sizes), -1)
    return torch.cat([row[:size] for row, size in zip(gathered, sizes)]).cpu().numpy()


def _counts(values: np.ndarray, bins: np.ndarray = BINS) -> list[int]:
    return np.histogram(np.clip(values, bins[0], bins[-1]), bins=bins)[0].tolist()


class MarginHistograms(pl.Callback):
    def __init__(self, output_dir: str, png: bool = True):
        self.output_dir = Path(output_dir)
        self.png = png
        self.train_margin: list[torch.Tensor] = []
        self.train_eps: list[torch.Tensor] = []
        self.test_margin: list[torch.Tensor] = []
        self.history: list[dict] = []

    # Batches stay on their device until the epoch ends: a copy per batch would sync the GPU.
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if isinstance(outputs, dict) and "margin" in outputs:
            self.train_margin.append(outputs["margin"])
            self.train_eps.append(outputs["eps"])

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if not trainer.sanity_checking and isinstance(outputs, dict):
            self.test_margin.append(outputs["margin"])

    def state_dict(self) -> dict:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = list(state_dict.get("history", []))

    def on_validation_epoch_end(self, trainer, pl_module):
        # Only while fitting: a later trainer.validate() has no training margins to pair with.
        if trainer.sanity_checking or trainer.state.fn != "fit" or not self.test_margin:
            self.test_margin = []
            return
        values = {"test_margin": _gathered_numpy(trainer, pl_module, self.test_margin)}
        if self.train_margin:
            values["train_margin"] = _gathered_numpy(trainer, pl_module, self.train_margin)
            values["train_eps"] = _gathered_numpy(trainer, pl_module, self.train_eps)
        self.train_margin, self.train_eps, self.test_margin = [], [], []
        if trainer.is_global_zero:
            self._record(trainer, values)

    def _record(self, trainer, values: dict[str, np.ndarray]) -> None:
        epoch = trainer.current_epoch
        eps_max = float(values["train_eps"].max()) if "train_eps" in values and values["train_eps"].size else 0.0
        eps_bins = np.linspace(0.0, max(eps_max, 1e-6), 26)
        entry = {"epoch": epoch, "bins": BINS.tolist(), "eps_bins": eps_bins.tolist()}
        for key, array in values.items():
            entry[key] = _counts(array, eps_bins if key == "train_eps" else BINS)
        self.history.append(entry)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        (self.output_dir / "margin_histograms.json").write_text(json.dumps(self.history))
        self._to_loggers(trainer, values)
        if self.png:
            series = {f"{k} (epoch {epoch})": v for k, v in values.items() if k.endswith("margin")}
            plot_margins(series, self.output_dir / "margin_histograms.png", BINS, values.get("train_eps"))

    def _to_loggers(self, trainer, values: dict[str, np.ndarray]) -> None:
        for logger in trainer.loggers:
            kind = type(logger).__name__
            if kind == "WandbLogger":
                import wandb

                logger.experiment.log(
                    {f"margins/{k}": wandb.Histogram(v) for k, v in values.items()}
                    | {"trainer/global_step": trainer.global_step}
                )
            elif kind == "TensorBoardLogger":
                for key, array in values.items():
                    logger.experiment.add_histogram(f"margins/{key}", array, global_step=trainer.global_step)
