"""Lightning callbacks: schedules, results file."""

from certlight.callbacks.schedule import ScheduleCallback

__all__ = ["ScheduleCallback"]
