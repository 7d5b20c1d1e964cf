"""The LightningModules: one shared certified-training step, siblings differ only in the bound."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from certlight.bounds import input_box, is_verified, worst_case_logits
from certlight.bounds.backends import make_backend
from certlight.bounds.rules import WalkState
from certlight.checkpoints import epochs_completed
from certlight.errors import CertlightError
from certlight.losses import Reweighting, certified_loss, softmax_margin
from certlight.modules.auto_eps import AutoEpsilon
from certlight.modules.rng import rng_state, set_rng_state
from certlight.schedules import ScheduleValues


class CertifiedModule(pl.LightningModule):
    """Shared step: clean forward, per-example input box, margin bounds, weighted mixed loss.

    Epsilon, kappa and beta come from :class:`certlight.callbacks.ScheduleCallback` through
    ``schedule_values``; evaluation reports clean error and verified error at ``eps_eval``
    under each method in ``eval_methods`` and their best (an example counts as verified when
    any sound method verifies it).
    """

    eval_methods: tuple[str, ...] = ("ibp",)

    def __init__(
        self,
        net: nn.Sequential,
        mean: Sequence[float],
        std: Sequence[float],
        eps_eval: float,
        optimizer: Callable[..., torch.optim.Optimizer],
        lr_scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        reweight: Reweighting | None = None,
        auto_eps: AutoEpsilon | None = None,
        bounds_backend: str = "native",
        compile_bounds: bool = False,
    ):
        super().__init__()
        self.bounder = make_backend(bounds_backend, net, compile_bounds)
        if not 0 <= eps_eval <= 1:
            raise CertlightError(f"eps.eval={eps_eval} must lie in [0, 1] (pixel space)")
        self.net = net
        self.eps_eval = float(eps_eval)
        # Buffers follow the module to its device, so building the input box copies nothing
        # from the host; not persistent, since the dataset config already defines them.
        self.register_buffer("input_mean", torch.tensor(tuple(mean), dtype=torch.float32), persistent=False)
        self.register_buffer("input_std", torch.tensor(tuple(std), dtype=torch.float32), persistent=False)
        self.optimizer_factory, self.lr_scheduler_factory = optimizer, lr_scheduler
        self.reweight = reweight or Reweighting(kind="none")
        self.auto_eps = auto_eps
        self.schedule_values: ScheduleValues | None = None
        # The composed training config, saved in every checkpoint so verify can rebuild the run,
        # and the parts the run was made in (output folder, first epoch, config changes).
        self.run_config: dict | None = None
        self.run_parts: list[dict] = []
        # What results.json reports of an interrupted run: epochs finished and the last one's numbers.
        self.epochs_completed = 0
        self.last_epoch_metrics: dict[str, float] = {}
        self.val_clean_err = MeanMetric()
        self.val_verified_err = nn.ModuleDict({m: MeanMetric() for m in (*self.eval_methods, "best")})

    # --- the bound: what siblings change -------------------------------------------------
    def robust_margin_lower(self, x, lower, upper, y, batchnorm: WalkState | None, values: ScheduleValues):
        raise NotImplementedError

    # --- training ------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        """One certified step. It never makes the host wait for the device (no ``.item()``,
        no data-dependent shapes, no tensors built from Python values): tests/test_sync.py."""
        x, y, index = batch
        values = self.schedule_values
        if values is None:
            raise CertlightError("no epsilon/kappa schedule set: add certlight.callbacks.ScheduleCallback to the Trainer")
        logits, batchnorm = self.bounder.clean_forward(x)
        eps = self.auto_eps.epsilon(index, values.eps) if self.auto_eps is not None else x.new_full((x.shape[0],), values.eps)
        # Our own batches lie in the data domain by construction; checking would make the host wait.
        lower, upper = input_box(x, eps, self.input_mean, self.input_std, check_domain=False)
        margin_lower = self.robust_margin_lower(x, lower, upper, y, batchnorm, values)
        worst = worst_case_logits(margin_lower, y)
        margin = softmax_margin(worst, y)
        weights = self.reweight(margin)
        loss = certified_loss(logits, worst, y, values.kappa, weights, self._weight_normaliser(weights))
        if self.auto_eps is not None:
            self.auto_eps.update(*self._gathered(index, margin.detach()))
        self.log_dict(
            {
                "train/loss": loss,
                "train/clean_err": (logits.argmax(1) != y).float().mean(),
                "train/robust_err": (~is_verified(margin_lower)).float().mean(),
                "train/mean_weight": weights.mean() if weights is not None else margin.new_ones(()),
                "train/mean_eps": eps.mean(),
            },
            on_step=False,
            on_epoch=True,
            prog_bar=False,
            sync_dist=True,  # reduced once at the epoch's end: every rank's examples, not rank 0's
        )
        if self.auto_eps is not None:
            self.log("train/offset_nonzero_frac", (self.auto_eps.offsets > 0).float().mean(), on_step=False, on_epoch=True)
        # Per-example values for callbacks (margin histograms); Lightning optimises "loss".
        return {"loss": loss, "margin": margin.detach(), "eps": eps.detach(), "weights": weights}

    def _weight_normaliser(self, weights: torch.Tensor | None) -> torch.Tensor | None:
        """Under DDP, the mean over ranks of each rank's weight sum: with it, the gradients DDP
        averages equal those of one process on the whole global batch (eq. 8 normalises by the
        sum of all the batch's weights, not by each rank's own)."""
        if weights is None or self._trainer is None or self._trainer.world_size == 1:
            return None
        return self.trainer.strategy.reduce(weights.sum(), reduce_op="mean")

    def _gathered(self, index: torch.Tensor, margin: torch.Tensor):
        """Every rank's (index, margin), so all ranks apply identical auto-eps updates."""
        if self._trainer is None or self._trainer.world_size == 1:
            return index, margin
        return self.all_gather(index).flatten(), self.all_gather(margin).flatten()

    # --- evaluation ----------------------------------------------------------------------
    @torch.no_grad()
    def certify(self, x: torch.Tensor, y: torch.Tensor, eps: float, methods: Sequence[str]):
        """Clean logits and, per method, the (B, K-1) margin lower bounds at ``eps`` (eval mode)."""
        logits = self.net(x)
        lower, upper = input_box(x, eps, self.input_mean, self.input_std)
        return logits, {m: self.bounder.margins(x, lower, upper, y, m) for m in methods}

    def validation_step(self, batch, batch_idx):
        x, y, _ = batch
        logits, bounds = self.certify(x, y, self.eps_eval, self.eval_methods)
        self.val_clean_err.update((logits.argmax(1) != y).float())
        best = torch.zeros_like(y, dtype=torch.bool)
        for method, margin_lower in bounds.items():
            flags = is_verified(margin_lower)
            self.val_verified_err[method].update((~flags).float())
            best |= flags
        self.val_verified_err["best"].update((~best).float())
        # The paper's margin (eq. 6) at eps_eval from the first (training) bound, for histograms.
        return {"margin": softmax_margin(worst_case_logits(bounds[self.eval_methods[0]], y), y)}

    def on_validation_epoch_end(self):
        values = {"val/clean_err": self.val_clean_err.compute()}
        self.val_clean_err.reset()
        for method, metric in self.val_verified_err.items():
            values["val/verified_err" if method == "best" else f"val/verified_err_{method}"] = metric.compute()
            metric.reset()
        for name, value in values.items():
            self.log(name, value, prog_bar=name in ("val/clean_err", "val/verified_err"))
        if not self.trainer.sanity_checking and self.trainer.state.fn == "fit":
            self.last_epoch_metrics = {"epoch": self.current_epoch, **{k: float(v) for k, v in values.items()}}

    def on_train_epoch_end(self):
        self.epochs_completed += 1

    def on_save_checkpoint(self, checkpoint):
        if self.run_config is not None:
            checkpoint["certlight_config"] = self.run_config
        checkpoint["certlight_parts"] = self.run_parts
        checkpoint["certlight_progress"] = {"epochs_completed": self.epochs_completed, "last_epoch_metrics": self.last_epoch_metrics}
        checkpoint["certlight_rng"] = rng_state()

    def on_load_checkpoint(self, checkpoint):
        self.epochs_completed = epochs_completed(checkpoint)
        self.last_epoch_metrics = checkpoint.get("certlight_progress", {}).get("last_epoch_metrics", {})
        if "certlight_rng" in checkpoint:
            set_rng_state(checkpoint["certlight_rng"])
        # A deliberate resume change may turn auto-eps on or off: the table starts empty or is dropped.
        state = checkpoint["state_dict"]
        if self.auto_eps is None:
            state.pop("auto_eps.offsets", None)
        elif "auto_eps.offsets" not in state:
            state["auto_eps.offsets"] = torch.zeros_like(self.auto_eps.offsets)

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.lr_scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.lr_scheduler_factory(optimizer=optimizer), "interval": "epoch"}}


class NaturalModule(CertifiedModule):
    """Plain training on clean inputs (kappa = 1 always); still reports verified error."""

    def training_step(self, batch, batch_idx):
        x, y, _ = batch
        logits = self.net(x)
        loss = F.cross_entropy(logits, y)
        self.log_dict({"train/loss": loss, "train/clean_err": (logits.argmax(1) != y).float().mean()}, on_step=False, on_epoch=True)
        return loss


class IBPModule(CertifiedModule):
    """IBP certified training (Gowal et al. 2019)."""

    def robust_margin_lower(self, x, lower, upper, y, batchnorm, values):
        return self.bounder.mixed(x, lower, upper, y, 0.0, batchnorm)


class CrownIBPModule(CertifiedModule):
    """CROWN-IBP certified training (Zhang et al. 2020): ``beta*CROWN-IBP + (1-beta)*IBP``."""

    eval_methods = ("ibp", "crown_ibp")

    def robust_margin_lower(self, x, lower, upper, y, batchnorm, values):
        # At eps 0 (warm-up) the box is a point and IBP is already exact: skip the CROWN pass.
        beta = values.beta if values.eps > 0 else 0.0
        return self.bounder.mixed(x, lower, upper, y, beta, batchnorm)
