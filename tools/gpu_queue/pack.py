"""``python -m tools.gpu_queue pack``: what travels to the GPU machine, in ``.campaign/``
(ignored by git, named in the device call's ``carry``): the wheels its image lacks, the MNIST and
Fashion-MNIST files, and the queue of runs not yet done."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from certlight.errors import CertlightError
from tools.gpu_queue.queue import paper_queue, pending, read_queue, write_json

# Pure-Python packages the GPU image (torch, Lightning, torchmetrics, matplotlib) lacks; pip
# builds a wheel where PyPI has only a source archive (antlr4 4.9.3, auto-lirpa 0.3).
WHEELS = ("hydra-core==1.3.8", "omegaconf==2.3.0", "antlr4-python3-runtime==4.9.3", "auto-lirpa==0.3", "appdirs==1.4.4")
DATASETS = ("MNIST", "FashionMNIST")
TREE_LIMIT = 64 * 2**20  # what a device call may carry, the repository included


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def pack(state: Path, data_root: Path, queue_file: Path, wheels: bool = True, repo: Path = Path(".")) -> int:
    """Fill ``state``; returns the bytes that will travel (state plus the tracked tree)."""
    state.mkdir(parents=True, exist_ok=True)
    if wheels:
        target = state / "wheels"
        shutil.rmtree(target, ignore_errors=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(target), *WHEELS], check=True
        )
    for name in DATASETS:
        files = sorted((data_root / name / "raw").glob("*.gz"))
        if not files:
            raise CertlightError(f"campaign pack: no {name}/raw/*.gz under {data_root}; set --data")
        target = state / "data" / name / "raw"
        target.mkdir(parents=True, exist_ok=True)
        for file in files:
            shutil.copy2(file, target / file.name)
    queue = read_queue(queue_file) or paper_queue()
    write_json(queue_file, queue)  # the committed record of what is done
    write_json(state / "queue.json", queue)
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=repo, capture_output=True, check=True).stdout.split(b"\0")
    total = folder_bytes(state) + sum(
        (repo / name.decode()).stat().st_size for name in tracked if name and (repo / name.decode()).is_file()
    )
    if total > TREE_LIMIT:
        raise CertlightError(f"campaign pack: {total / 2**20:.1f} MiB would travel, over the device's 64 MiB")
    print(f"packed {state}: {len(pending(queue))} of {len(queue)} runs to do, {total / 2**20:.1f} MiB to carry")
    return total
