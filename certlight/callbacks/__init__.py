"""Lightning callbacks: the epsilon/kappa/beta schedule and margin histograms."""

from certlight.callbacks.histograms import MarginHistograms
from certlight.callbacks.schedule import ScheduleCallback

__all__ = ["MarginHistograms", "ScheduleCallback"]
