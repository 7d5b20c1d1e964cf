"""The LightningModules: one certified-training step shared by every method, two hooks.

A method chooses
- ``region(x, y, eps)``: the input box each example is trained on (IBP, CROWN-IBP: the eps box);
- ``robust_term(x, y, region, state, values)``: the per-example robust loss and the *margin
  lower bounds over that region* (B, K-1) (IBP, CROWN-IBP: worst-case cross-entropy of the bound).
The base class owns the rest: schedule, auto-eps, re-weighting, the mixed loss, logging and
what callbacks receive. So the paper's tactics apply to every method by construction:
- re-weighting (eq. 7) weighs each robust loss by the eq. 6 margin of the worst-case logits
  that ``robust_term``'s margin lower bounds imply (the margin over the method's region);
- auto-eps (Algorithm 1) shrinks the eps that ``region`` is built from, for examples whose
  margin was negative.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from certlight.bounds import input_box, is_verified, worst_case_logits
from certlight.bounds.backends import ReluInputBounds, make_backend
from certlight.bounds.rules import WalkState
from certlight.errors import CertlightError, keyed
from certlight.losses import Reweighting, certified_loss, softmax_margin
from certlight.methods.auto_eps import AutoEpsilon
from certlight.methods.fast_ibp import BoundRegulariser, ibp_initialise, l1_penalty
from certlight.methods.rng import rng_state, set_rng_state
from certlight.metrics import CertificationErrors
from certlight.runs.checkpoints import epochs_completed
from certlight.schedules import ScheduleValues, TrainingSchedule
from certlight.validate import number


@dataclass(frozen=True)
class RobustTerm:
    """What a method's robust term gives the shared step: per-example loss (B,), and sound
    lower bounds (B, K-1) of ``f_y - f_j`` over the method's region (what the tactics read)."""

    loss: torch.Tensor
    margin_lower: torch.Tensor
    relu_inputs: list | None = None  # IBP interval of every ReLU input, when a regulariser reads it


def worst_case_term(margin_lower: torch.Tensor, y: torch.Tensor, relu_inputs: list | None = None) -> RobustTerm:
    """The IBP/CROWN-IBP robust term: cross-entropy of the worst-case logits (eq. 2)."""
    return RobustTerm(
        F.cross_entropy(worst_case_logits(margin_lower, y), y, reduction="none"), margin_lower, relu_inputs
    )


INITS = ("default", "ibp")


class CertifiedModule(pl.LightningModule):
    """Shared step: clean forward, region, robust term, weighted mixed loss (eq. 8).

    Epsilon, kappa and beta are the schedule's values at the current step (a pure function of
    it), read in ``on_train_batch_start``. Evaluation reports clean error and verified error at
    ``eps_eval`` on the test set under each method in ``eval_methods`` and their best.
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
        bounds: Callable | None = None,
        schedule: TrainingSchedule | None = None,
        init: str = "default",
        regulariser: BoundRegulariser | None = None,
        l1: float = 0.0,
    ):
        super().__init__()
        if init not in INITS:
            raise CertlightError(f"method.init={init!r} is unknown; allowed: {', '.join(INITS)}")
        if init == "ibp":
            ibp_initialise(net)  # before any backend copies the network (auto_LiRPA builds its own graph)
        with keyed("bounds"):
            self.bounder = (bounds or make_backend)(net=net)
        if not 0 <= eps_eval <= 1:
            raise CertlightError(f"eps.eval={eps_eval} must lie in [0, 1] (pixel space)")
        if regulariser is not None and not isinstance(self.bounder, ReluInputBounds):
            raise CertlightError(
                "method.regulariser reads the IBP interval of every ReLU, which only bounds.backend=native "
                "exposes; use bounds.backend=native or method.regulariser=null"
            )
        self.regulariser = regulariser
        self.l1 = number(l1, "method.l1", minimum=0)
        self.net = net
        self.eps_eval = float(eps_eval)
        # Buffers follow the module to its device, so building the input box copies nothing
        # from the host; not persistent, since the dataset config already defines them.
        self.register_buffer("input_mean", torch.tensor(tuple(mean), dtype=torch.float32), persistent=False)
        self.register_buffer("input_std", torch.tensor(tuple(std), dtype=torch.float32), persistent=False)
        self.optimizer_factory, self.lr_scheduler_factory = optimizer, lr_scheduler
        self.reweight = reweight or Reweighting(kind="none")
        self.auto_eps = auto_eps
        self.schedule = schedule
        self.schedule_values: ScheduleValues | None = None
        # The composed training config, saved in every checkpoint so verify can rebuild the run,
        # and the parts the run was made in (output folder, first epoch, config changes).
        self.run_config: dict | None = None
        self.run_parts: list[dict] = []
        # What results.json reports of an interrupted run: epochs finished and the last one's numbers.
        self.epochs_completed = 0
        self.last_epoch_metrics: dict[str, float] = {}
        self.test_errors = CertificationErrors(self.eval_methods)

    # --- the two method hooks ------------------------------------------------------------
    def region(self, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The box each example trains on: by default the whole eps box."""
        # Our own batches lie in the data domain by construction; checking would make the host wait.
        return input_box(x, eps, self.input_mean, self.input_std, check_domain=False)

    def robust_term(self, x, y, region, state: WalkState | None, values: ScheduleValues) -> RobustTerm:
        raise NotImplementedError

    def bound_term(self, x, y, region, beta: float, state: WalkState | None) -> RobustTerm:
        """The worst-case term of the IBP family over ``region`` (CROWN-IBP mixed in by ``beta``),
        with the ReLU input intervals when the regulariser reads them."""
        if self.regulariser is None:
            return worst_case_term(self.bounder.mixed(x, *region, y, beta, state), y)
        margin_lower, relu_inputs = self.bounder.mixed_with_relu_inputs(x, *region, y, beta, state)
        return worst_case_term(margin_lower, y, relu_inputs)

    # --- training ------------------------------------------------------------------------
    def on_train_batch_start(self, batch, batch_idx):
        if self.schedule is None:
            return
        trainer = self.trainer
        self.schedule_values = self.schedule.at(trainer.global_step, trainer.num_training_batches)
        if trainer.global_step % trainer.log_every_n_steps == 0:
            # Host floats go straight to the loggers: self.log would copy each to the device.
            values = self.schedule_values
            metrics = {"schedule/eps": values.eps, "schedule/kappa": values.kappa, "schedule/beta": values.beta}
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)

    def training_step(self, batch, batch_idx):
        """One certified step. It never makes the host wait for the device (no ``.item()``,
        no data-dependent shapes, no tensors built from Python values): tests/test_sync.py."""
        x, y, index = batch
        values = self.schedule_values
        if values is None:
            raise CertlightError("no epsilon/kappa schedule: give the module a schedule (the schedule config group)")
        logits, state = self.bounder.clean_forward(x)
        eps = (
            self.auto_eps.epsilon(index, values.eps)
            if self.auto_eps is not None
            else x.new_full((x.shape[0],), values.eps)
        )
        region = self.region(x, y, eps)
        term = self.robust_term(x, y, region, state, values)
        margin = softmax_margin(worst_case_logits(term.margin_lower, y), y)
        weights = self.reweight(margin)
        loss = certified_loss(logits, y, term.loss, values.kappa, weights, self._weight_normaliser(weights))
        loss = loss + self._penalties(region, term, values)
        if self.auto_eps is not None:
            self.auto_eps.update(*self._gathered(index, margin.detach()))
        self.log_dict(
            {
                "train/loss": loss,
                "train/clean_err": (logits.argmax(1) != y).float().mean(),
                "train/robust_err": (~is_verified(term.margin_lower)).float().mean(),
                "train/mean_weight": weights.mean() if weights is not None else margin.new_ones(()),
                "train/mean_eps": eps.mean(),
            },
            on_step=False,
            on_epoch=True,
            prog_bar=False,
            sync_dist=True,  # reduced once at the epoch's end: every rank's examples, not rank 0's
        )
        if self.auto_eps is not None:
            self.log(
                "train/offset_nonzero_frac", (self.auto_eps.offsets > 0).float().mean(), on_step=False, on_epoch=True
            )
        # Per-example values for callbacks (margin histograms); Lightning optimises "loss".
        return {"loss": loss, "margin": margin.detach(), "eps": eps.detach(), "weights": weights}

    def _penalties(self, region, term: RobustTerm, values: ScheduleValues) -> torch.Tensor | float:
        """The recipe's extra terms: Shi et al.'s warm-up regulariser on the region's IBP
        intervals (fading with the ramp) and an L1 penalty on the weights."""
        penalty = 0.0
        if self.regulariser is not None:
            if term.relu_inputs is None:
                raise CertlightError(
                    f"method.regulariser needs ReLU intervals that {type(self).__name__}.robust_term does not return"
                )
            penalty = self.regulariser(*region, term.relu_inputs, values.eps, self.schedule.eps_train)
        if self.l1 > 0:
            penalty = penalty + self.l1 * l1_penalty(self.net)
        return penalty

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
        self.test_errors.update(logits.argmax(1) == y, {m: is_verified(b) for m, b in bounds.items()})
        # The paper's margin (eq. 6) at eps_eval from the first (training) bound, for histograms.
        return {"margin": softmax_margin(worst_case_logits(bounds[self.eval_methods[0]], y), y)}

    def on_validation_epoch_end(self):
        # Validation runs on the test split (as the paper reports): the metrics say so.
        rates = self.test_errors.compute()
        self.test_errors.reset()
        values = {f"test/{name}": value for name, value in rates.items()}
        for name, value in values.items():
            self.log(name, value, prog_bar=name in ("test/clean_err", "test/verified_err"))
        if not self.trainer.sanity_checking and self.trainer.state.fn == "fit":
            self.last_epoch_metrics = {"epoch": self.current_epoch, **{k: float(v) for k, v in values.items()}}

    def on_train_epoch_end(self):
        self.epochs_completed += 1

    def on_save_checkpoint(self, checkpoint):
        if self.run_config is not None:
            checkpoint["certlight_config"] = self.run_config
        checkpoint["certlight_parts"] = self.run_parts
        checkpoint["certlight_progress"] = {
            "epochs_completed": self.epochs_completed,
            "last_epoch_metrics": self.last_epoch_metrics,
        }
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
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": self.lr_scheduler_factory(optimizer=optimizer), "interval": "epoch"},
        }


class NaturalModule(CertifiedModule):
    """Plain training on clean inputs (kappa = 1 always); still reports verified error."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The tactics act on a robust term, which natural training does not have: refuse
        # rather than run a baseline that silently ignores them.
        if self.reweight.active:
            raise CertlightError(
                f"method=natural has no robust term to re-weight: reweight.gamma={self.reweight.gamma} "
                "needs a certified method (e.g. method=ibp), or reweight=none"
            )
        if self.auto_eps is not None:
            raise CertlightError(
                f"method=natural trains at no epsilon: auto_eps.eps_maxoff={self.auto_eps.eps_maxoff} "
                "needs a certified method (e.g. method=ibp), or auto_eps.eps_maxoff=0"
            )
        if self.regulariser is not None:
            raise CertlightError(
                "method=natural computes no bounds for method.regulariser to read; use method=fast_ibp"
            )

    def training_step(self, batch, batch_idx):
        x, y, _ = batch
        logits = self.net(x)
        loss = F.cross_entropy(logits, y)
        self.log_dict(
            {"train/loss": loss, "train/clean_err": (logits.argmax(1) != y).float().mean()},
            on_step=False,
            on_epoch=True,
        )
        return loss


class IBPModule(CertifiedModule):
    """IBP certified training (Gowal et al. 2019)."""

    def robust_term(self, x, y, region, state, values):
        return self.bound_term(x, y, region, 0.0, state)


class CrownIBPModule(CertifiedModule):
    """CROWN-IBP certified training (Zhang et al. 2020): ``beta*CROWN-IBP + (1-beta)*IBP``."""

    eval_methods = ("ibp", "crown_ibp")

    def robust_term(self, x, y, region, state, values):
        # At eps 0 (warm-up) the box is a point and IBP is already exact: skip the CROWN pass.
        beta = values.beta if values.eps > 0 else 0.0
        return self.bound_term(x, y, region, beta, state)
