"""Precise BatchNorm: statistics recomputed over the training data, random state untouched."""

import pytest
import torch
from torch import nn

from certlight.callbacks.precise_bn import recompute


class Holder(nn.Module):
    """What the callback needs of the LightningModule: ``net`` and ``device``."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.device = torch.device("cpu")


def test_statistics_are_those_of_the_training_data_and_no_random_state_moves():
    torch.manual_seed(0)
    data = torch.randn(120, 3) * torch.tensor([1.0, 2.0, 0.5]) + torch.tensor([3.0, -1.0, 0.0])
    bn = nn.BatchNorm1d(3)
    bn.running_mean.fill_(100.0)  # stale statistics, as after training with momentum
    holder = Holder(nn.Sequential(bn, nn.Dropout(0.5), nn.Linear(3, 2)))
    holder.net.eval()
    state = torch.get_rng_state()
    recompute([bn], holder, data.split(40), batches=None)
    assert torch.equal(torch.get_rng_state(), state)  # dropout (train mode) drew from a forked generator
    # Three equal batches: the plain average of the batch means is the data mean; of the
    # (unbiased) batch variances, close to the data variance.
    torch.testing.assert_close(bn.running_mean, data.mean(0), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(bn.running_var, data.var(0), rtol=0.1, atol=0.0)
    assert bn.momentum == 0.1 and not holder.net.training  # both restored


def test_only_the_first_batches_are_used_when_asked():
    data = torch.cat([torch.zeros(10, 1), torch.ones(10, 1)])
    bn = nn.BatchNorm1d(1)
    recompute([bn], Holder(nn.Sequential(bn)), data.split(10), batches=1)
    assert bn.running_mean.item() == 0.0


@pytest.mark.parametrize("device_resident", ["false", pytest.param("true", marks=pytest.mark.slow)])
def test_in_a_fit_the_evaluated_network_has_the_final_weights_statistics(fake_data_root, tmp_path, device_resident):
    """After training, each BatchNorm's running mean is the average over the training batches of
    its input's batch mean under the final weights (computed here with forward hooks), also
    when the train loader yields only example indices (device-resident data)."""
    from certlight.runs.pipeline import build_run

    from conftest import compose_train, tiny_run_overrides

    overrides = tiny_run_overrides(
        fake_data_root,
        "model=cnn7_bn",
        "trainer.max_epochs=1",
        "dataset.train_subset=100",
        f"dataset.device_resident={device_resident}",
        "+callbacks.precise_bn._target_=certlight.callbacks.PreciseBatchNorm",
    )
    run = build_run(compose_train(overrides, tmp_path), tmp_path)
    run.trainer.fit(run.module, datamodule=run.datamodule)
    net = run.module.net
    layers = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    means = {layer: [] for layer in layers}
    hooks = [
        layer.register_forward_hook(lambda m, inputs, out: means[m].append(inputs[0].mean(dim=(0, 2, 3))))
        for layer in layers
    ]
    net.train()
    for layer in layers:
        layer.momentum = 0.0  # run the batches without touching the statistics under test
    with torch.no_grad():
        for index in torch.arange(100).split(50):
            net(run.datamodule.train_set.batch(index)[0])
    for hook in hooks:
        hook.remove()
    for layer in layers:
        # float32 running averages of 2 batches: equal to a few 1e-5
        torch.testing.assert_close(layer.running_mean, torch.stack(means[layer]).mean(0), rtol=1e-3, atol=1e-4)
