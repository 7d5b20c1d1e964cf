"""One certification metric for validation and ``verify``: counts summed over a test set."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric


class CertificationErrors(Metric):
    """Clean, per-method verified, best-of verified and (optionally) PGD error rates.

    States are integer counts with sum reduction, so under DDP every rank's examples count once
    and the rates are exact fractions of the whole set. An example counts as verified "best"
    when any of the sound methods verifies it.
    """

    full_state_update = False

    def __init__(self, methods: Sequence[str]):
        super().__init__()
        self.methods = tuple(methods)
        self.add_state("examples", torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("clean_wrong", torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("unverified", torch.zeros(len(self.methods), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("unverified_best", torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("attacked", torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("attacked_examples", torch.tensor(0), dist_reduce_fx="sum")

    def update(
        self, correct: torch.Tensor, verified: dict[str, torch.Tensor], broken: torch.Tensor | None = None
    ) -> None:
        """``correct`` (B,) bool; ``verified[m]`` (B,) bool per method; ``broken`` (B,) bool:
        misclassified or attacked successfully (the PGD error's numerator), when an attack ran."""
        flags = torch.stack([verified[m] for m in self.methods])
        self.examples += correct.numel()
        self.clean_wrong += (~correct).sum()
        self.unverified += (~flags).sum(1)
        self.unverified_best += (~flags.any(0)).sum()
        if broken is not None:
            self.attacked += broken.sum()
            self.attacked_examples += broken.numel()

    def compute(self) -> dict[str, torch.Tensor]:
        """Rates: ``clean_err``, ``verified_err`` (best of), ``verified_err_<method>``, and
        ``pgd_err`` only when an attack ran (absent, not 0, otherwise). Reading whether one ran
        waits for the device: call it at the end of an epoch, not in a step."""
        count = self.examples.clamp(min=1).float()
        rates = {"clean_err": self.clean_wrong / count, "verified_err": self.unverified_best / count}
        if int(self.attacked_examples) > 0:
            rates["pgd_err"] = self.attacked / self.attacked_examples.float()
        rates.update({f"verified_err_{m}": self.unverified[i] / count for i, m in enumerate(self.methods)})
        return rates
