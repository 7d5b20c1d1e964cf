"""Margin (eq. 6), re-weighting (eq. 7) and the mixed loss (eq. 8)."""

from certlight.losses.certified import certified_loss
from certlight.losses.margin import softmax_margin
from certlight.losses.reweight import REWEIGHT_KINDS, Reweighting

__all__ = ["REWEIGHT_KINDS", "Reweighting", "certified_loss", "softmax_margin"]
