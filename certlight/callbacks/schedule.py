"""Sets epsilon, kappa and beta on the module before every training batch."""

from __future__ import annotations

import pytorch_lightning as pl

from certlight.schedules import TrainingSchedule


class ScheduleCallback(pl.Callback):
    """Reads the schedule at ``trainer.global_step``.

    The schedule is a pure function of the step and the step is restored from every
    checkpoint, so a resumed run continues the ramp exactly where it stopped.
    """

    def __init__(self, schedule: TrainingSchedule):
        self.schedule = schedule

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        values = self.schedule.at(trainer.global_step, trainer.num_training_batches)
        pl_module.schedule_values = values
        if trainer.global_step % trainer.log_every_n_steps == 0:
            # Host floats go straight to the loggers: self.log would copy each to the device.
            metrics = {"schedule/eps": values.eps, "schedule/kappa": values.kappa, "schedule/beta": values.beta}
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)
