import re

import pytest
import torch

from certlight.data import CertifiedDataModule, dataset_info
from certlight.data.indexed import IndexBatch, normalize, random_crop_flip
from certlight.errors import CertlightError

from conftest import SHARED_DATA, write_mnist_like


def test_train_batches_carry_unique_stable_indices_covering_the_set(fake_data_root):
    images = None
    seen = {}
    for seed, epoch in ((0, 0), (0, 1), (1, 0), (0, 0)):
        datamodule = CertifiedDataModule("mnist", str(fake_data_root), batch_size=32, seed=seed)
        datamodule.setup("fit")
        datamodule._current_epoch = lambda epoch=epoch: epoch  # what the trainer reports
        images = datamodule.train_set.images
        torch.manual_seed(len(seen))  # the global RNG must not matter
        indices = torch.cat([index for x, y, index in datamodule.train_dataloader()])
        assert indices.unique().numel() == indices.numel() == len(datamodule.train_set)
        assert torch.equal(indices.sort().values, torch.arange(300))  # shuffled, yet the same set
        if (seed, epoch) in seen:
            assert torch.equal(indices, seen[(seed, epoch)])  # a pure function of (seed, epoch)
        seen[(seed, epoch)] = indices
        for x, y, index in datamodule.train_dataloader():
            # the index names the example: its stored image and label
            assert torch.equal((x * 255).round().to(torch.uint8), images[index])
            assert torch.equal(y, datamodule.train_set.labels[index])
            break
    assert not torch.equal(seen[(0, 0)], seen[(0, 1)]) and not torch.equal(seen[(0, 0)], seen[(1, 0)])


def test_subsets_keep_positions_in_the_full_training_set(fake_data_root):
    datamodule = CertifiedDataModule("mnist", str(fake_data_root), train_subset=50, test_subset=20)
    datamodule.setup()
    assert len(datamodule.train_set) == 50 and len(datamodule.test_set) == 20
    assert datamodule.num_train_total == 300


def test_cifar_fixture_loads_normalised_and_augmented(fake_data_root):
    datamodule = CertifiedDataModule("cifar10", str(fake_data_root), batch_size=16)
    datamodule.setup()
    assert len(datamodule.train_set) == 100 and len(datamodule.test_set) == 20
    x, y, index = next(iter(datamodule.train_dataloader()))
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32
    info = dataset_info("cifar10")
    low = (0 - torch.tensor(info.mean)) / torch.tensor(info.std)
    assert (x.amin(dim=(0, 2, 3)) >= low.view(3) - 1e-5).all()
    assert datamodule.train_set.augment and not datamodule.test_set.augment


def test_training_batches_are_random_crops_and_flips_and_test_batches_are_not(fake_data_root):
    """Each training image is one of the 9 x 9 x 2 padded crops (flipped or not) of its stored
    image, most are not the identity crop; test images come back exactly as stored."""
    datamodule = CertifiedDataModule("cifar10", str(fake_data_root), batch_size=100, augment=True)
    datamodule.setup()
    images = datamodule.train_set.images
    torch.manual_seed(0)
    x, _, index = next(iter(datamodule.train_dataloader()))
    stored = (x * datamodule.train_set.std.view(1, 3, 1, 1) + datamodule.train_set.mean.view(1, 3, 1, 1)) * 255
    stored = stored.round().to(torch.uint8)
    padded = torch.nn.functional.pad(images[index], (4, 4, 4, 4))
    identity = 0
    for i in range(len(index)):
        candidates = {
            (top, left, flip)
            for top in range(9)
            for left in range(9)
            for flip in (False, True)
            if torch.equal(
                stored[i], (lambda c: c.flip(-1) if flip else c)(padded[i, :, top : top + 32, left : left + 32])
            )
        }
        assert candidates, f"example {i} is no crop/flip of its image"
        identity += (4, 4, False) in candidates
    assert identity < len(index) / 2
    test_x, _, test_index = next(iter(datamodule.val_dataloader()))
    torch.testing.assert_close(
        test_x, normalize(datamodule.test_set.images[test_index], datamodule.test_set.mean, datamodule.test_set.std)
    )


def test_random_crop_flip_moves_pixels_but_keeps_content():
    images = torch.arange(2 * 1 * 6 * 6, dtype=torch.uint8).view(2, 1, 6, 6)
    torch.manual_seed(0)
    out = random_crop_flip(images, padding=2)
    assert out.shape == images.shape
    for i in range(2):
        values = set(out[i].flatten().tolist()) - {0}
        assert values <= set(images[i].flatten().tolist())


def test_missing_dataset_names_the_expected_path(tmp_path):
    with pytest.raises(CertlightError) as error:
        CertifiedDataModule("mnist", str(tmp_path)).prepare_data()
    assert str(tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte") in str(error.value)
    with pytest.raises(CertlightError, match="cifar-10-batches-py/data_batch_1"):
        CertifiedDataModule("cifar10", str(tmp_path)).prepare_data()


def test_unknown_dataset_lists_the_allowed_ones():
    with pytest.raises(CertlightError, match="unknown dataset 'svhn'; allowed: mnist, fashion_mnist, cifar10"):
        CertifiedDataModule("svhn")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": 0}, "dataset.batch_size=0 must be a positive integer"),
        ({"batch_size": 2.5}, "dataset.batch_size=2.5 must be a positive integer"),
        ({"augment": "maybe"}, "dataset.augment='maybe' is not allowed; use true, false or null"),
        ({"train_subset": 0}, "dataset.train_subset=0 must be a positive integer"),
    ],
)
def test_bad_dataset_values_are_named(kwargs, message, fake_data_root):
    with pytest.raises(CertlightError, match=re.escape(message)):
        CertifiedDataModule("mnist", str(fake_data_root), **kwargs)


def test_a_subset_larger_than_the_split_is_named(fake_data_root):
    datamodule = CertifiedDataModule("mnist", str(fake_data_root), train_subset=5000)
    with pytest.raises(
        CertlightError, match=re.escape("dataset.train_subset=5000 is larger than the mnist train split (300 examples)")
    ):
        datamodule.setup("fit")


@pytest.mark.parametrize("damage", ["truncate", "not_gzip"])
def test_a_damaged_data_file_is_named(damage, tmp_path):
    root = write_mnist_like(tmp_path, n_train=20, n_test=10)
    file = root / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"plain bytes, not gzip" * 10)
    datamodule = CertifiedDataModule("mnist", str(root))
    with pytest.raises(CertlightError, match=re.escape(f"{file} could not be read")):
        datamodule.setup("fit")


@pytest.mark.skipif(not (SHARED_DATA / "MNIST").is_dir(), reason="shared MNIST copy not present")
@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_the_real_offline_datasets_load(name, folder):
    datamodule = CertifiedDataModule(name, str(SHARED_DATA))
    datamodule.setup()
    assert len(datamodule.train_set) == 60000 and len(datamodule.test_set) == 10000
    assert datamodule.train_set.labels.unique().tolist() == list(range(10))


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_device_resident_path_yields_the_host_paths_batches(name, fake_data_root):
    """Only indices cross from the host; the batch is gathered where the data lives."""
    host = CertifiedDataModule(name, str(fake_data_root), batch_size=16, device_resident=False)
    resident = CertifiedDataModule(name, str(fake_data_root), batch_size=16, device_resident=True)
    for datamodule in (host, resident):
        datamodule.setup("fit")
    for split, loaders in (
        ("train", (host.train_dataloader, resident.train_dataloader)),
        ("test", (host.val_dataloader, resident.val_dataloader)),
    ):
        torch.manual_seed(3)
        host_batch = next(iter(loaders[0]()))
        torch.manual_seed(3)
        sent = next(iter(loaders[1]()))
        assert isinstance(sent, IndexBatch) and sent.split == split and sent.index.dtype == torch.long
        x, y, index = resident.on_after_batch_transfer(sent, 0)
        assert torch.equal(index, host_batch[2]) and torch.equal(y, host_batch[1])
        # Bit-identical, CIFAR's random crops included: on CPU both paths draw the permutation
        # and then the crops from the same generator in the same order.
        assert torch.equal(x, host_batch[0])


def test_device_resident_rejects_unknown_values(fake_data_root):
    with pytest.raises(CertlightError, match="dataset.device_resident='gpu' is not allowed; use true, false or auto"):
        CertifiedDataModule("mnist", str(fake_data_root), device_resident="gpu")
