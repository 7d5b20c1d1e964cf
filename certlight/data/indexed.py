"""In-memory datasets that yield ``(x, y, index)`` a whole batch at a time.

The index is the example's position in the full training set, stable across epochs, shuffles
and DDP ranks, which is what per-example state (auto-tuned epsilon) is keyed by. Images stay
uint8 until a batch is drawn; normalisation and augmentation run on the batch tensor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, RandomSampler


def random_crop_flip(images: torch.Tensor, padding: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-example random crop (zero padding) and horizontal flip of a (B, C, H, W) batch."""
    batch, _, height, width = images.shape
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    device = images.device
    top = torch.randint(0, 2 * padding + 1, (batch,), device=device, generator=generator)
    left = torch.randint(0, 2 * padding + 1, (batch,), device=device, generator=generator)
    rows = (top.unsqueeze(1) + torch.arange(height, device=device)).view(batch, 1, height, 1)
    cols = (left.unsqueeze(1) + torch.arange(width, device=device)).view(batch, 1, 1, width)
    flip = torch.rand(batch, device=device, generator=generator) < 0.5
    cols = torch.where(flip.view(batch, 1, 1, 1), cols.flip(-1), cols)
    batch_index = torch.arange(batch, device=device).view(batch, 1, 1, 1)
    channel_index = torch.arange(images.shape[1], device=device).view(1, -1, 1, 1)
    return padded[batch_index, channel_index, rows, cols]


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float, scaled to [0, 1] then standardised per channel (C,) stats."""
    view = (1, -1, 1, 1)
    return (images.float() / 255.0 - mean.view(view)) / std.view(view)


class IndexedImages(Dataset):
    """uint8 images with labels; ``__getitems__`` returns one normalised batch ``(x, y, index)``.

    ``to(device)`` gives a copy that lives on the device, whose :meth:`batch` gathers, augments
    and normalises there: the GPU fast path, where only example indices cross from the host.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        mean: Sequence[float] | torch.Tensor,
        std: Sequence[float] | torch.Tensor,
        augment: bool = False,
    ):
        self.images, self.labels, self.augment = images, labels, augment
        self.mean = torch.as_tensor(mean, dtype=torch.float32, device=images.device)
        self.std = torch.as_tensor(std, dtype=torch.float32, device=images.device)

    def __len__(self) -> int:
        return self.labels.shape[0]

    def to(self, device: torch.device) -> IndexedImages:
        tensors = (self.images, self.labels, self.mean, self.std)
        return IndexedImages(*(t.to(device) for t in tensors), augment=self.augment)

    def batch(self, index: torch.Tensor, augment: bool | None = None):
        """``(x, y, index)`` for the examples at ``index`` (on this dataset's device);
        ``augment=False`` gives the clean images of an augmented split."""
        images = self.images[index]
        if self.augment if augment is None else augment:
            images = random_crop_flip(images)
        return normalize(images, self.mean, self.std), self.labels[index], index

    def __getitems__(self, indices: Sequence[int]):
        return self.batch(torch.as_tensor(indices, dtype=torch.long))

    def __getitem__(self, position: int):
        x, y, index = self.__getitems__([position])
        return x[0], y[0], index[0]


@dataclass
class IndexBatch:
    """A batch as the host sends it on the fast path: which split, which examples."""

    split: str
    index: torch.Tensor


class ExampleIndices(Dataset):
    """A split's DataLoader source when its images already live on the device: one
    :class:`IndexBatch` per batch, nothing else."""

    def __init__(self, split: str, size: int):
        self.split, self.size = split, size

    def __len__(self) -> int:
        return self.size

    def __getitems__(self, indices: Sequence[int]) -> IndexBatch:
        return IndexBatch(self.split, torch.as_tensor(indices, dtype=torch.long))


def keep_batch(batch):
    """Collate function for datasets that already return whole batches."""
    return batch


class EpochShuffle(RandomSampler):
    """A permutation that is a pure function of ``(seed, epoch)``, drawn from its own generator.

    The global RNG then never decides the data order, and the epoch is read when an epoch's
    first batch is drawn (``epoch()``, the trainer's current epoch), so a run resumed from a
    checkpoint sees exactly the order the uninterrupted run saw. (Lightning creates the first
    iterator of a resumed run before it calls ``set_epoch``, so that hook cannot be relied on.)
    A RandomSampler subclass, so under DDP Lightning still swaps in its DistributedSampler.
    """

    def __init__(self, data_source: Dataset, seed: int, epoch: Callable[[], int]):
        super().__init__(data_source)
        self.seed, self.epoch = seed, epoch

    def __iter__(self):
        state = np.random.SeedSequence([self.seed, self.epoch()]).generate_state(1)[0]
        generator = torch.Generator().manual_seed(int(state))
        yield from torch.randperm(len(self.data_source), generator=generator).tolist()
