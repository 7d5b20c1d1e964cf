"""The training step never makes the host wait for the device.

On CUDA a host sync comes from reading a value (``.item()``, ``bool(tensor)``), from an op
whose output size depends on the data (mask indexing, ``nonzero``), or from a blocking
host-to-device copy (a tensor built from Python values). ``SyncDetector`` records exactly
those ops at the dispatcher, so the check runs on CPU in CI; on a GPU the real
``torch.cuda.set_sync_debug_mode("error")`` check runs as well.
"""

import pytest
import pytorch_lightning as pl
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from certlight.data import CertifiedDataModule
from certlight.losses import Reweighting
from certlight.methods import AutoEpsilon, CrownIBPModule, IBPModule
from certlight.models import cnn7_bn, dm_small
from certlight.schedules import TrainingSchedule

aten = torch.ops.aten
SYNCING_OPS = {
    aten._local_scalar_dense.default: "reads a value on the host (.item(), bool(), int())",
    aten.lift_fresh.default: "builds a tensor from Python values (a blocking host-to-device copy)",
    aten.nonzero.default: "has a data-dependent output size",
    aten.masked_select.default: "has a data-dependent output size",
    aten.masked_scatter.default: "counts the mask on the device",
    aten.repeat_interleave.Tensor: "has a data-dependent output size",
    aten._unique2.default: "has a data-dependent output size",
}


class SyncDetector(TorchDispatchMode):
    """Records every op that would synchronise the host with a CUDA device."""

    def __init__(self):
        super().__init__()
        self.found: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in SYNCING_OPS:
            self.found.append(f"{func}: {SYNCING_OPS[func]}")
        if func in (aten.index.Tensor, aten.index_put.default, aten.index_put_.default):
            indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
            if any(i is not None and i.dtype == torch.bool for i in indices):
                self.found.append(f"{func} with a boolean mask: has a data-dependent output size")
        return func(*args, **kwargs)


def test_detector_catches_the_syncs_it_looks_for():
    x = torch.rand(8)
    with SyncDetector() as detector:
        x.sum().item()
        _ = x[x > 0.5]
        torch.tensor([0.5])
        torch.where(x > 0.5, x, 0.0)  # a Python scalar operand is not a copy
    assert len(detector.found) == 3, detector.found


class Probed:
    """Mixin: run the real training_step (and its backward) under the detector.

    The first step is not probed: there Lightning registers each logged metric's state
    once, from Python numbers; every later step is the steady state that must stay clean.
    """

    def training_step(self, batch, batch_idx):
        if batch_idx == 0:
            return super().training_step(batch, batch_idx)
        with SyncDetector() as detector:
            out = super().training_step(batch, batch_idx)
            out["loss"].backward(retain_graph=True)
        self.syncs.extend(detector.found)
        self.probed_steps += 1
        return out


class ProbedIBP(Probed, IBPModule):
    pass


class ProbedCrownIBP(Probed, CrownIBPModule):
    pass


def fit_three_steps(cls, model, data_root, accelerator: str = "cpu"):
    """Fit ``cls`` with re-weighting and auto-eps for one 3-step epoch on the fixture data; eps
    ramps up from 0 over the epoch, so the later steps run the CROWN pass too."""
    datamodule = CertifiedDataModule("mnist", root=str(data_root), batch_size=20, train_subset=60, test_subset=20)
    datamodule.setup("fit")
    module = cls(
        model(1, 28, 10),
        mean=[0.1],
        std=[0.3],
        eps_eval=0.1,
        optimizer=lambda params: torch.optim.Adam(params, lr=1e-3),
        reweight=Reweighting("symmetric", gamma=5.0, alpha=0.1),
        auto_eps=AutoEpsilon(datamodule.num_train_total, eps_maxoff=0.1, eps_train=0.2),
        schedule=TrainingSchedule(eps_train=0.2, warmup_epochs=0, ramp_epochs=1, beta_start=1.0),
    )
    module.syncs, module.probed_steps = [], 0
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=1,
        max_epochs=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=datamodule)
    assert trainer.global_step == 3
    return module


@pytest.mark.parametrize("cls, model", [(ProbedIBP, dm_small), (ProbedCrownIBP, dm_small), (ProbedCrownIBP, cnn7_bn)])
def test_certified_training_step_has_no_host_sync(cls, model, fake_data_root):
    module = fit_three_steps(cls, model, fake_data_root)
    assert module.probed_steps == 2
    assert module.syncs == [], "\n".join(sorted(set(module.syncs)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_training_step_runs_under_cuda_sync_debug_mode_error(fake_data_root):
    class Strict(CrownIBPModule):
        def training_step(self, batch, batch_idx):
            torch.cuda.set_sync_debug_mode("error")
            try:
                return super().training_step(batch, batch_idx)
            finally:
                torch.cuda.set_sync_debug_mode("default")

    fit_three_steps(Strict, dm_small, fake_data_root, accelerator="gpu")
