"""Precise BatchNorm: recompute every BatchNorm's running statistics on clean training data
before each evaluation (as CTBench and the recent certified-training benchmarks do for CNN7-BN).

Why: during certified training the running statistics are an exponential average over weights
that kept changing (and, for adversarial methods, over attacked inputs); the statistics of the
final weights on clean data are what the evaluated network should use.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytorch_lightning as pl
import torch
from torch import nn

from certlight.validate import optional_integer_at_least


class PreciseBatchNorm(pl.Callback):
    """``batches``: training batches to average over (None: the whole training set), read
    clean (no augmentation) through the datamodule, so the device-resident path works too.
    Every random state is left as it was, so resumed runs stay exact; under DDP each rank
    averages its shard and the ranks' statistics are averaged."""

    def __init__(self, batches: int | None = None):
        self.batches = optional_integer_at_least(batches, "callbacks.precise_bn.batches", 1)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        layers = [
            m for m in pl_module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
        ]
        if layers:
            batches = trainer.datamodule.clean_train_batches(
                pl_module.device, trainer.datamodule.batch_size, trainer.global_rank, trainer.world_size
            )
            recompute(layers, pl_module, batches, self.batches)
            if trainer.world_size > 1:
                for layer in layers:
                    layer.running_mean.copy_(trainer.strategy.reduce(layer.running_mean, reduce_op="mean"))
                    layer.running_var.copy_(trainer.strategy.reduce(layer.running_var, reduce_op="mean"))


@torch.no_grad()
def recompute(
    layers: list[nn.Module], pl_module: pl.LightningModule, inputs: Iterable[torch.Tensor], batches: int | None
) -> None:
    """Reset the layers' statistics and accumulate the plain average (momentum None) over the
    first ``batches`` input batches of ``inputs`` (all: None), in train mode."""
    momenta = [layer.momentum for layer in layers]
    training = pl_module.net.training
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None
    pl_module.net.train()
    with torch.random.fork_rng(devices=[pl_module.device] if pl_module.device.type == "cuda" else []):
        for number, x in enumerate(inputs):
            if batches is not None and number >= batches:
                break
            pl_module.net(x.to(pl_module.device))
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum
    pl_module.net.train(training)
