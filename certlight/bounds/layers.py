"""What the engine knows about layers: which are supported, and BatchNorm as a fixed affine map."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from certlight.errors import CertlightError

SUPPORTED_LAYERS = (nn.Linear, nn.Conv2d, nn.ReLU, nn.Flatten, _BatchNorm)

# Per BatchNorm layer (by position in the Sequential): the (scale, shift) it applied.
BatchNormAffine = dict[int, tuple[torch.Tensor, torch.Tensor]]


def check_supported(model: nn.Sequential) -> None:
    """Fail early, naming the layer, instead of producing bounds for a network we cannot bound."""
    if not isinstance(model, nn.Sequential):
        raise CertlightError(
            f"the native bound engine needs an nn.Sequential, got {type(model).__name__}; "
            "use bounds.backend=auto_lirpa for other architectures"
        )
    for position, layer in enumerate(model):
        if not isinstance(layer, SUPPORTED_LAYERS):
            allowed = ", ".join(t.__name__ for t in SUPPORTED_LAYERS)
            raise CertlightError(
                f"layer {position} ({type(layer).__name__}) is not supported by the native "
                f"bound engine; supported: {allowed}"
            )
        # The radius pass and CROWN's transposed convolutions assume zero padding given as
        # numbers, and the shape arithmetic a Flatten of everything but the batch.
        if isinstance(layer, nn.Conv2d) and (isinstance(layer.padding, str) or layer.padding_mode != "zeros"):
            raise CertlightError(
                f"layer {position} (Conv2d) has padding={layer.padding!r}, padding_mode={layer.padding_mode!r}; "
                "the native bound engine needs numeric padding with padding_mode='zeros'"
            )
        if isinstance(layer, nn.Flatten) and (layer.start_dim, layer.end_dim) != (1, -1):
            raise CertlightError(
                f"layer {position} (Flatten) has start_dim={layer.start_dim}, end_dim={layer.end_dim}; "
                "the native bound engine needs Flatten(1, -1)"
            )
    if not isinstance(model[-1], nn.Linear):
        raise CertlightError(
            f"the last layer must be nn.Linear (the margin specification is folded into it), "
            f"got {type(model[-1]).__name__}"
        )


def batchnorm_affine(layer: _BatchNorm, inputs: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-channel ``(scale, shift)`` that ``layer`` applies.

    In training mode BatchNorm normalises with the statistics of the clean batch (``inputs``);
    the bound treats those statistics as constants of the network, which is what makes the
    bound sound for the function the clean forward actually computed. In eval mode it uses
    the running statistics.
    """
    use_batch_stats = layer.training or not layer.track_running_stats
    if use_batch_stats:
        if inputs is None:
            raise CertlightError(
                "a BatchNorm layer in training mode needs the clean batch statistics; "
                "compute them with clean_forward() and pass its batchnorm affine"
            )
        dims = [0] + list(range(2, inputs.dim()))
        mean = inputs.mean(dim=dims)
        var = inputs.var(dim=dims, unbiased=False)
    else:
        mean, var = layer.running_mean, layer.running_var
    scale = torch.rsqrt(var + layer.eps)
    if layer.affine:
        scale = scale * layer.weight
        shift = layer.bias - mean * scale
    else:
        shift = -mean * scale
    return scale, shift


def channel_view(vector: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a per-channel vector so it broadcasts over a (B, C, ...) tensor."""
    return vector.view(1, -1, *([1] * (like.dim() - 2)))


def clean_forward(model: nn.Sequential, x: torch.Tensor) -> tuple[torch.Tensor, BatchNormAffine]:
    """Run the model on clean inputs and record the affine map of every BatchNorm layer.

    The layers are called as usual (so running statistics update as in plain training).
    """
    affine: BatchNormAffine = {}
    hidden = x
    for position, layer in enumerate(model):
        if isinstance(layer, _BatchNorm):
            affine[position] = batchnorm_affine(layer, hidden)
        hidden = layer(hidden)
    return hidden, affine


def affine_for(model: nn.Sequential, position: int, affine: BatchNormAffine | None):
    """The recorded (scale, shift) of BatchNorm ``position``, or its eval-mode map."""
    if affine is not None and position in affine:
        return affine[position]
    return batchnorm_affine(model[position], None)
