"""Lightning callbacks: the epsilon/kappa/beta schedule, margin histograms, the progress bar."""

from certlight.callbacks.histograms import MarginHistograms
from certlight.callbacks.progress import CertifiedProgressBar
from certlight.callbacks.schedule import ScheduleCallback

__all__ = ["CertifiedProgressBar", "MarginHistograms", "ScheduleCallback"]
