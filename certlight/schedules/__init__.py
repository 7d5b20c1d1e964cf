"""Pure schedule functions of the training step; callbacks turn them into per-batch values."""

from certlight.schedules.ramps import (
    RAMP_SHAPES,
    ScheduleValues,
    TrainingSchedule,
    linear_shape,
    ramp_progress,
    smoothed_shape,
)

__all__ = ["RAMP_SHAPES", "ScheduleValues", "TrainingSchedule", "linear_shape", "ramp_progress", "smoothed_shape"]
