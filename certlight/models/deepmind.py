"""Gowal et al. (2019) DM-small/medium/large, and CNN7-BN (DM-large with BatchNorm, Shi et al. 2021).

Each builder takes the dataset's channels, image size and class count, so one config works for
MNIST (1x28x28) and CIFAR-10 (3x32x32). DM-small and DM-medium use no padding ('VALID', as in
Gowal et al.'s code; the paper does not list it), DM-large uses padding 1 as in Zhang et al.'s
CROWN-IBP code, the paper's code base.
"""

from __future__ import annotations

import torch
from torch import nn

from certlight.errors import CertlightError

ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


def activation_layer(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise CertlightError(f"model.activation={name!r} is unknown; allowed: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def _flat_size(in_channels: int, in_size: int, features: nn.Sequential) -> int:
    with torch.no_grad():
        return features(torch.zeros(1, in_channels, in_size, in_size)).numel()


def _classifier(
    features: list[nn.Module], in_channels: int, in_size: int, hidden: list[int], num_classes: int, activation="relu"
):
    flat = _flat_size(in_channels, in_size, nn.Sequential(*features))
    layers = list(features) + [nn.Flatten()]
    width = flat
    for size in hidden:
        layers += [nn.Linear(width, size), activation_layer(activation)]
        width = size
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def dm_small(in_channels: int = 1, in_size: int = 28, num_classes: int = 10, activation: str = "relu") -> nn.Sequential:
    """CONV 16 4x4+2, CONV 32 4x4+1, FC 100, FC classes; ``activation``: relu (Gowal et al.'s),
    sigmoid or tanh after every hidden layer."""
    features = [
        nn.Conv2d(in_channels, 16, 4, stride=2),
        activation_layer(activation),
        nn.Conv2d(16, 32, 4, stride=1),
        activation_layer(activation),
    ]
    return _classifier(features, in_channels, in_size, [100], num_classes, activation)


def dm_medium(in_channels: int = 1, in_size: int = 28, num_classes: int = 10) -> nn.Sequential:
    """CONV 32 3x3+1, CONV 32 4x4+2, CONV 64 3x3+1, CONV 64 4x4+2, FC 512, FC 512, FC classes."""
    features = [
        nn.Conv2d(in_channels, 32, 3, stride=1),
        nn.ReLU(),
        nn.Conv2d(32, 32, 4, stride=2),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=1),
        nn.ReLU(),
        nn.Conv2d(64, 64, 4, stride=2),
        nn.ReLU(),
    ]
    return _classifier(features, in_channels, in_size, [512, 512], num_classes)


def _large_features(in_channels: int, batchnorm: bool) -> list[nn.Module]:
    layers: list[nn.Module] = []
    widths = [(in_channels, 64, 1), (64, 64, 1), (64, 128, 2), (128, 128, 1), (128, 128, 1)]
    for cin, cout, stride in widths:
        layers.append(nn.Conv2d(cin, cout, 3, stride=stride, padding=1))
        if batchnorm:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.ReLU())
    return layers


def dm_large(in_channels: int = 1, in_size: int = 28, num_classes: int = 10) -> nn.Sequential:
    """CONV 64 3x3+1, CONV 64 3x3+1, CONV 128 3x3+2, CONV 128 3x3+1, CONV 128 3x3+1, FC 512, FC classes."""
    return _classifier(_large_features(in_channels, False), in_channels, in_size, [512], num_classes)


def cnn7_bn(in_channels: int = 1, in_size: int = 28, num_classes: int = 10) -> nn.Sequential:
    """DM-large with BatchNorm after every conv and after the 512-unit FC layer."""
    features = _large_features(in_channels, True)
    flat = _flat_size(in_channels, in_size, nn.Sequential(*features))
    return nn.Sequential(
        *features,
        nn.Flatten(),
        nn.Linear(flat, 512),
        nn.BatchNorm1d(512),
        nn.ReLU(),
        nn.Linear(512, num_classes),
    )
