"""``dataset.download=true``: fetch a missing dataset with torchvision's own downloaders (its
mirrors and MD5 checks) into the data root, in the layout the readers expect."""

from __future__ import annotations

from pathlib import Path
from urllib.error import URLError

from certlight.errors import CertlightError

TORCHVISION_CLASSES = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "cifar10": "CIFAR10"}


def download(info, root: Path) -> None:
    """Download both splits of ``info``'s dataset under ``root``; a failed or corrupted download
    (network down, a file whose checksum does not match) is one error saying where to put the files."""
    import torchvision.datasets

    dataset = getattr(torchvision.datasets, TORCHVISION_CLASSES[info.name])
    root.mkdir(parents=True, exist_ok=True)
    try:
        for train in (True, False):
            dataset(str(root), train=train, download=True)
    except (RuntimeError, URLError, OSError) as error:
        reason = " ".join(str(error).split())
        raise CertlightError(
            f"dataset.download=true: downloading {info.name} into {root} failed: {reason}; "
            f"without network, put the files under {root / info.folder} "
            f"yourself (README: Data) and set data.root={root}"
        ) from None
