"""LightningDataModule over the registry's datasets: train batches carry example indices."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from certlight.data.download import download
from certlight.data.image_folder import image_folder_info
from certlight.data.indexed import EpochShuffle, ExampleIndices, IndexBatch, IndexedImages, keep_batch
from certlight.data.registry import check_files, dataset_info
from certlight.errors import CertlightError
from certlight.validate import boolean, integer_at_least, optional_integer_at_least

# Where a data root is looked for when none is given: the first that exists wins.
_REPO = Path(__file__).resolve().parents[2]
DATA_ROOT_CANDIDATES = ("data", str(_REPO / "data"), str(_REPO.parent / "shared" / "data"))


def default_data_root(base: str | Path = ".") -> str:
    """``$CERTLIGHT_DATA``, else the first existing folder of ``./data``, ``<repo>/data`` and
    ``<repo>/../shared/data`` (this project's machines keep the datasets there), else ``./data``.

    A plain ``python train.py`` then finds the data without a variable exported by ``make``.
    """
    if os.environ.get("CERTLIGHT_DATA"):
        return os.environ["CERTLIGHT_DATA"]
    for candidate in DATA_ROOT_CANDIDATES:
        path = Path(base) / candidate
        if path.is_dir():
            return str(path.resolve())
    return str((Path(base) / "data").resolve())


class CertifiedDataModule(pl.LightningDataModule):
    """Train on the training set, evaluate on the test set (as the paper reports).

    ``train_subset``/``test_subset`` keep the first N examples, for quick runs and tests; the
    indices stay positions in the full training set.

    ``device_resident`` (``"auto"``: on when training on CUDA) is the GPU fast path: both
    splits are copied to the device once, the DataLoaders yield only example indices, and
    gathering, augmentation and normalisation run on the device in ``on_after_batch_transfer``,
    so the GPU never waits for a host-side loader. The sampler stays a normal DataLoader
    sampler, so Lightning's DistributedSampler still shards the indices under DDP.
    """

    def __init__(
        self,
        name: str,
        root: str | None = None,
        batch_size: int = 100,
        eval_batch_size: int = 1000,
        num_workers: int = 0,
        train_subset: int | None = None,
        test_subset: int | None = None,
        augment: bool | None = None,
        device_resident: bool | str = "auto",
        seed: int = 0,
        download: bool = False,
        folder: str | None = None,
    ):
        super().__init__()
        self.root = Path(root if root is not None else default_data_root()).expanduser()
        if name == "image_folder":
            if folder is None:
                raise CertlightError(
                    "dataset=image_folder needs dataset.folder=PATH (holding "
                    "train/<class>/ and test/<class>/; absolute or under data.root)"
                )
            self.info = image_folder_info(self.root / Path(folder).expanduser())
        elif folder is not None:
            raise CertlightError(f"dataset.folder={folder} is only read by dataset=image_folder, not {name}")
        else:
            self.info = dataset_info(name)
        for key, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            integer_at_least(value, f"dataset.{key}", 1)
        for key, value in (("train_subset", train_subset), ("test_subset", test_subset)):
            optional_integer_at_least(value, f"dataset.{key}", 1)
        integer_at_least(num_workers, "dataset.num_workers", 0)
        boolean(augment, "dataset.augment", allow_null=True)
        self.download_missing = boolean(download, "dataset.download")
        if device_resident not in (True, False, "auto"):
            raise CertlightError(f"dataset.device_resident={device_resident!r} is not allowed; use true, false or auto")
        self.device_resident = device_resident
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.train_subset, self.test_subset = train_subset, test_subset
        self.augment = self.info.augment if augment is None else augment
        self.seed = seed
        self.train_set: IndexedImages | None = None
        self.test_set: IndexedImages | None = None
        self.num_train_total = self.num_test_total = 0
        self._resident: dict[tuple[str, torch.device], IndexedImages] = {}

    def prepare_data(self) -> None:
        if self.download_missing and self.info.missing(self.root / self.info.folder):
            download(self.info, self.root)
        check_files(self.info, self.root)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        self.prepare_data()
        folder = self.root / self.info.folder
        train_images, train_labels = self.info.load(folder, True)
        test_images, test_labels = self.info.load(folder, False)
        self.num_train_total, self.num_test_total = train_labels.shape[0], test_labels.shape[0]
        for key, subset, available in (
            ("train_subset", self.train_subset, train_labels.shape[0]),
            ("test_subset", self.test_subset, test_labels.shape[0]),
        ):
            if subset is not None and subset > available:
                raise CertlightError(
                    f"dataset.{key}={subset} is larger than the {self.info.name} "
                    f"{key.split('_')[0]} split ({available} examples)"
                )
        if self.train_subset is not None:
            train_images, train_labels = train_images[: self.train_subset], train_labels[: self.train_subset]
        if self.test_subset is not None:
            test_images, test_labels = test_images[: self.test_subset], test_labels[: self.test_subset]
        self.train_set = IndexedImages(train_images, train_labels, self.info.mean, self.info.std, self.augment)
        self.test_set = IndexedImages(test_images, test_labels, self.info.mean, self.info.std, False)

    def _on_device(self) -> bool:
        if self.device_resident != "auto":
            return self.device_resident
        return self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"

    def _split(self, split: str) -> IndexedImages:
        return self.train_set if split == "train" else self.test_set

    def _current_epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        dataset = self._split(split)
        on_device = self._on_device()
        workers = 0 if on_device else self.num_workers  # index lists need no worker processes
        source = ExampleIndices(split, len(dataset)) if on_device else dataset
        return DataLoader(
            source,
            batch_size=batch_size,
            sampler=EpochShuffle(source, self.seed, self._current_epoch) if shuffle else None,
            num_workers=workers,
            collate_fn=keep_batch,
            persistent_workers=workers > 0,
        )

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if not isinstance(batch, IndexBatch):
            return batch
        return self._resident_split(batch.split, batch.index.device).batch(batch.index)

    def _resident_split(self, split: str, device: torch.device) -> IndexedImages:
        """The split's copy on ``device``, made once."""
        if (split, device) not in self._resident:
            self._resident[(split, device)] = self._split(split).to(device)
        return self._resident[(split, device)]

    def clean_train_batches(
        self, device: torch.device, batch_size: int, rank: int = 0, world_size: int = 1
    ) -> Iterator[torch.Tensor]:
        """The training images without augmentation, normalised, on ``device``, in index order;
        under DDP this rank's shard (every ``world_size``-th example). Works on both data paths
        (what precise BatchNorm reads: the train loader may yield only indices)."""
        dataset = self._resident_split("train", torch.device(device)) if self._on_device() else self._split("train")
        for index in torch.arange(rank, len(dataset), world_size).split(batch_size):
            yield dataset.batch(index.to(dataset.images.device), augment=False)[0].to(device)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()
