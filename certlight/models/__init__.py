"""Architectures as plain nn.Sequential (with Residual blocks), the form the bound engine walks."""

from certlight.models.deepmind import cnn7_bn, dm_large, dm_medium, dm_small
from certlight.models.residual import Residual, residual_block, resnet_small

__all__ = ["Residual", "cnn7_bn", "dm_large", "dm_medium", "dm_small", "residual_block", "resnet_small"]
