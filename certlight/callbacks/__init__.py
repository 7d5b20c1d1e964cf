"""Lightning callbacks: margin histograms and the progress bar."""

from certlight.callbacks.histograms import MarginHistograms
from certlight.callbacks.progress import CertifiedProgressBar

__all__ = ["CertifiedProgressBar", "MarginHistograms"]
