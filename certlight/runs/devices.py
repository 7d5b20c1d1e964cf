"""One GPU per job when a multirun runs jobs side by side on one machine
(``hydra/launcher=gpu_parallel parallel_gpus=N``).

Each job claims the first GPU whose lock file in the sweep folder it can lock, and holds it for
as long as its process runs the job; the operating system drops the lock if the job dies, so a
crashed job never keeps a GPU. A worker process runs one job at a time, so a new claim in the
same process first releases that process's previous one.
"""

from __future__ import annotations

import fcntl
import time
from pathlib import Path
from typing import IO

from certlight.validate import integer_at_least

_held: list[IO] = []


def claim_gpu(lock_dir: Path, count: int, poll_s: float = 5.0, timeout_s: float | None = None) -> int:
    """The index of a GPU no other job of this sweep holds (waits while all ``count`` are taken)."""
    integer_at_least(count, "parallel_gpus", 1)
    release_gpu()
    lock_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    while True:
        for index in range(count):
            handle = open(lock_dir / f"gpu{index}.lock", "w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            _held.append(handle)
            return index
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise TimeoutError(f"no free GPU among {count} in {lock_dir} after {timeout_s:g} s")
        time.sleep(poll_s)


def release_gpu() -> None:
    while _held:
        _held.pop().close()
