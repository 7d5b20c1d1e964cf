"""Peak memory of a block of work, measured: CUDA's allocator peak, or on a CPU the process's
resident set sampled every few milliseconds (what the operating system really gave us)."""

from __future__ import annotations

import os
import threading
import time

import torch

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> int:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * _PAGE
    except OSError:
        return 0


class PeakMemory:
    """``with PeakMemory(device) as peak: ...``; then ``peak.bytes``."""

    def __init__(self, device: torch.device | str = "cpu", interval_s: float = 0.005):
        self.device, self.interval_s, self.bytes = torch.device(device), interval_s, 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.bytes = max(self.bytes, resident_bytes())
            time.sleep(self.interval_s)

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.bytes = resident_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.bytes = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            self.bytes = max(self.bytes, resident_bytes())
