"""Readers for the raw files torchvision's datasets use, so nothing is downloaded or unpacked.

MNIST and Fashion-MNIST: ``<root>/<Folder>/raw/*-idx?-ubyte[.gz]``.
CIFAR-10: ``<root>/cifar-10-batches-py/{data_batch_1..5,test_batch}`` (python pickles).
"""

from __future__ import annotations

import gzip
import pickle
import zlib
from pathlib import Path

import numpy as np
import torch

from certlight.errors import CertlightError

_IDX_DTYPES = {0x08: np.uint8}


def _find(path: Path) -> Path | None:
    for candidate in (path, path.with_name(path.name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def read_idx(path: Path) -> torch.Tensor:
    """Read one IDX file (optionally gzipped) as a uint8 tensor."""
    found = _find(path)
    if found is None:
        raise CertlightError(f"missing data file {path}(.gz)")
    opener = gzip.open if found.suffix == ".gz" else open
    try:
        with opener(found, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        raise CertlightError(f"{found} could not be read ({error}); delete it and put a complete copy there") from None
    if len(data) < 4:
        raise CertlightError(f"{found} is truncated: {len(data)} bytes, no IDX header")
    magic = int.from_bytes(data[0:4], "big")
    dtype_code, ndim = (magic >> 8) & 0xFF, magic & 0xFF
    if magic >> 16 != 0 or dtype_code not in _IDX_DTYPES:
        raise CertlightError(f"{found} is not an unsigned-byte IDX file (magic {magic:#x})")
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    values = max(len(data) - 4 - 4 * ndim, 0)
    if values != int(np.prod(shape)):
        raise CertlightError(f"{found} is truncated: expected {shape}, found {values} values")
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    return torch.from_numpy(array.reshape(shape).copy())


def idx_files(folder: Path, train: bool) -> tuple[Path, Path]:
    prefix = "train" if train else "t10k"
    return folder / "raw" / f"{prefix}-images-idx3-ubyte", folder / "raw" / f"{prefix}-labels-idx1-ubyte"


def missing_idx(folder: Path) -> list[Path]:
    return [
        p.with_name(p.name + "[.gz]") for train in (True, False) for p in idx_files(folder, train) if _find(p) is None
    ]


def load_idx_split(folder: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 1, 28, 28) uint8 and labels (N,) int64."""
    images_path, labels_path = idx_files(folder, train)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.shape[0] != labels.shape[0]:
        raise CertlightError(
            f"{images_path} has {images.shape[0]} images but {labels_path} has {labels.shape[0]} labels"
        )
    return images.unsqueeze(1), labels.long()


CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR_TEST = ["test_batch"]


def missing_cifar(folder: Path) -> list[Path]:
    return [folder / name for name in CIFAR_TRAIN + CIFAR_TEST if not (folder / name).is_file()]


def load_cifar_split(folder: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) int64 from the python-pickle batches."""
    images, labels = [], []
    for name in CIFAR_TRAIN if train else CIFAR_TEST:
        path = folder / name
        try:
            with open(path, "rb") as handle:
                entry = pickle.load(handle, encoding="latin1")
            images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.extend(entry["labels"])
        except FileNotFoundError:
            raise CertlightError(f"missing data file {path}") from None
        except (pickle.UnpicklingError, KeyError, ValueError, EOFError) as error:
            raise CertlightError(f"{path} is not a CIFAR-10 python batch: {error}") from None
    return torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.long)
