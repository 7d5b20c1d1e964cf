"""The progress bar a certified-training user watches: the scheduled eps and the training loss."""

from __future__ import annotations

from pytorch_lightning.callbacks import TQDMProgressBar


class CertifiedProgressBar(TQDMProgressBar):
    """Lightning's bar plus ``eps`` (this step's scheduled radius) and ``loss`` (this step's).

    The loss is read on the host only when the bar refreshes (``refresh_rate`` steps), so on a
    GPU the step itself still never waits.
    """

    def __init__(self, refresh_rate: int = 10):
        super().__init__(refresh_rate=refresh_rate)
        self._loss = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def get_metrics(self, trainer, pl_module):
        metrics = super().get_metrics(trainer, pl_module)
        values = getattr(pl_module, "schedule_values", None)
        if values is not None:
            metrics["eps"] = f"{values.eps:.4g}"
        if self._loss is not None:
            metrics["loss"] = f"{float(self._loss):.4g}"
        return metrics
