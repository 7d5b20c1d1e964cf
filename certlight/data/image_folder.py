"""``dataset=image_folder``: the user's own images in the layout most exports use,
``<folder>/train/<class>/*.png|jpg`` and ``<folder>/test/<class>/*`` (SVHN, TinyImageNet, ...).

Classes are the sorted sub-folder names of ``train/`` (``test/`` must have the same ones); every
image must have the first image's channels and size. The per-channel mean and std of the
training images are computed once and cached in ``<folder>/certlight_stats.json`` (keyed by the
training file list), so epsilon keeps its pixel-space meaning with any normalisation.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from certlight.data.registry import DatasetInfo
from certlight.errors import CertlightError

EXTENSIONS = (".png", ".jpg", ".jpeg")
STATS_FILE = "certlight_stats.json"


def _classes(split: Path) -> list[str]:
    return sorted(p.name for p in split.iterdir() if p.is_dir()) if split.is_dir() else []


def _files(split: Path, classes: list[str]) -> list[tuple[Path, int]]:
    return [
        (f, label)
        for label, name in enumerate(classes)
        for f in sorted((split / name).iterdir())
        if f.suffix.lower() in EXTENSIONS
    ]


def check_layout(folder: Path) -> tuple[list[str], dict[str, list[tuple[Path, int]]]]:
    """The class names and each split's (file, label) list, or one error saying what is wrong."""
    classes = _classes(folder / "train")
    if not classes:
        raise CertlightError(
            f"dataset.folder={folder}: no class folders in {folder / 'train'} "
            "(expected train/<class>/*.png and test/<class>/*.png)"
        )
    test_classes = _classes(folder / "test")
    if test_classes != classes:
        raise CertlightError(
            f"dataset.folder={folder}: test/ has classes "
            f"{test_classes or 'none'}, train/ has {classes}; they must match"
        )
    files = {split: _files(folder / split, classes) for split in ("train", "test")}
    for split, listed in files.items():
        if not listed:
            raise CertlightError(f"dataset.folder={folder}: no {'/'.join(EXTENSIONS)} images under {folder / split}")
    return classes, files


def _read(path: Path, mode) -> torch.Tensor:
    from torchvision.io import decode_image

    try:
        return decode_image(str(path), mode=mode)
    except RuntimeError as error:
        raise CertlightError(f"{path} is not an image torchvision can read: {error}") from None


def load_split(files: list[tuple[Path, int]], channels: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, C, H, W) and int64 labels; every image converted to ``channels``."""
    from torchvision.io import ImageReadMode

    mode = ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB
    images = []
    for path, _ in files:
        image = _read(path, mode)
        if tuple(image.shape[1:]) != (size, size):
            raise CertlightError(
                f"{path} is {image.shape[2]}x{image.shape[1]}; every image must be {size}x{size} like the first"
            )
        images.append(image)
    return torch.stack(images), torch.tensor([label for _, label in files], dtype=torch.long)


def _statistics(
    folder: Path, images: torch.Tensor, files: list[tuple[Path, int]]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    key = hashlib.sha1("\n".join(str(p.relative_to(folder)) for p, _ in files).encode()).hexdigest()
    cache = folder / STATS_FILE
    if cache.is_file():
        stored = json.loads(cache.read_text())
        if stored.get("train_files_sha1") == key:
            return tuple(stored["mean"]), tuple(stored["std"])
    pixels = images.float().div(255).transpose(0, 1).flatten(1)
    mean, std = tuple(pixels.mean(1).tolist()), tuple(pixels.std(1).clamp(min=1e-3).tolist())
    cache.write_text(json.dumps({"train_files_sha1": key, "mean": mean, "std": std}, indent=1))
    return mean, std


def image_folder_info(folder: Path) -> DatasetInfo:
    """Read the folder once: its shape, classes and (cached) statistics, and its two splits."""
    classes, files = check_layout(folder)
    from torchvision.io import ImageReadMode

    first = _read(files["train"][0][0], ImageReadMode.UNCHANGED)
    channels = 1 if first.shape[0] == 1 else 3
    if first.shape[1] != first.shape[2]:
        raise CertlightError(
            f"{files['train'][0][0]} is {first.shape[2]}x{first.shape[1]}: image_folder needs square images"
        )
    splits = {split: load_split(listed, channels, first.shape[1]) for split, listed in files.items()}
    mean, std = _statistics(folder, splits["train"][0], files["train"])
    return DatasetInfo(
        name="image_folder",
        folder=str(folder),
        channels=channels,
        size=first.shape[1],
        num_classes=len(classes),
        mean=mean,
        std=std,
        augment=False,
        missing=lambda _: [],
        load=lambda _, train: splits["train" if train else "test"],
    )
