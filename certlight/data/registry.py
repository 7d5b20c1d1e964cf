"""The datasets certlight knows: where their files live, their shape, and their normalisation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from certlight.data import readers
from certlight.errors import CertlightError


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    folder: str  # below the data root
    channels: int
    size: int
    num_classes: int
    # MNIST-like sets are not normalised, as in Gowal et al. and Zhang et al.'s CROWN-IBP code
    # (the paper's code base); CIFAR-10 uses that code's per-channel mean/std.
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: bool  # random crop (padding 4) + horizontal flip, as the paper does for CIFAR
    missing: Callable[[Path], list[Path]]
    load: Callable[[Path, bool], tuple[torch.Tensor, torch.Tensor]]


DATASETS = {
    "mnist": DatasetInfo(
        "mnist", "MNIST", 1, 28, 10, (0.0,), (1.0,), False, readers.missing_idx, readers.load_idx_split
    ),
    "fashion_mnist": DatasetInfo(
        "fashion_mnist", "FashionMNIST", 1, 28, 10, (0.0,), (1.0,), False, readers.missing_idx, readers.load_idx_split
    ),
    "cifar10": DatasetInfo(
        "cifar10",
        "cifar-10-batches-py",
        3,
        32,
        10,
        (0.4914, 0.4822, 0.4465),
        (0.2023, 0.1994, 0.2010),
        True,
        readers.missing_cifar,
        readers.load_cifar_split,
    ),
}


def dataset_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise CertlightError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    return DATASETS[name]


def check_files(info: DatasetInfo, root: Path) -> None:
    """One clear error listing every missing file and the root it was looked for under."""
    folder = Path(root) / info.folder
    missing = info.missing(folder)
    if missing:
        listed = "\n  ".join(str(p) for p in missing)
        raise CertlightError(
            f"dataset {info.name!r} not found under data root {root}: expected files\n  {listed}\n"
            "set data.root=... or the CERTLIGHT_DATA environment variable to the folder that "
            f"contains {info.folder}/, or fetch it there with dataset.download=true"
        )
