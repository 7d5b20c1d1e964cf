"""Architectures as plain nn.Sequential, the form the bound engine reads."""

from certlight.models.deepmind import cnn7_bn, dm_large, dm_medium, dm_small

__all__ = ["cnn7_bn", "dm_large", "dm_medium", "dm_small"]
