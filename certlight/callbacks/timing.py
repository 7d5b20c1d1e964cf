"""Seconds per epoch beside the seconds spent inside its training steps.

What an epoch costs beyond its steps (the test-set evaluation, checkpoints, histograms, data
loading, logging) is the part a run's settings can change; the steps themselves are the
method's. Each run logs both per epoch and keeps the totals in ``results.json``
(results/performance.md uses them). Step seconds are only measured on the CPU: on a GPU the host
reaches the end of a step as soon as its kernels are queued, and waiting for them would add the
host-device sync the training step is built to avoid.
"""

from __future__ import annotations

import statistics
import time

import pytorch_lightning as pl


class EpochTimer(pl.Callback):
    def __init__(self):
        self.epoch_seconds: list[float] = []
        self.step_seconds: list[float] = []
        self._epoch_start: float | None = None
        self._step_start = 0.0
        self._steps = 0.0
        self._measure_steps = True

    def on_train_start(self, trainer, pl_module):
        self._measure_steps = pl_module.device.type == "cpu"

    def on_train_epoch_start(self, trainer, pl_module):
        # An epoch ends when the next one starts, so its evaluation, checkpoint and histograms
        # count to it whichever hook runs them.
        self._close_epoch(trainer)
        self._epoch_start, self._steps = time.perf_counter(), 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._step_start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._steps += time.perf_counter() - self._step_start

    def on_train_end(self, trainer, pl_module):
        self._close_epoch(trainer)

    def _close_epoch(self, trainer) -> None:
        if self._epoch_start is None:
            return
        epoch = time.perf_counter() - self._epoch_start
        self._epoch_start = None
        self.epoch_seconds.append(epoch)
        metrics = {"time/epoch_s": epoch}
        if self._measure_steps:
            self.step_seconds.append(self._steps)
            metrics["time/train_steps_s"] = self._steps
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)

    def summary(self) -> dict:
        """Totals over the epochs this process ran (a resumed run: this part only)."""
        if not self.epoch_seconds:
            return {}
        summary = {
            "epochs_timed": len(self.epoch_seconds),
            "epoch_s_total": round(sum(self.epoch_seconds), 2),
            "epoch_s_median": round(statistics.median(self.epoch_seconds), 3),
        }
        if self.step_seconds and sum(self.step_seconds) > 0:
            summary["train_steps_s_total"] = round(sum(self.step_seconds), 2)
            summary["epoch_over_steps"] = round(sum(self.epoch_seconds) / sum(self.step_seconds), 3)
        return summary
