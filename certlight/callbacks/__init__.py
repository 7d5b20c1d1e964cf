"""Lightning callbacks: margin histograms, the progress bar and precise BatchNorm statistics."""

from certlight.callbacks.histograms import MarginHistograms
from certlight.callbacks.precise_bn import PreciseBatchNorm
from certlight.callbacks.progress import CertifiedProgressBar

__all__ = ["CertifiedProgressBar", "MarginHistograms", "PreciseBatchNorm"]
