"""Shared fixtures: tiny datasets in the real on-disk formats, random networks, Hydra configs."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from certlight.models.residual import Residual

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">I", 0x0800 | array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def write_mnist_like(root: Path, folder: str = "MNIST", n_train: int = 300, n_test: int = 100, seed: int = 0) -> Path:
    """MNIST-format files whose class is readable from the image (a bright square per class)."""
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, count)
        images = rng.integers(0, 60, (count, 28, 28))
        for i, label in enumerate(labels):
            row, col = divmod(int(label), 5)
            images[i, 4 + 10 * row : 10 + 10 * row, 2 + 5 * col : 6 + 5 * col] = 255
        write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root


def write_cifar_like(root: Path, per_batch: int = 20, seed: int = 0) -> Path:
    """The real ``cifar-10-batches-py`` pickle layout with a few random images per batch."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {
            "batch_label": name,
            "labels": rng.integers(0, 10, per_batch).tolist(),
            "data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            "filenames": [f"{name}_{i}.png" for i in range(per_batch)],
        }
        with open(folder / name, "wb") as handle:
            pickle.dump(entry, handle)
    return root


@pytest.fixture(scope="session")
def fake_data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_mnist_like(root, "MNIST")
    write_mnist_like(root, "FashionMNIST", seed=1)
    write_cifar_like(root)
    return root


def random_mlp(seed: int, widths=(6, 12, 8, 4)) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Flatten()]
    for a, b in zip(widths[:-2], widths[1:-1]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    layers.append(nn.Linear(widths[-2], widths[-1]))
    return nn.Sequential(*layers)


def random_convnet(seed: int, batchnorm: bool = False, in_channels: int = 2, classes: int = 5) -> nn.Sequential:
    """A small conv net with stride, padding and (optionally) BatchNorm with random statistics."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Conv2d(in_channels, 4, 3, stride=2, padding=1)]
    if batchnorm:
        layers.append(nn.BatchNorm2d(4))
    layers += [nn.ReLU(), nn.Conv2d(4, 6, 3, stride=1, padding=0)]
    if batchnorm:
        layers.append(nn.BatchNorm2d(6))
    layers += [nn.ReLU(), nn.Flatten(), nn.Linear(6 * 2 * 2, 10)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(10))
    layers += [nn.ReLU(), nn.Linear(10, classes)]
    model = nn.Sequential(*layers)
    for layer in model:
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.running_mean.uniform_(-0.5, 0.5)
            layer.running_var.uniform_(0.5, 2.0)
            layer.weight.data.uniform_(-1.5, 1.5)
            layer.bias.data.uniform_(-0.5, 0.5)
    return model.eval()


def residual_net(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    body = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8))
    net = nn.Sequential(
        nn.Linear(6, 8),
        nn.ReLU(),
        Residual(body),
        nn.ReLU(),
        nn.Linear(8, 8),
        nn.BatchNorm1d(8),
        nn.ReLU(),
        nn.Linear(8, 4),
    )
    net[5].running_mean.uniform_(-0.5, 0.5)
    net[5].running_var.uniform_(0.5, 2.0)
    return net.eval()


def sharpened(net: nn.Sequential) -> nn.Sequential:
    """The first weighted layer 8x steeper: decision boundaries then cross the small boxes."""
    first = next(m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
    first.weight.data *= 8
    return net


# The complete verifiers' test networks: network, input shape, radii (where HiGHS takes well
# under a second per example), whether every seed has examples it falsifies (both verdicts occur)
ORACLE_NETWORKS = {
    "mlp": (lambda seed: sharpened(random_mlp(seed, widths=(6, 16, 16, 4))), (6,), (0.1, 0.2), True),
    "conv+batchnorm": (lambda seed: sharpened(random_convnet(seed, batchnorm=True)), (2, 7, 7), (0.05, 0.1), False),
    "residual+batchnorm": (lambda seed: sharpened(residual_net(seed)), (6,), (0.1, 0.2), False),
}


def oracle_batch(name: str, seed: int):
    """One of ORACLE_NETWORKS with 8 random inputs and its own predictions as labels."""
    build, shape, _, _ = ORACLE_NETWORKS[name]
    net = build(seed).eval()
    torch.manual_seed(seed)
    x = torch.rand(8, *shape)
    with torch.no_grad():
        y = net(x).argmax(1)
    return net, x, y


def conv_problem(seed: int, batch: int, eps: float = 0.05):
    """A random conv net with labelled inputs and their eps-box: the common bound-test setup."""
    from certlight.bounds import input_box

    model = random_convnet(seed)
    x = torch.rand(batch, 2, 7, 7)
    y = torch.randint(0, 5, (batch,))
    lower, upper = input_box(x, eps, [0.0], [1.0])
    return model, x, y, lower, upper


def compose_train(overrides: list[str], output_dir: Path):
    """The config ``train.py`` would see for these overrides, with Hydra's runtime set up."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def tiny_run_overrides(data_root: Path, *extra: str) -> list[str]:
    """A few seconds of real training on the fixture data."""
    return [
        f"data.root={data_root}",
        "dataset.batch_size=50",
        "dataset.eval_batch_size=100",
        "trainer.max_epochs=2",
        "schedule.warmup_epochs=0",
        "schedule.ramp_epochs=1",
        "+trainer.enable_progress_bar=false",
        "+trainer.enable_model_summary=false",
        "eps.train=0.1",
        "eps.eval=0.05",
        *extra,
    ]
