"""Bound backends behind one interface: the native engine, or auto_LiRPA."""

from __future__ import annotations

import torch
from torch import nn

from certlight.bounds.layers import BatchNormAffine, check_supported, clean_forward
from certlight.bounds.margins import margin_lower_bounds, mixed_margin_lower
from certlight.errors import CertlightError

BACKENDS = ("native", "auto_lirpa")


class NativeBounds:
    """certlight's own engine: fast, batched, per-example epsilon; nn.Sequential only."""

    def __init__(self, net: nn.Module):
        check_supported(net)
        self.net = net

    def clean_forward(self, x: torch.Tensor):
        return clean_forward(self.net, x)

    def margins(self, x, lower, upper, y, method: str = "ibp", batchnorm: BatchNormAffine | None = None):
        return margin_lower_bounds(self.net, lower, upper, y, method, batchnorm)

    def mixed(self, x, lower, upper, y, beta: float, batchnorm: BatchNormAffine | None = None):
        return mixed_margin_lower(self.net, lower, upper, y, beta, batchnorm)


def make_backend(name: str, net: nn.Module):
    if name == "native":
        return NativeBounds(net)
    if name == "auto_lirpa":
        from certlight.bounds.lirpa import LirpaBounds

        return LirpaBounds(net)
    raise CertlightError(f"bounds.backend={name!r} is unknown; allowed: {', '.join(BACKENDS)}")
