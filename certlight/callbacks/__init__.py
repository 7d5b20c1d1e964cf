"""Lightning callbacks: margin histograms, the progress bar, precise BatchNorm statistics and
epoch timing."""

from certlight.callbacks.histograms import MarginHistograms
from certlight.callbacks.precise_bn import PreciseBatchNorm
from certlight.callbacks.progress import CertifiedProgressBar
from certlight.callbacks.timing import EpochTimer

__all__ = ["CertifiedProgressBar", "EpochTimer", "MarginHistograms", "PreciseBatchNorm"]
