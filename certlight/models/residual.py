"""Residual blocks and a small residual CNN, in the two containers the bound engine walks."""

from __future__ import annotations

from torch import nn


class Residual(nn.Module):
    """``body(x) + shortcut(x)``; the shortcut is the identity unless a projection is given
    (a strided 1x1 convolution, say, where the body changes the shape)."""

    def __init__(self, body: nn.Module, shortcut: nn.Module | None = None):
        super().__init__()
        self.body, self.shortcut = body, shortcut

    def forward(self, x):
        return self.body(x) + (self.shortcut(x) if self.shortcut is not None else x)


def residual_block(in_channels: int, out_channels: int, stride: int, batchnorm: bool) -> nn.Sequential:
    """conv3x3-BN-ReLU-conv3x3-BN plus the shortcut, then ReLU (He et al.'s basic block)."""

    def norm(channels):
        return [nn.BatchNorm2d(channels)] if batchnorm else []

    body = nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1),
        *norm(out_channels),
        nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1),
        *norm(out_channels),
    )
    projection = None
    if stride != 1 or in_channels != out_channels:
        projection = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride), *norm(out_channels))
    return nn.Sequential(Residual(body, projection), nn.ReLU())


def resnet_small(
    in_channels: int = 1, in_size: int = 28, num_classes: int = 10, width: int = 8, batchnorm: bool = True
) -> nn.Sequential:
    """A small ResNet in the spirit of the residual models in CROWN-IBP's and auto_LiRPA's
    examples (resnet2b/4b): a conv stem, three basic blocks (the second halves the size and
    doubles the width with a projection), FC 100, FC classes."""
    size = (in_size + 1) // 2  # the second block's stride-2 convolution (padding 1, kernel 3)
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, stride=1, padding=1),
        *([nn.BatchNorm2d(width)] if batchnorm else []),
        nn.ReLU(),
        residual_block(width, width, 1, batchnorm),
        residual_block(width, 2 * width, 2, batchnorm),
        residual_block(2 * width, 2 * width, 1, batchnorm),
        nn.Flatten(),
        nn.Linear(2 * width * size * size, 100),
        nn.ReLU(),
        nn.Linear(100, num_classes),
    )
