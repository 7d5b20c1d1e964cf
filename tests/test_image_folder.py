"""dataset=image_folder on generated folders: classes, indices, cached statistics, the eps box,
a training step, and one clear error for each broken layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torchvision.io import write_png

from certlight.bounds import input_box
from certlight.data import CertifiedDataModule
from certlight.errors import CertlightError
from certlight.runs.pipeline import build_run

from conftest import compose_train, tiny_run_overrides


def write_folder(
    root: Path, per_class: int = 4, size: int = 16, channels: int = 3, classes=("cat", "dog", "emu")
) -> Path:
    """Class k's images are constant with value 50 * (k + 1) in every channel."""
    for split in ("train", "test"):
        for k, name in enumerate(classes):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                write_png(
                    torch.full((channels, size, size), 50 * (k + 1), dtype=torch.uint8),
                    str(root / split / name / f"{i}.png"),
                )
    return root


def test_classes_labels_indices_and_statistics(tmp_path):
    folder = write_folder(tmp_path / "pets")
    module = CertifiedDataModule("image_folder", root=str(tmp_path), folder="pets", device_resident=False)
    module.setup("fit")
    info = module.info
    assert (info.channels, info.size, info.num_classes) == (3, 16, 3)
    # Pixel values 50, 100, 150 in equal numbers: mean 100/255, std (unbiased over all pixels) ~ 40.8/255.
    assert info.mean == pytest.approx((100 / 255,) * 3, abs=1e-6)
    assert info.std == pytest.approx((40.8248 / 255,) * 3, rel=1e-3)
    x, y, index = next(iter(module.train_dataloader()))
    assert sorted(index.tolist()) == list(range(12))  # one batch of the whole split
    pixels = x * torch.tensor(info.std).view(1, 3, 1, 1) + torch.tensor(info.mean).view(1, 3, 1, 1)
    # Each image's label is the class folder it came from: its pixel value says which.
    assert torch.allclose(pixels[:, 0, 0, 0] * 255, 50.0 * (y + 1).float(), atol=1e-3)
    assert json.loads((folder / "certlight_stats.json").read_text())["mean"] == pytest.approx(list(info.mean))


def test_statistics_are_read_from_the_cache_until_the_file_list_changes(tmp_path):
    folder = write_folder(tmp_path / "pets")
    CertifiedDataModule("image_folder", root=str(tmp_path), folder="pets")
    stats = json.loads((folder / "certlight_stats.json").read_text())
    (folder / "certlight_stats.json").write_text(json.dumps({**stats, "mean": [0.5, 0.5, 0.5]}))
    assert CertifiedDataModule("image_folder", root=str(tmp_path), folder="pets").info.mean == (0.5, 0.5, 0.5)
    write_png(torch.zeros(3, 16, 16, dtype=torch.uint8), str(folder / "train" / "cat" / "new.png"))
    assert CertifiedDataModule("image_folder", root=str(tmp_path), folder="pets").info.mean != (0.5, 0.5, 0.5)


def test_eps_keeps_its_pixel_meaning(tmp_path):
    write_folder(tmp_path / "pets")
    info = CertifiedDataModule("image_folder", root=str(tmp_path), folder="pets").info
    x = (torch.full((1, 3, 16, 16), 100 / 255) - torch.tensor(info.mean).view(1, 3, 1, 1)) / torch.tensor(
        info.std
    ).view(1, 3, 1, 1)
    lower, upper = input_box(x, 0.1, info.mean, info.std)
    torch.testing.assert_close((upper - lower)[0, :, 0, 0], 0.2 / torch.tensor(info.std))


def test_a_training_step_on_an_image_folder(tmp_path):
    write_folder(tmp_path / "pets", channels=1)
    overrides = tiny_run_overrides(
        tmp_path,
        "dataset=image_folder",
        "dataset.folder=pets",
        "dataset.batch_size=6",
        "trainer.max_epochs=1",
        "schedule.ramp_epochs=0",
        "reweight.gamma=5",
        "auto_eps.eps_maxoff=0.05",
    )
    run = build_run(compose_train(overrides, tmp_path / "run"), tmp_path / "run")
    run.trainer.fit(run.module, datamodule=run.datamodule)
    assert run.trainer.global_step == 2 and run.module.net[-1].out_features == 3


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda f: [p.unlink() for p in (f / "train").rglob("*.png")], r"no .png/.jpg/.jpeg images under .*train"),
        (
            lambda f: (f / "test" / "emu").rename(f / "test" / "owl"),
            r"test/ has classes \['cat', 'dog', 'owl'\], train/ has \['cat', 'dog', 'emu'\]",
        ),
        (
            lambda f: write_png(torch.zeros(3, 8, 8, dtype=torch.uint8), str(f / "test" / "dog" / "small.png")),
            r"small.png is 8x8; every image must be 16x16",
        ),
        (
            lambda f: (f / "train" / "cat" / "0.png").write_bytes(b"not a png"),
            r"0.png is not an image torchvision can read",
        ),
    ],
)
def test_a_broken_folder_is_named(breakage, message, tmp_path):
    folder = write_folder(tmp_path / "pets")
    breakage(folder)
    with pytest.raises(CertlightError, match=message):
        CertifiedDataModule("image_folder", root=str(tmp_path), folder="pets")


def test_image_folder_needs_its_folder(tmp_path):
    with pytest.raises(CertlightError, match="dataset=image_folder needs dataset.folder=PATH"):
        CertifiedDataModule("image_folder", root=str(tmp_path))
    with pytest.raises(CertlightError, match="no class folders"):
        CertifiedDataModule("image_folder", root=str(tmp_path), folder="nowhere")
